"""`nexml server` as a real process on a prepared SQLite store: it binds loopback by default,
answers predictions, and each answered request id is in the decision trail."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.workspace.conftest import world  # noqa: F401 - the fixture, shared


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_server_process_serves_and_records(world, german, backend, tmp_path):  # noqa: F811
    s = world.stack
    version = world.approved(s.dana, "credit-risk")
    s.mark.deploy(version.ref, name="main")
    _, key = s.mark.set_route("loans", {"default": "main"})
    rows = json.loads(german.drop(columns=["risk"]).head(3).to_json(orient="records"))

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXML_")}
    env.update(NEXML_HOME=str(s.settings.home), NEXML_TOKEN=s.tokens["ada"],
               NEXML_DATABASE_URL=s.settings.database_url,
               NEXML_ARTIFACT_ROOT=str(s.settings.artifact_root))
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "nexml_ext.cli", "server", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                assert server.poll() is None, log.read_text()
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            answered = []
            for i in range(3):
                response = client.post(
                    "/v1/routes/loans/predict",
                    json={"inputs": rows, "subject_ids": [f"s-{i}-{j}" for j in range(3)]},
                    headers={"Authorization": f"Bearer {key}"},
                )
                assert response.status_code == 200, response.text
                answered += [p["request_id"] for p in response.json()["predictions"]]
            assert client.post("/v1/routes/loans/predict", json={"inputs": rows}).status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=30)
    for request_id in answered:
        [record] = s.cora.find_decisions(request_id=request_id)
        assert record.route == "loans" and record.deployment == "main"
    assert f"Uvicorn running on http://127.0.0.1:{port}" in log.read_text()
