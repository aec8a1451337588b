"""The Jupyter server extension in a real `jupyter server` process on 127.0.0.1.

The server reads the very file the wheel installs into etc/jupyter/jupyter_server_config.d/
(copied into a private JUPYTER_CONFIG_DIR), so the test also proves that file enables it.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.serving import free_port
from tests.dashboards.conftest import ROOT, ServerProcess, store_env

SHIPPED = ROOT / "etc" / "jupyter" / "jupyter_server_config.d" / "nexml_ext.json"
JUPYTER_TOKEN = "jupyter-test-token-0123456789"


class JupyterServer(ServerProcess):
    def __init__(self, env: dict[str, str], log: Path, root: Path) -> None:
        port = free_port()
        super().__init__(
            port,
            [sys.executable, "-m", "jupyter", "server", "--no-browser", "--allow-root",
             f"--port={port}", "--ip=127.0.0.1", f"--ServerApp.root_dir={root}",
             f"--IdentityProvider.token={JUPYTER_TOKEN}"],
            env,
            log,
        )

    def wait_ready(self, seconds: float = 120) -> None:
        self.wait_until_answering("/api/status", seconds, {"token": JUPYTER_TOKEN})


@pytest.fixture(scope="module")
def jupyter(people, tmp_path_factory) -> Iterator[JupyterServer]:
    base = tmp_path_factory.mktemp("jupyter")
    config_dir = base / "config" / "jupyter_server_config.d"
    config_dir.mkdir(parents=True)
    shutil.copy(SHIPPED, config_dir / SHIPPED.name)
    (base / "root").mkdir()
    env = store_env(people.settings)
    env["NEXML_TOKEN"] = people.tokens["mark"]  # the identity the server runs as
    env["JUPYTER_CONFIG_DIR"] = str(base / "config")
    env["JUPYTER_RUNTIME_DIR"] = str(base / "runtime")
    server = JupyterServer(env, base / "server.log", base / "root")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_the_shipped_config_enables_the_extension():
    assert json.loads(SHIPPED.read_text()) == {
        "ServerApp": {"jpserver_extensions": {"nexml_ext.jupyter.server_extension": True}}
    }


def test_the_extension_loads_and_refuses_unauthenticated_requests(jupyter):
    log = jupyter.log.read_text()
    assert "nexml_ext.jupyter.server_extension | extension was successfully loaded" in log
    with httpx.Client(base_url=jupyter.base, timeout=60) as anonymous:
        for path in ("/nexml/dashboards", "/nexml/dashboards/approvals"):
            r = anonymous.get(path)
            assert r.status_code == 302, path
            assert r.headers["location"].startswith("/login?next="), path
        assert anonymous.get("/nexml/api/whoami").status_code == 403
        wrong = {"Authorization": "token not-the-token"}
        assert anonymous.get("/nexml/api/whoami", headers=wrong).status_code == 403
        assert anonymous.get("/nexml/dashboards", headers=wrong).status_code == 302


def test_the_extension_answers_with_the_jupyter_token(jupyter):
    auth = {"Authorization": f"token {JUPYTER_TOKEN}"}
    with httpx.Client(base_url=jupyter.base, timeout=120, headers=auth) as client:
        whoami = client.get("/nexml/api/whoami")
        assert whoami.status_code == 200
        assert whoami.json() == {"user": "mark", "role": "manager", "error": None}
        index = client.get("/nexml/dashboards")
        assert index.status_code == 200
        from nexml_ext.jupyter.dashboards.paths import catalog, widgets_dir

        for name in catalog(widgets_dir()):
            assert f'href="/nexml/dashboards/{name}"' in index.text
        assert client.get("/nexml/dashboards/no_such_dashboard").status_code == 404
