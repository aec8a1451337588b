"""SQLite's write-ahead log is checkpointed by the checkpointer's thread, never by a commit: the
commit that would otherwise fill the log past 1,000 pages paid an fsync of the log and the file
(the gateway's p99 at one connection)."""

from __future__ import annotations

import sqlite3
import threading
import time
from urllib.parse import quote

import pytest
from sqlalchemy import text

from nexml_ext.store import database
from nexml_ext.store.database import Database

ROW = "x" * 3000  # most of a page each: 1,200 commits fill the log well past 1,000 pages


def in_database_file(path) -> int:
    """Rows of table t in the database file itself, not counting the write-ahead log."""
    raw = sqlite3.connect(f"file:{quote(str(path))}?immutable=1", uri=True)
    try:
        return raw.execute("SELECT count(*) FROM t").fetchone()[0]
    except sqlite3.DatabaseError:  # no such table (its creation is still in the log), or a
        return 0  # page read while the checkpointer was writing it (this read takes no lock)
    finally:
        raw.close()


def commit_rows(db: Database, n: int) -> None:
    with db.write_connection() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)"))
    for _ in range(n):
        with db.write_connection() as conn:
            conn.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": ROW})


def in_file_soon(path, rows: int) -> int:
    """Rows of t in the database file once it holds ``rows`` of them, or after 30 s."""
    deadline = time.monotonic() + 30
    while in_database_file(path) < rows and time.monotonic() < deadline:
        time.sleep(0.05)
    return in_database_file(path)


def checkpoint_threads(path) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"nexml-sqlite-checkpoint {path}"]


def test_commits_never_checkpoint_and_disposal_leaves_everything_in_the_file(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(database, "CHECKPOINT_EVERY", 3600.0)  # the thread never gets to it
    path = tmp_path / "store.db"
    db = Database(f"sqlite:///{path}")
    commit_rows(db, 1200)
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    assert in_database_file(path) == 0  # 1,200 commits, all still in the log
    assert len(checkpoint_threads(path)) == 1
    db.dispose()  # the last connection closed: SQLite checkpoints
    assert in_database_file(path) == 1200
    assert checkpoint_threads(path) == []


@pytest.fixture(params=["store.db", "a #1 & 50%/store.db"])  # URI characters in the path
def quick(request, tmp_path, monkeypatch):
    """A file store whose checkpointer looks every 50 ms, and its path; disposed after."""
    monkeypatch.setattr(database, "CHECKPOINT_EVERY", 0.05)
    path = tmp_path / request.param
    db = Database(f"sqlite:///{path}")
    yield db, path
    db.dispose()
    assert checkpoint_threads(path) == []


def test_the_checkpointer_copies_committed_pages_into_the_file(quick):
    db, path = quick
    commit_rows(db, 300)
    assert in_file_soon(path, 300) == 300  # copied while the engine's connections stay open
    with db.engine.connect() as conn:  # and the data is whole through the engine
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 300


def test_a_disposed_engine_checkpoints_again_when_used_again(quick):
    db, path = quick
    commit_rows(db, 10)
    db.dispose()  # SQLAlchemy reopens connections on use; the checkpointer restarts too
    with db.engine.connect() as keep_open:  # so disposal's own checkpoint cannot do it
        commit_rows(db, 20)
        assert in_file_soon(path, 30) == 30
        assert keep_open.execute(text("SELECT count(*) FROM t")).scalar() == 30


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_a_memory_database_has_no_checkpointer(url):
    db = Database(url)
    try:
        with db.write_connection() as conn:
            conn.execute(text("CREATE TABLE t (v TEXT)"))
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
    finally:
        db.dispose()
