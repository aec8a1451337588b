"""The worker loop behind `nexml worker`: reap, claim, run with a heartbeat, finish.

One worker runs one job at a time, in its main thread, as the platform. Before each claim it
reaps: jobs whose worker died go back to the queue (or end failed when no attempts remain), so
no job is ever left running. While a job runs, a thread refreshes its heartbeat every
``heartbeat_seconds``; the job's own ``ctx.progress`` calls are the cancel checkpoints. A job
that raises ends failed with the error, the traceback in its log; it is not retried (attempts
are for crashed workers). SIGTERM or Ctrl-C gives the running job back to the queue and exits.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput, NexmlError
from . import registry
from .context import JobCancelled, JobContext, JobLost, WorkerStopping

if TYPE_CHECKING:
    from ..workspace import Workspace
    from ..workspace.jobs import Claim
    from ..workspace.views import Job

DEFAULT_POLL = 2.0
DEFAULT_HEARTBEAT = 5.0


class Worker:
    """Runs queued jobs. ``ws`` must hold ``job.run`` (a superadmin's workspace, or the
    platform's); the jobs themselves run as the platform.

    ``run_once()`` reaps and runs at most one job (returns it, or None when none was queued);
    ``run(until_idle=True)`` runs until the queue is empty — how the embedded demo runs jobs in
    process. ``echo`` receives one line per finished job.
    """

    def __init__(
        self,
        ws: Workspace,
        *,
        poll_seconds: float = DEFAULT_POLL,
        heartbeat_seconds: float = DEFAULT_HEARTBEAT,
        stale_after: float | None = None,
        name: str | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        from ..workspace.jobs import DEFAULT_STALE_AFTER

        ws._authorize("job.run", "queued jobs")
        stale_after = DEFAULT_STALE_AFTER if stale_after is None else stale_after
        for label, value in (("poll", poll_seconds), ("heartbeat", heartbeat_seconds),
                             ("stale-after", stale_after)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InvalidInput(f"worker {label} must be a positive number of seconds, "
                                   f"got {value!r}")
        if stale_after < 2 * heartbeat_seconds:
            raise InvalidInput(
                f"worker stale-after ({stale_after:g} s) must be at least twice the heartbeat "
                f"({heartbeat_seconds:g} s), or live workers would be given up for dead"
            )
        self.platform: Any = ws._as_platform()
        self.poll_seconds = float(poll_seconds)
        self.heartbeat_seconds = float(heartbeat_seconds)
        self.stale_after = float(stale_after)
        self.id = name or f"{socket.gethostname()}:{os.getpid()}"
        self.echo = echo
        self._stop = threading.Event()
        self._in_job = False
        self._interrupted = False  # a stop signal raised WorkerStopping inside the job

    # --- the loop -----------------------------------------------------------------------------

    def run_once(self) -> Job | None:
        """Reap dead workers' jobs, then claim and run the oldest queued job of a known kind."""
        self.platform.reap_jobs(stale_after=self.stale_after)
        if self._stop.is_set():
            return None
        claim = self.platform._claim_job(self.id, registry.kinds())
        if claim is None:
            return None
        if self._stop.is_set():  # stopped between the claim and the start: give it back
            self.platform._release_job(claim, f"worker {self.id} stopped")
            raise WorkerStopping("stopped")
        return self._run(claim)

    def run(self, *, until_idle: bool = False, max_jobs: int | None = None) -> int:
        """Run jobs until stopped (``stop()``, SIGTERM), the queue is empty (``until_idle``) or
        ``max_jobs`` ran; waits ``poll_seconds`` between looks at an empty queue. Returns how
        many jobs it ran."""
        ran = 0
        while not self._stop.is_set():
            if self.run_once() is None:
                if until_idle:
                    break
                self._stop.wait(self.poll_seconds)
                continue
            ran += 1
            if max_jobs is not None and ran >= max_jobs:
                break
        return ran

    def stop(self) -> None:
        """Stop after the current job (or at once when idle)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the loop; a running job is given back to the queue."""

        def handle(signum: int, _frame: Any) -> None:
            self._stop.set()
            if self._in_job:
                self._interrupted = True
                raise WorkerStopping(signal.Signals(signum).name)

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    # --- one job ------------------------------------------------------------------------------

    def _run(self, claim: Claim) -> Job:
        kind = registry.kinds().get(claim.kind)
        ctx = JobContext(self.platform, claim)
        beat = _Heartbeat(self.platform, claim, self.heartbeat_seconds)
        started = time.monotonic()
        status: str | None = None
        result: dict[str, Any] = {}
        error: str | None = None
        log: list[str] = []
        beat.start()
        self._interrupted = False
        try:
            try:
                self._in_job = True
                if kind is None:
                    raise InvalidInput(f"no job kind {claim.kind!r} on worker {self.id}")
                result = _json_result(kind.fn(ctx), claim.kind)
                status = "succeeded"
            finally:
                self._in_job = False
        except JobCancelled:
            status = "cancelled"
        except JobLost:
            status = None
        except (WorkerStopping, KeyboardInterrupt):
            beat.stop()
            self.platform._release_job(claim, f"worker {self.id} stopped")
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of the job's code ends it failed
            if self._interrupted:
                # The stop signal landed inside a call that turned it into another error (a
                # PostgreSQL query abandoned mid-protocol makes its session's rollback fail):
                # it is still a stop, not a failure of the job.
                beat.stop()
                self.platform._release_job(claim, f"worker {self.id} stopped")
                raise WorkerStopping("stopped") from exc
            if isinstance(exc, NexmlError):
                status, error = "failed", str(exc)
            else:
                status, error = "failed", f"{type(exc).__name__}: {exc}"
                log = traceback.format_exc().rstrip().splitlines()
        finally:
            beat.stop()
        job = None
        if status is not None:
            job = self.platform._finish_job(claim, status, result=result, error=error, log=log)
        took = time.monotonic() - started
        if job is None:  # lost: someone else holds it now
            job = self.platform.job(claim.id, log_tail=0)
            line = (f"job {claim.id} {claim.kind} lost after {took:.1f} s: it was taken from "
                    f"this worker (missed heartbeats); now {job.status}")
        else:
            line = f"job {job.id} {job.kind} {job.status} in {took:.1f} s " \
                   f"(attempt {claim.attempt}/{claim.max_attempts})"
            if job.status == "cancelled":
                line += f", {job.message}"
            elif job.error:
                line += f": {job.error}"
        if self.echo is not None:
            self.echo(line)
        return job


class _Heartbeat(threading.Thread):
    """Refreshes a held job's heartbeat until stopped or the job is lost."""

    def __init__(self, platform: Any, claim: Claim, every: float) -> None:
        super().__init__(name=f"nexml-heartbeat-{claim.id}", daemon=True)
        self.platform, self.claim, self.every = platform, claim, every
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.every):
            try:
                if not self.platform._job_beat(self.claim):
                    return
            except Exception:  # noqa: BLE001, S112 - a transient database error: beat again
                continue

    def stop(self) -> None:
        self._done.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join()


def _json_result(value: Any, kind: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"job kind {kind} returned {type(value).__name__}, not a dict")
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"job kind {kind} returned a result that is not JSON: {exc}") from None
