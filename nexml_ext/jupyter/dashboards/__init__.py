"""The Voila dashboards' one shared entry point: ``show(name)``.

Each dashboard notebook in ``widgets/`` is a title and one cell, ``show("<name>")``. It opens the
Workspace with :func:`nexml_ext.connect` — under ``nexml dashboards`` the server gives each
dashboard kernel the signed-in person's session token in ``NEXML_TOKEN``; inside JupyterLab it is
whoever runs the server — builds the dashboard class named in :data:`REGISTRY` as ``Class(ws)``
and displays it. A refusal (no token, revoked token, ...) is one plain sentence, no traceback.
"""

from __future__ import annotations

import html
import importlib
import re
from dataclasses import dataclass

from ...errors import InvalidInput, NexmlError

__all__ = ["REGISTRY", "Dashboard", "register", "show", "title_of"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Dashboard:
    name: str
    title: str
    target: str  # "module:Class", an ipywidgets.VBox subclass built as Class(ws)


REGISTRY: dict[str, Dashboard] = {}


def register(name: str, title: str, target: str) -> Dashboard:
    """Add (or replace) the dashboard ``name``: ``target`` is ``"module:Class"``."""
    if not _NAME.match(name or ""):
        raise InvalidInput(
            f"dashboard name {name!r} refused: use lowercase letters, digits and _ "
            "(a letter first, at most 64)"
        )
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise InvalidInput(f"dashboard target {target!r} refused: expected 'module:Class'")
    REGISTRY[name] = Dashboard(name, title, target)
    return REGISTRY[name]


for _name, _title, _target in (
    ("approvals", "Approvals", "nexml_ext.jupyter.widgets.approvals:ApprovalsDashboard"),
    (
        "platform_summary",
        "Platform summary",
        "nexml_ext.jupyter.widgets.platform_summary:PlatformSummaryDashboard",
    ),
    ("audit_trail", "Audit trail", "nexml_ext.jupyter.widgets.audit_trail:AuditTrailDashboard"),
    (
        "compliance",
        "Compliance",
        "nexml_ext.jupyter.widgets.compliance_dashboard:ComplianceDashboard",
    ),
    (
        "monitoring",
        "Monitoring",
        "nexml_ext.jupyter.widgets.monitoring_dashboard:MonitoringDashboard",
    ),
):
    register(_name, _title, _target)


def title_of(name: str) -> str:
    """The dashboard's title, or its name made readable when it is not registered."""
    found = REGISTRY.get(name)
    return found.title if found else name.replace("_", " ").capitalize()


def _message(text: str):  # type: ignore[no-untyped-def]
    import ipywidgets as widgets

    box = widgets.HTML(f'<p class="nexml-dashboard-message">{html.escape(text)}</p>')
    box.add_class("nexml-dashboard-error")
    return box


def show(name: str) -> None:
    """Open the Workspace and display the dashboard ``name`` (one sentence if it cannot open).

    Returns None on purpose: as a cell's last expression a returned widget would show twice.
    """
    from IPython.display import display

    from ... import connect

    spec = REGISTRY.get(name)
    if spec is None:
        display(_message(f"There is no dashboard called {name!r}."))
        return
    module, _, attr = spec.target.partition(":")
    try:
        ws = connect()
    except NexmlError as exc:
        display(_message(f"The {spec.title} dashboard cannot open: {exc}."))
        return
    try:
        cls = getattr(importlib.import_module(module), attr)
        dashboard = cls(ws)
    except NexmlError as exc:
        ws.close()
        display(_message(f"The {spec.title} dashboard cannot open: {exc}."))
        return
    except (ImportError, AttributeError):
        ws.close()
        display(_message(f"The {spec.title} dashboard is not installed ({spec.target})."))
        return
    display(dashboard)
