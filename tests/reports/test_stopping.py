"""Stopping a report run while its template runs (a job cancelled mid-report): the real
papermill run in a real kernel, killed with the processes it started."""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import pytest

from nexml_ext.reports import execute


class Stopped(Exception):
    pass


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie waiting to be reaped has)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def wait_until(condition, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.05)


def slow_template(folder: Path) -> Path:
    """A template whose kernel starts a child process and says both pids, then works for 8 s
    and says it finished (a run that is not stopped gets there)."""
    path = folder / "slow.ipynb"
    book = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('marker = ""', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "import os, subprocess, time\n"
            'child = subprocess.Popen(["sleep", "300"])\n'
            'with open(marker + ".tmp", "w") as f:\n'
            '    f.write(f"{os.getpid()} {child.pid}")\n'
            'os.rename(marker + ".tmp", marker)'
        ),
        nbformat.v4.new_code_cell('time.sleep(8)\nopen(marker + ".finished", "w").close()'),
    ])
    book.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                   "display_name": "Python 3"}
    nbformat.write(book, path)
    return path


def test_a_checkpoint_that_raises_kills_the_running_kernel_and_its_children(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(execute, "CHECK_EVERY", 0.1)
    marker = tmp_path / "pids"
    calls = []

    def checkpoint() -> None:
        calls.append(1)
        if marker.exists():  # the template is running its cells
            raise Stopped("cancelled by cora")

    with pytest.raises(Stopped, match="cancelled by cora"):
        execute.run_notebook(slow_template(tmp_path), {"marker": str(marker)},
                             execute.kernel_env({}), timeout=600, checkpoint=checkpoint)
    kernel, child = map(int, marker.read_text().split())
    wait_until(lambda: gone(kernel), f"kernel {kernel} to end")
    wait_until(lambda: gone(child), f"the kernel's child {child} to end")
    assert len(calls) >= 2  # it was asked while the kernel started, and said go on
    time.sleep(1)
    assert not Path(f"{marker}.finished").exists()  # stopped mid-cell, not after the template


def test_a_run_stopped_before_its_kernel_started_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(execute, "CHECK_EVERY", 0.01)
    marker = tmp_path / "pids"

    def checkpoint() -> None:
        raise Stopped("cancelled by mark")

    with pytest.raises(Stopped, match="cancelled by mark"):
        execute.run_notebook(slow_template(tmp_path), {"marker": str(marker)},
                             execute.kernel_env({}), timeout=600, checkpoint=checkpoint)
    assert not marker.exists()


def test_without_a_checkpoint_a_run_is_not_watched(tmp_path):
    path = tmp_path / "quick.ipynb"
    book = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('who = ""', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell('print("made for " + who)'),
    ])
    book.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                   "display_name": "Python 3"}
    nbformat.write(book, path)
    done = execute.run_notebook(path, {"who": "cora"}, execute.kernel_env({}), timeout=120)
    assert done.cells[-1].outputs[0]["text"] == "made for cora\n"
    assert os.path.exists(path)
