"""Fast verification (hashing stored canonical bytes) agrees with the exact path and still
names every tampering: raw JSON text rewritten, column boundaries shifted, chains split
across processes."""

from __future__ import annotations

import threading
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, delete, insert, select, text, update
from sqlalchemy.exc import OperationalError

from nexml_ext.errors import NexmlError
from nexml_ext.governance.audit import GENESIS, Walk, canonical_json, scan_rows
from nexml_ext.store import chain_scan, chains
from nexml_ext.store import tables as t
from nexml_ext.store.database import Database, normalise_url
from nexml_ext.store.decision_log import DecisionLog

P = t.PredictionRecord.__table__
HEADS = t.ChainHead.__table__
CHAIN = "predictions:credit-eu"


@pytest.fixture
def log(stack):
    """One deployment (rows written directly: this tests the store), its decision log, and a
    plain engine (default json.dumps serializer, as any other writer) to rewrite rows."""
    db = Database(stack.settings.database_url)
    with db.write() as s:
        model = t.Model(name="credit", created_by="dana")
        version = t.ModelVersion(model=model, version=1, status="deployed", author="dana",
                                 artifact_uri="mem://x", artifact_sha256="a" * 64)
        s.add_all([model, version])
        s.flush()
        dep = t.Deployment(name="credit-eu", model_id=model.id, model_version_id=version.id,
                           created_by="mark")
        s.add(dep)
        s.flush()
        ids = (dep.id, version.id)
    decision_log = DecisionLog(db)
    engine = create_engine(normalise_url(stack.settings.database_url))
    yield stack, db, decision_log, ids, engine
    decision_log.close()
    engine.dispose()
    db.dispose()


def _record(ids, **values):
    record = {
        "deployment_id": ids[0],
        "model_version_id": ids[1],
        "artifact_sha256": "a" * 64,
        "request_id": uuid.uuid4().hex,
        "subject_id": "47392",
        "inputs": {"credit_amount": 1169, "purpose": "radio/TV", "city": "München"},
        "output": {"prediction": 0, "score": 0.31, "approved": False},
        "explanation": {"method": "tree", "contributions": {"credit_amount": -0.25}},
        "confidence": 0.69,
        "latency_ms": 1.5,
        "reasons": [{"feature": "duration", "reason": "Term too long", "contribution": -0.4}],
    }
    record.update(values)
    return record


def _scan(db, ids):
    """(rows the exact path had to decide, the walk) over the chain's fast rows."""
    decided = []
    with db.read() as s:
        query = chains.fast_query(P, db.backend, ("deployment_id", ids[0]))
        assert query is not None

        def exact(row_id):
            decided.append(row_id)
            return chains.exact_record(s, t.PredictionRecord, row_id)

        walk = scan_rows(chains.chain_rows(s, query, None), query.plan, exact, Walk())
    return decided, walk


def _natively_proven(db, ids):
    """The seqs of the rows the native scanner proves, each scanned on its own (SQLite)."""
    query = chains.native_query(P, ("deployment_id", ids[0]))
    assert query is not None
    with db.read() as s:
        uri = chains._native_uri(s)
        links = s.execute(select(P.c.seq, P.c.prev_hash).order_by(P.c.seq)).all()
    return {seq for seq, prev in links
            if chain_scan.native_walk(uri, query, Walk(seq, prev), seq, seq)}


def _canonical_rows(db, ids):
    """Per row: (fast assembly with exact float spelling, canonical JSON of the ORM record)."""
    with db.read() as s:
        query = chains.fast_query(P, db.backend, ("deployment_id", ids[0]))
        fast = {row[0]: query.plan.exact_floats(row[4:]) for row in chains.chain_rows(s, query, None)}
        exact = {r.id: canonical_json(chains.chain_record(r))
                 for r in s.scalars(select(t.PredictionRecord))}
    return fast, exact


# --- the fast assembly is byte for byte the canonical JSON ----------------------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=12)
_AWKWARD = st.one_of(
    _TEXT,
    st.sampled_from(['"', "\\", "\n\t\r\b\f", "\x01\x1f\x7f", "\u2028\u2029", "é", "e\u0301",
                     "😀", "ß/ü", "</script>", ",\"inputs\":", "null", ""]),
)
_NUMBER = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e-7, 1e16, 1e15, 123456789012345680.0, -0.0, 5e-324, 0.1 + 0.2,
                     1.7976931348623157e308, 2**53 + 1]),
)
_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), _NUMBER, _AWKWARD),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(_AWKWARD, inner, max_size=4)),
    max_leaves=12,
)
# Finite only: the decision log refuses a non-finite confidence or latency (SQLite would store
# NaN as NULL), and stores -0.0 as 0.0 (SQLite's REAL keeps no sign of zero).
_FLOAT_COLUMN = st.one_of(
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e-7, 1.0, 1e300, -0.0]),
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    inputs=st.dictionaries(_AWKWARD, _JSON, max_size=6),
    output=st.dictionaries(_AWKWARD, _JSON, max_size=4),
    explanation=st.one_of(st.dictionaries(_AWKWARD, _JSON, max_size=4), st.none()),
    reasons=st.lists(_JSON, max_size=3),
    subject=st.one_of(st.none(), _AWKWARD),
    caller=st.one_of(st.none(), _AWKWARD),
    confidence=_FLOAT_COLUMN,
    latency=_FLOAT_COLUMN,
    shadow=st.booleans(),
)
def test_fast_assembly_equals_canonical_json_for_awkward_values(
    log, inputs, output, explanation, reasons, subject, caller, confidence, latency, shadow
):
    _, db, decision_log, ids, _ = log
    values = dict(inputs=inputs, output=output, reasons=reasons, subject_id=subject,
                  caller=caller, route=caller, rule=subject, confidence=confidence,
                  latency_ms=latency, shadow=shadow)
    if explanation is not None:
        values["explanation"] = explanation
    decision_log.submit([_record(ids, **values)])
    fast, exact = _canonical_rows(db, ids)
    assert fast == exact  # every token the database spells is json.dumps's spelling
    decided, walk = _scan(db, ids)
    assert walk.ok and walk.count == len(exact), walk.problem
    # Only rows whose canonical text holds a separator the fast path must not trust are
    # left to the exact path; none other needs decoding.
    suspicious = {
        i for i, body in exact.items()
        if any(body.count(sep) != 1 for sep in (b',"inputs":', b',"latency_ms":',
                                                b',"reasons":', b',"request_id":'))
    }
    assert set(decided) == suspicious
    if db.backend == "sqlite":  # the native scanner assembles the same bytes from raw columns
        with db.read() as s:
            seq_of = dict(s.execute(select(P.c.id, P.c.seq)).all())
        assert _natively_proven(db, ids) == {seq_of[i] for i in exact if i not in suspicious}


def test_native_assembly_spells_every_escape_and_float_shape(log):
    """Every control character (json.dumps's short escapes and its lowercase \\u00xx), quote,
    backslash, DEL and non-ASCII text in the text columns, and floats of every shape repr()
    gives (exponents both ways, subnormal, largest, integral): each record is proven by the
    native scanner, whose bytes must therefore be json.dumps's to the byte."""
    _, db, decision_log, ids, _ = log
    if db.backend != "sqlite":
        pytest.skip("the native scanner reads SQLite files")
    awkward = "".join(chr(i) for i in range(1, 0x20)) + '"\\\x7f é e\u0301 😀 </script>'
    floats = [0.1 + 0.2, 1e-7, 1e16, 1e22, 5e-324, 1.7976931348623157e308, 123456789.125,
              -2.5, 0.0, 1.0, 2.0**53 + 2, None]
    decision_log.submit([
        _record(ids, subject_id=awkward[i:], caller=awkward[:i] or None, route="r\t",
                confidence=value, latency_ms=floats[-1 - i], shadow=bool(i % 2))
        for i, value in enumerate(floats)
    ])
    with db.read() as s:
        seqs = set(s.scalars(select(P.c.seq)))
    assert len(seqs) == len(floats)
    assert _natively_proven(db, ids) == seqs


def test_nan_and_infinity_in_json_verify_on_sqlite(log):
    stack, db, decision_log, ids, _ = log
    if db.backend != "sqlite":
        pytest.skip("PostgreSQL's json type refuses NaN and Infinity")
    decision_log.submit([_record(ids, inputs={"x": float("nan"), "y": float("-inf")})])
    fast, exact = _canonical_rows(db, ids)
    assert fast == exact and b'"x":NaN' in next(iter(exact.values()))
    assert stack.cora.audit.verify().ok


# --- tampering with the raw JSON text ---------------------------------------------------------

@pytest.fixture
def chain(log):
    stack, db, decision_log, ids, engine = log
    decision_log.submit([_record(ids, subject_id=str(i)) for i in range(6)])
    assert stack.cora.audit.verify().ok
    return stack, db, engine, ids


def _set_raw(engine, seq, column, raw_text):
    """Store ``raw_text`` verbatim as a JSON column's text, the way a tamperer with SQL
    access would (bypassing every serializer)."""
    cast = "CAST(:v AS json)" if engine.dialect.name == "postgresql" else ":v"
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE prediction_records SET {column} = {cast} WHERE seq = :s"),
                     {"v": raw_text, "s": seq})


def _verdict(stack):
    result = stack.cora.audit.verify()
    return {c.chain: c for c in result.chains}[CHAIN]


def test_rewritten_json_text_is_named(chain):
    stack, _, engine, _ = chain
    _set_raw(engine, 3, "inputs", '{"city":"München","credit_amount":9169,"purpose":"radio/TV"}')
    bad = _verdict(stack)
    assert not bad.ok and bad.first_bad_seq == 3 and "contents changed" in bad.problem


def test_equal_json_in_another_formatting_still_verifies(chain):
    """The hash covers the record's content in canonical form, not how the database happens
    to format the stored JSON. Text that decodes to the same value (whitespace, key order,
    \\u escapes) fails the fast comparison, and the exact path — decode, canonical JSON, hash —
    then finds exactly the bytes that were hashed: nothing was changed, and verify says so.
    (PostgreSQL's json type keeps such text verbatim, SQLite's TEXT too.)"""
    stack, db, engine, ids = chain
    _set_raw(engine, 2, "inputs",
             '{ "purpose" : "radio/TV",\n  "credit_amount": 1169, "city": "M\\u00fcnchen" }')
    _set_raw(engine, 4, "reasons",
             '[{"reason": "Term too long", "feature": "duration", "contribution": -0.4}]')
    decided, walk = _scan(db, ids)
    assert walk.ok and walk.count == 6
    assert len(decided) == 2  # these two rows, and only they, went the exact way
    assert _verdict(stack).ok


def test_rows_written_before_canonical_storage_verify(chain):
    """Rows whose JSON was stored by json.dumps's defaults (spaces, \\u escapes), as every
    row was before the engine wrote canonical JSON, verify through the exact path."""
    stack, db, engine, ids = chain
    with engine.connect() as conn:  # a plain engine: the default serializer
        rows = [dict(r._mapping) for r in conn.execute(select(P).order_by(P.c.seq))]
    with engine.begin() as conn:
        conn.execute(delete(P))
        conn.execute(insert(P), rows)
    decided, walk = _scan(db, ids)
    assert walk.ok and len(decided) == 6
    assert _verdict(stack).ok


def test_shifting_bytes_between_json_columns_is_named(log):
    """The concatenation of the columns can stay byte for byte what was hashed while the
    columns themselves change: here the end of ``explanation`` moves into ``inputs``. Each
    column then holds text that is not JSON at all; the separator check refuses the fast
    path and the exact path cannot decode the row. (PostgreSQL's json type refuses such
    text outright, so this is SQLite's case.)"""
    stack, db, decision_log, ids, engine = log
    if db.backend != "sqlite":
        pytest.skip("PostgreSQL's json type refuses text that is not JSON")
    decision_log.submit([
        _record(ids),
        _record(ids, explanation={"a": 1, "inputs": 2}, inputs={"k": "v"}),
        _record(ids),
    ])
    assert stack.cora.audit.verify().ok  # the legitimate nested "inputs" key verifies
    _set_raw(engine, 2, "explanation", '{"a":1')
    _set_raw(engine, 2, "inputs", '2},"inputs":{"k":"v"}')
    with db.read() as s:  # the tamper keeps the assembled bytes identical ...
        query = chains.fast_query(P, db.backend, ("deployment_id", ids[0]))
        row = [r for r in chains.chain_rows(s, query, None) if r[1] == 2][0]
        body = query.plan.exact_floats(row[4:])
    assert b'"explanation":{"a":1,"inputs":2},"inputs":{"k":"v"},"latency' in body
    bad = _verdict(stack)  # ... and is named all the same
    assert not bad.ok and bad.first_bad_seq == 2 and "contents changed" in bad.problem


# --- a chain split across processes gives the verdict of one walk ----------------------------

def _tamper(engine, kind, n):
    with engine.begin() as conn:
        if kind == "edit-first-range":
            conn.execute(update(P).where(P.c.seq == 2).values(subject_id="mallory"))
        elif kind == "edit-last-range":
            conn.execute(update(P).where(P.c.seq == n - 1).values(latency_ms=99.0))
        elif kind == "delete-at-boundary":
            conn.execute(delete(P).where(P.c.seq == n // 2))
        elif kind == "delete-newest":
            conn.execute(delete(P).where(P.c.seq == n))
        elif kind == "delete-tail-of-first-range":
            conn.execute(delete(P).where(P.c.seq > n // 2 - 2))
        elif kind == "swap":
            conn.execute(update(P).where(P.c.seq == 3).values(seq=-3))
            conn.execute(update(P).where(P.c.seq == n - 2).values(seq=3))
            conn.execute(update(P).where(P.c.seq == -3).values(seq=n - 2))
        elif kind == "head":
            conn.execute(update(HEADS).where(HEADS.c.chain == CHAIN).values(hash="f" * 64))


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
@pytest.mark.parametrize("kind", ["none", "edit-first-range", "edit-last-range",
                                  "delete-at-boundary", "delete-newest",
                                  "delete-tail-of-first-range", "swap", "head"])
def test_parallel_ranges_give_the_verdict_of_one_walk(log, monkeypatch, kind, native):
    stack, db, decision_log, ids, engine = log
    if not native:  # the Python scans alone, here and in the workers (no compiler at install)
        if db.backend != "sqlite":
            pytest.skip("the native scanner reads SQLite files only")
        monkeypatch.setattr(chain_scan, "native", None)
        monkeypatch.setenv("NEXML_NATIVE_SCAN", "0")
    n = 24
    decision_log.submit([_record(ids, subject_id=str(i)) for i in range(n)])
    _tamper(engine, kind, n)
    monkeypatch.setattr(chains, "PARALLEL_FROM", 10**9)
    one_walk = _verdict(stack)
    monkeypatch.setattr(chains, "PARALLEL_FROM", 10)
    monkeypatch.setattr(chains, "PROCESSES", 3)  # three ranges, two of them in workers
    workers = []

    class Recorded(chains._Worker):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            workers.append(self)

    class RecordedThread(chains._Thread):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            workers.append(self)

    monkeypatch.setattr(chains, "_Worker", Recorded)
    monkeypatch.setattr(chains, "_Thread", RecordedThread)
    split = _verdict(stack)
    assert split == one_walk
    assert split.ok is (kind == "none")
    # On SQLite a worker process scans its range without SQLAlchemy and answers from the scan
    # when every record there is proven; a record it cannot prove sends the range to the full
    # walk. On PostgreSQL threads walk the ranges, each on a connection of its own.
    walked = [w.walked for w in workers if w.walked is not None]
    assert walked, "no worker answered"
    if db.backend != "sqlite":
        assert walked == ["thread", "thread"]
    elif kind in ("none", "edit-last-range", "delete-newest", "head"):
        assert set(walked) == {"scan"}
    elif kind == "edit-first-range":
        assert walked[0] == "full"


def _split_in_threads(log, monkeypatch, processes):
    """24 decisions, verified in ``processes`` ranges (threads walk all but the last)."""
    stack, db, decision_log, ids, engine = log
    if db.backend != "postgresql":
        pytest.skip("threads walk the ranges on PostgreSQL")
    decision_log.submit([_record(ids, subject_id=str(i)) for i in range(24)])
    monkeypatch.setattr(chains, "PARALLEL_FROM", 10)
    monkeypatch.setattr(chains, "PROCESSES", processes)
    return stack, engine


def test_a_range_that_fails_in_its_thread_is_an_error_not_a_verdict(log, monkeypatch):
    """PostgreSQL: a range whose thread loses its connection makes verify raise, naming the
    failure, rather than report the chain as verified (or as broken) without that range."""
    stack, _ = _split_in_threads(log, monkeypatch, 3)
    real = chains.walk_range

    def walk_range(s, model, where, start, until):
        if threading.current_thread() is not threading.main_thread():
            raise OperationalError("FETCH", {}, Exception("server closed the connection"))
        return real(s, model, where, start, until)

    monkeypatch.setattr(chains, "walk_range", walk_range)
    with pytest.raises(NexmlError, match="audit verification of a range failed: .*server closed"):
        stack.cora.audit.verify()


def test_a_failing_parent_range_cancels_the_threads_running_queries(log, monkeypatch):
    """PostgreSQL: when the caller's own range fails, the query a range's thread is running
    is cancelled on the server (not left to run to its end), and the caller's error is the
    one raised."""
    stack, engine = _split_in_threads(log, monkeypatch, 2)
    marker = f"nexml-cancel-{uuid.uuid4().hex}"
    seen = []
    real = chains.walk_range

    def walk_range(s, model, where, start, until):
        if model is not t.PredictionRecord:  # the event chain: verified as it is
            return real(s, model, where, start, until)
        if threading.current_thread() is not threading.main_thread():
            try:  # a range whose query would run for a minute
                s.execute(text(f"SELECT pg_sleep(60) /* {marker} */"))
            except Exception as exc:
                seen.append(exc)
                raise
            return real(s, model, where, start, until)  # not cancelled: the test fails
        with engine.connect() as conn:  # the caller's range fails once that query runs
            while not conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                     "AND query LIKE :q AND query NOT LIKE '%pg_stat_activity%'"),
                {"q": f"%{marker}%"},
            ).scalar():
                conn.rollback()
        raise RuntimeError("the caller's range failed")

    monkeypatch.setattr(chains, "walk_range", walk_range)
    with pytest.raises(RuntimeError, match="the caller's range failed"):
        stack.cora.audit.verify()
    assert len(seen) == 1 and "canceling statement" in str(seen[0])


def test_a_value_of_the_wrong_storage_type_is_named_not_a_crash(chain):
    """SQLite stores any type in any column: a BLOB where a text was (the fast query cannot
    spell it and the exact path takes over), a text where a float, an integer or a JSON text
    was (texts that, spelt raw, would hold a separator), another time in another spelling.
    Each is named, the earliest first."""
    stack, db, engine, _ = chain
    if db.backend != "sqlite":
        pytest.skip("PostgreSQL's columns hold their declared type only")
    edits = [
        (6, "caller = CAST('x' AS BLOB)"),
        (5, "confidence = ',\"inputs\":'"),
        (4, "model_version_id = '1,\"output\":{}'"),
        (3, "output = 7"),
        (2, "at = '1999-12-31 23:59:59'"),
    ]
    for seq, change in edits:
        with engine.begin() as conn:
            conn.execute(text(f"UPDATE prediction_records SET {change} WHERE seq = {seq}"))
        bad = _verdict(stack)
        assert not bad.ok and bad.first_bad_seq == seq and "contents changed" in bad.problem


# --- the native scanner: an accelerator in front of the Python paths (SQLite) ----------------

def test_the_native_scanner_is_built():
    """scripts/setup-test.sh installs with NEXML_REQUIRE_NATIVE=1; this fails if a build ever
    dropped the scanner unnoticed (then every SQLite test below ran the Python paths only)."""
    assert chain_scan.native is not None
    assert chains.native_query(P, None) is not None


def test_the_verification_says_when_sqlite_went_without_the_scanner(log, monkeypatch):
    """The note rides on the Workspace's result, for every surface to show; never a verdict."""
    stack, db, decision_log, ids, _ = log
    decision_log.submit([_record(ids)])
    assert stack.cora.audit.verify().note is None
    monkeypatch.setattr(chain_scan, "native", None)
    without = stack.cora.audit.verify()
    assert without.ok
    if db.backend == "sqlite":
        assert without.note.startswith("the native chain scanner is off;")
    else:  # PostgreSQL hashes on the server: no scanner to miss
        assert without.note is None


@pytest.fixture
def native_calls(monkeypatch):
    """Each native scan of the decision chain in this process: (records proven, stop)."""
    calls = []
    real = chain_scan.native

    class Counting:
        ScanError = real.ScanError

        @staticmethod
        def scan(*args):
            result = real.scan(*args)
            if " FROM prediction_records " in args[1]:
                calls.append((result[2], result[3]))
            return result

    monkeypatch.setattr(chain_scan, "native", Counting)
    return calls


def test_native_scan_proves_a_clean_chain_alone(log, native_calls):
    stack, db, decision_log, ids, _ = log
    if db.backend != "sqlite":
        pytest.skip("the native scanner reads SQLite files")
    decision_log.submit([_record(ids, subject_id=str(i)) for i in range(7)])
    assert _verdict(stack).ok
    assert native_calls == [(7, None)]  # the whole chain, no Python scan after it


def test_native_scan_stops_at_a_row_it_cannot_prove_and_python_decides_the_rest(
    chain, native_calls
):
    """Row 2 holds equal JSON in another formatting: the scanner proves row 1 and stops; the
    Python scan proves row 2 by the exact path and rows 3 to 6 by its own fast path."""
    stack, db, engine, ids = chain
    if db.backend != "sqlite":
        pytest.skip("the native scanner reads SQLite files")
    _set_raw(engine, 2, "inputs", '{ "purpose": "radio/TV", "credit_amount": 1169, '
                                  '"city": "M\\u00fcnchen" }')
    native_calls.clear()
    verdict = _verdict(stack)
    assert verdict.ok and verdict.count == 6
    assert native_calls == [(1, ("row",))]


def test_native_scan_names_a_broken_link_as_python_does(chain, native_calls):
    stack, db, engine, _ = chain
    if db.backend != "sqlite":
        pytest.skip("the native scanner reads SQLite files")
    with engine.begin() as conn:
        conn.execute(delete(P).where(P.c.seq == 4))
    native_calls.clear()
    bad = _verdict(stack)
    assert native_calls == [(3, ("link", 5, native_calls[0][1][2]))]
    assert (bad.ok, bad.first_bad_seq, bad.count) == (False, 4, 3)
    assert bad.problem == "record 4 is missing (deleted); found record 5 in its place"


def test_native_scan_that_cannot_open_its_file_leaves_the_walk_to_python(tmp_path):
    query = chains.native_query(P, None)
    walk = Walk()
    uri = f"file:{tmp_path / 'absent.db'}?mode=ro"
    assert chain_scan.native_walk(uri, query, walk, None, 10) is False
    assert (walk.expected, walk.last, walk.count, walk.ok) == (1, GENESIS, 0, True)


def _move_first_to_zero(engine):
    with engine.begin() as conn:
        conn.execute(update(P).where(P.c.seq == 1).values(seq=0))


def _rewrite_prev_hash(engine):
    with engine.begin() as conn:
        conn.execute(update(P).where(P.c.seq == 4).values(prev_hash="f" * 64))


def _rewrite_hash(engine):
    with engine.begin() as conn:
        conn.execute(update(P).where(P.c.seq == 3).values(hash="0" * 64))


def _edit_fifth(engine):
    with engine.begin() as conn:
        conn.execute(update(P).where(P.c.seq == 5).values(confidence=0.5))


@pytest.mark.parametrize("tamper", [_move_first_to_zero, _rewrite_prev_hash, _rewrite_hash,
                                    _edit_fifth])
def test_native_verdicts_are_the_python_scans_verdicts(chain, monkeypatch, tamper):
    """With the scanner first or without it, the verdict, the first bad record, the count and
    the message are the same."""
    stack, db, engine, _ = chain
    if db.backend != "sqlite":
        pytest.skip("the native scanner reads SQLite files")
    tamper(engine)
    native = _verdict(stack)
    monkeypatch.setattr(chain_scan, "native", None)
    monkeypatch.setenv("NEXML_NATIVE_SCAN", "0")
    assert _verdict(stack) == native
    assert not native.ok
