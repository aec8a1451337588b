"""Alembic migrations: an empty database upgrades to exactly the tables the code declares."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from nexml_ext.config import Settings
from nexml_ext.errors import NotInitialised, SchemaOutOfDate
from nexml_ext.store.database import Database, make_engine
from nexml_ext.store.tables import Base
from nexml_ext.workspace import Workspace

A_TOKEN = "nxm_0123456789abcdef_" + "A" * 43


def nexml(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXML_")}
    env["NEXML_HOME"] = str(settings.home)
    if not settings.is_sqlite:
        env["NEXML_DATABASE_URL"] = settings.database_url
    return subprocess.run(
        [sys.executable, "-m", "nexml_ext.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_db_upgrade_creates_every_table_and_matches_the_models(settings):
    head = Database(settings.database_url)
    try:
        assert head.current_revision() is None
        assert inspect(head.engine).get_table_names() == []
        needed = head.head_revision()
    finally:
        head.dispose()

    first = nexml(settings, "db", "upgrade")
    assert first.returncode == 0, first.stderr
    assert f"schema upgraded empty -> {needed}" in first.stdout

    again = nexml(settings, "db", "upgrade")
    assert again.returncode == 0, again.stderr
    assert f"schema already at {needed}" in again.stdout

    current = nexml(settings, "db", "current")
    assert current.returncode == 0, current.stderr
    assert f"current {needed}, needed {needed}" in current.stdout

    engine = make_engine(settings.database_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert tables == set(Base.metadata.tables) | {"alembic_version"}
        with engine.connect() as conn:
            assert conn.execute(
                text("SELECT version_num FROM alembic_version")
            ).scalars().all() == [needed]
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
            )
        assert diff == []
    finally:
        engine.dispose()


def test_open_on_an_empty_database_says_run_init(settings):
    with pytest.raises(NotInitialised, match="nexml init"):
        Workspace.open(settings, A_TOKEN)
    engine = make_engine(settings.database_url)
    try:  # and looking did not create anything
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_open_on_an_old_schema_says_run_upgrade(settings):
    ws, token = Workspace.init(settings, "ada")
    ws.close()
    Workspace.open(settings, token).close()  # at head: fine

    engine = make_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0000_older'"))
        with pytest.raises(SchemaOutOfDate, match="nexml db upgrade") as raised:
            Workspace.open(settings, token)
        assert "0000_older" in str(raised.value)

        with engine.begin() as conn:  # tables but no revision at all
            conn.execute(text("DELETE FROM alembic_version"))
        with pytest.raises(SchemaOutOfDate, match="nexml db upgrade"):
            Workspace.open(settings, token)
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_store_is_in_wal_mode(settings):
    Workspace.init(settings, "ada")[0].close()
    path = settings.database_url.removeprefix("sqlite:///")
    # WAL is a property of the file: a plain connection that sets nothing still sees it.
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()
    db = Database(settings.database_url)
    try:
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        db.dispose()
