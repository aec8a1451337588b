"""Who may do what: the permission matrix, as one table.

``MATRIX`` is the single source of truth. The Workspace calls :func:`authorize` before every use
case; ``nexml docs permissions`` renders the same table into ``docs/permissions.md`` and a test
fails if the two differ, so the documentation cannot drift from the code.

A cell is ``ALLOW`` (always), ``OWN`` (only on objects the principal authored) or absent (denied).
Actions join the matrix together with the use case that checks them (routing, monitoring and
reports arrive with the serving, monitoring and reporting layers).
Segregation of duties that depends on the object, not just the role (nobody approves their own
version), lives in ``governance.lifecycle``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..errors import InvalidInput, PermissionDenied


class Role(StrEnum):
    DATA_SCIENTIST = "data_scientist"
    MANAGER = "manager"
    COMPLIANCE_OFFICER = "compliance_officer"
    SUPERADMIN = "superadmin"
    #: The platform's own identity: runs validations and reports. Never assignable to a person.
    PLATFORM = "platform"

    @classmethod
    def assignable(cls) -> tuple[Role, ...]:
        return (cls.DATA_SCIENTIST, cls.MANAGER, cls.COMPLIANCE_OFFICER, cls.SUPERADMIN)

    @classmethod
    def parse(cls, value: str) -> Role:
        """The assignable role named ``value``; InvalidInput naming the valid ones otherwise."""
        names = [r.value for r in cls.assignable()]
        if value not in names:
            raise InvalidInput(f"unknown role {value!r}: choose one of {', '.join(names)}")
        return cls(value)


class Grant(StrEnum):
    ALLOW = "allow"
    OWN = "own"  # only on objects whose author is the principal


@dataclass(frozen=True)
class Action:
    name: str
    description: str


_A = Action
ACTIONS: tuple[Action, ...] = (
    _A("user.manage", "add, disable and list users; create and revoke anyone's tokens"),
    _A("token.own", "create, list and revoke one's own tokens"),
    _A("dataset.register", "ingest data and register dataset versions"),
    _A("dataset.view", "list and read dataset versions"),
    _A("model.train", "run AutoML on a registered dataset version (the run is recorded)"),
    _A("model.register", "register a model version (it enters staging)"),
    _A("model.view", "list models and versions, read model cards"),
    _A("model.analyse", "explain, fairness-test and drift-check a version on data (recorded)"),
    _A("compliance.view", "read compliance records and scores"),
    _A("compliance.edit", "write the human sections of a compliance record"),
    _A("compliance.configure", "change the risk-tier policy (mandatory sections per tier)"),
    _A("compliance.set_tier", "set a version's risk tier and re-review triggers explicitly"),
    _A("validation.request", "ask the platform to validate a version"),
    _A("validation.record", "record a platform-run validation (the platform only)"),
    _A("model.approve", "approve a staging version (never one's own)"),
    _A("model.reject", "reject a staging version (never one's own)"),
    _A("model.deploy", "deploy an approved version to a named deployment"),
    _A("model.rollback", "point a deployment back at an earlier approved version"),
    _A("model.retire", "retire a version so it can never serve again"),
    _A("model.retrain", "have the platform retrain a deployed model on new labelled data into "
                        "staging, with a comparison report (it never deploys)"),
    _A("model.shadow", "put a staging or approved version on a shadow-only deployment: scored "
                       "and recorded beside a route's answers, never answering"),
    _A("deployment.export", "write a bundle (Dockerfile, Kubernetes manifests) of a deployment"),
    _A("route.manage", "create and change routing rules and rotate route keys"),
    _A("model.score", "score inputs on an active deployment (each decision is recorded)"),
    _A("prediction.read", "find recorded predictions (every person's read is itself audited)"),
    _A("prediction.outcome", "attach actual outcomes to past predictions"),
    _A("audit.view", "read the audit log"),
    _A("audit.verify", "verify the audit chains"),
    _A("report.generate", "have the platform make a report (compliance; audit needs audit.view)"),
    _A("report.view", "list platform-made reports, read them and check an HTML file is one"),
    _A("job.test", "submit the job runner's self-test job (an operational check)"),
    _A("job.cancel", "cancel a queued or running job (one's own; managers and superadmins any)"),
    _A("job.run", "run queued jobs as the platform (`nexml worker`) and reap dead workers' jobs"),
    _A("schedule.view", "list schedules and the jobs their fire times submitted"),
    _A("schedule.manage", "add, enable, disable and remove schedules (each fire needs the kind's "
                          "own permission, as the schedule's creator)"),
    _A("schedule.run", "submit due schedules' jobs as the platform (`nexml scheduler`)"),
    _A("monitor.enrol", "enrol a deployment for monitoring, change or remove its monitor"),
    _A("monitor.view", "list monitors and read their time series (aggregates, no records)"),
    _A("monitor.run", "run a deployment's monitor over its recorded decisions"),
    _A("alert.view", "list monitoring alerts"),
    _A("alert.acknowledge", "acknowledge a monitoring alert with a note"),
    _A("alert.configure", "add and remove alert sinks (webhook, email, log)"),
    _A("clock.simulate", "set a workspace's clock for a simulation (stamps its decisions)"),
)

_DS, _MG, _CO, _SA, _PF = (
    Role.DATA_SCIENTIST,
    Role.MANAGER,
    Role.COMPLIANCE_OFFICER,
    Role.SUPERADMIN,
    Role.PLATFORM,
)
_ALL_PEOPLE = {_DS: Grant.ALLOW, _MG: Grant.ALLOW, _CO: Grant.ALLOW, _SA: Grant.ALLOW}
_PLATFORM_READS = {_PF: Grant.ALLOW}

#: action name -> {role: grant}. Roles not listed are denied.
MATRIX: dict[str, dict[Role, Grant]] = {
    "user.manage": {_SA: Grant.ALLOW},
    "token.own": dict(_ALL_PEOPLE),
    "dataset.register": {_DS: Grant.ALLOW, _MG: Grant.ALLOW, _PF: Grant.ALLOW},
    "dataset.view": {**_ALL_PEOPLE, **_PLATFORM_READS},
    "model.train": {_DS: Grant.ALLOW, _MG: Grant.ALLOW},
    "model.register": {_DS: Grant.ALLOW, _MG: Grant.ALLOW},
    "model.view": {**_ALL_PEOPLE, **_PLATFORM_READS},
    "model.analyse": {
        _DS: Grant.OWN, _MG: Grant.ALLOW, _CO: Grant.ALLOW, _SA: Grant.ALLOW, _PF: Grant.ALLOW
    },
    "compliance.view": {**_ALL_PEOPLE, **_PLATFORM_READS},
    "compliance.edit": {_DS: Grant.OWN, _MG: Grant.OWN},
    "compliance.configure": {_CO: Grant.ALLOW, _SA: Grant.ALLOW},
    "compliance.set_tier": {_CO: Grant.ALLOW},
    "validation.request": {_DS: Grant.OWN, _MG: Grant.ALLOW},
    "validation.record": {_PF: Grant.ALLOW},
    "model.approve": {_MG: Grant.ALLOW, _SA: Grant.ALLOW},
    "model.reject": {_MG: Grant.ALLOW, _SA: Grant.ALLOW},
    "model.deploy": {_MG: Grant.ALLOW},
    "model.rollback": {_MG: Grant.ALLOW},
    "model.retire": {_MG: Grant.ALLOW},
    # Retraining runs as the platform (it ingests the labelled data, trains, registers); the
    # person who asks is the challenger's author, so someone else must approve it.
    "model.retrain": {_DS: Grant.OWN, _MG: Grant.ALLOW, _PF: Grant.ALLOW},
    "model.shadow": {_MG: Grant.ALLOW},
    "deployment.export": {_MG: Grant.ALLOW, _SA: Grant.ALLOW},
    "route.manage": {_MG: Grant.ALLOW},
    # The scoring gateway scores as the platform; managers may score from a notebook.
    "model.score": {_MG: Grant.ALLOW, _PF: Grant.ALLOW},
    "prediction.read": {_CO: Grant.ALLOW, _SA: Grant.ALLOW, _PF: Grant.ALLOW},
    "prediction.outcome": {_MG: Grant.ALLOW, _PF: Grant.ALLOW},
    "audit.view": {_CO: Grant.ALLOW, _SA: Grant.ALLOW, _PF: Grant.ALLOW},
    "audit.verify": {_CO: Grant.ALLOW, _SA: Grant.ALLOW, _PF: Grant.ALLOW},
    # Reports are made by the platform; people ask for them. Data scientists cannot: the run's
    # kernel reads as the platform, and a report of one's own model is not independent evidence.
    "report.generate": {_MG: Grant.ALLOW, _CO: Grant.ALLOW, _SA: Grant.ALLOW, _PF: Grant.ALLOW},
    "report.view": {
        _DS: Grant.OWN, _MG: Grant.ALLOW, _CO: Grant.ALLOW, _SA: Grant.ALLOW, _PF: Grant.ALLOW
    },
    # Jobs: each kind is submitted under its own action (validation.request, ...); the owner of
    # a job, for cancelling, is whoever submitted it.
    "job.test": dict(_ALL_PEOPLE),
    "job.cancel": {_DS: Grant.OWN, _MG: Grant.ALLOW, _CO: Grant.OWN, _SA: Grant.ALLOW},
    "job.run": {_SA: Grant.ALLOW, _PF: Grant.ALLOW},
    # Schedules submit jobs on their creator's behalf; the scheduler only submits.
    "schedule.view": {_MG: Grant.ALLOW, _CO: Grant.ALLOW, _SA: Grant.ALLOW, _PF: Grant.ALLOW},
    "schedule.manage": {_MG: Grant.ALLOW, _SA: Grant.ALLOW},
    "schedule.run": {_SA: Grant.ALLOW, _PF: Grant.ALLOW},
    # Monitoring: managers enrol deployments; alerts are acknowledged by a person.
    "monitor.enrol": {_MG: Grant.ALLOW},
    "monitor.view": {**_ALL_PEOPLE, **_PLATFORM_READS},
    "monitor.run": {_MG: Grant.ALLOW, _SA: Grant.ALLOW, _PF: Grant.ALLOW},
    "alert.view": {**_ALL_PEOPLE, **_PLATFORM_READS},
    "alert.acknowledge": {_MG: Grant.ALLOW, _CO: Grant.ALLOW, _SA: Grant.ALLOW},
    "alert.configure": {_MG: Grant.ALLOW, _SA: Grant.ALLOW},
    # Simulated time (demo, tests) backdates decisions: superadmins only, and it is an event.
    "clock.simulate": {_SA: Grant.ALLOW},
}

assert set(MATRIX) == {a.name for a in ACTIONS}, "every action has a row and every row an action"


@dataclass(frozen=True)
class Principal:
    """An authenticated identity. Only the Workspace's authentication makes one for a person."""

    name: str
    role: Role

    def __str__(self) -> str:
        return f"{self.role.value} {self.name}"


def grant(role: Role, action: str) -> Grant | None:
    """The matrix cell for ``role`` × ``action`` (None = denied)."""
    if action not in MATRIX:
        raise KeyError(f"unknown action {action!r}")
    return MATRIX[action].get(role)


def authorize(
    principal: Principal, action: str, subject: str = "", owner: str | None = None
) -> None:
    """Raise PermissionDenied unless ``principal`` may perform ``action`` on ``subject``.

    ``owner`` is the author of the subject, for ``OWN`` grants. The message reads
    "permission denied: data_scientist bob may not approve credit-risk:3".
    """
    cell = grant(principal.role, action)
    verb = action.split(".", 1)[1].replace("_", " ")
    target = f" {subject}" if subject else ""
    if cell is None:
        raise PermissionDenied(f"permission denied: {principal} may not {verb}{target}")
    if cell is Grant.OWN and owner != principal.name:
        raise PermissionDenied(
            f"permission denied: {principal} may not {verb}{target}: only its author ({owner}) may"
        )


def render_markdown() -> str:
    """The permission matrix as a Markdown table (what ``docs/permissions.md`` holds)."""
    roles = list(Role)
    lines = [
        "# Permission matrix",
        "",
        "Generated by `nexml docs permissions` from `nexml_ext/governance/roles.py`; do not edit.",
        "`yes` = allowed, `own` = only on objects the person authored, `-` = denied.",
        "Beyond the matrix, nobody approves or rejects a version they authored.",
        "",
        "| action | " + " | ".join(r.value for r in roles) + " | what it covers |",
        "|---" * (len(roles) + 2) + "|",
    ]
    marks = {Grant.ALLOW: "yes", Grant.OWN: "own", None: "-"}
    for action in ACTIONS:
        cells = [marks[MATRIX[action.name].get(r)] for r in roles]
        lines.append(f"| `{action.name}` | " + " | ".join(cells) + f" | {action.description} |")
    return "\n".join(lines) + "\n"
