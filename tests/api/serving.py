"""A real `nexml server` process for tests: a free loopback port, its output in a log file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from nexml_ext.config import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(settings: Settings, token: str) -> dict[str, str]:
    """This environment without any NEXML_ variable, pointed at ``settings``' store as ``token``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXML_")}
    env.update(NEXML_HOME=str(settings.home), NEXML_TOKEN=token,
               NEXML_DATABASE_URL=settings.database_url,
               NEXML_ARTIFACT_ROOT=str(settings.artifact_root))
    return env


class Server:
    """`python -m nexml_ext.cli server [args]` on a free loopback port."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.port = free_port()
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "nexml_ext.cli", "server", "--port", str(self.port), *args],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )
        self.base = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, seconds: float = 60) -> None:
        """Until /readyz answers 200; fails with the server's log if it exits or never does."""
        deadline = time.monotonic() + seconds
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while True:
                assert self.process.poll() is None, self.log.read_text()
                try:
                    if client.get("/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, self.log.read_text()
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=30)
