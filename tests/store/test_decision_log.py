"""Group commit: concurrent submissions share transactions, chains stay contiguous and verify."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import defaultdict

import pytest
from sqlalchemy import select

from nexml_ext.errors import Conflict, InvalidInput
from nexml_ext.store import tables as t
from nexml_ext.store.database import Database
from nexml_ext.store.decision_log import DecisionLog, LoopCommitter

THREADS, PER_THREAD = 8, 50


@pytest.fixture
def log(stack):
    """Two deployments (rows written directly: this tests the store, not the lifecycle)."""
    db = Database(stack.settings.database_url)
    with db.write() as s:
        model = t.Model(name="credit", created_by="dana")
        version = t.ModelVersion(model=model, version=1, status="deployed", author="dana",
                                 artifact_uri="mem://x", artifact_sha256="a" * 64)
        s.add_all([model, version])
        s.flush()
        ids = []
        for name in ("credit-eu", "credit-us"):
            dep = t.Deployment(name=name, model_id=model.id, model_version_id=version.id,
                               created_by="mark")
            s.add(dep)
            s.flush()
            ids.append(dep.id)
        version_id = version.id
    decision_log = DecisionLog(db)
    yield stack, db, decision_log, ids, version_id
    decision_log.close()
    db.dispose()


def _record(deployment_id, version_id, request_id=None, **extra):
    return {
        "deployment_id": deployment_id,
        "model_version_id": version_id,
        "artifact_sha256": "a" * 64,
        "request_id": request_id or uuid.uuid4().hex,
        "subject_id": "47392",
        "inputs": {"credit_amount": 1169, "purpose": "radio/TV", "ratio": 0.1 + 0.2},
        "output": {"prediction": 0, "score": 0.31, "approved": False},
        "confidence": 0.69,
        "reasons": [{"feature": "duration", "reason": "Term too long", "contribution": -0.4}],
        **extra,
    }


def test_concurrent_submissions_share_transactions_and_chains_verify(log):
    stack, db, decision_log, ids, version_id = log
    receipts, errors = [], []
    lock = threading.Lock()

    def work(n: int) -> None:
        try:
            for i in range(PER_THREAD):
                got = decision_log.submit([_record(ids[(n + i) % 2], version_id)])
                with lock:
                    receipts.extend(got)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert len(receipts) == THREADS * PER_THREAD

    with db.read() as s:
        stored = {r.request_id: r for r in s.scalars(select(t.PredictionRecord))}
    by_chain = defaultdict(list)
    for receipt in receipts:
        row = stored[receipt.request_id]
        assert (row.seq, row.hash, row.prev_hash) == (receipt.seq, receipt.hash,
                                                      receipt.prev_hash)
        by_chain[receipt.chain].append(receipt.seq)
    assert set(by_chain) == {"predictions:credit-eu", "predictions:credit-us"}
    for seqs in by_chain.values():
        assert sorted(seqs) == list(range(1, len(seqs) + 1))

    stats = decision_log.stats
    assert stats.records == THREADS * PER_THREAD
    assert stats.largest_batch > 1 and stats.batches < stats.records  # requests shared commits
    assert max(r.batch_size for r in receipts) > 1
    assert sum(size * n for size, n in stats.batch_sizes.items()) == stats.records
    assert decision_log.queue_depth == 0
    result = stack.cora.audit.verify()
    assert result.ok, str(result)
    assert {c.chain: c.count for c in result.chains}["predictions:credit-eu"] == len(
        by_chain["predictions:credit-eu"]
    )


def test_a_failing_commit_fails_only_its_waiters_and_the_chain_verifies(log):
    stack, db, decision_log, ids, version_id = log
    taken = decision_log.submit([_record(ids[0], version_id, "dup-1")])[0]
    assert taken.seq == 1

    results: dict[str, object] = {}

    def submit(key: str, records) -> None:
        try:
            results[key] = decision_log.submit(records)
        except Exception as exc:  # noqa: BLE001 - inspected below
            results[key] = exc

    jobs = {f"good-{i}": [_record(ids[i % 2], version_id)] for i in range(10)}
    jobs["dup"] = [_record(ids[0], version_id), _record(ids[0], version_id, "dup-1")]
    threads = [threading.Thread(target=submit, args=item) for item in jobs.items()]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert isinstance(results.pop("dup"), Conflict)
    assert all(isinstance(r, list) and len(r) == 1 for r in results.values())

    with db.read() as s:
        count = len(list(s.scalars(select(t.PredictionRecord.id))))
    assert count == 1 + 10  # nothing of the failed submission, everything of the others
    assert stack.cora.audit.verify().ok
    assert decision_log.submit([_record(ids[0], version_id)])[0].seq == 1 + sum(
        1 for i in range(10) if i % 2 == 0
    ) + 1

    with pytest.raises(InvalidInput, match="lacks request_id"):
        decision_log.submit([{**_record(ids[0], version_id), "request_id": None}])


def test_close_drains_and_then_refuses(log):
    _, db, decision_log, ids, version_id = log
    got = decision_log.submit([_record(ids[1], version_id) for _ in range(3)])
    assert [r.seq for r in got] == [1, 2, 3] and got[0].batch_size == 3
    decision_log.close()
    with pytest.raises(Exception, match="closed"):
        decision_log.submit([_record(ids[1], version_id)])


def test_float_columns_store_what_is_hashed(log):
    """SQLite keeps neither NaN (NULL) nor the sign of -0.0: a record must not hash what the
    store cannot keep, or it would break its own chain."""
    stack, db, decision_log, ids, version_id = log
    receipt = decision_log.submit([_record(ids[0], version_id, confidence=-0.0, latency_ms=-0.0)])
    with db.read() as s:
        row = s.scalars(
            select(t.PredictionRecord).where(t.PredictionRecord.request_id == receipt[0].request_id)
        ).one()
        assert (row.confidence, row.latency_ms) == (0.0, 0.0)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(InvalidInput, match="confidence must be a finite number"):
            decision_log.submit([_record(ids[0], version_id, confidence=bad)])
    assert stack.cora.audit.verify().ok


@pytest.mark.parametrize("inline", [True, False], ids=["on-the-loop", "in-the-executor"])
def test_loop_committer_batches_a_loops_submissions_and_fails_only_the_culprit(log, inline):
    stack, db, decision_log, ids, version_id = log
    decision_log.submit([_record(ids[0], version_id, "dup-1")])
    threaded: list[object] = []  # a thread submitting meanwhile shares the committer's turn

    async def main() -> list[object]:
        committer = LoopCommitter(decision_log, inline=inline)
        futures = [committer.submit([_record(ids[i % 2], version_id)]) for i in range(20)]
        futures.append(committer.submit([_record(ids[0], version_id, "dup-1")]))
        futures.append(committer.submit([_record(ids[1], version_id) for _ in range(3)]))
        assert not any(f.done() for f in futures)  # nothing commits before the loop turns
        thread = threading.Thread(
            target=lambda: threaded.extend(decision_log.submit([_record(ids[0], version_id)]))
        )
        thread.start()
        done = await asyncio.gather(*futures, return_exceptions=True)
        thread.join()
        return done

    done = asyncio.run(main())
    assert isinstance(done[20], Conflict)
    assert all(isinstance(r, list) for i, r in enumerate(done) if i != 20)
    assert [len(r) for r in done[:20]] == [1] * 20 and len(done[21]) == 3  # type: ignore[arg-type]
    assert decision_log.stats.failed_batches >= 1  # the shared one; then each alone
    assert len(threaded) == 1
    with db.read() as s:
        count = len(list(s.scalars(select(t.PredictionRecord.id))))
    assert count == 1 + 20 + 3 + 1  # nothing of the duplicate, everything else
    assert stack.cora.audit.verify().ok


def test_loop_committer_commits_a_clean_loop_batch_in_one_transaction(log):
    _, db, decision_log, ids, version_id = log

    async def main() -> list[list[object]]:
        committer = LoopCommitter(decision_log, inline=True)
        futures = [committer.submit([_record(ids[i % 2], version_id)]) for i in range(30)]
        assert decision_log.queue_depth == 30
        return await asyncio.gather(*futures)

    done = asyncio.run(main())
    assert {r[0].batch_size for r in done} == {30}
    assert decision_log.queue_depth == 0
    by_chain = defaultdict(list)
    for [receipt] in done:
        by_chain[receipt.chain].append(receipt.seq)
    assert by_chain == {"predictions:credit-eu": list(range(1, 16)),
                        "predictions:credit-us": list(range(1, 16))}
    with pytest.raises(InvalidInput, match="lacks request_id"):
        asyncio.run(_submit_one(decision_log, {**_record(ids[0], version_id), "request_id": None}))


async def _submit_one(decision_log, record):
    return await LoopCommitter(decision_log, inline=True).submit([record])
