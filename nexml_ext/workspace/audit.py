"""Reading and verifying the audit trail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from sqlalchemy import or_, select

from ..errors import InvalidInput
from ..governance.audit import GENESIS, VerifyResult
from ..store import chain_scan
from ..store import tables as t
from ..store.chains import verify_chain
from . import views
from .core import EVENTS_CHAIN, WorkspaceCore

EMPTY = (0, GENESIS)  # the head of a chain nothing was ever appended to


@dataclass(frozen=True)
class AuditVerification:
    """The result of recomputing every chain."""

    chains: tuple[VerifyResult, ...]
    #: Said about how it was verified (not part of the verdict): an SQLite store verified
    #: without the native chain scanner, and why.
    note: str | None = None

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
        """Recompute the event chain and each deployment's prediction chain.

        Records are hashed from their stored bytes where those are canonical (the fast path,
        ``store.chains``), decoding only rows that need it; long chains are split into ranges
        walked in parallel. The verdict is the same as recomputing every record from its decoded
        columns: the first bad record of each chain is named.
        """
        ws = self._ws
        ws._authorize("audit.verify", "the audit trail")
        url = ws._db.url
        with ws._read() as s:
            if ws._db.backend == "postgresql":  # heads and records from one snapshot
                s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            heads = {h.chain: (h.seq, h.hash) for h in s.scalars(select(t.ChainHead))}
            results = [
                verify_chain(
                    s,
                    url,
                    EVENTS_CHAIN,
                    t.Event,
                    None,
                    heads.get(EVENTS_CHAIN, (0, "")) if heads else None,
                )
            ]
            deployments = s.execute(
                select(t.Deployment.id, t.Deployment.name).order_by(t.Deployment.id)
            ).all()
            for deployment_id, name in deployments:
                chain = f"predictions:{name}"
                results.append(
                    verify_chain(
                        s,
                        url,
                        chain,
                        t.PredictionRecord,
                        ("deployment_id", deployment_id),
                        heads.get(chain, EMPTY),
                    )
                )
        off = chain_scan.native_off() if ws._db.backend == "sqlite" else None
        note = None
        if off is not None:
            note = (
                f"the native chain scanner is {off}; verification used the Python scans "
                "(same verdicts, slower)"
            )
        return AuditVerification(tuple(results), note)

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
