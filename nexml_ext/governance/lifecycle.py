"""The model-version lifecycle and the guards on each move.

```
staging --approve--> approved --deploy--> deployed --retire--> retired
   \\--reject--> rejected        (rollback = deploy an earlier approved version)
```

When a deployment switches to another version (a new deploy or a rollback), the version it
served goes back to ``approved``: still approved, no longer serving, and a rollback target.

Functions here decide; they never read or write storage. The Workspace gathers the facts (who
authored the version, which validations exist, what the compliance record lacks, whether the
artifact still matches its hash) and passes them in.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from ..errors import (
    Conflict,
    IncompleteCompliance,
    InvalidInput,
    InvalidTransition,
    PermissionDenied,
)
from .roles import Principal

MIN_FINDINGS_CHARS = 20


class Status(StrEnum):
    STAGING = "staging"
    APPROVED = "approved"
    REJECTED = "rejected"
    DEPLOYED = "deployed"
    RETIRED = "retired"


#: move -> (states it may start from, state it ends in)
TRANSITIONS: dict[str, tuple[frozenset[Status], Status]] = {
    "approve": (frozenset({Status.STAGING}), Status.APPROVED),
    "reject": (frozenset({Status.STAGING}), Status.REJECTED),
    "deploy": (frozenset({Status.APPROVED}), Status.DEPLOYED),
    "rollback": (frozenset({Status.APPROVED}), Status.DEPLOYED),
    "undeploy": (frozenset({Status.DEPLOYED}), Status.APPROVED),
    "retire": (frozenset({Status.APPROVED, Status.DEPLOYED}), Status.RETIRED),
}
DECISIONS = ("approve", "reject")


def next_status(move: str, current: Status | str, ref: str) -> Status:
    """The status after ``move`` from ``current``.

    Raises:
        Conflict: a decision (approve/reject) on a version somebody already decided.
        InvalidTransition: any other move the lifecycle does not allow from ``current``.
    """
    current = Status(current)
    sources, target = TRANSITIONS[move]
    if current in sources:
        return target
    if move in DECISIONS and current is not Status.STAGING:
        raise Conflict(f"cannot {move} {ref}: it was already decided and is {current.value}")
    allowed = " or ".join(sorted(s.value for s in sources))
    raise InvalidTransition(f"cannot {move} {ref}: it is {current.value}, not {allowed}")


def check_not_author(principal: Principal, move: str, ref: str, author: str) -> None:
    """Segregation of duties: nobody decides on a version they authored."""
    if principal.name == author:
        raise PermissionDenied(
            f"{principal.role.value} {principal.name} may not {move} {ref}: "
            f"{principal.name} is its author"
        )


def check_findings(move: str, ref: str, findings: str | None) -> str:
    """Written findings are part of every decision; returns them stripped."""
    text = (findings or "").strip()
    if not text:
        raise InvalidInput(
            f"cannot {move} {ref}: findings are required (what was reviewed, and why)"
        )
    if len(text) < MIN_FINDINGS_CHARS:
        raise InvalidInput(
            f"cannot {move} {ref}: findings must say what was reviewed and why "
            f"(at least {MIN_FINDINGS_CHARS} characters, got {len(text)})"
        )
    return text


def check_validated(ref: str, artifact_sha256: str, validated_hashes: Iterable[str]) -> None:
    """Approval needs a platform validation of this exact artifact."""
    if artifact_sha256 not in set(validated_hashes):
        raise InvalidTransition(
            f"cannot approve {ref}: no platform validation of its artifact "
            f"{artifact_sha256[:12]}… exists; run a validation first"
        )


def check_compliance(ref: str, tier: int | None, missing: Iterable[str]) -> None:
    """Approval needs every mandatory compliance section complete."""
    missing = list(missing)
    if missing:
        tier_text = f"tier {tier}" if tier else "its risk tier"
        raise IncompleteCompliance(
            f"cannot approve {ref}: mandatory compliance sections for {tier_text} are "
            f"incomplete: {', '.join(missing)}"
        )


# --- shadow-only deployments -----------------------------------------------------------------
#
# Only a deployed version answers requests. A manager may also put a version that is waiting
# for its decision (a retrained challenger in staging) or approved but not deployed on a
# deployment of its own to compare it on live traffic (``Workspace.shadow``): such a deployment
# serves a version that is not ``deployed``, and it may be a route's shadow only — scored and
# recorded beside the answer, never the answer.

#: States of a version a shadow-only deployment may be made for.
SHADOW_SOURCES = frozenset({Status.STAGING, Status.APPROVED})


def check_shadow_source(ref: str, status: Status | str) -> None:
    """A shadow-only deployment is made for a staging or approved version only."""
    current = Status(status)
    if current not in SHADOW_SOURCES:
        why = (
            "it already answers on its own deployment"
            if current is Status.DEPLOYED
            else "it can never serve"
        )
        raise InvalidTransition(
            f"cannot shadow {ref}: it is {current.value} ({why}); only a staging or approved "
            "version may be put on a shadow-only deployment"
        )


def answers(status: Status | str) -> bool:
    """Whether a deployment serving a version in ``status`` may answer requests."""
    return Status(status) is Status.DEPLOYED


def check_answering(
    route: str, targets: Iterable[tuple[str, str]], statuses: dict[str, str]
) -> None:
    """Every deployment that may answer on ``route`` (``targets``: ``(where, deployment)``
    pairs, e.g. ``("default", "credit")``) serves a deployed version; ``statuses`` maps each
    deployment to its version's status. A shadow-only deployment is refused by name."""
    for where, deployment in targets:
        status = statuses.get(deployment)
        if status is not None and not answers(status):
            raise InvalidInput(
                f"route {route}: {where} {deployment!r} is a shadow-only deployment (it serves "
                f"a {status} version); it may only be the route's shadow, never answer"
            )
