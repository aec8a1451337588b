"""PostgreSQL's digest path: the server assembles each record (floats spelt by float8out) and
hashes it with prev_hash; only a digest equal to the stored hash proves a record, every other
record is decided by the exact path, and every tampering is still named."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text, update

from nexml_ext.governance.audit import Walk, scan_rows
from nexml_ext.store import chains
from nexml_ext.store import tables as t
from tests.governance.test_audit_verify_fast import (  # noqa: F401 - fixtures
    _AWKWARD,
    _JSON,
    CHAIN,
    P,
    _record,
    _verdict,
    log,
)


@pytest.fixture
def pg_log(backend, request):
    if backend != "postgresql":
        pytest.skip("the digest path is PostgreSQL's")
    return request.getfixturevalue("log")


def _digest_scan(db, ids, setup=()):
    """(rows the exact path had to decide, the walk) over the chain's digest rows."""
    decided = []
    with db.read() as s:
        for statement in setup:
            s.execute(text(statement))
        query = chains.fast_query(P, db.backend, ("deployment_id", ids[0]), digest=True)
        assert query is not None and query.plan.digest and not query.plan.separators

        def exact(row_id):
            decided.append(row_id)
            return chains.exact_record(s, t.PredictionRecord, row_id)

        walk = scan_rows(chains.chain_rows(s, query, None), query.plan, exact, Walk())
    return decided, walk


def _seqs(db, ids, row_ids):
    with db.read() as s:
        return sorted(s.get(t.PredictionRecord, i).seq for i in row_ids)


_ANY_FLOAT = st.one_of(
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, -3.0, 1e-7, 1e-4, 0.1 + 0.2, 5e-324, 999999999999999.0,
                     1e15, 1234567890123456.8, 2.0**53 + 2, 1e16, 1e300, 1.7976931348623157e308]),
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    inputs=st.dictionaries(_AWKWARD, _JSON, max_size=6),
    reasons=st.lists(_JSON, max_size=3),
    subject=st.one_of(st.none(), _AWKWARD),
    confidence=_ANY_FLOAT,
    latency=_ANY_FLOAT,
)
def test_digest_proves_every_record_whose_floats_it_spells(
    pg_log, inputs, reasons, subject, confidence, latency
):
    """Awkward JSON (nested separators included: the json type pins the boundaries) never
    needs the exact path; only a float of magnitude 1e15 or more may (spelt otherwise by the
    server), and such a record still verifies."""
    _, db, decision_log, ids, _ = pg_log
    decision_log.submit([_record(ids, inputs=inputs, reasons=reasons, subject_id=subject,
                                 confidence=confidence, latency_ms=latency)])
    decided, walk = _digest_scan(db, ids)
    assert walk.ok, walk.problem
    with db.read() as s:
        rows = {r.id: r for r in s.query(t.PredictionRecord)}
    assert walk.count == len(rows)
    big = {i for i, r in rows.items()
           if any(v is not None and abs(v) >= 1e15 for v in (r.confidence, r.latency_ms))}
    assert set(decided) <= big


def test_float_spelling_matches_json_dumps_below_1e15(pg_log):
    """The server's spelling of each float column is json.dumps's (the record hashes) for
    values below 1e15: integral ones get repr's ".0", tiny ones the same exponent form."""
    _, db, decision_log, ids, _ = pg_log
    values = [0.0, -0.0, 1.0, -2.0, 0.5, 1e-4, 1e-5, 1.5e-7, 0.1 + 0.2, 123456789012345.6,
              999999999999999.0, 5e-324, 2.2250738585072014e-308, 7.0 / 3.0]
    decision_log.submit([_record(ids, confidence=v, latency_ms=-v / 3) for v in values])
    decided, walk = _digest_scan(db, ids)
    assert walk.ok and walk.count == len(values) and decided == []
    with db.read() as s:
        spelt = s.execute(text(
            f"SELECT {chains._pg_float_token('confidence')}, confidence FROM prediction_records "
            "ORDER BY seq")).all()
    assert [token for token, _ in spelt] == [json.dumps(stored) for _, stored in spelt]


def test_digest_path_names_a_float_changed_in_its_last_digit(pg_log):
    """A float changed by one ulp is named, even on a connection whose extra_float_digits
    would print both values alike (the scan sets its own)."""
    stack, db, decision_log, ids, engine = pg_log
    decision_log.submit([_record(ids, latency_ms=1.5, confidence=0.1) for _ in range(4)])
    with engine.begin() as conn:
        conn.execute(update(P).where(P.c.seq == 3).values(confidence=0.10000000000000002))
    decided, walk = _digest_scan(db, ids, setup=["SET extra_float_digits = -15"])
    assert not walk.ok and walk.bad_seq == 3 and _seqs(db, ids, decided) == [3]
    bad = _verdict(stack)
    assert not bad.ok and bad.first_bad_seq == 3 and "contents changed" in bad.problem


@pytest.mark.parametrize("column, value", [
    ("subject_id", "mallory"),
    ("route", "retail"),
    ("shadow", True),
    ("artifact_sha256", "b" * 64),
    ("latency_ms", None),
    ("inputs", {"credit_amount": 9169}),
])
def test_digest_path_names_any_edited_column(pg_log, column, value):
    stack, db, decision_log, ids, engine = pg_log
    decision_log.submit([_record(ids, subject_id=str(i)) for i in range(5)])
    with engine.begin() as conn:
        conn.execute(update(P).where(P.c.seq == 4).values({column: value}))
    decided, walk = _digest_scan(db, ids)
    assert not walk.ok and walk.bad_seq == 4 and _seqs(db, ids, decided) == [4]
    bad = _verdict(stack)
    assert bad.chain == CHAIN and not bad.ok and bad.first_bad_seq == 4


def test_digest_of_a_record_with_a_huge_float_goes_the_exact_way(pg_log):
    stack, db, decision_log, ids, engine = pg_log
    decision_log.submit([_record(ids, latency_ms=v) for v in (1.0, 1e15, 2.0**60, 3.0)])
    decided, walk = _digest_scan(db, ids)
    assert walk.ok and walk.count == 4 and _seqs(db, ids, decided) == [2]  # 1e15 only
    with engine.begin() as conn:
        conn.execute(update(P).where(P.c.seq == 2).values(latency_ms=1e15 + 1))
    bad = _verdict(stack)
    assert not bad.ok and bad.first_bad_seq == 2
