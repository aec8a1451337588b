"""Reading and verifying the audit trail."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from sqlalchemy import or_, select

from ..errors import InvalidInput
from ..governance.audit import GENESIS, Link, VerifyResult, verify_links
from ..store import tables as t
from . import views
from .core import EVENTS_CHAIN, WorkspaceCore, chain_record

EMPTY = (0, GENESIS)  # the head of a chain nothing was ever appended to


@dataclass(frozen=True)
class AuditVerification:
    """The result of recomputing every chain."""

    chains: tuple[VerifyResult, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.chains)

    @property
    def first_failure(self) -> VerifyResult | None:
        return next((c for c in self.chains if not c.ok), None)

    def __str__(self) -> str:
        return "\n".join(str(c) for c in self.chains)


class AuditTrail:
    """``workspace.audit``: the hash-chained record of every change."""

    def __init__(self, workspace: WorkspaceCore) -> None:
        self._ws = workspace

    def verify(self) -> AuditVerification:
        """Recompute the event chain and each deployment's prediction chain."""
        ws = self._ws
        ws._authorize("audit.verify", "the audit trail")
        with ws._read() as s:
            heads = {h.chain: (h.seq, h.hash) for h in s.scalars(select(t.ChainHead))}
            results = [
                verify_links(
                    EVENTS_CHAIN,
                    _links(s, select(t.Event).order_by(t.Event.seq)),
                    heads.get(EVENTS_CHAIN, (0, "")) if heads else None,
                )
            ]
            for deployment in s.scalars(select(t.Deployment).order_by(t.Deployment.id)):
                chain = f"predictions:{deployment.name}"
                query = (
                    select(t.PredictionRecord)
                    .where(t.PredictionRecord.deployment_id == deployment.id)
                    .order_by(t.PredictionRecord.seq)
                )
                results.append(verify_links(chain, _links(s, query), heads.get(chain, EMPTY)))
        return AuditVerification(tuple(results))

    def heads(self) -> dict[str, dict[str, object]]:
        """Each chain's current (seq, hash): what reports carry to anchor history."""
        with self._ws._read() as s:
            return {h.chain: {"seq": h.seq, "hash": h.hash} for h in s.scalars(select(t.ChainHead))}

    def log(
        self,
        *,
        since: datetime | date | str | None = None,
        until: datetime | date | str | None = None,
        actor: str | None = None,
        object: str | None = None,  # noqa: A002 - the CLI's --object
        action: str | None = None,
        limit: int | None = None,
    ) -> list[views.Event]:
        """Events, oldest first, filtered by time range, actor, object reference and action.

        ``object`` matches the reference itself and everything below it (``credit-risk``
        matches ``credit-risk:3``). Dates are UTC; a bare ``until`` date includes that day.
        """
        ws = self._ws
        ws._authorize("audit.view", "the audit trail")
        query = select(t.Event).order_by(t.Event.seq)
        if since is not None:
            query = query.where(t.Event.at >= _when(since, end=False))
        if until is not None:
            query = query.where(t.Event.at <= _when(until, end=True))
        if actor:
            query = query.where(t.Event.actor == actor)
        if action:
            query = query.where(t.Event.action == action)
        if object:
            query = query.where(
                or_(
                    t.Event.object_ref == object,
                    t.Event.object_ref.startswith(object + ":", autoescape=True),
                )
            )
        if limit is not None:
            if limit < 1:
                raise InvalidInput(f"limit must be a positive number, got {limit}")
            query = query.limit(limit)
        with ws._read() as s:
            return [views.Event.of(row) for row in s.scalars(query)]


def _links(s, query) -> Iterator[Link]:
    for row in s.scalars(query.execution_options(yield_per=1000)):
        yield Link(row.seq, chain_record(row), row.prev_hash, row.hash)


def _when(value: datetime | date | str, *, end: bool) -> datetime:
    if isinstance(value, str):
        try:
            is_time = "T" in value or " " in value
            value = datetime.fromisoformat(value) if is_time else date.fromisoformat(value)
        except ValueError:
            raise InvalidInput(
                f"invalid date {value!r}: use YYYY-MM-DD or an ISO date-time"
            ) from None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value
    return datetime.combine(value, time.max if end else time.min)
