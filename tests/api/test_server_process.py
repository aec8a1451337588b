"""`nexml server` as a real process on a prepared SQLite store: it binds loopback by default,
answers predictions, and each answered request id is in the decision trail."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.api.serving import Server, server_env
from tests.workspace.conftest import world  # noqa: F401 - the fixture, shared


@pytest.mark.parametrize("backend", ["sqlite"])
def test_server_process_serves_and_records(world, german, backend, tmp_path):  # noqa: F811
    s = world.stack
    version = world.approved(s.dana, "credit-risk")
    s.mark.deploy(version.ref, name="main")
    _, key = s.mark.set_route("loans", {"default": "main"})
    rows = json.loads(german.drop(columns=["risk"]).head(3).to_json(orient="records"))

    server = Server(server_env(s.settings, s.tokens["ada"]), tmp_path / "server.log")
    port, log = server.port, server.log
    try:
        server.wait_ready()
        base = server.base
        with httpx.Client(base_url=base, timeout=30) as client:
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
        server.stop()
    for request_id in answered:
        [record] = s.cora.find_decisions(request_id=request_id)
        assert record.route == "loans" and record.deployment == "main"
    assert f"Uvicorn running on http://127.0.0.1:{port}" in log.read_text()
