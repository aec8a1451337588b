"""Jobs: work the platform runs in `nexml worker` processes, and work recorded in process.

A submitted job moves ``queued → running → succeeded | failed | cancelled``. Submitting and
cancelling are use cases like any other (authorised, one transaction, an audit event). The
worker side (``_claim_job`` … ``_finish_job``, driven by :mod:`nexml_ext.jobs.worker`) acts as the
platform; every write it makes is conditional on still holding the job — status ``running``, the
same worker id and the same attempt — so a worker that was given up for dead and comes back
can never overwrite what the job's next holder did. ``reap_jobs`` is what guarantees no job
stays running: a job whose worker's process is gone (same host) or whose heartbeat is older
than ``stale_after`` goes back to the queue while attempts remain and ends failed otherwise.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..errors import InvalidInput, InvalidTransition, NotFound
from ..governance.roles import Role
from ..store import tables as t
from . import views
from .core import WorkspaceCore

ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")
STATES = ACTIVE + FINISHED
#: A running job whose heartbeat is older than this (seconds) is given up for dead.
DEFAULT_STALE_AFTER = 60.0
_MAX_LINE = 4000
_MAX_MESSAGE = 500


@dataclass(frozen=True)
class Claim:
    """A worker's hold on one attempt of one job."""

    id: int
    kind: str
    params: dict[str, Any]
    attempt: int
    max_attempts: int
    submitted_by: str
    worker: str


class JobsMixin(WorkspaceCore):
    # --- reading ------------------------------------------------------------------------------

    def jobs(
        self, *, kind: str | None = None, status: str | None = None, limit: int | None = 50
    ) -> list[views.Job]:
        """Jobs, newest first (``limit=None``: all). Data scientists see their own; others all."""
        self._authorize("model.view")
        if limit is not None and limit < 1:
            raise InvalidInput(f"limit must be a positive number, got {limit}")
        if status is not None and status not in STATES:
            raise InvalidInput(f"unknown job status {status!r}: one of {', '.join(STATES)}")
        query = select(t.Job).order_by(t.Job.id.desc())
        if limit is not None:
            query = query.limit(limit)
        if kind:
            query = query.where(t.Job.kind == kind)
        if status:
            query = query.where(t.Job.status == status)
        if self.principal.role is Role.DATA_SCIENTIST:
            query = query.where(t.Job.created_by == self.principal.name)
        with self._read() as s:
            return [views.Job.of(row) for row in s.scalars(query)]

    def job(self, job_id: int, *, log_tail: int | None = 100) -> views.Job:
        """One job by id with the last ``log_tail`` lines of its log (None: the whole log).

        Data scientists see their own jobs only.
        """
        self._authorize("model.view")
        if log_tail is not None and log_tail < 0:
            raise InvalidInput(f"log_tail must be 0 or more, got {log_tail}")
        with self._read() as s:
            row = s.get(t.Job, job_id)
            mine = row is not None and (
                self.principal.role is not Role.DATA_SCIENTIST
                or row.created_by == self.principal.name
            )
            if not mine:
                raise NotFound(f"job {job_id} not found")
            query = select(t.JobLog).where(t.JobLog.job_id == job_id).order_by(t.JobLog.id.desc())
            if log_tail is not None:
                query = query.limit(log_tail)
            lines = [views.JobLogLine.of(r) for r in s.scalars(query)] if log_tail != 0 else []
            return views.Job.of(row, log=tuple(reversed(lines)))

    # --- submitting and cancelling -----------------------------------------------------------

    def submit_job(
        self, kind: str, params: dict[str, Any] | None = None, *, max_attempts: int | None = None
    ) -> views.Job:
        """Queue a job of a registered ``kind`` for a worker (`nexml worker`) to run.

        Authorised per kind (e.g. ``validation`` needs ``validation.request`` on the version);
        the parameters are checked now, so a bad one is refused here and not in the worker.
        ``max_attempts`` (default: the kind's) bounds how often a crashed worker's job is
        started again. The submission is an audit event.
        """
        from ..jobs.registry import MAX_ATTEMPTS_LIMIT
        from ..jobs.registry import kind as lookup

        entry = lookup(kind)
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise InvalidInput(f"{kind} job parameters must be a mapping, got {type(params)}")
        if entry.check is not None:
            params = entry.check(self, dict(params))
        params = _json_object(params, f"{kind} job parameters")
        owner = entry.owner(self, params) if entry.owner is not None else None
        about = params.get(entry.subject) if entry.subject else None
        self._authorize(entry.action, f"a {kind} job" + (f" on {about}" if about else ""), owner)
        attempts = entry.max_attempts if max_attempts is None else max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or not (
            1 <= attempts <= MAX_ATTEMPTS_LIMIT
        ):
            raise InvalidInput(f"max_attempts must be 1..{MAX_ATTEMPTS_LIMIT}, got {attempts!r}")
        with self._write() as s:
            row = t.Job(
                kind=kind, status="queued", progress=0.0, message="queued", params=params,
                result={}, created_by=self.principal.name, attempts=0, max_attempts=attempts,
            )
            s.add(row)
            s.flush()
            _append_log(s, row.id, 0, f"submitted by {self.principal.name}")
            self._event(s, "job.submit", f"job:{row.id}", kind=kind, params=params,
                        max_attempts=attempts)
            return views.Job.of(row)

    def cancel_job(self, job_id: int) -> views.Job:
        """Cancel a job: a queued one at once; a running one when its worker next reports
        progress (it then ends ``cancelled``). The submitter, managers and superadmins may.

        Raises NotFound, PermissionDenied, InvalidTransition (the job already ended).
        """
        with self._write() as s:
            row = _locked(s, job_id)
            if row is None:
                raise NotFound(f"job {job_id} not found")
            self._authorize("job.cancel", f"job {job_id}", owner=row.created_by)
            me = self.principal.name
            if row.status == "queued":
                row.status, row.finished_at = "cancelled", t.utcnow()
                row.cancel_requested_by = me
                row.message = f"cancelled by {me} before it started"
                _append_log(s, row.id, row.attempts, row.message)
                self._event(s, "job.cancel", f"job:{row.id}", kind=row.kind, was="queued")
            elif row.status == "running":
                if row.cancel_requested_by is None:
                    row.cancel_requested_by = me
                    row.message = f"cancel requested by {me}"
                    _append_log(s, row.id, row.attempts, row.message)
                    self._event(s, "job.cancel", f"job:{row.id}", kind=row.kind, was="running",
                                worker=row.worker)
            else:
                raise InvalidTransition(f"cannot cancel job {job_id}: it already {row.status}")
            return views.Job.of(row)

    # --- the reaper ---------------------------------------------------------------------------

    def reap_jobs(self, *, stale_after: float = DEFAULT_STALE_AFTER) -> list[views.Job]:
        """Give up on running jobs whose worker died: its process is gone (on this host) or its
        heartbeat is older than ``stale_after`` seconds. Each goes back to the queue while it has
        attempts left, else ends failed ("worker <id> died"); one cancel-requested ends
        cancelled. Every worker runs this before each claim. Returns the jobs it changed.
        """
        self._authorize("job.run", "dead workers' jobs")
        if isinstance(stale_after, bool) or not isinstance(stale_after, (int, float)) or not (
            stale_after > 0
        ):
            raise InvalidInput(f"stale_after must be a positive number of seconds, "
                               f"got {stale_after!r}")
        host = socket.gethostname()
        running = select(t.Job).where(t.Job.status == "running").order_by(t.Job.id)
        with self._read() as s:  # most of the time nothing is dead: look before locking
            if not any(_dead(row, host, t.utcnow(), stale_after) for row in s.scalars(running)):
                return []
        reaped = []
        with self._write() as s:
            now = t.utcnow()
            for row in s.scalars(running.with_for_update(skip_locked=True)).all():
                why = _dead(row, host, now, stale_after)
                if why is None:
                    continue
                died = f"worker {row.worker or '(unknown)'} died ({why})"
                attempt = f"attempt {row.attempts}/{row.max_attempts}"
                if row.cancel_requested_by:
                    row.status, row.finished_at = "cancelled", now
                    row.message = f"cancelled by {row.cancel_requested_by}; {died}"
                elif row.attempts < row.max_attempts:
                    row.status = "queued"
                    row.message = f"requeued: {died} during {attempt}"
                else:
                    row.status, row.finished_at = "failed", now
                    row.error = f"{died}; no attempts left ({attempt})"
                    row.message = row.error
                _append_log(s, row.id, row.attempts, row.message)
                self._event(s, "job.requeue" if row.status == "queued" else "job.finish",
                            f"job:{row.id}", kind=row.kind, status=row.status,
                            worker=row.worker, attempt=row.attempts, reason=died)
                if row.status == "queued":
                    row.worker, row.heartbeat_at = None, None
                reaped.append(views.Job.of(row))
        return reaped

    # --- the worker's side (acting as the platform) -------------------------------------------

    def _claim_job(
        self,
        worker: str,
        kinds: Iterable[str],
        *,
        job_id: int | None = None,
        created_by: str | None = None,
    ) -> Claim | None:
        """Take the oldest queued job of one of ``kinds`` (or exactly job ``job_id``, submitted
        by ``created_by``), atomically (PostgreSQL: SKIP LOCKED; SQLite: the write transaction
        is exclusive). None when nothing such is queued."""
        self._authorize("job.run", "queued jobs")
        names = sorted(kinds)
        query = select(t.Job).where(t.Job.status == "queued", t.Job.kind.in_(names))
        if job_id is not None:
            query = query.where(t.Job.id == job_id)
        if created_by is not None:
            query = query.where(t.Job.created_by == created_by)
        with self._write() as s:
            row = s.scalars(
                query.order_by(t.Job.id).limit(1).with_for_update(skip_locked=True)
            ).first()
            if row is None:
                return None
            now = t.utcnow()
            row.status, row.worker, row.heartbeat_at, row.started_at = "running", worker, now, now
            row.attempts += 1
            row.progress = 0.0
            row.message = f"running on {worker} (attempt {row.attempts}/{row.max_attempts})"
            _append_log(s, row.id, row.attempts, f"attempt {row.attempts}/{row.max_attempts} "
                                                 f"started on worker {worker}")
            return Claim(row.id, row.kind, dict(row.params or {}), row.attempts,
                         row.max_attempts, row.created_by, worker)

    def _job_beat(self, claim: Claim) -> bool:
        """Heartbeat; False once the worker no longer holds the job."""
        with self._write() as s:
            done = s.execute(
                update(t.Job)
                .where(*_holding(claim))
                .values(heartbeat_at=t.utcnow())
                .execution_options(synchronize_session=False)
            )
            return bool(done.rowcount)

    def _job_progress(
        self, claim: Claim, fraction: float | None, message: str | None
    ) -> tuple[bool, str | None]:
        """Record progress (None: only look); returns (still held, who asked to cancel)."""
        if fraction is None:
            with self._read() as s:
                row = s.scalars(select(t.Job).where(*_holding(claim))).first()
                return (row is not None, row.cancel_requested_by if row is not None else None)
        with self._write() as s:
            row = _held(s, claim)
            if row is None:
                return False, None
            row.progress = fraction
            if row.cancel_requested_by is None:  # keep "cancel requested by ..." visible
                row.message = (message or "")[:_MAX_MESSAGE]
            row.heartbeat_at = t.utcnow()
            return True, row.cancel_requested_by

    def _job_log(self, claim: Claim, line: str) -> bool:
        with self._write() as s:
            if _held(s, claim) is None:
                return False
            _append_log(s, claim.id, claim.attempt, line)
            return True

    def _finish_job(
        self,
        claim: Claim,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        log: Sequence[str] = (),
    ) -> views.Job | None:
        """End the attempt ``claim`` holds, in one transaction with its audit event; None if the
        worker no longer held it (nothing is written then)."""
        if status not in FINISHED:
            raise InvalidInput(f"a job ends succeeded, failed or cancelled, not {status!r}")
        with self._write() as s:
            row = _held(s, claim)
            if row is None:
                return None
            lines = list(log)
            if status == "succeeded" and row.cancel_requested_by:
                lines.append(f"cancel requested by {row.cancel_requested_by} came after the "
                             "work was done")
            row.status, row.finished_at = status, t.utcnow()
            row.result = result or {}
            row.error = error
            if status == "succeeded":
                row.progress, row.message = 1.0, row.message or "done"
                if row.message.startswith("cancel requested by"):
                    row.message = "done"
            elif status == "cancelled":
                row.message = f"cancelled by {row.cancel_requested_by}"
            else:
                row.message = (error or "failed").splitlines()[0][:_MAX_MESSAGE]
            lines.append(f"{status}" + (f": {error}" if error else ""))
            for line in lines:
                _append_log(s, row.id, claim.attempt, line)
            self._event(s, "job.finish", f"job:{row.id}", kind=row.kind, status=status,
                        worker=claim.worker, attempt=claim.attempt,
                        error=(error or "")[:_MAX_MESSAGE] or None)
            return views.Job.of(row)

    def _release_job(self, claim: Claim, why: str) -> bool:
        """Give a held job back to the queue without using up the attempt (worker stopping)."""
        with self._write() as s:
            row = _held(s, claim)
            if row is None:
                return False
            if row.cancel_requested_by:
                row.status, row.finished_at = "cancelled", t.utcnow()
                row.message = f"cancelled by {row.cancel_requested_by}"
            else:
                row.status, row.attempts = "queued", row.attempts - 1
                row.worker, row.heartbeat_at = None, None
                row.message = f"returned to the queue: {why}"
            _append_log(s, row.id, claim.attempt, row.message)
            self._event(s, "job.requeue" if row.status == "queued" else "job.finish",
                        f"job:{row.id}", kind=row.kind, status=row.status,
                        worker=claim.worker, attempt=claim.attempt, reason=why)
            return True


# --- helpers -------------------------------------------------------------------------------


def _locked(s: Session, job_id: int) -> t.Job | None:
    return s.scalars(select(t.Job).where(t.Job.id == job_id).with_for_update()).first()


def _holding(claim: Claim) -> tuple[Any, ...]:
    return (
        t.Job.id == claim.id,
        t.Job.status == "running",
        t.Job.worker == claim.worker,
        t.Job.attempts == claim.attempt,
    )


def _held(s: Session, claim: Claim) -> t.Job | None:
    """The job's row, locked, if ``claim`` still holds it."""
    row = _locked(s, claim.id)
    if row is None or row.status != "running" or row.worker != claim.worker:
        return None
    return row if row.attempts == claim.attempt else None


def _append_log(s: Session, job_id: int, attempt: int, line: str) -> None:
    s.add(t.JobLog(job_id=job_id, attempt=attempt, at=t.utcnow(), line=line[:_MAX_LINE]))


def _json_object(value: dict[str, Any], what: str) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{what} must be plain JSON values: {exc}") from None


def _dead(row: t.Job, host: str, now: datetime, stale_after: float) -> str | None:
    """Why ``row``'s worker counts as dead, or None if it may still be working."""
    if row.worker:
        where, _, pid = row.worker.rpartition(":")
        if where == host and pid.isdigit() and not process_alive(int(pid)):
            return "its process is gone"
    last = row.heartbeat_at or row.started_at or row.created_at
    if last is not None and now - last > timedelta(seconds=stale_after):
        return f"no heartbeat for {(now - last).total_seconds():.0f} s"
    return None


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): existence is all we can tell
    return stat.rpartition(")")[2].split()[:1] not in (["Z"], ["X"])
