"""The job kinds the platform has today: ``validation`` and the operational ``selftest``.

Explanations, fairness and drift stay interactive (``ws.explain`` … return rich objects to the
notebook and record themselves as finished jobs); report kinds register themselves from their
own module (see ``registry.KIND_MODULES``).
"""

from __future__ import annotations

import math
import time
from typing import Any

from ..errors import InvalidInput
from ..governance.naming import parse_ref
from .context import JobContext
from .registry import check_params, register_kind

SELFTEST_MAX_SECONDS = 600.0
SELFTEST_MAX_STEPS = 1000


# --- validation ----------------------------------------------------------------------------


def _check_validation(ws: Any, params: dict[str, Any]) -> dict[str, Any]:
    check_params("validation", params, {"ref", "dataset"})
    missing = [k for k in ("ref", "dataset") if not params.get(k)]
    if missing:
        raise InvalidInput(f"validation job: missing parameter(s) {', '.join(missing)} "
                           "(ref=NAME:VERSION dataset=NAME:VERSION)")
    parse_ref(params["ref"])
    parse_ref(params["dataset"], "dataset")
    ws.dataset(params["dataset"])  # NotFound now rather than in the worker
    return {"ref": params["ref"], "dataset": params["dataset"]}


def _version_author(ws: Any, params: dict[str, Any]) -> str:
    with ws._read() as s:
        return ws._version_row(s, params["ref"]).author


def validation(ctx: JobContext) -> dict[str, Any]:
    """The platform validates a version on a dataset version by making its validation report
    (``notebooks/validation.ipynb``); the validation it records is linked to that report."""
    ref, dataset = ctx.params["ref"], ctx.params["dataset"]
    ctx.progress(0.05, f"validating {ref} on {dataset}")
    ctx.log(f"validating {ref} on {dataset} for {ctx.submitted_by}: making the validation report")
    made = ctx.workspace.make_report(
        "validation", subject=ref, dataset=dataset, requested_by=ctx.submitted_by, job_id=ctx.id
    )
    done = next(v for v in ctx.workspace.validations(ref) if v.report_id == made.id)
    breaches = list(done.details.get("breaches") or [])
    ctx.log(f"validation {done.id}: {done.status}"
            + (f" ({'; '.join(breaches)})" if breaches else "")
            + f"; report {made.id}, html sha256 {made.html_sha256}")
    return {
        "validation": done.id,
        "ref": ref,
        "dataset": dataset,
        "status": done.status,
        "artifact_sha256": done.artifact_sha256,
        "metrics": done.metrics,
        "breaches": breaches,
        "report": made.id,
        "html_sha256": made.html_sha256,
    }


# --- selftest ------------------------------------------------------------------------------


def _number(kind: str, name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not (
        low <= value <= high
    ):
        raise InvalidInput(f"{kind} job: {name} must be a number from {low:g} to {high:g}, "
                           f"got {value!r}")
    return float(value)


def _check_selftest(ws: Any, params: dict[str, Any]) -> dict[str, Any]:
    check_params("selftest", params, {"seconds", "steps", "fail"})
    seconds = _number("selftest", "seconds", params.get("seconds", 1.0), 0, SELFTEST_MAX_SECONDS)
    steps = _number("selftest", "steps", params.get("steps", 5), 1, SELFTEST_MAX_STEPS)
    if steps != int(steps):
        raise InvalidInput(f"selftest job: steps must be a whole number, got {steps:g}")
    checked: dict[str, Any] = {"seconds": seconds, "steps": int(steps)}
    fail = params.get("fail")
    if fail is not None:
        if not isinstance(fail, str) or not fail.strip():
            raise InvalidInput("selftest job: fail must be the error message to fail with")
        checked["fail"] = fail
    return checked


def selftest(ctx: JobContext) -> dict[str, Any]:
    """Steps with sleeps and progress: proves workers run, report, retry and cancel jobs."""
    steps, seconds = ctx.params["steps"], ctx.params["seconds"]
    fail = ctx.params.get("fail")
    fail_at = (steps + 1) // 2 if fail else None
    ctx.log(f"self-test: {steps} step(s) over {seconds:g} s on worker {ctx.worker}")
    for step in range(1, steps + 1):
        time.sleep(seconds / steps)
        if step == fail_at:
            ctx.log(f"step {step}/{steps}: failing on purpose")
            raise RuntimeError(fail)
        ctx.progress(step / steps, f"step {step}/{steps}")
        ctx.log(f"step {step}/{steps} done")
    return {"steps": steps, "seconds": seconds, "worker": ctx.worker, "attempt": ctx.attempt}


register_kind(
    "validation",
    validation,
    action="validation.request",
    owner=_version_author,
    check=_check_validation,
    subject="ref",
)
register_kind("selftest", selftest, action="job.test", check=_check_selftest)
