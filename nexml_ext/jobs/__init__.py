"""The job runner: jobs in the database, run by `nexml worker` processes as the platform.

- ``registry``: job kinds (name -> function, the matrix action needed to submit it);
  :func:`register_kind` adds one.
- ``context``: :class:`JobContext`, what a running job sees (``params``, ``workspace`` acting as
  the platform, ``progress(fraction, message)`` — also the cancel checkpoint — and ``log``).
- ``worker``: :class:`Worker`, the loop (reap dead workers' jobs, claim the oldest queued one,
  run it with a heartbeat, finish it in one transaction).
- ``kinds``: the built-in kinds, ``validation`` and ``selftest``.

Submitting, cancelling, reading and reaping are Workspace use cases (``workspace/jobs.py``).
"""

from __future__ import annotations

from .context import JobCancelled, JobContext, JobLost, WorkerStopping
from .registry import KIND_MODULES, Kind, kind, kinds, register_kind
from .worker import Worker

__all__ = [
    "KIND_MODULES",
    "JobCancelled",
    "JobContext",
    "JobLost",
    "Kind",
    "Worker",
    "WorkerStopping",
    "kind",
    "kinds",
    "register_kind",
]
