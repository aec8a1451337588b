"""Deployment sizes and the multi-process gateway.

`nexml server --processes 2` runs as a real process on a prepared SQLite store: both children
answer, every answered request id is in the decision trail, a child killed with SIGKILL is
replaced, and the chains verify afterwards. The listener it binds keeps TCP_NODELAY on accepted
connections (the trap of uvicorn's --workers, uvicorn issue 3149).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nexml_ext.api.server import PROCESS_HEADER, bind_listener, plan, url_of
from nexml_ext.deploy import sizes
from nexml_ext.errors import InvalidInput
from tests.api.serving import free_port
from tests.workspace.conftest import world  # noqa: F401 - the fixture, shared

# --- sizes ---------------------------------------------------------------------------------------


def test_sizes_grow_and_the_server_plan_follows_the_largest_active_size():
    small, medium, large = (sizes.get(n) for n in ("small", "medium", "large"))
    assert sizes.SIZES == ("small", "medium", "large")
    assert (small.processes, medium.processes, large.processes) == (1, 2, 4)
    assert small.concurrency < medium.concurrency < large.concurrency
    # the autoscaler ranges the export bundles carry (documented in deploy/sizes.py)
    assert [(s.min_replicas, s.max_replicas) for s in (small, medium, large)] == [
        (1, 2), (2, 4), (3, 10)
    ]

    assert plan([]) == plan(["small"]) == plan(["small", "small"])
    assert plan([]).processes == 1
    assert plan(["small", "large", "medium"]).processes == 4
    assert plan(["medium", "small"]).size == "medium"
    chosen = plan(["large"], processes=2, concurrency=7)
    assert (chosen.processes, chosen.concurrency, chosen.size) == (2, 7, "large")
    with pytest.raises(InvalidInput, match="invalid deployment size 'huge'"):
        sizes.get("huge")
    with pytest.raises(InvalidInput, match="--processes must be at least 1"):
        plan([], processes=0)


def test_deploy_with_an_unknown_size_is_refused_and_changes_nothing(world):  # noqa: F811
    s = world.stack
    version = world.approved(s.dana)
    events = len(s.cora.audit.log())
    with pytest.raises(InvalidInput, match="invalid deployment size 'huge': choose one of "
                       "small, medium, large"):
        s.mark.deploy(version.ref, name="sized", size="huge")
    assert [d.name for d in s.mark.deployments()] == []
    assert s.mark.version(version.ref).status == "approved"
    assert len(s.cora.audit.log()) == events
    deployed = s.mark.deploy(version.ref, name="sized", size="large")
    assert deployed.size == "large"


# --- the listener --------------------------------------------------------------------------------


def _accepted_nodelay(sock: socket.socket) -> tuple[int, int]:
    """(proto, TCP_NODELAY) of a connection accepted through asyncio on ``sock``."""

    async def run() -> tuple[int, int]:
        seen: asyncio.Future = asyncio.get_running_loop().create_future()

        async def accepted(reader, writer):
            raw = writer.get_extra_info("socket")
            seen.set_result((raw.proto, raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))
            writer.close()

        server = await asyncio.start_server(accepted, sock=sock)
        async with server:
            host, port = sock.getsockname()[:2]
            _, writer = await asyncio.open_connection(host, port)
            result = await asyncio.wait_for(seen, 10)
            writer.close()
            await writer.wait_closed()
        return result

    return asyncio.run(run())


def test_the_listener_gives_accepted_connections_tcp_nodelay():
    sock = bind_listener("127.0.0.1", 0)
    assert sock.proto == socket.IPPROTO_TCP
    assert url_of(sock).startswith("http://127.0.0.1:")
    assert _accepted_nodelay(sock) == (socket.IPPROTO_TCP, 1)

    # The trap this avoids: a listener made as uvicorn's bind_socket makes it (proto 0).
    plain = socket.socket(socket.AF_INET)
    plain.bind(("127.0.0.1", 0))
    plain.listen()
    assert _accepted_nodelay(plain) == (0, 0)


def test_the_listener_refuses_an_address_in_use():
    first = bind_listener("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        with pytest.raises(InvalidInput, match=f"cannot listen on 127.0.0.1:{port}"):
            bind_listener("127.0.0.1", port)
    finally:
        first.close()


# --- a real two-process server -------------------------------------------------------------------


PREDICT = "/v1/routes/{route}/predict"


def _totals(text: str) -> tuple[float, float, float]:
    """(predict requests answered 200, rows scored, requests refused 401) in a scrape."""
    answered = rows = refused = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "nexml_http_requests_total" and labels["endpoint"] == PREDICT \
                    and labels["status"] == "200":
                answered += sample.value
            elif sample.name == "nexml_predictions_total":
                rows += sample.value
            elif sample.name == "nexml_request_errors_total" and labels["status"] == "401":
                refused += sample.value
    return answered, rows, refused


def _scrapes_agree(base: str, expected: tuple[float, float, float], pids: set[str]) -> set[str]:
    """Scrape /metrics on fresh connections (any child may take each one) until both children
    have answered; every scrape must show ``expected``, the whole gateway's totals. Waits first
    (bounded) for the last counts: a child counts a request just after sending its answer."""
    deadline = time.monotonic() + 30
    while _totals(httpx.get(f"{base}/metrics", timeout=30).text) != expected:
        assert time.monotonic() < deadline, httpx.get(f"{base}/metrics").text
        time.sleep(0.1)
    seen: set[str] = set()
    lock = threading.Lock()
    wrong: list[tuple] = []

    def scrape() -> None:
        for _ in range(5):
            response = httpx.get(f"{base}/metrics", timeout=30)
            with lock:
                seen.add(response.headers[PROCESS_HEADER])
                if _totals(response.text) != expected:
                    wrong.append((response.headers[PROCESS_HEADER], _totals(response.text)))

    for _ in range(10):
        threads = [threading.Thread(target=scrape) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if seen >= pids:
            break
    assert not wrong, f"scrapes disagree with the gateway's totals {expected}: {wrong}"
    assert seen >= pids, f"only {seen} answered the scrapes, not all of {pids}"
    return seen


def test_the_metrics_directory_is_fresh_named_for_children_and_removed(monkeypatch):
    from nexml_ext.api.server import _shared_metrics_dir

    monkeypatch.setenv("prometheus_multiproc_dir", "/somewhere/else")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with _shared_metrics_dir() as path:
        assert os.path.isdir(path) and os.listdir(path) == []
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == path
        assert "prometheus_multiproc_dir" not in os.environ  # never a directory of old runs
    assert not os.path.exists(path)
    assert os.environ.get("prometheus_multiproc_dir") == "/somewhere/else"  # noqa: SIM112
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def _wait_ready(client: httpx.Client, server: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + 90
    while True:
        assert server.poll() is None, log.read_text()
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_two_processes_both_serve_and_every_answer_is_recorded(
    world, german, backend, tmp_path  # noqa: F811
):
    s = world.stack
    version = world.approved(s.dana, "credit-risk")
    s.mark.deploy(version.ref, name="main", size="large")  # large would be 4; we ask for 2
    _, key = s.mark.set_route("loans", {"default": "main"})
    rows = json.loads(german.drop(columns=["risk"]).head(3).to_json(orient="records"))

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXML_")}
    env.update(NEXML_HOME=str(s.settings.home), NEXML_TOKEN=s.tokens["ada"],
               NEXML_DATABASE_URL=s.settings.database_url,
               NEXML_ARTIFACT_ROOT=str(s.settings.artifact_root))
    scratch = tmp_path / "scratch"  # where the server makes its metrics directory
    scratch.mkdir()
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "nexml_ext.cli", "server", "--port", str(port),
             "--processes", "2", "--concurrency", "32"],
            env={**env, "TMPDIR": str(scratch)}, stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    answered: list[str] = []
    pids: set[str] = set()
    lock = threading.Lock()
    problems: list[str] = []
    requests_ok = [0]

    def client_run(c: int, requests: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            for i in range(requests):
                response = client.post(
                    "/v1/routes/loans/predict",
                    json={"inputs": rows, "subject_ids": [f"c{c}-{i}-{j}" for j in range(3)]},
                    headers={"Authorization": f"Bearer {key}"},
                )
                with lock:
                    if response.status_code != 200:
                        problems.append(f"{response.status_code}: {response.text}")
                        return
                    pids.add(response.headers[PROCESS_HEADER])
                    answered.extend(p["request_id"] for p in response.json()["predictions"])
                    requests_ok[0] += 1

    def load(round_: int, clients: int = 6, requests: int = 5) -> None:
        threads = [threading.Thread(target=client_run, args=(round_ * 100 + c, requests))
                   for c in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not problems, problems

    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            _wait_ready(client, server, log)
            # Several connections at once until both children have answered (bounded).
            for round_ in range(20):
                load(round_)
                if len(pids) == 2:
                    break
            assert len(pids) == 2, f"one process answered everything: {pids}"
            children = {int(p) for p in pids}
            assert server.pid not in children
            # /metrics is the whole gateway's, whichever child answers the scrape.
            [shared] = scratch.glob("nexml-metrics-*")
            assert any(shared.iterdir())  # the children's value files
            _scrapes_agree(base, (requests_ok[0], len(answered), 0), set(pids))

            # A child that dies is replaced, and the gateway keeps answering.
            victim = min(children)
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 90
            while "restarting it" not in log.read_text():
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            pids.clear()
            for round_ in range(20, 60):
                load(round_, clients=4, requests=3)
                if len(pids) == 2:
                    break
            assert str(victim) not in pids
            assert len(pids) == 2, f"the replacement never answered: {pids}"
            assert client.post("/v1/routes/loans/predict", json={"inputs": rows}).status_code == 401
            # The killed child's counts stay in the totals; its replacement adds to them.
            _scrapes_agree(base, (requests_ok[0], len(answered), 1), set(pids))
    finally:
        server.terminate()
        status = server.wait(timeout=60)
    text = log.read_text()
    assert status == 0, text
    assert list(scratch.glob("nexml-metrics-*")) == []  # gone with the server
    assert f"Uvicorn running on http://127.0.0.1:{port}" in text
    assert "2 processes, up to 32 concurrent connections each (size large)" in text
    assert f"[{victim}] was killed by SIGKILL; restarting it" in text
    assert "Traceback" not in text

    assert len(answered) >= 3 * 6 * 2
    for request_id in answered:
        [record] = s.cora.find_decisions(request_id=request_id)
        assert record.route == "loans" and record.deployment == "main"
    verify = subprocess.run([sys.executable, "-m", "nexml_ext.cli", "audit", "verify"],
                            env={**env, "NEXML_TOKEN": s.tokens["cora"]},
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_child_that_cannot_start_again_stops_the_server_with_one_error(
    stack, backend, tmp_path
):
    _, token = stack.admin.add_user("gate", "manager")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXML_")}
    env.update(NEXML_HOME=str(stack.settings.home), NEXML_TOKEN=token,
               NEXML_DATABASE_URL=stack.settings.database_url,
               NEXML_ARTIFACT_ROOT=str(stack.settings.artifact_root))
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "nexml_ext.cli", "server", "--port", str(port),
             "--processes", "2"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            _wait_ready(client, server, log)
            pid = int(client.get("/healthz").headers[PROCESS_HEADER])
        stack.admin.disable_user("gate")  # a replacement child can no longer open the store
        os.kill(pid, signal.SIGKILL)
        status = server.wait(timeout=120)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    text = log.read_text()
    assert status == 1, text
    # (The other child may still have been starting when the user was disabled: it fails too.)
    assert text.count("cannot open the store: token refused: user gate is disabled") >= 3, text
    last = text.strip().splitlines()[-1]
    assert last.startswith("error: server process ") and "3 times in a row" in last, last
    assert "Traceback" not in text
    with pytest.raises(httpx.TransportError):  # every child is gone with the parent
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_children_stop_when_the_parent_is_killed(stack, backend, tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXML_")}
    env.update(NEXML_HOME=str(stack.settings.home), NEXML_TOKEN=stack.tokens["ada"],
               NEXML_DATABASE_URL=stack.settings.database_url,
               NEXML_ARTIFACT_ROOT=str(stack.settings.artifact_root))
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "nexml_ext.cli", "server", "--port", str(port),
             "--processes", "2"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        _wait_ready(client, server, log)
        child = int(client.get("/healthz").headers[PROCESS_HEADER])
    server.kill()  # SIGKILL: the parent cannot stop its children itself
    server.wait()
    deadline = time.monotonic() + 60
    while True:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    deadline = time.monotonic() + 60
    while True:  # and the port is free again: nothing is left holding it
        try:
            bind_listener("127.0.0.1", port).close()
            break
        except InvalidInput:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    assert "is gone; child process" in log.read_text()
