"""What a running job sees: its parameters, the platform's Workspace, progress and a log."""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput

if TYPE_CHECKING:
    from ..workspace.jobs import Claim


# The three are BaseExceptions, like asyncio.CancelledError: job code that catches Exception
# must not swallow them.


class JobCancelled(BaseException):  # noqa: N818 - a signal to stop, not an error
    """Raised at a progress checkpoint when someone asked to cancel the job."""

    def __init__(self, by: str) -> None:
        super().__init__(f"cancelled by {by}")
        self.by = by


class JobLost(BaseException):  # noqa: N818
    """This worker no longer holds the job (it missed heartbeats and the job was reaped)."""


class WorkerStopping(BaseException):  # noqa: N818
    """Raised in the worker's main thread on SIGTERM: give the job back and exit."""


class JobContext:
    """Handed to a job kind's function.

    ``params`` (a private copy of what was submitted), ``workspace`` (acting as the platform),
    ``submitted_by``, ``id``, ``kind``, ``attempt``/``max_attempts`` and ``worker``.
    ``progress(fraction, message)`` is also the cancel checkpoint: when a cancel was requested
    it raises :class:`JobCancelled`, which the worker turns into the ``cancelled`` state. Call
    it between steps of any work that takes more than a few seconds.
    """

    def __init__(self, workspace: Any, claim: Claim) -> None:
        self.workspace = workspace
        self._claim = claim
        self.id = claim.id
        self.kind = claim.kind
        self.params: dict[str, Any] = copy.deepcopy(claim.params)
        self.submitted_by = claim.submitted_by
        self.attempt = claim.attempt
        self.max_attempts = claim.max_attempts
        self.worker = claim.worker

    def progress(self, fraction: float, message: str = "") -> None:
        """Record progress (0–1) and a short message; raise JobCancelled if cancel was asked."""
        if not isinstance(fraction, (int, float)) or math.isnan(fraction) or not (
            0.0 <= fraction <= 1.0
        ):
            raise InvalidInput(f"job progress must be a number from 0 to 1, got {fraction!r}")
        held, cancel_by = self.workspace._job_progress(self._claim, float(fraction), str(message))
        self._check(held, cancel_by)

    def checkpoint(self) -> None:
        """Raise JobCancelled if cancel was asked, without changing the progress."""
        held, cancel_by = self.workspace._job_progress(self._claim, None, None)
        self._check(held, cancel_by)

    def log(self, line: str) -> None:
        """Append one line to the job's log (its own short transaction)."""
        if not self.workspace._job_log(self._claim, str(line)):
            raise JobLost(f"job {self.id} was taken from worker {self.worker}")

    def _check(self, held: bool, cancel_by: str | None) -> None:
        if not held:
            raise JobLost(f"job {self.id} was taken from worker {self.worker}")
        if cancel_by:
            raise JobCancelled(cancel_by)
