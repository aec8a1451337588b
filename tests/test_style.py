"""The code base stays ruff-clean (the rules are in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "nexml_ext", "tests", "benchmarks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_benchmarks_still_start():
    """Benchmarks are not run in CI (they are timed), but they must not rot: each one parses
    its arguments, which imports everything it uses."""
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        result = subprocess.run([sys.executable, str(script), "--help"], cwd=ROOT,
                                capture_output=True, text=True)
        assert result.returncode == 0, f"{script.name}: {result.stderr[-2000:]}"


def test_every_shipped_notebook_is_in_the_wheel():
    """Report templates and dashboards are found in the source tree or the wheel's shared-data;
    a notebook without its shared-data line works in a checkout and is missing once installed."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    shared = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
        "targets"]["wheel"]["shared-data"]
    shipped = {f"{folder}/{p.name}" for folder in ("notebooks", "widgets")
               for p in (root / folder).glob("*.ipynb")}
    assert len(shipped) >= 10
    missing = sorted(shipped - set(shared))
    assert not missing, f"no shared-data line in pyproject.toml for {missing}"
    for source, target in shared.items():
        assert (root / source).exists(), source
        if source in shipped:
            assert target == f"share/nexml-ext/{source}", (source, target)
