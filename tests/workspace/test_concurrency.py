"""Two people deciding one version at the same moment: exactly one wins, the other gets Conflict."""

from __future__ import annotations

import multiprocessing
import threading

from nexml_ext.errors import Conflict
from nexml_ext.workspace import Workspace

FINDINGS = "Validated on the holdout set; documentation complete and reviewed."


def _outcome(ws: Workspace, ref: str, barrier) -> str:
    barrier.wait(timeout=30)
    try:
        ws.approve(ref, findings=FINDINGS)
        return "won"
    except Conflict:
        return "conflict"
    except Exception as exc:  # noqa: BLE001 - reported, and the test fails on it
        return f"{type(exc).__name__}: {exc}"


def _collect(results: list[str], ws: Workspace, ref: str, barrier) -> None:
    results.append(_outcome(ws, ref, barrier))


def test_two_threads_approving_one_version(world):
    s = world.stack
    for _ in range(3):
        version = world.ready(s.dana)
        barrier = threading.Barrier(2)
        results: list[str] = []
        threads = [
            threading.Thread(target=_collect, args=(results, ws, version.ref, barrier))
            for ws in (s.mark, s.mia)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(results) == ["conflict", "won"], results
        assert [a.decision for a in s.cora.approvals(version.ref)] == ["approved"]
    assert s.cora.audit.verify().ok


def _process_approve(settings, token, ref, barrier, queue) -> None:
    ws = Workspace.open(settings, token)
    try:
        queue.put(_outcome(ws, ref, barrier))
    finally:
        ws.close()


def test_two_processes_approving_one_version(world):
    s = world.stack
    version = world.ready(s.dana)
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    processes = [
        ctx.Process(
            target=_process_approve, args=(s.settings, s.tokens[name], version.ref, barrier, queue)
        )
        for name in ("mark", "mia")
    ]
    for process in processes:
        process.start()
    results = sorted(queue.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert results == ["conflict", "won"], results
    approvals = s.cora.approvals(version.ref)
    assert len(approvals) == 1 and approvals[0].approver in {"mark", "mia"}
    assert s.cora.version(version.ref).status == "approved"
    assert s.cora.audit.verify().ok


def test_concurrent_writers_keep_one_unbroken_chain(stack):
    """Many threads appending events at once never fork the chain or lose a record."""
    before = len(stack.cora.audit.log())
    errors: list[BaseException] = []

    def work(ws: Workspace, n: int) -> None:
        try:
            for i in range(n):
                ws.create_token(label=f"burst {i}")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(ws, 10))
        for ws in (stack.dana, stack.dave, stack.mark, stack.mia)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    events = stack.cora.audit.log()
    assert len(events) == before + 40
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert stack.cora.audit.verify().ok
