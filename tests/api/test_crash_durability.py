"""Kill -9 a real `nexml server` in the middle of a bounded load run, on each backend.

The promise under test (DESIGN.md, "Audit chain"): a response is sent only after its record is
committed. So every request id a client received with 200 must be in the decision trail with the
inputs that were sent, the chains must verify (`nexml audit verify`, the real CLI), and a server
restarted on the same store must serve the same deployments and keep recording.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import select

from nexml_ext.store import tables as t
from nexml_ext.store.database import Database
from tests.api.serving import Server, server_env
from tests.workspace.conftest import world  # noqa: F401 - the fixture, shared

WORKERS = 8
KILL_AFTER = 150  # answered requests (all workers together) before the SIGKILL
MAX_PER_WORKER = 400  # bounds the run should the kill never come




@dataclass
class Load:
    """What the clients saw: each answered row (request id -> subject id and inputs sent)."""

    base: str
    key: str
    rows: list[dict[str, Any]]
    answered: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    responses: int = 0
    transport_errors: int = 0
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    enough: threading.Event = field(default_factory=threading.Event)

    def worker(self, w: int) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as client:
            for n in range(MAX_PER_WORKER):
                size = 3 if n % 3 == 2 else 1  # single- and multi-row requests
                sent = [self.rows[(w * 31 + n * 3 + j) % len(self.rows)] for j in range(size)]
                subjects = [f"w{w}-n{n}-r{j}" for j in range(size)]
                try:
                    response = client.post(
                        "/v1/routes/loans/predict",
                        json={"inputs": sent, "subject_ids": subjects},
                        headers={"Authorization": f"Bearer {self.key}"},
                    )
                except httpx.TransportError:
                    with self.lock:
                        self.transport_errors += 1
                    return  # the server is gone (the kill): this worker's load ends
                with self.lock:
                    if response.status_code != 200:
                        self.unexpected.append(f"{response.status_code}: {response.text}")
                        return
                    predictions = response.json()["predictions"]
                    if [p["subject_id"] for p in predictions] != subjects:
                        self.unexpected.append(f"subjects out of order: {response.text}")
                        return
                    for p, row, subject in zip(predictions, sent, subjects, strict=True):
                        self.answered[p["request_id"]] = (subject, row)
                    self.responses += 1
                    if self.responses >= KILL_AFTER:
                        self.enough.set()


def _verify(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nexml_ext.cli", "audit", "verify"],
        env=env, capture_output=True, text=True, timeout=120,
    )


def _recorded(database_url: str) -> dict[str, tuple[str | None, dict[str, Any]]]:
    """Every prediction record in the store: request id -> (subject id, inputs)."""
    db = Database(database_url)
    try:
        with db.read() as s:
            rows = s.execute(select(t.PredictionRecord.request_id, t.PredictionRecord.subject_id,
                                    t.PredictionRecord.inputs))
            return {r: (subject, inputs) for r, subject, inputs in rows}
    finally:
        db.dispose()


def test_kill_9_under_load_loses_no_answered_decision(world, german, tmp_path):  # noqa: F811
    s = world.stack
    version = world.approved(s.dana, "credit-risk")
    s.mark.deploy(version.ref, name="main")
    _, key = s.mark.set_route("loans", {"default": "main"})
    # The model's own input fields (it leaves sex and age out), so what is stored is what was sent.
    features = german.drop(columns=["risk", "sex", "age"]).head(60)
    rows = json.loads(features.to_json(orient="records"))

    env = server_env(s.settings, s.tokens["cora"])

    server = Server(env, tmp_path / "server.log")
    try:
        server.wait_ready()
        load = Load(server.base, key, rows)
        workers = [threading.Thread(target=load.worker, args=(w,)) for w in range(WORKERS)]
        for thread in workers:
            thread.start()
        reached = load.enough.wait(timeout=300)
        os.kill(server.process.pid, signal.SIGKILL)  # mid-load: requests are in flight
        server.process.wait(timeout=30)
        for thread in workers:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in workers)
    finally:
        server.stop()

    assert reached, f"only {load.responses} answers before the time limit"
    assert server.process.returncode == -signal.SIGKILL
    assert load.unexpected == []
    # Every worker was still sending when the server died: its load ended on a transport error.
    assert load.transport_errors == WORKERS
    assert load.responses >= KILL_AFTER

    recorded = _recorded(s.settings.database_url)
    missing = sorted(set(load.answered) - set(recorded))
    assert missing == [], f"{len(missing)} answered with 200 but not recorded"
    for request_id, (subject, sent) in load.answered.items():
        assert recorded[request_id] == (subject, sent), request_id
    # Spot-check through the Workspace's own look-up, the way an auditor asks.
    some = next(iter(load.answered))
    [found] = s.cora.find_decisions(request_id=some)
    assert found.deployment == "main" and found.route == "loans" and found.link_verified

    verified = _verify(env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "predictions:main" in verified.stdout

    # The same store, a new process: the deployment and route survived, and recording goes on.
    again = Server(env, tmp_path / "server-2.log")
    try:
        again.wait_ready()
        with httpx.Client(base_url=again.base, timeout=30) as client:
            response = client.post(
                "/v1/routes/loans/predict",
                json={"inputs": rows[:2], "subject_ids": ["after-1", "after-2"]},
                headers={"Authorization": f"Bearer {key}"},
            )
    finally:
        again.stop()
    assert response.status_code == 200, response.text
    after = {p["request_id"]: p for p in response.json()["predictions"]}
    assert {p["model_version"] for p in after.values()} == {version.ref}
    recorded = _recorded(s.settings.database_url)
    for request_id, p in after.items():
        assert recorded[request_id][0] == p["subject_id"]
    assert set(load.answered) <= set(recorded)
    verified = _verify(env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
