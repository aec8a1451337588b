"""Verifying a decision chain and finding one subject's decisions among a million.

Run:  python benchmarks/bench_decisions.py [--decisions 1000000] [--lookups 50] [--pg-url URL]
                                           [--backends sqlite,postgresql]

For each backend (SQLite in WAL mode, and PostgreSQL if reachable: a schema created and dropped
in database ``test``) it builds a deployment whose chain holds N realistic prediction records —
~20 inputs, output, a 20-feature explanation, reason codes for declined rows — hashed with the
platform's own ``record_hash`` and written with bulk executemany in a few transactions, chain
head updated. Then, in the same run:

  verify  - ``ws.audit.verify()`` over the whole store (ours: records per second), against a
            plain SELECT of the same rows' columns through the DBAPI cursor (the peer: reading
            without checking); best of 3 each. On SQLite also with the native chain scanner
            turned off (``NEXML_NATIVE_SCAN=0``: the Python scans alone, as on a machine
            where it was not compiled).
  find    - ``ws.find_decisions(subject_id=X)`` for random subjects by a compliance officer
            (ours: the query, each found record's chain link checked, the audited-read event
            committed), against the plain indexed SELECT of that subject's rows (the peer);
            median and p95 over ``--lookups`` look-ups.
Ratios, not seconds, are the result: these machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert, text

from nexml_ext.config import Settings
from nexml_ext.governance.audit import GENESIS, canonical_json, record_hash
from nexml_ext.store import chain_scan
from nexml_ext.store import tables as t
from nexml_ext.store.decision_log import chain_name
from nexml_ext.workspace import Workspace

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEPLOYMENT = "credit-eu"
FEATURES = [
    ("checking_account", ["little", "moderate", "rich", "not_known"]),
    ("saving_accounts", ["little", "moderate", "quite rich", "rich", "not_known"]),
    ("housing", ["own", "rent", "free"]),
    ("purpose", ["radio/TV", "car", "business", "education", "furniture/equipment"]),
    ("employment", ["< 1 year", "1-4 years", "4-7 years", ">= 7 years", "unemployed"]),
    ("city", ["München", "Köln", "Zürich", "Łódź", "São Paulo", "Montréal"]),
    ("other_debtors", ["none", "co-applicant", "guarantor"]),
]
INTEGERS = ["credit_amount", "duration", "job", "existing_credits", "dependents", "residence",
            "installment_rate", "months_at_address"]
FLOATS = ["debt_ratio", "income_k", "utilisation", "bureau_score", "ltv"]
BATCH = 20_000
JSON_COLUMNS = {"inputs", "output", "explanation", "reasons", "outcome"}


def _record(rng: random.Random, i: int, at: datetime, deployment_id: int, version_id: int,
            subjects: int) -> dict:
    inputs: dict[str, object] = {name: rng.choice(levels) for name, levels in FEATURES}
    inputs.update({name: rng.randint(0, 20_000) for name in INTEGERS})
    inputs.update({name: round(rng.uniform(0, 3), rng.randint(1, 6)) for name in FLOATS})
    score = rng.random()
    approved = score >= 0.5
    contributions = {k: (rng.random() - 0.5) * 0.6 for k in inputs}
    reasons = [] if approved else [
        {"feature": k, "reason": f"{k.replace('_', ' ')} weighs against approval",
         "contribution": v}
        for k, v in sorted(contributions.items(), key=lambda kv: kv[1])[:3]
    ]
    return {
        "deployment_id": deployment_id,
        "seq": i,
        "request_id": uuid.UUID(int=rng.getrandbits(128)).hex,
        "subject_id": str(rng.randrange(subjects)),
        "at": at,
        "route": "retail",
        "model_version_id": version_id,
        "inputs": inputs,
        "output": {"prediction": int(approved), "score": score, "approved": approved,
                   "cutoff": 0.5},
        "confidence": max(score, 1 - score),
        "explanation": {"method": "tree_shap", "space": "margin", "base_value": -0.2,
                        "output": score * 4 - 2, "contributions": contributions},
        "reasons": reasons,
        "caller": "loan-origination",
        "latency_ms": rng.uniform(1, 9),
        "artifact_sha256": "ab" * 32,
        "rule": "default",
        "shadow": False,
    }


def build(ws: Workspace, n: int, seed: int = 0) -> tuple[int, list[str]]:
    """A deployment whose chain holds ``n`` valid records; returns its id and some subjects."""
    db = ws._db
    with db.write() as s:
        model = t.Model(name="credit", created_by="bench")
        version = t.ModelVersion(model=model, version=1, status="deployed", author="bench",
                                 artifact_uri="mem://credit", artifact_sha256="ab" * 32)
        s.add_all([model, version])
        s.flush()
        dep = t.Deployment(name=DEPLOYMENT, model_id=model.id, model_version_id=version.id,
                           created_by="bench")
        s.add(dep)
        s.flush()
        deployment_id, version_id = dep.id, version.id
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, 8, 0, 0)
    subjects = max(1, n // 2)
    table = t.PredictionRecord.__table__
    hashed = [c.name for c in table.columns if c.name not in ("id", "prev_hash", "hash",
                                                              "outcome", "outcome_at")]
    prev = GENESIS
    seen: list[str] = []
    for first in range(1, n + 1, BATCH):
        rows = []
        for i in range(first, min(n, first + BATCH - 1) + 1):
            at = start + timedelta(microseconds=i * 1_731_013 + rng.randrange(1000))
            row = _record(rng, i, at, deployment_id, version_id, subjects)
            for column in ("inputs", "output", "explanation", "reasons"):
                # as the decision log stores them: exactly what is hashed
                row[column] = json.loads(canonical_json(row[column]))
            row["prev_hash"] = prev
            row["hash"] = prev = record_hash(prev, {k: row[k] for k in hashed})
            rows.append(row)
        seen.extend(r["subject_id"] for r in rows[:: max(1, len(rows) // 20)])
        with db.engine.begin() as conn:
            conn.execute(insert(table), rows)
    with db.engine.begin() as conn:
        conn.execute(insert(t.ChainHead.__table__).values(
            chain=chain_name(DEPLOYMENT), seq=n, hash=prev))
    return deployment_id, seen


def _plain_read(db, deployment_id: int) -> int:
    """The peer of verify: every column of the chain's rows through the DBAPI cursor, no
    checking, JSON columns as their stored text (a server-side cursor on PostgreSQL, as
    verify uses)."""
    with db.engine.connect() as conn:
        dbapi = conn.connection.dbapi_connection
        columns = [c.name for c in t.PredictionRecord.__table__.columns]
        if db.backend == "postgresql":  # the stored JSON text, not psycopg's decoding of it
            columns = [f"{c}::text" if c in JSON_COLUMNS else c for c in columns]
        sql = f"SELECT {', '.join(columns)} FROM prediction_records "  # noqa: S608
        sql += f"WHERE deployment_id = {int(deployment_id)} ORDER BY seq"
        if db.backend == "postgresql":
            cursor = dbapi.cursor(name="bench_plain", binary=True)
        else:
            cursor = dbapi.cursor()
        cursor.execute(sql)
        n = 0
        while rows := cursor.fetchmany(2000):
            n += len(rows)
        cursor.close()
        conn.rollback()
    return n


def _plain_find(db, subject: str) -> int:
    """The peer of find_decisions: the subject's rows by the subject_id index, DBAPI."""
    with db.engine.connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()
        sql = "SELECT * FROM prediction_records WHERE subject_id = ? ORDER BY at, id LIMIT 100"
        if db.backend == "postgresql":
            sql = sql.replace("?", "%s")
        cursor.execute(sql, (subject,))
        n = len(cursor.fetchall())
        cursor.close()
        conn.rollback()
    return n


def _timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _python_scans_only(fn):
    """``fn()`` with the native chain scanner off, here and in verification's workers."""
    saved, env = chain_scan.native, os.environ.get("NEXML_NATIVE_SCAN")
    chain_scan.native, os.environ["NEXML_NATIVE_SCAN"] = None, "0"
    try:
        return fn()
    finally:
        chain_scan.native = saved
        if env is None:
            del os.environ["NEXML_NATIVE_SCAN"]
        else:
            os.environ["NEXML_NATIVE_SCAN"] = env


def _bench(settings: Settings, n: int, lookups: int, repeat: int) -> dict[str, float]:
    admin, _ = Workspace.init(settings, "bench")
    try:
        start = time.perf_counter()
        deployment_id, subjects = build(admin, n)
        built = time.perf_counter() - start
        if admin._db.backend == "postgresql":  # what autovacuum would do after a bulk load
            with admin._db.engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE prediction_records")
                conn.commit()
        cora = Workspace.open(settings, admin.add_user("cora", "compliance_officer")[1])
        result = cora.audit.verify()
        assert result.ok, str(result)
        records = sum(c.count for c in result.chains)
        assert _plain_read(admin._db, deployment_id) == n
        ours_verify = min(_timed(cora.audit.verify, repeat))
        python_verify = None
        if admin._db.backend == "sqlite" and chain_scan.native is not None:
            python_verify = min(_timed(lambda: _python_scans_only(cora.audit.verify), repeat))
        peer_verify = min(_timed(lambda: _plain_read(admin._db, deployment_id), repeat))
        rng = random.Random(7)
        picked = [rng.choice(subjects) for _ in range(lookups)]
        for subject in picked[:3]:  # warm up: caches, prepared statements
            cora.find_decisions(subject_id=subject)
            _plain_find(admin._db, subject)
        ours_find, peer_find = [], []
        for subject in picked:
            start = time.perf_counter()
            found = cora.find_decisions(subject_id=subject)
            ours_find.append(time.perf_counter() - start)
            assert found and all(d.link_verified for d in found)
            start = time.perf_counter()
            _plain_find(admin._db, subject)
            peer_find.append(time.perf_counter() - start)
        cora.close()
    finally:
        admin.close()
    return {
        "build_s": built,
        "verify_s": ours_verify,
        "verify_per_s": records / ours_verify,
        "read_s": peer_verify,
        "python_per_s": records / python_verify if python_verify else None,
        "verify_ratio": ours_verify / peer_verify,
        "find_p50": 1000 * statistics.median(ours_find),
        "find_p95": 1000 * statistics.quantiles(ours_find, n=20)[-1],
        "peer_p50": 1000 * statistics.median(peer_find),
        "peer_p95": 1000 * statistics.quantiles(peer_find, n=20)[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    backends = args.backends.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        if "sqlite" in backends:
            sqlite = Settings.from_env(
                home=home / "sqlite",
                database_url=f"sqlite:///{home / 'sqlite' / 'bench.db'}",
                artifact_root=str(home / "sqlite-a"),
                token="",
            )
            rows.append(("SQLite (WAL)", _bench(sqlite, args.decisions, args.lookups,
                                                args.repeat)))
        if "postgresql" in backends:
            engine = create_engine(args.pg_url)
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            try:
                with engine.begin() as conn:
                    conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            except Exception as exc:  # noqa: BLE001 - PostgreSQL is optional for a benchmark
                print(f"PostgreSQL skipped: {exc.__class__.__name__}")
            else:
                try:
                    pg = Settings.from_env(
                        home=home / "pg",
                        database_url=f"{args.pg_url}?options=-csearch_path%3D{schema}",
                        artifact_root=str(home / "pg-a"),
                        token="",
                    )
                    rows.append(("PostgreSQL", _bench(pg, args.decisions, args.lookups,
                                                      args.repeat)))
                finally:
                    with engine.begin() as conn:
                        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                    engine.dispose()
    load = os.getloadavg()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}, {platform.system()}; "
        f"decisions: {args.decisions:,}; load average at the end: "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(
        "| backend | verify: records/s | verify, Python scans only: records/s | "
        "verify: ours / plain read | find: p50 ms | find: p95 ms | "
        "plain indexed SELECT: p50 / p95 ms | build s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        python = f"{r['python_per_s']:,.0f}" if r["python_per_s"] else "n/a"
        print(
            f"| {name} | {r['verify_per_s']:,.0f} | {python} | {r['verify_ratio']:.2f}x "
            f"({r['verify_s']:.2f} s / {r['read_s']:.2f} s) | {r['find_p50']:.1f} | "
            f"{r['find_p95']:.1f} | {r['peer_p50']:.2f} / {r['peer_p95']:.2f} | "
            f"{r['build_s']:.0f} |"
        )


if __name__ == "__main__":
    main()
