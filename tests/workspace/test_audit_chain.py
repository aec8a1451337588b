"""Tampering with the events table, at random positions, is found and named by verify."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, delete, insert, select, update

from nexml_ext.governance.audit import record_hash
from nexml_ext.store import tables as t
from nexml_ext.store.database import normalise_url
from nexml_ext.workspace.core import chain_record

EVENTS = t.Event.__table__
HEADS = t.ChainHead.__table__
EDITABLE = ["at", "actor", "actor_role", "action", "object_ref", "data", "prev_hash", "hash"]


@pytest.fixture
def chain(stack):
    """A store with a couple of dozen events and a direct connection to rewrite them."""
    for i in range(8):
        stack.dana.create_token(label=f"laptop {i}")
        stack.mark.create_token(label=f"ci {i}")
    engine = create_engine(normalise_url(stack.settings.database_url))
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(EVENTS).order_by(EVENTS.c.seq))]
        heads = [dict(r._mapping) for r in conn.execute(select(HEADS))]
    assert stack.cora.audit.verify().ok
    yield stack, engine, rows, heads
    engine.dispose()


def _restore(engine, rows, heads):
    with engine.begin() as conn:
        conn.execute(delete(EVENTS))
        conn.execute(insert(EVENTS), rows)
        conn.execute(delete(HEADS))
        conn.execute(insert(HEADS), heads)


def _edit_value(column, value, rng):
    if column == "at":
        return value.replace(microsecond=(value.microsecond + 1) % 1_000_000)
    if column == "data":
        return {**value, "tampered": rng.randint(0, 9)}
    if column in ("prev_hash", "hash"):
        return "f" * 64 if value != "f" * 64 else "e" * 64
    return value + "x"


def _forged(rows, position, prev_hash, recompute):
    row = {k: v for k, v in rows[min(position, len(rows)) - 1].items() if k != "id"}
    row.update(seq=position, actor="mallory", prev_hash=prev_hash, hash="0" * 64)
    if recompute:
        row["hash"] = record_hash(prev_hash, chain_record(t.Event(**row)))
    return row


def tamper(engine, rows, kind, position, detail, rng):
    """Apply one kind of tampering at ``position`` (a seq); return the seq verify must name."""
    n = len(rows)
    with engine.begin() as conn:
        if kind == "edit":
            column = EDITABLE[detail % len(EDITABLE)]
            value = _edit_value(column, rows[position - 1][column], rng)
            conn.execute(update(EVENTS).where(EVENTS.c.seq == position).values({column: value}))
            return position
        if kind == "delete":
            conn.execute(delete(EVENTS).where(EVENTS.c.seq == position))
            return position
        if kind == "reorder":
            other = position % n + 1  # a different row
            conn.execute(update(EVENTS).where(EVENTS.c.seq == position).values(seq=-1))
            conn.execute(update(EVENTS).where(EVENTS.c.seq == other).values(seq=position))
            conn.execute(update(EVENTS).where(EVENTS.c.seq == -1).values(seq=other))
            return min(position, other)
        if kind == "insert":
            # Make room at `position`, then insert a forged row there. A naive forger leaves
            # a wrong hash (caught at the row itself); a careful one computes a valid hash,
            # so the break shows at the next row, whose prev_hash no longer matches.
            recompute = detail % 2 == 0
            for seq in range(n, position - 1, -1):
                conn.execute(update(EVENTS).where(EVENTS.c.seq == seq).values(seq=seq + 1))
            prev = rows[position - 2]["hash"] if position > 1 else "0" * 64
            conn.execute(insert(EVENTS).values(_forged(rows, position, prev, recompute)))
            return position + 1 if recompute else position
        if kind == "append":
            conn.execute(insert(EVENTS).values(_forged(rows, n + 1, rows[-1]["hash"], True)))
            return n + 1
    raise AssertionError(kind)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kind=st.sampled_from(["edit", "delete", "reorder", "insert", "append"]),
    where=st.floats(min_value=0, max_value=1, exclude_max=True),
    detail=st.integers(min_value=0, max_value=1000),
)
def test_any_tampering_is_named(chain, kind, where, detail):
    stack, engine, rows, heads = chain
    position = 1 + int(where * len(rows))
    try:
        expected = tamper(engine, rows, kind, position, detail, random.Random(detail))
        result = stack.cora.audit.verify()
        assert not result.ok
        bad = result.first_failure
        assert bad.chain == "events"
        assert bad.first_bad_seq == expected, (kind, position, str(bad))
    finally:
        _restore(engine, rows, heads)
    assert stack.cora.audit.verify().ok


def test_deleting_the_newest_record_is_caught_by_the_head(chain):
    stack, engine, rows, heads = chain
    with engine.begin() as conn:
        conn.execute(delete(EVENTS).where(EVENTS.c.seq == len(rows)))
    result = stack.cora.audit.verify()
    assert result.first_failure.first_bad_seq == len(rows)
    assert "missing (deleted)" in result.first_failure.problem


def test_chain_format_is_as_designed(chain):
    """hash = SHA-256(prev_hash ‖ canonical JSON of the record); genesis prev is 64 zeros."""
    import hashlib
    import json

    _, _, rows, _ = chain
    first = rows[0]
    assert first["prev_hash"] == "0" * 64
    record = {k: v for k, v in first.items() if k not in ("id", "prev_hash", "hash")}
    record["at"] = record["at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(("0" * 64 + canonical).encode()).hexdigest() == first["hash"]
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(rows, rows[1:], strict=False))
