"""Group commit of prediction records into their per-deployment hash chains.

A decision is answered only after its record is durably committed (DESIGN.md, "Audit chain").
One transaction per request would make the chain-head lock the bottleneck, so one committer at a
time takes everything queued since the last commit and writes it in ONE transaction: each
deployment's chain head is locked once, the records get consecutive sequence numbers and hashes,
and every waiting submitter is released together when the commit returns (or gets its error).
The committer is a submitter itself (leader and followers): a submitter that finds no commit
under way commits the queue, its own submission included, in its own thread; submitters that
arrive while a commit runs queue up and wait, and when it ends one of them commits the next
batch. A lone request thus commits without handing its record to another thread and waiting
for that thread to be scheduled.

If a shared transaction fails, each submission in it is retried alone, so one bad submission
(say, a request id already recorded) fails only its own caller.
"""

from __future__ import annotations

import asyncio
import json
import math
import queue
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from ..errors import Conflict, InvalidInput, NexmlError
from ..governance.audit import GENESIS, canonical_json, record_hash
from . import tables as t
from .chains import hashed_columns
from .database import Database

#: Chain name of a deployment's predictions (the one spelling, shared with verification).
CHAIN_PREFIX = "predictions:"
_JSON_COLUMNS = ("inputs", "output", "explanation", "reasons")
_DEFAULTS: dict[str, Any] = {
    "subject_id": None,
    "route": None,
    "rule": None,
    "caller": None,
    "confidence": None,
    "latency_ms": None,
    "explanation": {},
    "reasons": [],
    "shadow": False,
}
_REQUIRED = (
    "deployment_id",
    "request_id",
    "model_version_id",
    "artifact_sha256",
    "inputs",
    "output",
)


def chain_name(deployment: str) -> str:
    return CHAIN_PREFIX + deployment


@dataclass(frozen=True)
class Receipt:
    """Proof that one record is committed: where it sits in which chain."""

    request_id: str
    chain: str
    seq: int
    prev_hash: str
    hash: str
    at: datetime
    batch_size: int  # records committed in the same transaction


@dataclass
class DecisionLogStats:
    """Counters for monitoring (the future /metrics): how well group commit is working."""

    batches: int = 0
    records: int = 0
    failed_batches: int = 0
    largest_batch: int = 0
    batch_sizes: Counter[int] = field(default_factory=Counter)  # records per commit -> count

    @property
    def mean_batch(self) -> float:
        return self.records / self.batches if self.batches else 0.0


@dataclass
class _Submission:
    records: list[dict[str, Any]]
    done: threading.Event = field(default_factory=threading.Event)
    receipts: list[Receipt] | None = None
    error: BaseException | None = None


class DecisionLog:
    """The committer for one database. ``submit`` from any number of threads.

    ``queue_size`` bounds the submissions waiting (a full queue blocks submitters: backpressure);
    ``max_batch`` bounds the records in one transaction. ``idle_seconds`` is accepted for
    compatibility and unused: there is no committer thread to stop.
    """

    def __init__(
        self,
        database: Database,
        *,
        queue_size: int = 1024,
        max_batch: int = 500,
        idle_seconds: float = 2.0,
    ) -> None:
        self._db = database
        self._queue: queue.Queue[_Submission] = queue.Queue(maxsize=queue_size)
        self._max_batch = max_batch
        self._idle = idle_seconds
        self._turn = threading.Condition()  # guards _busy; notified when a commit ends
        self._busy = False  # a submitter is committing
        self._closed = False
        self._names: dict[int, str] = {}  # deployment id -> name (names never change)
        self._loop_waiting = 0  # submissions queued by LoopCommitters, not yet taken
        self.stats = DecisionLogStats()

    @property
    def queue_depth(self) -> int:
        """Submissions waiting for the committer (from threads and from event loops)."""
        return self._queue.qsize() + self._loop_waiting

    def submit(self, records: list[Mapping[str, Any]]) -> list[Receipt]:
        """Commit ``records`` (PredictionRecord column values) and return their receipts.

        Blocks until the transaction holding them is committed. ``at`` defaults to now; JSON
        columns are stored exactly as hashed (round-tripped through canonical JSON).
        Raises InvalidInput for a record lacking a required column, Conflict for a request id
        already recorded, or whatever error the commit raised; on any error nothing of this
        submission is stored.
        """
        if self._closed:
            raise NexmlError("the decision log is closed")
        if not records:
            return []
        submission = _Submission([_normalise(r) for r in records])
        self._queue.put(submission)  # blocks while the queue is full
        self._lead_or_follow(submission)
        if submission.error is not None:
            raise submission.error
        assert submission.receipts is not None
        return submission.receipts

    def close(self) -> None:
        """Refuse new submissions; return once everything already submitted is committed."""
        with self._turn:
            self._closed = True
            # every queued submission's own submitter commits it (or waits for a commit that
            # does): wait for the queue to empty and the last commit to end
            while self._busy or not self._queue.empty():
                self._turn.wait(timeout=0.1)

    # --- the committer: one submitter at a time -----------------------------------------------

    def _lead_or_follow(self, submission: _Submission) -> None:
        """Return once ``submission`` is committed (or failed): wait while another submitter
        commits; when no one does, commit the queue (which holds ``submission`` until a commit
        takes it) until ``submission`` is done."""
        with self._turn:
            while not submission.done.is_set():
                if not self._busy:
                    self._busy = True
                    break
                self._turn.wait()
            else:
                return  # a commit by another submitter took it
        try:
            while not submission.done.is_set():
                batch = self._take()
                if not batch:  # cannot happen: an undone submission is still queued
                    raise NexmlError("the decision log lost a submission")
                self._commit(batch)
        finally:
            with self._turn:
                self._busy = False
                self._turn.notify_all()

    def _commit_all(self, submissions: list[_Submission]) -> None:
        """Commit ``submissions`` (from a LoopCommitter) in transactions of up to
        ``max_batch`` records, taking the committer's turn from submitting threads; each
        submission ends with its receipts or its error."""
        with self._turn:
            while self._busy:
                self._turn.wait()
            self._busy = True
        try:
            batch: list[_Submission] = []
            count = 0
            for sub in submissions:
                if batch and count + len(sub.records) > self._max_batch:
                    self._commit(batch)
                    batch, count = [], 0
                batch.append(sub)
                count += len(sub.records)
            if batch:
                self._commit(batch)
        finally:
            with self._turn:
                self._busy = False
                self._turn.notify_all()

    def _take(self) -> list[_Submission]:
        """Queued submissions, oldest first, until ``max_batch`` records are reached or the
        queue is empty."""
        batch: list[_Submission] = []
        count = 0
        while count < self._max_batch:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            batch.append(more)
            count += len(more.records)
        return batch

    def _commit(self, batch: list[_Submission]) -> None:
        try:
            receipts = self._write([r for sub in batch for r in sub.records])
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting submitters
            self.stats.failed_batches += 1
            if len(batch) == 1:
                batch[0].error = _translate(exc)
                batch[0].done.set()
                return
            for sub in batch:  # find the culprit: each submission alone
                self._commit([sub])
            return
        at = 0
        for sub in batch:
            sub.receipts = receipts[at : at + len(sub.records)]
            at += len(sub.records)
            sub.done.set()

    def _write(self, records: list[dict[str, Any]]) -> list[Receipt]:
        # Core statements on a Core connection, not the ORM's session and unit of work: this
        # runs for every answered request. The transaction is the store's write transaction
        # (BEGIN IMMEDIATE on SQLite, as ``Database.write``), its errors translated the same way.
        size = len(records)
        receipts: list[Receipt] = []
        with self._db.write_connection() as connection:
            receipts = self._append(connection, records, size)
        self.stats.batches += 1
        self.stats.records += size
        self.stats.largest_batch = max(self.stats.largest_batch, size)
        self.stats.batch_sizes[size] += 1
        return receipts

    def _append(self, connection: Any, records: list[dict[str, Any]], size: int) -> list[Receipt]:
        receipts: list[Receipt] = []
        self._learn_names(connection, {r["deployment_id"] for r in records})
        heads: dict[str, list[Any]] = {}  # chain -> [seq, hash, row exists]
        for chain in sorted({chain_name(self._names[r["deployment_id"]]) for r in records}):
            heads[chain] = _lock_head(connection, chain)
        rows = []
        for values in records:
            chain = chain_name(self._names[values["deployment_id"]])
            head = heads[chain]
            row = {**values, "seq": head[0] + 1, "prev_hash": head[1]}
            # the hash covers exactly what chain_record reads off a stored row (an unset
            # column reads as None there too)
            row["hash"] = record_hash(head[1], {n: row.get(k) for n, k in _HASHED})
            rows.append(row)
            head[0], head[1] = row["seq"], row["hash"]
            receipts.append(
                Receipt(row["request_id"], chain, row["seq"], row["prev_hash"], row["hash"],
                        row["at"], size)
            )
        connection.execute(insert(_RECORDS), rows)
        for chain, (seq, hash_, exists) in heads.items():
            connection.execute(
                _MOVE_HEAD if exists else _NEW_HEAD, {"c": chain, "s": seq, "h": hash_}
            )
        return receipts

    def _learn_names(self, connection: Any, ids: set[int]) -> None:
        unknown = ids - set(self._names)
        if unknown:
            rows = connection.execute(
                select(t.Deployment.id, t.Deployment.name).where(t.Deployment.id.in_(unknown))
            )
            self._names.update({i: n for i, n in rows})
        missing = ids - set(self._names)
        if missing:
            raise InvalidInput(f"no deployment with id {', '.join(map(str, sorted(missing)))}")


class LoopCommitter:
    """Group commit for submitters running on one asyncio event loop (the gateway's hot path).

    ``submit`` queues a request's records and returns a future of their receipts. The first
    submission after a commit schedules the next one with ``call_soon``, so every request the
    loop handles before the loop comes round to it — all those whose bytes arrived together —
    rides the same transaction, and none is answered before its future resolves, i.e. before
    its record is committed. With ``inline`` the commit runs on the loop's own thread: no
    handing the batch to another thread and waiting for it to be scheduled, right where the
    commit is mostly the interpreter's work anyway (SQLite). Otherwise (a database server,
    whose commit waits on the network and the disk) it runs in the loop's executor, one commit
    at a time, while the loop goes on scoring the next requests.

    It shares the DecisionLog's committer turn with submitting threads: the two never commit
    at once.
    """

    def __init__(self, log: DecisionLog, *, inline: bool) -> None:
        self._log = log
        self._inline = inline
        self._pending: list[tuple[_Submission, asyncio.Future[list[Receipt]]]] = []
        self._scheduled = False  # a commit is scheduled or running

    def submit(self, records: list[Mapping[str, Any]]) -> asyncio.Future[list[Receipt]]:
        """A future of the receipts of ``records`` (raises InvalidInput at once, as
        ``DecisionLog.submit`` does, for a record it refuses)."""
        if self._log._closed:
            raise NexmlError("the decision log is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Receipt]] = loop.create_future()
        if not records:
            future.set_result([])
            return future
        self._pending.append((_Submission([_normalise(r) for r in records]), future))
        self._log._loop_waiting += 1
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush, loop)
        return future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        pending, self._pending = self._pending, []
        self._log._loop_waiting -= len(pending)
        submissions = [sub for sub, _ in pending]
        if self._inline:
            try:
                self._log._commit_all(submissions)
            finally:
                self._settle(pending)
                self._next(loop)
            return
        running = loop.run_in_executor(None, self._log._commit_all, submissions)
        running.add_done_callback(lambda _: (self._settle(pending), self._next(loop)))

    def _next(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._pending:  # queued while the commit ran (executor mode)
            loop.call_soon(self._flush, loop)
        else:
            self._scheduled = False

    @staticmethod
    def _settle(pending: list[tuple[_Submission, asyncio.Future[list[Receipt]]]]) -> None:
        for sub, future in pending:
            if future.done():  # its caller gave up waiting; the record stands
                continue
            if sub.error is not None:
                future.set_exception(sub.error)
            elif sub.receipts is not None:
                future.set_result(sub.receipts)
            else:
                future.set_exception(NexmlError("the decision log lost a submission"))


_RECORDS = t.PredictionRecord.__table__
#: (column name, row key) of the columns a record's hash covers, as ``chain_record`` reads them
_HASHED = tuple((c.name, c.key) for c in hashed_columns(_RECORDS))
_HEADS = t.ChainHead.__table__
_LOCK_HEAD = (
    select(_HEADS.c.seq, _HEADS.c.hash).where(_HEADS.c.chain == bindparam("c")).with_for_update()
)
_MOVE_HEAD = (
    update(_HEADS)
    .where(_HEADS.c.chain == bindparam("c"))
    .values(seq=bindparam("s"), hash=bindparam("h"))
)
_NEW_HEAD = insert(_HEADS).values(chain=bindparam("c"), seq=bindparam("s"), hash=bindparam("h"))


def _lock_head(connection: Any, chain: str) -> list[Any]:
    """[seq, hash, exists] of ``chain``'s head, locked for this transaction (FOR UPDATE on
    PostgreSQL; SQLite's write transaction is already exclusive), as ``chains.lock_head`` does;
    a new chain starts at the genesis hash."""
    found = connection.execute(_LOCK_HEAD, {"c": chain}).one_or_none()
    return [0, GENESIS, False] if found is None else [found.seq, found.hash, True]


def _normalise(record: Mapping[str, Any]) -> dict[str, Any]:
    missing = [c for c in _REQUIRED if record.get(c) is None]
    if missing:
        raise InvalidInput(f"prediction record lacks {', '.join(missing)}")
    values = {**_DEFAULTS, **record}
    values.setdefault("at", None)
    values["at"] = values["at"] or t.utcnow()
    for column in _JSON_COLUMNS:
        # What is stored must be exactly what was hashed.
        values[column] = json.loads(canonical_json(values[column]))
    for column in ("confidence", "latency_ms"):
        if values[column] is not None:
            number = float(values[column])
            # SQLite stores NaN as NULL and -0.0 as 0.0: what is stored must be what is hashed.
            if not math.isfinite(number):
                raise InvalidInput(
                    f"prediction record {column} must be a finite number, got {number}"
                )
            values[column] = number + 0.0  # -0.0 becomes 0.0
    values["shadow"] = bool(values["shadow"])
    return values


def _translate(exc: BaseException) -> BaseException:
    if isinstance(exc, SAIntegrityError):
        return Conflict(
            "prediction not recorded: a request id is already recorded, or the deployment "
            f"is gone ({str(exc.orig).splitlines()[0]})"
        )
    return exc
