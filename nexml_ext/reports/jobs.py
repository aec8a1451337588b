"""Report kinds for the job runner: ``report-compliance``, ``report-audit``, ``report-drift``,
``report-validation``.

Submitting one (``ws.submit_job("report-audit", {"month": "2026-11"})``) needs
``report.generate`` and, as ``make_report`` asks of a person, the reads the report makes; a
worker then makes the report as the platform on the submitter's behalf (they are recorded as
the person who asked). Job kind names cannot hold a dot, hence the dash.
"""

from __future__ import annotations

from typing import Any

from ..errors import PermissionDenied
from ..governance import roles
from ..jobs.context import JobContext
from ..jobs.registry import check_params, register_kind
from .kinds import kind as report_kind


def _check(name: str, allowed: set[str]):  # type: ignore[no-untyped-def]
    spec = report_kind(name)

    def check(ws: Any, params: dict[str, Any]) -> dict[str, Any]:
        check_params(f"report-{name}", params, allowed)
        for action in spec.requires:
            if roles.grant(ws.principal.role, action) is not roles.Grant.ALLOW:
                raise PermissionDenied(
                    f"permission denied: {ws.principal} may not have the platform make a {name} "
                    f"report: it reads what a {ws.principal.role.value} may not ({action})"
                )
        checked, _ = ws._report_params(
            spec, params.get("ref"), params.get("since"), params.get("until"), params.get("month"),
            params.get("deployment"), params.get("dataset"),
        )
        clean = {"ref": checked["model_ref"]} if "model_ref" in checked else dict(checked)
        if "dataset_ref" in checked:
            clean["dataset"] = checked["dataset_ref"]
        if params.get("month"):
            clean["month"] = params["month"]
        return clean

    return check


def _run(name: str):  # type: ignore[no-untyped-def]
    def run(ctx: JobContext) -> dict[str, Any]:
        p = ctx.params
        ctx.progress(0.05, f"making the {name} report")
        ctx.log(f"making the {name} report for {ctx.submitted_by}")
        made = ctx.workspace.make_report(
            name,
            subject=p.get("ref"),
            since=None if p.get("month") else p.get("since"),
            until=None if p.get("month") else p.get("until"),
            month=p.get("month"),
            deployment=p.get("deployment"),
            dataset=p.get("dataset"),
            requested_by=ctx.submitted_by,
            job_id=ctx.id,
            checkpoint=ctx.checkpoint,  # a cancel stops the run, not only what follows it
        )
        ctx.log(f"report {made.id} made: html sha256 {made.html_sha256}")
        if made.summary.get("validation_id") is not None:
            ctx.log(f"validation {made.summary['validation_id']} recorded from report {made.id}")
        return {
            "report": made.id,
            "title": made.title,
            "html_sha256": made.html_sha256,
            "notebook_sha256": made.notebook_sha256,
            "chain_heads": made.chain_heads,
        }

    run.__doc__ = f"The platform makes a {name} report and records it."
    return run


register_kind(
    "report-compliance",
    _run("compliance"),
    action="report.generate",
    check=_check("compliance", {"ref"}),
    subject="ref",
    max_attempts=1,
)
register_kind(
    "report-validation",
    _run("validation"),
    action="report.generate",
    check=_check("validation", {"ref", "dataset"}),
    subject="ref",
    max_attempts=1,
)
register_kind(
    "report-audit",
    _run("audit"),
    action="report.generate",
    check=_check("audit", {"since", "until", "month"}),
    max_attempts=1,
)
register_kind(
    "report-drift",
    _run("drift"),
    action="report.generate",
    check=_check("drift", {"deployment", "since", "until", "month"}),
    subject="deployment",
    max_attempts=1,
)
