"""Helpers for the job runner's tests: `nexml` subprocesses (commands and workers) on a store,
and waiting for a job to reach a state (a deadline, never a timing assertion)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from nexml_ext.config import Settings

PATIENCE = 120.0  # seconds; the machine is shared, so be generous and never assert on time


def cli_env(settings: Settings, token: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXML_")}
    env["NEXML_HOME"] = str(settings.home)
    if not settings.is_sqlite:
        env["NEXML_DATABASE_URL"] = settings.database_url
    if token:
        env["NEXML_TOKEN"] = token
    return env


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def ok(self) -> Ran:
        assert self.code == 0, self.err
        return self

    def refused(self, code: int, fragment: str) -> str:
        assert self.code == code, (self.code, self.err)
        lines = self.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), self.err
        assert "Traceback" not in self.err and fragment in lines[0], lines[0]
        return lines[0]


def nexml(settings: Settings, *args: str, token: str | None = None) -> Ran:
    done = subprocess.run(
        [sys.executable, "-m", "nexml_ext.cli", *args],
        env=cli_env(settings, token), capture_output=True, text=True, timeout=PATIENCE,
    )
    return Ran(done.returncode, done.stdout, done.stderr)


class WorkerProcess:
    """A `nexml worker` subprocess (the store's superadmin token, from the credentials file)."""

    def __init__(self, settings: Settings, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nexml_ext.cli", "worker", *args],
            env=cli_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.out = self.err = ""

    @property
    def id(self) -> str:
        import socket

        return f"{socket.gethostname()}:{self.proc.pid}"

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def finish(self, timeout: float = PATIENCE) -> int:
        self.out, self.err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.finish()


@pytest.fixture
def workers(settings) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker subprocesses; any still running at the end are killed and reaped."""
    started: list[WorkerProcess] = []

    def start(*args: str) -> WorkerProcess:
        started.append(WorkerProcess(settings, *args))
        return started[-1]

    yield start
    for w in started:
        w.kill()


def wait_for(read: Callable[[], Any], done: Callable[[Any], bool], what: str) -> Any:
    """Poll ``read()`` until ``done(value)``; fail naming ``what`` after PATIENCE seconds."""
    deadline = time.monotonic() + PATIENCE
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}; last seen {value!r}")
        time.sleep(0.1)
