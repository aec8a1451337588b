"""The kinds of job the platform knows: name -> what runs it, and who may ask for it.

A kind is a callable taking a :class:`~nexml_ext.jobs.context.JobContext` and returning a JSON
result (a dict). It is registered with the matrix action a person needs to *submit* it (checked
by ``Workspace.submit_job`` as the submitter, with ``owner`` for ``own`` grants); it *runs* as the
platform, in a worker. Modules that register kinds are listed in :data:`KIND_MODULES`, so every
process (the submitter's and each worker's) knows the same kinds::

    from nexml_ext.jobs import register_kind

    def monthly_audit(ctx):
        ctx.progress(0.5, "rendering")
        return {"report": 12}

    register_kind("audit_report", monthly_audit, action="audit.view")
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput
from ..governance.roles import MATRIX

if TYPE_CHECKING:
    from .context import JobContext

#: Modules imported (once, on first look-up) so that their ``register_kind`` calls have run.
KIND_MODULES: list[str] = ["nexml_ext.jobs.kinds", "nexml_ext.reports.jobs",
                           "nexml_ext.jobs.retrain", "nexml_ext.monitoring.jobs"]

#: How many times a worker may start a job before a crash ends it failed (submitters may change it
#: per job, within 1..MAX_ATTEMPTS_LIMIT). A job that *raises* is never retried: only a worker
#: that died or stopped answering gives the job another attempt.
DEFAULT_MAX_ATTEMPTS = 2
MAX_ATTEMPTS_LIMIT = 10

_KIND_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")  # jobs.kind is String(32)

JobFn = Callable[["JobContext"], "dict[str, Any] | None"]
#: (submitter's workspace, checked params) -> author of the subject, for ``own`` grants.
OwnerFn = Callable[[Any, "dict[str, Any]"], "str | None"]
#: (submitter's workspace, raw params) -> checked, normalised params (InvalidInput naming what
#: is wrong, NotFound for a missing subject).
CheckFn = Callable[[Any, "dict[str, Any]"], "dict[str, Any]"]


@dataclass(frozen=True)
class Kind:
    name: str
    fn: JobFn
    action: str
    owner: OwnerFn | None = None
    check: CheckFn | None = None
    subject: str = ""  # params key naming what the job is about ("ref"), for messages
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    description: str = ""


_KINDS: dict[str, Kind] = {}
_LOCK = threading.RLock()
_loaded = False


def check_params(kind: str, params: dict[str, Any], allowed: set[str]) -> None:
    """Refuse parameters job kind ``kind`` does not take, naming them and the ones it does."""
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidInput(
            f"{kind} job: unknown parameter(s) {', '.join(unknown)}; "
            f"it takes {', '.join(sorted(allowed))}"
        )


def register_kind(
    name: str,
    fn: JobFn,
    *,
    action: str,
    owner: OwnerFn | None = None,
    check: CheckFn | None = None,
    subject: str = "",
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    description: str = "",
) -> Kind:
    """Register job kind ``name`` run by ``fn``; submitting it needs matrix ``action``.

    ``owner(ws, params)`` names the author of the job's subject for ``own`` grants (e.g. the
    version's author for ``validation.request``); ``check(ws, params)`` validates and normalises
    the parameters at submission (``ws`` is the submitter's Workspace). Registering the same
    name again with another function is refused.
    """
    if not isinstance(name, str) or not _KIND_NAME.fullmatch(name):
        raise ValueError(
            f"invalid job kind name {name!r}: 1-32 lowercase letters, digits, '_' or '-'"
        )
    if action not in MATRIX:
        raise ValueError(f"job kind {name}: unknown matrix action {action!r}")
    if not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
        raise ValueError(f"job kind {name}: max_attempts must be 1..{MAX_ATTEMPTS_LIMIT}")
    entry = Kind(name, fn, action, owner, check, subject, max_attempts,
                 description or (fn.__doc__ or "").strip().split("\n")[0])
    with _LOCK:
        existing = _KINDS.get(name)
        if existing is not None and existing.fn is not fn:
            raise ValueError(f"job kind {name!r} is already registered by {existing.fn!r}")
        _KINDS[name] = entry
    return entry


def _load() -> None:
    global _loaded
    with _LOCK:
        if _loaded:
            return
        for module in KIND_MODULES:
            importlib.import_module(module)
        _loaded = True


def kinds() -> dict[str, Kind]:
    """Every registered kind, by name."""
    _load()
    with _LOCK:
        return dict(_KINDS)


def kind(name: str) -> Kind:
    """The kind called ``name``; InvalidInput naming the known kinds otherwise."""
    known = kinds()
    if name not in known:
        raise InvalidInput(
            f"unknown job kind {name!r}: known kinds are {', '.join(sorted(known)) or 'none'}"
        )
    return known[name]
