"""Where the report templates are: the source tree (editable installs, a checkout) first, then
the installed data files (``share/nexml-ext/notebooks`` and
``share/jupyter/nbconvert/templates/nexml``, put there by the wheel's shared-data)."""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

from ..errors import NotFound

_SOURCE = Path(__file__).resolve().parents[2]
TEMPLATE_NAME = "nexml"


def _prefixes() -> list[Path]:
    seen: list[Path] = []
    for raw in (sys.prefix, sysconfig.get_path("data"), sys.base_prefix):
        path = Path(raw)
        if path not in seen:
            seen.append(path)
    return seen


def notebook_path(name: str) -> Path:
    """The papermill template ``name`` (e.g. ``audit.ipynb``; an absolute path is taken as is)."""
    if Path(name).is_absolute():
        if Path(name).is_file():
            return Path(name)
        raise NotFound(f"report template {name} not found")
    candidates = [_SOURCE / "notebooks" / name]
    candidates += [p / "share" / "nexml-ext" / "notebooks" / name for p in _prefixes()]
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(map(str, candidates))
    raise NotFound(f"report template {name} not found (looked in {looked})")


def templates_dir() -> Path:
    """The folder holding the ``nexml`` nbconvert template (passed to nbconvert explicitly)."""
    candidates = [_SOURCE / "report_templates"]
    candidates += [p / "share" / "jupyter" / "nbconvert" / "templates" for p in _prefixes()]
    for path in candidates:
        if (path / TEMPLATE_NAME / "index.html.j2").is_file():
            return path
    raise NotFound(
        f"nbconvert template {TEMPLATE_NAME!r} not found (looked in "
        f"{', '.join(map(str, candidates))})"
    )
