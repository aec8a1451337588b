"""Hash chains in storage: what a record's hash covers, and taking one's turn at a chain's end."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..governance.audit import GENESIS
from . import tables as t


def lock_head(s: Session, chain: str) -> t.ChainHead:
    """The head row of ``chain``, locked for this transaction (created empty if new).

    FOR UPDATE on PostgreSQL makes concurrent appenders queue here; SQLite's write transaction
    is already exclusive. Whoever holds the head appends the next record, so a chain never forks.
    """
    head = s.execute(
        select(t.ChainHead).where(t.ChainHead.chain == chain).with_for_update()
    ).scalar_one_or_none()
    if head is None:
        head = t.ChainHead(chain=chain, seq=0, hash=GENESIS)
        s.add(head)
    return head


# A prediction's actual outcome is learnt weeks after the decision and attached then
# (``record_outcomes``); hashing it would mean rewriting a committed link. The decision itself
# (inputs, output, reasons, version) stays covered; the attachment is an audit event of its own.
_NOT_HASHED = {"id", "prev_hash", "hash", "outcome", "outcome_at"}


def chain_record(row: t.Event | t.PredictionRecord) -> dict[str, Any]:
    """The part of a chained row that its hash covers: every column but id, the hashes and a
    prediction's later outcome."""
    return {
        column.name: getattr(row, column.key)
        for column in row.__table__.columns
        if column.name not in _NOT_HASHED
    }
