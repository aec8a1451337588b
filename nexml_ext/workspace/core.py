"""The Workspace's shared machinery: one principal, one database, one artifact store.

Every use case runs as ``with self._write() as s: ...`` — one transaction that also appends the
audit event, so a refused or failed call changes nothing and every change is in the chain.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..config import Settings
from ..errors import NotFound
from ..governance import roles
from ..governance.audit import canonical_json, record_hash
from ..governance.naming import parse_ref
from ..governance.roles import Principal, Role
from ..store import tables as t
from ..store.artifacts import ArtifactStore
from ..store.chains import chain_record, lock_head
from ..store.database import Database

EVENTS_CHAIN = "events"
PLATFORM_USER = "nexml-platform"


class WorkspaceCore:
    """State and helpers every part of the Workspace shares."""

    #: Where "now" comes from for recorded decisions, outcomes and monitors: None is the system
    #: clock. Only ``set_clock`` (superadmins, an audited event; workspace/monitoring.py) sets
    #: it, for simulations; a gateway process opens its own Workspace and never has one.
    _clock: Callable[[], datetime] | None = None

    def __init__(
        self, settings: Settings, db: Database, store: ArtifactStore, principal: Principal
    ) -> None:
        self.settings = settings
        self._db = db
        self._store = store
        self.principal = principal

    # --- identity ------------------------------------------------------------------------------

    def whoami(self) -> Principal:
        """The authenticated principal every call acts as."""
        return self.principal

    def _authorize(self, action: str, subject: str = "", owner: str | None = None) -> None:
        roles.authorize(self.principal, action, subject, owner)

    def _as_platform(self) -> WorkspaceCore:
        """The same workspace acting as the platform itself (validations, reports)."""
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.principal = Principal(PLATFORM_USER, Role.PLATFORM)
        return clone

    # --- time ---------------------------------------------------------------------------------

    def _now(self) -> datetime:
        """The current time (naive UTC) for decisions, outcomes and monitors: the clock seam."""
        if self._clock is None:
            return t.utcnow()
        now = self._clock()
        return now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo is not None else now

    # --- transactions and the audit chain -------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._db.write() as session:
            yield session

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._db.read() as session:
            yield session

    def _event(self, s: Session, action: str, object_ref: str, **data: Any) -> t.Event:
        """Append one event to the audit chain inside the caller's transaction.

        The chain head is locked (``store.chains.lock_head``), so concurrent writers append one
        after the other and never fork.
        """
        head = lock_head(s, EVENTS_CHAIN)
        # What is stored must be exactly what was hashed: round-trip through canonical JSON.
        payload = json.loads(canonical_json(data))
        row = t.Event(
            seq=head.seq + 1,
            at=t.utcnow(),
            actor=self.principal.name,
            actor_role=self.principal.role.value,
            action=action,
            object_ref=object_ref,
            data=payload,
            prev_hash=head.hash,
        )
        row.hash = record_hash(head.hash, chain_record(row))
        s.add(row)
        head.seq, head.hash = row.seq, row.hash
        s.flush()
        return row

    def _next_number(self, s: Session, column: Any, *where: Any) -> int:
        """One more than the highest ``column`` among rows matching ``where`` (1 for the first)."""
        return (s.scalar(select(func.max(column)).where(*where)) or 0) + 1

    # --- lookups -------------------------------------------------------------------------------

    def _version_row(self, s: Session, ref: str, *, lock: bool = False) -> t.ModelVersion:
        name, version = parse_ref(ref)
        query = (
            select(t.ModelVersion)
            .join(t.Model)
            .where(t.Model.name == name, t.ModelVersion.version == version)
        )
        if lock:
            query = query.with_for_update()
        row = s.execute(query).scalar_one_or_none()
        if row is None:
            raise NotFound(f"model version {ref} not found")
        return row

    def _model_row(self, s: Session, name: str) -> t.Model:
        row = s.execute(select(t.Model).where(t.Model.name == name)).scalar_one_or_none()
        if row is None:
            raise NotFound(f"model {name!r} not found")
        return row

    def _user_row(self, s: Session, name: str) -> t.User:
        row = s.execute(select(t.User).where(t.User.name == name)).scalar_one_or_none()
        if row is None:
            raise NotFound(f"user {name!r} not found")
        return row
