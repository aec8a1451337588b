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
