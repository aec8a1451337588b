"""Hash chains in storage: what a record's hash covers, and taking one's turn at a chain's end."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, String, func, select, text
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session

from ..errors import NexmlError
from ..governance.audit import (
    CHANGED,
    GENESIS,
    RowPlan,
    VerifyResult,
    Walk,
    record_hash,
    scan_rows,
)
from . import chain_scan
from . import tables as t
from .chain_scan import LOWER, native_walk, range_statement
from .database import sqlite_uri


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


# --- fast verification: the canonical bytes of each record, assembled by the database ----------
#
# See governance/audit.py ("fast verification of raw stored rows") for why this is sound. Here:
# the SQL that turns each hashed column into its canonical-JSON token, per backend. Each token
# expression yields NULL for a stored value it cannot vouch for (another storage type, a time
# outside the one stored format, ...); such a row is assembled into nothing and decided by the
# exact path, as is any row whose assembled bytes do not hash to its stored hash.

#: Chains with at least this many records are verified by several processes, each walking its
#: own range of sequence numbers: ``PROCESSES`` of them, or one per CPU (at most four).
PARALLEL_FROM = 200_000
PROCESSES: int | None = None
_FETCH = 2_000


def hashed_columns(table: Any) -> list[Any]:
    """The columns a record's hash covers, in canonical (sorted) key order."""
    return sorted(
        (c for c in table.columns if c.name not in _NOT_HASHED), key=lambda c: c.name
    )


def _kind(column: Any) -> str | None:
    kinds = (
        (Boolean, "bool"),
        (JSON, "json"),
        (DateTime, "time"),
        (Float, "float"),
        (Integer, "int"),
        (String, "text"),
    )
    return next((kind for cls, kind in kinds if isinstance(column.type, cls)), None)


def _keys(columns: list[Any], kinds: list[str | None]) -> tuple[list[str], list[bytes]]:
    """Each column's `{"name":` or `,"name":` in the canonical text, and the separators: the
    keys that follow a JSON column (governance/audit.py: each must occur once)."""
    keys = [("{" if i == 0 else ",") + json.dumps(c.name) + ":" for i, c in enumerate(columns)]
    separators = [keys[i].encode() for i in range(1, len(keys)) if kinds[i - 1] == "json"]
    return keys, separators


def _sqlite_token(kind: str, c: str) -> str:
    """SQLite: the token as UTF-8 text (cast to BLOB by the caller), NULL when unsure.

    Each token is canonical JSON's spelling of a value of the column's own storage type, or
    NULL; none can hold the two characters `,"` (governance/audit.py says why that matters):
    SQLite keeps any type in any column, so each stored type is checked.
    """
    if kind == "text":
        # json_quote escapes exactly as json.dumps(ensure_ascii=False) and gives null for
        # NULL; a number stored here comes out unquoted, never equal to a string's token (a
        # BLOB makes the query fail: walk_range then takes the exact path).
        return f"json_quote({c})"
    if kind == "int":
        return f"CASE typeof({c}) WHEN 'integer' THEN {c} WHEN 'null' THEN 'null' END"
    if kind == "bool":
        return (
            f"CASE WHEN {c} IS NULL THEN 'null' WHEN typeof({c}) = 'integer' THEN "
            f"CASE {c} WHEN 1 THEN 'true' WHEN 0 THEN 'false' END END"
        )
    if kind == "float":  # formatted in Python; anything but a REAL or NULL fails there
        return f"CASE typeof({c}) WHEN 'real' THEN {c} WHEN 'null' THEN NULL ELSE X'' END"
    if kind == "time":
        # SQLAlchemy stores 'YYYY-MM-DD HH:MM:SS.ffffff': 26 characters, a space at the 11th.
        # Any other text yields a token no canonical time equals (or NULL), and none with a
        # double quote passes, so no token holds `,"`.
        return (
            f"CASE WHEN typeof({c}) = 'text' AND length({c}) = 26 AND substr({c}, 11, 1) = ' ' "
            f"AND instr({c}, '\"') = 0 THEN '\"' || replace({c}, ' ', 'T') || 'Z\"' "
            f"WHEN {c} IS NULL THEN 'null' END"
        )
    assert kind == "json"  # the stored text itself
    return f"CASE typeof({c}) WHEN 'text' THEN {c} WHEN 'null' THEN 'null' END"


def _pg_float_token(c: str) -> str:
    """PostgreSQL's spelling of a float8 as canonical JSON's, where the server hashes.

    float8out's shortest exact digits (extra_float_digits > 0, set by chain_rows) are the
    digits repr() gives for |x| < 1e15, but an integral value lacks repr's ".0"; from 1e15 on
    the spelling may differ (repr stays positional below 1e16, and Ryu may choose other
    shortest digits for integers beyond 2**53): such a record does not hash and the exact path
    decides it. The text reads back as exactly the stored float8, so a token that hashes is the
    stored value's canonical spelling. NaN and the infinities are spelt as json.dumps does.
    """
    return (
        f"CASE WHEN {c} IS NULL THEN 'null' WHEN {c} = trunc({c}) AND abs({c}) < 1e15 "
        f"THEN {c}::text || '.0' ELSE {c}::text END"
    )


def _pg_token(kind: str, c: str) -> str:
    """PostgreSQL: the token as text, NULL when unsure."""
    if kind == "text":  # to_json escapes exactly as json.dumps(ensure_ascii=False)
        return f"coalesce(to_json({c})::text, 'null')"
    if kind == "int":
        return f"coalesce({c}::text, 'null')"
    if kind == "float":  # the float8 itself, formatted in Python
        return c
    if kind == "bool":
        return f"CASE WHEN {c} THEN 'true' WHEN NOT {c} THEN 'false' ELSE 'null' END"
    if kind == "time":  # four-digit AD years only: to_char drops the era
        return (
            f"CASE WHEN {c} IS NULL THEN 'null' WHEN {c} >= '1000-01-01' AND "
            f"{c} < '10000-01-01' THEN "
            f"'\"' || to_char({c}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') || '\"' END"
        )
    assert kind == "json"  # json keeps its input text verbatim
    return f"coalesce({c}::text, 'null')"


@dataclass(frozen=True)
class FastQuery:
    """A chain's raw rows, ``(id, seq, prev_hash, hash, *slots)`` in seq order, and the plan
    that assembles each into its record's canonical bytes."""

    backend: str
    sql: str  # with chain_scan.LOWER where a range's "AND seq >= n" goes
    plan: RowPlan

    def statement(self, start: int | None) -> str:
        return range_statement(self.sql, start)


def fast_query(
    table: Any, backend: str, where: tuple[str, int] | None = None, *, digest: bool = False
) -> FastQuery | None:
    """The fast query of ``table``'s rows (those whose column ``where[0]`` equals the integer
    ``where[1]``), or None when a hashed column has a type the fast path does not know (then
    only the exact path verifies). The database concatenates each run of keys and tokens
    between float columns into one slot; floats are left to Python.

    ``digest`` (PostgreSQL only, for tables whose JSON columns the json type enforces: no
    separators to count): the slot is SHA-256 of prev_hash and the assembled bytes, computed
    by the server (``pg_catalog.sha256``, not a same-named function on the search path) with
    floats spelt by the server too, so 2 KB records need not cross the connection to be hashed
    (see ``RowPlan``).
    """
    if backend not in ("sqlite", "postgresql"):
        return None
    columns = hashed_columns(table)
    kinds = [_kind(c) for c in columns]
    if None in kinds:
        return None
    token = _pg_token if backend == "postgresql" else _sqlite_token
    slots: list[str] = []  # SQL of each slot
    floats: list[int] = []
    template: list[str] = []
    # SQL of keys and tokens not yet in a slot; with digest, the slot is hashed with the
    # stored prev_hash before it, as the record's hash is (a NULL prev_hash, which concat()
    # would drop, fails the link check before the digest is looked at).
    run: list[str] = ["prev_hash"] if digest else []
    keys, separators = _keys(columns, kinds)

    def flush() -> None:
        if run:
            assembled = _as_bytes(backend, _concat(backend, run))
            slots.append(f"pg_catalog.sha256({assembled})" if digest else assembled)
            template.append("%b")
            run.clear()

    for column, kind, key in zip(columns, kinds, keys, strict=True):
        name = f'"{column.name}"'
        run.append(_sql_text(key))
        if kind == "float" and digest:
            run.append(_pg_float_token(name))
        elif kind == "float":  # formatted in Python: no SQL spells a float as repr() does
            flush()
            floats.append(len(slots))
            slots.append(token(kind, name))
            template.append("%r")
        else:
            run.append(token(kind, name))
    run.append("'}'")
    flush()
    if digest:
        assert backend == "postgresql" and len(slots) == 1
        separators = []
    plan = RowPlan("".join(template).encode(), tuple(floats), tuple(separators), digest)
    return FastQuery(backend, _select(table, slots, where), plan)


def _select(table: Any, columns: list[str], where: tuple[str, int] | None) -> str:
    """``SELECT id, seq, prev_hash, hash, *columns`` of a chain's rows in seq order, with
    ``LOWER`` where a range's lower bound goes."""
    condition = "1 = 1" if where is None else f'"{where[0]}" = {int(where[1])}'
    # Only the table's own names and an integer go into this SQL.
    sql = f"SELECT id, seq, prev_hash, hash, {', '.join(columns)} FROM {table.name} "  # noqa: S608
    return sql + f"WHERE {condition}{LOWER} ORDER BY seq"


#: The native scanner's letter for each kind of column (``_chainscan.c``).
_NATIVE_KINDS = {"text": "t", "int": "i", "bool": "b", "float": "f", "time": "d", "json": "j"}


def native_query(table: Any, where: tuple[str, int] | None) -> dict[str, Any] | None:
    """What the native scanner needs to walk ``table``'s chain on SQLite (``chain_scan.
    native_walk``): the raw hashed columns in key order, their kinds and keys, and the
    separators; None when the scanner is not built or a column has a type it does not know."""
    if chain_scan.native is None:
        return None
    columns = hashed_columns(table)
    kinds = [_kind(c) for c in columns]
    if None in kinds:
        return None
    keys, separators = _keys(columns, kinds)
    return {
        "sql": _select(table, [f'"{c.name}"' for c in columns], where),
        "kinds": "".join(_NATIVE_KINDS[kind] for kind in kinds if kind is not None),
        "keys": keys,
        "separators": [separator.decode() for separator in separators],
    }


def _native_uri(s: Session) -> str | None:
    """The read-only URI of the session's SQLite database file (None: not SQLite, or in
    memory), which the native scanner opens with a connection of its own."""
    bind = s.get_bind()
    database = bind.url.database
    if bind.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return sqlite_uri(str(Path(database).resolve()), "ro")


def _concat(backend: str, parts: list[str]) -> str:
    """One text of ``parts``. PostgreSQL's concat() builds it at once (|| copies the growing
    text at every step); it drops a NULL token, which leaves a key followed by `,` or `}`
    where canonical JSON always has a token: such a run never hashes, as a NULL run would not."""
    if backend == "postgresql":
        return f"concat({', '.join(parts)})"
    return " || ".join(parts)


def _as_bytes(backend: str, sql: str) -> str:
    """UTF-8 bytes of a text expression, so Python neither decodes nor re-encodes it."""
    if backend == "postgresql":
        return f"convert_to({sql}, 'UTF8')"
    return f"CAST({sql} AS BLOB)"


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def chain_rows(s: Session, query: FastQuery, start: int | None) -> Iterator[tuple[Any, ...]]:
    """Stream the fast query's rows (from seq ``start`` on) inside the session's transaction."""
    dbapi = s.connection().connection.dbapi_connection
    assert dbapi is not None
    if query.backend == "postgresql":  # a server-side cursor: a chain need not fit in memory
        with dbapi.cursor() as setting:
            # For this transaction (which the cursor needs: it is declared WITHOUT HOLD).
            # Float tokens need float8out's shortest exact digits (_pg_float_token). A FETCH is
            # gathered in memory up to work_mem before it is sent, and written to a temporary
            # file beyond it (4 MB by default: 2,000 rows of 2 KB): a fifth of the server's
            # time went there.
            setting.execute(
                "SELECT pg_catalog.set_config('extra_float_digits', '1', true), "
                "pg_catalog.set_config('work_mem', '64MB', true)"
            )
        cursor = dbapi.cursor(name="nexml_chain_scan", binary=True)
        cursor.itersize = _FETCH
    else:
        cursor = dbapi.cursor()
    try:
        cursor.execute(query.statement(start))
        while rows := cursor.fetchmany(_FETCH):
            yield from rows
    finally:
        cursor.close()


def exact_record(s: Session, model: type[t.Event] | type[t.PredictionRecord], row_id: Any):
    """The record of row ``row_id`` as the ORM decodes it (the exact path), or None when the
    stored row cannot be decoded at all (not JSON, a time out of range, ...)."""
    try:
        row = s.get(model, row_id)
        return None if row is None else chain_record(row)
    except (ValueError, TypeError, OverflowError, DataError):
        return None


def walk_range(
    s: Session,
    model: type[t.Event] | type[t.PredictionRecord],
    where: tuple[str, int] | None,
    start: int | None,
    until: int | None,
) -> tuple[Walk, bool]:
    """Verify records ``start``..``until`` of a chain (None: from its first, to its last
    stored record). Returns the walk and whether it reached ``until`` (False: the stored
    records ran out first, or the walk failed)."""
    backend = s.get_bind().dialect.name
    # On PostgreSQL every JSON column's text is valid JSON when the json type holds it, so
    # the assembled record parses one way only: no column boundary can shift, no separators
    # need counting, and the server can hash the assembled bytes itself.
    enforced = backend == "postgresql" and _json_enforced(s, model.__table__)
    query = fast_query(model.__table__, backend, where, digest=enforced)
    if start is None or start <= 1:
        walk = Walk()
    else:
        before = select(model.hash).where(model.seq == start - 1)
        if where is not None:
            before = before.where(model.__table__.c[where[0]] == where[1])
        walk = Walk(start, s.scalar(before) or "(record missing)")
    if query is not None:
        fast = Walk(walk.expected, walk.last)
        resume = start
        uri = _native_uri(s)
        scanner = native_query(model.__table__, where) if uri else None
        if uri and scanner:
            # Its own connection, whose snapshot may hold newer records: it stops at the
            # last record this transaction sees (or ``until``); the rest is read here.
            top = until
            if top is None:
                last_seq = select(func.max(model.seq))
                if where is not None:
                    last_seq = last_seq.where(model.__table__.c[where[0]] == where[1])
                top = s.scalar(last_seq)
            if top is not None and native_walk(uri, scanner, fast, start, top):
                return fast, fast.ok and until is not None and fast.expected > until
            if fast.count:
                resume = fast.expected
        try:
            scan_rows(
                chain_rows(s, query, resume),
                query.plan,
                lambda row_id: exact_record(s, model, row_id),
                fast,
                until,
            )
        except sqlite3.Error:  # a value the fast query cannot spell (a BLOB in a text column)
            query = None
        else:
            walk = fast
    if query is None:  # the exact path only
        rows = select(model).order_by(model.seq)
        if where is not None:
            rows = rows.where(model.__table__.c[where[0]] == where[1])
        if start is not None:
            rows = rows.where(model.seq >= start)
        for row in s.scalars(rows.execution_options(yield_per=1000)):
            if until is not None and walk.expected > until:
                break
            if not walk.link(row.seq, row.prev_hash):
                break
            if not _exact_ok(walk.last, chain_record(row), row.hash):
                walk.fail(row.seq, CHANGED)
                break
            walk.step(row.hash)
    return walk, walk.ok and until is not None and walk.expected > until


def _exact_ok(prev: str, record: dict[str, Any], hash_: str) -> bool:
    try:
        return record_hash(prev, record) == hash_
    except (TypeError, ValueError):  # a stored value no canonical JSON can hold
        return False


def _json_enforced(s: Session, table: Any) -> bool:
    """PostgreSQL: whether every JSON column of ``table`` really is of type json or jsonb."""
    wanted = {c.name for c in table.columns if isinstance(c.type, JSON)}
    # The table the fast query reads: its name resolved by the search path, as there. (The
    # catalog directly: information_schema.columns took several milliseconds a chain.)
    found = s.execute(
        text(
            "SELECT a.attname, t.typname FROM pg_catalog.pg_attribute a "
            "JOIN pg_catalog.pg_type t ON t.oid = a.atttypid "
            "WHERE a.attrelid = pg_catalog.to_regclass(:table) AND a.attnum > 0 "
            "AND NOT a.attisdropped"
        ),
        {"table": table.name},
    )
    types = {name: kind for name, kind in found}
    return all(types.get(name) in ("json", "jsonb") for name in wanted)


def verify_chain(
    s: Session,
    url: str,
    chain: str,
    model: type[t.Event] | type[t.PredictionRecord],
    where: tuple[str, int] | None,
    head: tuple[int, str] | None,
) -> VerifyResult:
    """Verify one chain; long chains are split into consecutive ranges walked in parallel.

    Workers walk all ranges but the last (processes on SQLite; threads on PostgreSQL, whose
    server does most of the work), which is walked here, in the caller's transaction, so the
    head and the end of the chain (with anything stored beyond the head) are read in one
    snapshot; the earlier ranges hold committed records only, which nothing legitimate
    changes. The verdict is the one a single walk would give: the first failing range names
    the first bad record, and a range whose records run out ends the chain there.
    """
    size = head[0] if head is not None else 0
    processes = PROCESSES or min(4, len(os.sched_getaffinity(0)))
    if size < PARALLEL_FROM or processes < 2:
        walk, _ = walk_range(s, model, where, None, None)
        return walk.result(chain, head)
    bounds = [size * i // processes for i in range(processes + 1)]
    starts = [None if i == 0 else bounds[i] + 1 for i in range(processes - 1)]
    workers: list[_Worker | _Thread]
    if s.get_bind().dialect.name == "postgresql":
        workers = [
            _Thread(s.get_bind(), model, where, start, bounds[i + 1])
            for i, start in enumerate(starts)
        ]
    else:
        scan = _scan_request(s, model, where)
        workers = [
            _Worker(url, model.__name__, where, start, bounds[i + 1], scan)
            for i, start in enumerate(starts)
        ]
    try:
        last, _ = walk_range(s, model, where, bounds[-2] + 1, None)
        walks = [worker.result() for worker in workers]
    finally:
        for worker in workers:
            worker.stop()
    before = 0
    for walk, reached in walks:
        if not reached:
            return walk.result(chain, head, before)
        before += walk.count
    return last.result(chain, head, before)


def _scan_request(
    s: Session,
    model: type[t.Event] | type[t.PredictionRecord],
    where: tuple[str, int] | None,
) -> dict[str, Any] | None:
    """What a worker needs to scan its range of an SQLite chain without SQLAlchemy
    (``chain_scan.scan``): the database file, the fast query and its plan, the native
    scanner's query (None where it is not built), and the look-up of the hash before the
    range; None for other backends or when there is no fast query."""
    uri = _native_uri(s)
    query = fast_query(model.__table__, "sqlite", where) if uri else None
    if uri is None or query is None:
        return None
    table = model.__table__.name  # only the table's own names and an integer go into SQL
    before = f"SELECT hash FROM {table} WHERE seq = ?"  # noqa: S608
    if where is not None:
        before += f' AND "{where[0]}" = {int(where[1])}'
    plan = query.plan
    return {
        "uri": uri,
        "sql": query.sql,
        "native": native_query(model.__table__, where),
        "before": before,
        "plan": [
            plan.template.decode("latin-1"),
            list(plan.float_slots),
            [separator.decode("latin-1") for separator in plan.separators],
        ],
    }


class _Worker:
    """A range walked by ``python -m nexml_ext.store.chain_scan`` in a process of its own.

    A plain new interpreter, not multiprocessing: a forked child would share SQLite's lock
    state with this process, and multiprocessing's spawn re-imports the caller's main script.
    The request (with the database URL) goes through stdin, never the command line. ``scan``
    (SQLite) lets the worker scan its range before, and usually instead of, walking it with
    SQLAlchemy (``chain_scan``); ``walked`` says which one answered ("scan" or "full").
    """

    def __init__(
        self,
        url: str,
        model: str,
        where: tuple[str, int] | None,
        start: int | None,
        until: int,
        scan: dict[str, Any] | None = None,
    ) -> None:
        root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])
        self._process = subprocess.Popen(
            [sys.executable, "-m", "nexml_ext.store.chain_scan"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": path},
        )
        request = {
            "url": url, "model": model, "where": where, "start": start, "until": until,
            "scan": scan,
        }
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(request).encode())
        self._process.stdin.close()
        self._process.stdin = None  # sent: communicate() only reads
        self.walked: str | None = None

    def result(self) -> tuple[Walk, bool]:
        out, err = self._process.communicate()
        if self._process.returncode != 0:
            lines = err.decode(errors="replace").strip().splitlines() or ["no message"]
            raise NexmlError(f"audit verification worker failed: {lines[-1]}")
        answer = json.loads(out)
        self.walked = answer["walked"]
        walk = Walk(answer["expected"], answer["last"])
        walk.count = answer["count"]
        if answer["bad_seq"] is not None:
            walk.fail(answer["bad_seq"], answer["problem"])
        return walk, answer["reached"]

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()


class _Thread:
    """A range of a PostgreSQL chain walked by a thread of this process, in a transaction on
    a connection of its own. The server assembles and hashes each record; the thread mostly
    waits on its connection (the GIL is released there), and starting it costs neither a
    process nor an import of SQLAlchemy and the tables (0.6 s a worker process)."""

    def __init__(
        self,
        engine: Any,
        model: type[t.Event] | type[t.PredictionRecord],
        where: tuple[str, int] | None,
        start: int | None,
        until: int,
    ) -> None:
        self.walked: str | None = None
        self._answer: tuple[Walk, bool] | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._dbapi: Any = None
        self._stopped = False
        self._thread = threading.Thread(
            target=self._run, args=(engine, model, where, start, until), daemon=True
        )
        self._thread.start()

    def _run(self, engine: Any, model: Any, where: Any, start: int | None, until: int) -> None:
        try:
            with Session(engine) as s:  # rolled back when it closes: a read
                dbapi = s.connection().connection.dbapi_connection
                with self._lock:
                    if self._stopped:
                        return
                    self._dbapi = dbapi
                self._answer = walk_range(s, model, where, start, until)
                self.walked = "thread"
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            self._error = exc

    def result(self) -> tuple[Walk, bool]:
        self._thread.join()
        if self._error is not None:
            raise NexmlError(
                f"audit verification of a range failed: {self._error}"
            ) from self._error
        assert self._answer is not None
        return self._answer

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self._thread.is_alive() and self._dbapi is not None:
                self._dbapi.cancel()  # its running query, if any: the caller gave up
        self._thread.join()


def walk_requested(request: dict[str, Any]) -> dict[str, Any]:
    """A worker's range walked with SQLAlchemy, exactly as :func:`walk_range` walks one here
    (``chain_scan`` calls it when its scan does not decide)."""
    from .chain_scan import answer
    from .database import Database

    db = Database(request["url"])
    try:
        with db.read() as s:
            where = tuple(request["where"]) if request["where"] else None
            walk, reached = walk_range(
                s, getattr(t, request["model"]), where, request["start"], request["until"]
            )
    finally:
        db.dispose()
    return answer(walk, reached)
