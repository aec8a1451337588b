"""Real `nexml dashboards` processes on 127.0.0.1 for the dashboards' tests, and how a person signs
in to one (over HTTP with httpx, or in Debian's Chromium through Playwright).

One store (SQLite; the serving is the same on either backend) with the people of
tests/conftest.py and one server are shared by the whole session. The server runs with no
NEXML_TOKEN at all: each kernel gets the signed-in person's session token from the server.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import nbformat
import pytest

from nexml_ext.config import Settings
from tests.api.serving import free_port
from tests.conftest import Stack, open_stack

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"

#: A dashboard small enough to test the serving with: it says who it acts as (printed, so the
#: rendered page shows it; and in a widget) and has a button that answers from the kernel.
TINY_MODULE = '''
import ipywidgets as widgets


class WhoAmI(widgets.VBox):
    def __init__(self, ws):
        me = ws.whoami()
        print(f"acting as {me.name} ({me.role.value})")
        label = widgets.HTML(f"<p>principal: {me.name} ({me.role.value})</p>")
        label.add_class("nexml-whoami-principal")
        ping = widgets.Button(description="Ping")
        ping.add_class("nexml-whoami-ping")
        answer = widgets.HTML("")
        answer.add_class("nexml-whoami-answer")
        ping.on_click(lambda _button: setattr(answer, "value", f"pong from {ws.whoami().name}"))
        super().__init__([label, ping, answer])
'''


def dashboard_notebook(name: str, title: str, target: str, register: bool) -> nbformat.NotebookNode:
    """The contract's notebook: a markdown title and one cell calling show(name)."""
    code = "from nexml_ext.jupyter.dashboards import show\n"
    if register:
        code = (
            "from nexml_ext.jupyter.dashboards import register, show\n"
            f"register({name!r}, {title!r}, {target!r})\n"
        )
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}"),
                nbformat.v4.new_code_cell(code + f"show({name!r})")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    return nb


def tiny_notebooks(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny_dashboards.py").write_text(TINY_MODULE)
    nbformat.write(dashboard_notebook("whoami", "Who am I", "tiny_dashboards:WhoAmI", True),
                   folder / "whoami.ipynb")
    return folder


def store_env(settings: Settings) -> dict[str, str]:
    """This environment pointed at ``settings``' store, with no token of anyone in it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXML_")}
    env.update(NEXML_HOME=str(settings.home), NEXML_DATABASE_URL=settings.database_url,
               NEXML_ARTIFACT_ROOT=str(settings.artifact_root))
    return env


class ServerProcess:
    """A server command listening on ``port`` (127.0.0.1), its output in a log file."""

    def __init__(self, port: int, command: list[str], env: dict[str, str], log: Path) -> None:
        self.port = port
        self.log = log
        self.base = f"http://127.0.0.1:{port}"
        with open(log, "wb") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out,
                                            stderr=subprocess.STDOUT)

    def wait_until_answering(self, path: str, seconds: float,
                             params: dict[str, str] | None = None) -> None:
        """Until GET ``path`` answers 200; fails with the log if the process ends or time runs
        out first."""
        deadline = time.monotonic() + seconds
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while True:
                assert self.process.poll() is None, self.log.read_text()
                try:
                    if client.get(path, params=params).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, self.log.read_text()
                time.sleep(0.3)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)


class DashboardsServer(ServerProcess):
    """`python -m nexml_ext.cli dashboards` on a free loopback port, its output in a log file."""

    def __init__(self, settings: Settings, log: Path, *args: str) -> None:
        port = free_port()
        super().__init__(
            port,
            [sys.executable, "-m", "nexml_ext.cli", "dashboards", "--port", str(port),
             "--no-browser", *args],
            store_env(settings),
            log,
        )

    def wait_ready(self, seconds: float = 90) -> None:
        self.wait_until_answering("/login", seconds)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=120, follow_redirects=False)


def xsrf_of(html_text: str) -> str:
    match = re.search(r'name="_xsrf" value="([^"]+)"', html_text)
    assert match, html_text[:500]
    return match.group(1)


def sign_in(client: httpx.Client, token: str, next_path: str = "/") -> httpx.Response:
    """Post ``token`` to the login form the way a browser does (the form's xsrf field and
    cookie included); returns the server's answer, redirects not followed."""
    form = client.get("/login")
    assert form.status_code == 200, form.text
    return client.post("/login", data={"_xsrf": xsrf_of(form.text), "token": token,
                                       "next": next_path})


def kernel_id_of(page_html: str) -> str:
    match = re.search(r'"kernelId":\s*"([0-9a-f-]{36})"', page_html)
    assert match, "no kernel id in the rendered page"
    return match.group(1)


def ws_message(msg_type: str, content: dict, session: str) -> dict:
    return {
        "header": {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "username": "test",
                   "session": session, "date": "2026-01-01T00:00:00Z", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "content": content, "channel": "shell",
        "buffers": [],
    }


def make_stack(home: Path) -> Stack:
    settings = Settings.from_env(home=home, database_url=f"sqlite:///{home / 'nexml.db'}",
                                 artifact_root=str(home / "artifacts"), token="")
    return open_stack(settings)


@pytest.fixture(scope="session")
def people(tmp_path_factory) -> Iterator[Stack]:
    """One store for every test here (tests look at what they changed, never at totals)."""
    stack = make_stack(tmp_path_factory.mktemp("dashboards") / "home")
    yield stack
    stack.close()


@pytest.fixture(scope="session")
def dashboards_server(people, tmp_path_factory) -> Iterator[DashboardsServer]:
    """One `nexml dashboards` for every test here, serving the real dashboard notebooks and
    the tiny one (``whoami``) from one folder, so one process start serves them all."""
    from nexml_ext.jupyter.dashboards.paths import catalog, widgets_dir

    folder = tiny_notebooks(tmp_path_factory.mktemp("served") / "notebooks")
    for path in catalog(widgets_dir()).values():
        shutil.copy(path, folder / path.name)
    server = DashboardsServer(people.settings, folder.parent / "server.log",
                              "--notebooks", str(folder))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------
# The browser
# ---------------------------------------------------------------------------------------------


class Person:
    """One person's browser context on a dashboards server: their own cookies, every console
    error and failed request recorded."""

    def __init__(self, browser, base: str) -> None:
        self.base = base
        self.context = browser.new_context(viewport={"width": 1280, "height": 900},
                                           accept_downloads=True)
        self.page = self.context.new_page()
        self.console_errors: list[str] = []
        self.failed: list[str] = []
        self.page.on("console", lambda m: self.console_errors.append(m.text)
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.console_errors.append(str(e)))
        self.page.on("requestfailed", self._failed)

    def _failed(self, request) -> None:  # type: ignore[no-untyped-def]
        # A page's kernel shutdown beacon is cancelled when the browser moves on: not an error.
        if "/voila/api/shutdown/" not in request.url:
            self.failed.append(f"{request.url} {request.failure}")

    def sign_in(self, token: str, path: str = "/") -> None:
        self.page.goto(self.base + path)
        assert "/login" in self.page.url
        self.page.fill("#token", token)
        self.page.click("button.nexml-sign-in")
        self.page.wait_for_load_state("load")

    def open_dashboard(self, name: str, ready_selector: str, timeout: float = 120_000) -> None:
        self.page.goto(f"{self.base}/dashboards/{name}")
        self.page.wait_for_selector(ready_selector, timeout=timeout)

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def assert_clean(self) -> None:
        assert self.console_errors == [], self.console_errors
        assert self.failed == [], self.failed

    def close(self) -> None:
        self.context.close()

