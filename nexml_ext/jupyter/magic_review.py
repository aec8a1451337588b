"""``%nexml`` subcommands for reviewers and the audit trail: approve, reject, deploy, route,
audit find, audit verify, audit log. The same rules hold as everywhere: the Workspace decides."""

from __future__ import annotations

from argparse import Namespace
from typing import TYPE_CHECKING

from ..errors import IntegrityError, InvalidInput
from .magic_commands import arg, command, model_ref, table

if TYPE_CHECKING:
    import pandas as pd

    from ..workspace import views
    from ..workspace.audit import AuditVerification
    from .magics import NexmlMagics

REF_HELP = "model version NAME:VERSION, or a variable holding one"
FINDINGS_HELP = 'what you reviewed and why you decided so (quote it: --findings "...")'


def _decision(move: str, summary: str) -> None:
    def decide(nx: NexmlMagics, args: Namespace) -> views.Approval:
        return getattr(nx.workspace, move)(model_ref(nx.user_ns, args.ref), findings=args.findings)

    decide.__doc__ = f"""{summary}

    Managers and superadmins only, never on their own versions; the same rules hold here as in
    the CLI. Returns the Approval.
    """
    command(
        move,
        arg("ref", metavar="NAME:VER", help=REF_HELP),
        arg("--findings", required=True, metavar="TEXT", help=FINDINGS_HELP),
    )(decide)


_decision("approve", "Approve a staging version that the platform validated, with findings.")
_decision("reject", "Reject a staging version, with written findings.")


@command(
    "deploy",
    arg("ref", metavar="NAME:VER", help=REF_HELP),
    arg("--name", required=True, metavar="DEPLOYMENT", help="deployment name (created if new)"),
    arg("--size", default="small", choices=("small", "medium", "large"),
        help="deployment size (default small)"),
)
def deploy(nx: NexmlMagics, args: Namespace) -> views.Deployment:
    """Deploy an approved version under a deployment name (re-verifies its artifact hash).

    Returns the Deployment.
    """
    return nx.workspace.deploy(model_ref(nx.user_ns, args.ref), name=args.name, size=args.size)


@command(
    "route",
    arg("name", metavar="NAME", help="route name"),
    cell=True,
)
def route(nx: NexmlMagics, args: Namespace) -> views.Route:
    """Create or replace a scoring route from the YAML in the cell.

    Rules are tried in order; each sends matching requests (nested all/any/not over request
    fields) to a deployment; the route also names its default, an optional canary share and
    an optional shadow target. Managers only. A new route's key is printed once; keep it.
    Returns the Route.
    """
    if not (args.cell or "").strip():
        raise InvalidInput(
            f"%%nexml route {args.name}: write the route as YAML in the cell body "
            "(rules, default, canary, shadow)"
        )
    saved, key = nx.workspace.set_route(args.name, args.cell)
    if key:
        print(f"route key for {saved.name} (shown once; callers send it with every request):")
        print(key)
    return saved


@command(
    "audit find",
    arg("--request", metavar="ID", help="the prediction's request id"),
    arg("--subject", metavar="ID", help="every decision about this subject (e.g. an applicant)"),
    arg("--deployment", metavar="NAME", help="only decisions served by this deployment"),
    arg("--since", help="from this date (YYYY-MM-DD, UTC) or ISO date-time"),
    arg("--until", help="up to this date (inclusive) or ISO date-time"),
    arg("--date", metavar="YYYY-MM-DD", help="only this day (UTC)"),
    arg("--limit", type=int, default=100, help="at most this many (default 100)"),
)
def audit_find(nx: NexmlMagics, args: Namespace) -> pd.DataFrame:
    """Find past scored decisions: inputs, model version, output, reasons, chain proof.

    Your look-up is itself recorded in the audit trail. Returns a pandas DataFrame.
    """
    found = nx.workspace.find_decisions(
        request_id=args.request, subject_id=args.subject, deployment=args.deployment,
        since=args.since, until=args.until, date=args.date, limit=args.limit,
    )
    return table(
        [
            {"at": d.at, "request": d.request_id, "subject": d.subject_id,
             "deployment": d.deployment, "model": d.model_ref, "artifact": d.artifact_sha256,
             "inputs": d.inputs, "output": d.output, "reasons": [r["reason"] for r in d.reasons],
             "outcome": d.outcome, "proof": d.proof}
            for d in found
        ],
        ["at", "request", "subject", "deployment", "model", "artifact", "inputs", "output",
         "reasons", "outcome", "proof"],
    )


@command("audit verify")
def audit_verify(nx: NexmlMagics, args: Namespace) -> AuditVerification:
    """Recompute every hash chain; fails naming the first altered or missing record.

    Returns the verification (each chain with its count and head).
    """
    result = nx.workspace.audit.verify()
    bad = result.first_failure
    if bad is not None:
        raise IntegrityError(
            f"audit chain {bad.chain} broken at record {bad.first_bad_seq}: {bad.problem}"
        )
    return result


@command(
    "audit log",
    arg("--since", help="from this date (YYYY-MM-DD, UTC) or ISO date-time"),
    arg("--until", help="up to this date (inclusive) or ISO date-time"),
    arg("--actor", help="only events by this user"),
    arg("--object", dest="obj", metavar="REF",
        help="only events about this reference and what is below it (credit-risk, credit-risk:3)"),
    arg("--action", help="only this action, e.g. model.approve"),
    arg("--limit", type=int, help="at most this many events"),
)
def audit_log(nx: NexmlMagics, args: Namespace) -> pd.DataFrame:
    """Audit events, oldest first, filtered by time, actor, object and action.

    Returns a pandas DataFrame.
    """
    events = nx.workspace.audit.log(
        since=args.since, until=args.until, actor=args.actor, object=args.obj,
        action=args.action, limit=args.limit,
    )
    return table(
        [
            {"seq": e.seq, "at": e.at, "actor": e.actor, "role": e.actor_role,
             "action": e.action, "object": e.object_ref, "data": e.data, "hash": e.hash}
            for e in events
        ],
        ["seq", "at", "actor", "role", "action", "object", "data", "hash"],
    )
