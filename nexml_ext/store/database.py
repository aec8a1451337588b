"""Engines, transactions and schema migrations for the registry database.

Two backends, one code path: SQLite in WAL mode (the embedded default) and PostgreSQL. On SQLite a
write transaction starts with ``BEGIN IMMEDIATE`` so that writers queue on the database lock instead
of failing when their read snapshot goes stale; reads use a plain deferred ``BEGIN`` and never block
a writer. On PostgreSQL the optimistic ``revision`` columns and the chain-head row lock do the same.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from ..errors import Conflict, NotInitialised, SchemaOutOfDate

MIGRATIONS = Path(__file__).parent / "migrations"
_WRITE = "nexml_write"

#: How JSON columns are written: no whitespace, UTF-8 text, keys in the value's own order —
#: ``governance.audit.canonical_json`` without its sorting. Chained rows hold values that went
#: through canonical JSON already (keys sorted at every level), so their stored JSON text is
#: byte for byte what their hash covers, and verification hashes it without decoding
#: (``store.chains``); every other table keeps its keys in the order they were given.
json_serializer = functools.partial(json.dumps, separators=(",", ":"), ensure_ascii=False)


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs (SQLAlchemy would pick psycopg2)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` with the pragmas and transaction rules described above."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, json_serializer=json_serializer)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"timeout": 60, "check_same_thread": False},
        json_serializer=json_serializer,
    )

    checkpointer = None
    if parsed.database and parsed.database != ":memory:":
        checkpointer = _Checkpointer(parsed.database)
        weakref.finalize(engine, checkpointer.halt)
        event.listen(engine, "commit", lambda _conn: checkpointer.committed())
        event.listen(engine, "engine_disposed", lambda _engine: checkpointer.stop())

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        if checkpointer is not None:  # no commit checkpoints: the checkpointer's thread does
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        immediate = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def sqlite_uri(path: str, mode: str) -> str:
    """The ``file:`` URI of an SQLite database at ``path`` (percent-quoted: a ``#`` or ``?``
    in it names no fragment or query), opened as ``mode`` says (ro, rw)."""
    return "file:" + quote(Path(path).as_posix()) + f"?mode={mode}"


#: SQLite: how often (seconds) the checkpointer copies newly committed pages from the
#: write-ahead log into the database file.
CHECKPOINT_EVERY = 0.5

_log = logging.getLogger(__name__)


class _Checkpointer:
    """Checkpoints an SQLite database's write-ahead log in a thread of its own.

    By default SQLite makes the commit that grows the log past 1,000 pages copy the log into
    the database file, with an fsync of both: on the gateway one request in about 130 waited
    some 7 ms for it, which was its p99 at one connection. Here every connection of the engine
    has that off (``wal_autocheckpoint=0``); a commit only counts, and this thread (started
    by the first commit of the process) runs a PASSIVE checkpoint every ``CHECKPOINT_EVERY``
    seconds when anything was committed since the last one. A passive checkpoint neither
    waits for nor blocks readers and writers; the log restarts from its beginning once a
    checkpoint has copied all of it, as before. The checkpoint's own connection opens the
    file read-write without creating it. SQLite still checkpoints when the last connection
    closes. ``stop`` (engine disposal) ends the thread; a later commit starts a new one.
    """

    def __init__(self, path: str) -> None:
        self._path = str(Path(path).resolve())  # as the engine's connections open it now
        self._commits = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def committed(self) -> None:
        self._commits += 1  # under the GIL; a lost count only delays a checkpoint
        thread = self._thread
        if thread is None or self._pid != os.getpid():  # none yet, or one of the parent's
            with self._lock:
                if self._thread is None or self._pid != os.getpid():
                    self._pid = os.getpid()
                    self._wake = threading.Event()
                    self._thread = threading.Thread(
                        target=self._run,
                        args=(self._wake,),
                        name=f"nexml-sqlite-checkpoint {self._path}",
                        daemon=True,
                    )
                    self._thread.start()

    def _run(self, wake: threading.Event) -> None:
        done = 0
        connection = None
        uri = sqlite_uri(self._path, "rw")
        try:
            while not wake.wait(CHECKPOINT_EVERY):
                commits = self._commits
                if commits == done:
                    continue
                try:
                    if connection is None:
                        connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
                    # another process's checkpoint running is not an error: busy, retried
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    done = commits
                except sqlite3.Error as exc:
                    if not os.path.exists(self._path):  # the store is gone: nothing to do
                        return
                    _log.warning("SQLite checkpoint of %s failed (retried): %s", self._path, exc)
                    if connection is not None:
                        connection.close()
                        connection = None
        finally:
            if connection is not None:
                connection.close()

    def halt(self) -> None:
        """Ask the thread to end (the engine is gone); does not wait for it."""
        self._wake.set()

    def stop(self) -> None:
        """End the thread and wait for it; the next commit starts a new one."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()


class Database:
    """A connected registry database: sessions for reading and for writing."""

    def __init__(self, url: str, engine: Engine | None = None) -> None:
        self.url = normalise_url(url)
        self.engine = engine or make_engine(self.url)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = self.engine.execution_options(**{_WRITE: True})
        self._write = sessionmaker(self._writer, expire_on_commit=False)

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; rolled back at the end."""
        with self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction: committed if the block succeeds, rolled back on any error.

        Raises:
            Conflict: another writer changed a row this transaction changes (optimistic lock).
        """
        with self._write() as session:
            try:
                with session.begin():
                    yield session
            except StaleDataError as exc:
                raise Conflict(
                    "the object was changed by someone else at the same time; nothing was saved"
                ) from exc
            except OperationalError as exc:
                if "locked" in str(exc).lower():
                    raise Conflict("the database is busy with another writer; try again") from exc
                raise

    @contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """``write`` for Core statements: one write transaction on a plain connection (no
        session, no unit of work) for the hot paths, its errors translated the same way."""
        try:
            with self._writer.begin() as connection:
                yield connection
        except OperationalError as exc:
            if "locked" in str(exc).lower():
                raise Conflict("the database is busy with another writer; try again") from exc
            raise

    def dispose(self) -> None:
        self.engine.dispose()

    # --- schema -----------------------------------------------------------------------------

    def alembic_config(self) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        return cfg

    def head_revision(self) -> str:
        head = ScriptDirectory.from_config(self.alembic_config()).get_current_head()
        assert head is not None
        return head

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def upgrade(self, revision: str = "head") -> tuple[str | None, str]:
        """Run migrations up to ``revision``; returns (revision before, revision after)."""
        before = self.current_revision()
        cfg = self.alembic_config()
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
        return before, self.current_revision() or ""

    def check_schema(self) -> None:
        """Refuse to work on a missing or out-of-date schema.

        Raises:
            NotInitialised: no registry tables here yet.
            SchemaOutOfDate: tables exist but at another migration revision.
        """
        current = self.current_revision()
        if current is None:
            if inspect(self.engine).has_table("users"):
                raise SchemaOutOfDate(
                    f"database {self.safe_url} has tables but no migration revision: "
                    "run `nexml db upgrade`"
                )
            raise NotInitialised(f"no nexml store at {self.safe_url}: run `nexml init`")
        head = self.head_revision()
        if current != head:
            raise SchemaOutOfDate(
                f"database schema is at revision {current}, this nexml-ext needs {head}: "
                "run `nexml db upgrade`"
            )

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden, safe to print."""
        return make_url(self.url).render_as_string(hide_password=True)
