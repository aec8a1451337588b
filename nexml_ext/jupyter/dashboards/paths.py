"""Where the dashboard notebooks are: the source tree's ``widgets/`` (a checkout, an editable
install) first, then the installed copy under ``<prefix>/share/nexml-ext/widgets`` that the
wheel's shared-data puts there (the same order as :mod:`nexml_ext.reports.paths`)."""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import NotFound
from ...reports.paths import _prefixes

_SOURCE = Path(__file__).resolve().parents[3]
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def widgets_dir() -> Path:
    """The folder holding the dashboard notebooks (``approvals.ipynb`` ...)."""
    candidates = [_SOURCE / "widgets"]
    candidates += [p / "share" / "nexml-ext" / "widgets" for p in _prefixes()]
    for path in candidates:
        if path.is_dir() and any(path.glob("*.ipynb")):
            return path
    raise NotFound(
        f"no dashboard notebooks found (looked in {', '.join(map(str, candidates))})"
    )


def catalog(folder: Path | None = None) -> dict[str, Path]:
    """Dashboard name -> notebook, for every ``<name>.ipynb`` in ``folder`` whose name is a plain
    identifier (nothing else in the folder is ever served)."""
    folder = folder or widgets_dir()
    return {
        p.stem: p
        for p in sorted(folder.glob("*.ipynb"))
        if p.is_file() and _NAME.match(p.stem)
    }
