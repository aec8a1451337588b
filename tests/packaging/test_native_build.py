"""The build hook (hatch_build.py): a wheel carries the compiled chain scanner; without a
compiler it is a pure-Python wheel, unless the scanner is required. Real builds with pip."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _wheel(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "NEXML_REQUIRE_NATIVE"}
    return subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path),
         str(ROOT)],
        env={**environment, **env}, capture_output=True, text=True, timeout=600,
    )


def _built(tmp_path: Path) -> tuple[str, list[str]]:
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return wheel.name, archive.namelist()


def test_the_wheel_carries_the_compiled_scanner(tmp_path):
    done = _wheel(tmp_path)
    assert done.returncode == 0, done.stderr
    name, files = _built(tmp_path)
    assert "-cp3" in name and not name.endswith("-none-any.whl")  # a platform wheel
    assert [f for f in files if f.startswith("nexml_ext/store/_chainscan.") and f.endswith(".so")]


def test_without_a_compiler_the_wheel_is_pure_python(tmp_path):
    done = _wheel(tmp_path, CC="/bin/false")
    assert done.returncode == 0, done.stderr
    name, files = _built(tmp_path)
    assert name.endswith("-py3-none-any.whl")
    assert not [f for f in files if f.endswith(".so")]
    assert "nexml_ext/store/chain_scan.py" in files  # the Python scans are all there


def test_a_required_scanner_fails_the_build_without_a_compiler(tmp_path):
    done = _wheel(tmp_path, CC="/bin/false", NEXML_REQUIRE_NATIVE="1")
    assert done.returncode != 0
    assert "the native chain scanner was not compiled" in done.stderr
    assert not list(tmp_path.glob("*.whl"))
