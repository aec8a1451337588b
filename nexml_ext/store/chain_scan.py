"""The worker process of a chain verified in ranges (``python -m nexml_ext.store.chain_scan``).

Started by ``chains.verify_chain`` for every range but the last of an SQLite chain (on
PostgreSQL, where the server hashes, threads walk the ranges). It first scans its range with
nothing heavier than ``sqlite3`` and the chain format (``governance.audit``): the parent sends
the fast query of the range it built, the plan that assembles each row, and the database file.
That starts in about 0.03 s, where importing SQLAlchemy, the tables and Alembic took 0.6 s while
the parent was already walking its own range. Whatever the scan cannot prove by itself (a row
whose assembly does not hash, a value the query cannot spell, a file it cannot open) it does
not judge: the whole range is then walked again as before (``chains.walk_requested``), which
decides.

Where the native scanner is built (``_chainscan``, compiled from ``_chainscan.c`` at install),
``native_walk`` goes first, here and in the parent's own range (``chains.walk_range``): it reads
the raw columns, assembles and hashes each record in C, and stops at the first row it does not
prove or that does not follow; the Python scan above takes over from that row, so every verdict
and message is still the Python paths' own. ``NEXML_NATIVE_SCAN=0`` turns it off (benchmarks
compare both ways).
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from typing import Any

from ..governance.audit import RowPlan, Walk, scan_rows

try:
    from . import _chainscan as native
except ImportError:  # not compiled (no C compiler at install): the Python scans only
    native = None  # type: ignore[assignment]
_OFF: str | None = None  # why the scanner is not used, decided once here
if os.environ.get("NEXML_NATIVE_SCAN") == "0":
    _OFF = "off (NEXML_NATIVE_SCAN=0)"
elif native is None or getattr(native, "INTERFACE", None) != 1:  # or another version's build
    _OFF = (
        "not built in this install (or was built from another version); reinstall with gcc, "
        "libsqlite3-dev and libssl-dev present to build it"
    )
elif native.sqlite_version() != sqlite3.sqlite_version:  # not the SQLite sqlite3 uses here
    _OFF = f"built against SQLite {native.sqlite_version()}, not {sqlite3.sqlite_version}"
if _OFF is not None:
    native = None  # type: ignore[assignment]


def native_off() -> str | None:
    """Why SQLite chains are verified without the native scanner here (None: they are not)."""
    return None if native is not None else _OFF or "off"

_FETCH = 2_000

#: Where a range's lower bound (``AND seq >= n``) goes in a chain's scan queries.
LOWER = "/*lower*/"


def range_statement(sql: str, start: int | None) -> str:
    """A chain's scan query (``sql`` with ``LOWER``) for the records from seq ``start`` on."""
    return sql.replace(LOWER, "" if start is None else f" AND seq >= {int(start)}")


def native_walk(
    uri: str, query: dict[str, Any], walk: Walk, start: int | None, until: int
) -> bool:
    """Advance ``walk`` (a range's, from seq ``start``) with the native scanner as far as it
    proves, up to record ``until``; True when that decided the walk (a link that does not
    follow fails it), False when a Python scan must go on from ``walk.expected`` (the records
    ran out, a row it did not prove, or it could not scan at all)."""
    if native is None:
        return False
    try:
        expected, last, count, stop = native.scan(
            uri,
            range_statement(query["sql"], start),
            query["kinds"].encode("ascii"),
            tuple(key.encode() for key in query["keys"]),
            tuple(separator.encode() for separator in query["separators"]),
            walk.expected,
            walk.last,
            until,
        )
    except native.ScanError:
        return False
    walk.expected, walk.last, walk.count = expected, last, walk.count + count
    if stop is not None and stop[0] == "link":
        walk.link(stop[1], stop[2])  # names the problem
        return True
    return stop is None and walk.expected > until


class _Undecided(Exception):
    """A row the fast assembly does not prove: the full walk decides the range."""


def scan(request: dict[str, Any]) -> dict[str, Any] | None:
    """The answer for a range of an SQLite chain, or None when the full walk must decide."""
    fast = request.get("scan")
    if not fast:
        return None
    template, floats, separators = fast["plan"]
    plan = RowPlan(
        template.encode("latin-1"), tuple(floats), tuple(s.encode("latin-1") for s in separators)
    )
    start, until = request["start"], request["until"]
    try:
        # Read-only, never created; deferred BEGIN: the lookup and the scan share one snapshot.
        connection = sqlite3.connect(fast["uri"], uri=True, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        connection.execute("BEGIN")
        if start is None or start <= 1:
            walk = Walk()
        else:
            found = connection.execute(fast["before"], (start - 1,)).fetchone()
            walk = Walk(start, found[0] if found and found[0] else "(record missing)")
        if fast.get("native") and native_walk(fast["uri"], fast["native"], walk, start, until):
            return answer(walk, walk.ok and walk.expected > until)
        resume = walk.expected if walk.count else start
        cursor = connection.execute(range_statement(fast["sql"], resume))

        def rows():  # type: ignore[no-untyped-def]
            while batch := cursor.fetchmany(_FETCH):
                yield from batch

        scan_rows(rows(), plan, _undecided, walk, until)
    except (_Undecided, sqlite3.Error):
        return None
    finally:
        connection.close()
    return answer(walk, walk.ok and walk.expected > until)


def _undecided(row_id: Any) -> None:
    raise _Undecided(row_id)


def answer(walk: Walk, reached: bool) -> dict[str, Any]:
    """What a worker writes back: the walk as far as it verified."""
    return {
        "expected": walk.expected,
        "last": walk.last,
        "count": walk.count,
        "bad_seq": walk.bad_seq,
        "problem": walk.problem,
        "reached": reached,
    }


def main() -> None:
    request = json.loads(sys.stdin.read())
    result = scan(request)
    if result is None:
        from .chains import walk_requested  # SQLAlchemy and the tables: only when needed

        result = walk_requested(request)
        result["walked"] = "full"
    else:
        result["walked"] = "scan"
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    main()
