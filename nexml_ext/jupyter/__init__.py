"""Jupyter surfaces of nexml-ext: the ``%nexml`` magics (and, beside them, the widgets).

``%load_ext nexml_ext`` (or ``%load_ext nexml_ext.jupyter``) registers the magics.
"""

from __future__ import annotations

from typing import Any


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%nexml`` and ``%%nexml`` on ``ipython`` (a reload replaces the instance)."""
    from .display import register_formatters
    from .magics import NexmlMagics

    previous = ipython.magics_manager.registry.get(NexmlMagics.__name__)
    if previous is not None:
        previous.close()
        if previous in ipython.configurables:
            ipython.configurables.remove(previous)
    ipython.register_magics(NexmlMagics(shell=ipython))
    register_formatters(ipython)  # HTML for explanations and fairness reports
