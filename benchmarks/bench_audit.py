"""What the audit chain costs: chained appends and verification, against plain SQLAlchemy.

Run:  python benchmarks/bench_audit.py [--events 500] [--pg-url URL]

For each backend (SQLite in WAL mode, and PostgreSQL if reachable) it times, in the same run:
  append  - N Workspace event appends, each its own write transaction: chain-head lock, canonical
            JSON, SHA-256 (ours), against N plain ORM inserts of the same rows, one transaction
            each, no chain (the peer: what any SQLAlchemy app pays to persist a row).
  verify  - `ws.audit.verify()` over the N records (ours), against loading the same rows with a
            plain SELECT into ORM objects (the peer: reading without checking); best of 7 each.
Ratios, not seconds, are the result: these machines are noisy.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, select, text

from nexml_ext.config import Settings
from nexml_ext.store import tables as t
from nexml_ext.workspace import Workspace

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _best(fn, repeat: int = 7) -> float:
    """Fastest of ``repeat`` timed calls (warm caches, least noise)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _bench(settings: Settings, n: int) -> dict[str, float]:
    ws, _ = Workspace.init(settings, "bench")
    try:
        start = time.perf_counter()
        for i in range(n):
            with ws._write() as s:
                ws._event(s, "bench.append", f"bench:{i}", index=i, note="benchmark row")
        ours_append = time.perf_counter() - start

        start = time.perf_counter()
        for i in range(n):
            with ws._db.write() as s:
                s.add(
                    t.Alert(
                        kind="bench",
                        severity="info",
                        subject_ref=f"bench:{i}",
                        message="benchmark row",
                        data={"index": i, "note": "benchmark row"},
                    )
                )
        peer_append = time.perf_counter() - start

        def plain_read() -> int:
            with ws._db.read() as s:
                return len(list(s.scalars(select(t.Event).order_by(t.Event.seq))))

        result = ws.audit.verify()
        assert result.ok, str(result)
        assert plain_read() == result.chains[0].count
        ours_verify = _best(ws.audit.verify)
        peer_verify = _best(plain_read)
    finally:
        ws.close()
    return {
        "append": ours_append / peer_append,
        "verify": ours_verify / peer_verify,
        "append_ms": 1000 * ours_append / n,
        "peer_append_ms": 1000 * peer_append / n,
        "verify_per_s": result.chains[0].count / ours_verify,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--pg-url", default=PG_URL)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        sqlite = Settings.from_env(
            home=home,
            database_url=f"sqlite:///{home / 'bench.db'}",
            artifact_root=str(home / "a"),
            token="",
        )
        rows.append(("SQLite (WAL)", _bench(sqlite, args.events)))
        engine = create_engine(args.pg_url)
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        try:
            with engine.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        except Exception as exc:  # noqa: BLE001 - PostgreSQL is optional for a benchmark run
            print(f"PostgreSQL skipped: {exc.__class__.__name__}")
        else:
            try:
                pg = Settings.from_env(
                    home=home / "pg",
                    database_url=f"{args.pg_url}?options=-csearch_path%3D{schema}",
                    artifact_root=str(home / "pg-a"),
                    token="",
                )
                rows.append(("PostgreSQL", _bench(pg, args.events)))
            finally:
                with engine.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                engine.dispose()
    print(
        f"machine: {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.system()}; events: {args.events}"
    )
    print(
        "| backend | append: ours / plain insert | ms per chained append | ms per plain insert "
        "| verify: ours / plain read | records verified per s |"
    )
    print("|---|---|---|---|---|---|")
    for name, r in rows:
        print(
            f"| {name} | {r['append']:.2f}x | {r['append_ms']:.2f} | {r['peer_append_ms']:.2f} "
            f"| {r['verify']:.2f}x | {r['verify_per_s']:,.0f} |"
        )


if __name__ == "__main__":
    main()
