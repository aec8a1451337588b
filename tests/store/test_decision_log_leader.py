"""The decision log's committer is a submitter: a lone submission commits in its caller's
thread; concurrent ones leave nothing behind in the queue; a closed log refuses more."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from nexml_ext.errors import NexmlError
from nexml_ext.store import tables as t
from tests.store.test_decision_log import _record, log  # noqa: F401 - the fixture, shared


def test_a_lone_submission_commits_in_its_callers_thread(log):  # noqa: F811
    stack, db, decision_log, ids, version_id = log
    committing: list[str] = []
    write = decision_log._write

    def spy(records):
        committing.append(threading.current_thread().name)
        return write(records)

    decision_log._write = spy
    before = {th.ident for th in threading.enumerate()}
    receipts = [decision_log.submit([_record(ids[0], version_id)])[0] for _ in range(3)]
    assert committing == [threading.current_thread().name] * 3
    assert {th.ident for th in threading.enumerate()} == before  # no committer thread started
    assert [r.seq for r in receipts] == [1, 2, 3] and all(r.batch_size == 1 for r in receipts)
    with db.read() as s:
        assert s.scalar(select(func.count(t.PredictionRecord.id))) == 3


def test_concurrent_submitters_leave_nothing_queued_and_close_refuses_more(log):  # noqa: F811
    stack, db, decision_log, ids, version_id = log
    started = threading.Barrier(5)
    answered: list[int] = []

    def work() -> None:
        started.wait()
        for _ in range(20):
            answered.append(len(decision_log.submit([_record(ids[1], version_id)])))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    started.wait()
    for th in threads:
        th.join()
    decision_log.close()
    assert decision_log.queue_depth == 0 and len(answered) == 80
    with db.read() as s:
        assert s.scalar(select(func.count(t.PredictionRecord.id))) == 80
    assert stack.cora.audit.verify().ok
    with pytest.raises(NexmlError, match="closed"):
        decision_log.submit([_record(ids[1], version_id)])
