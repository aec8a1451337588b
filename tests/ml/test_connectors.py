"""Connectors against the real PostgreSQL and MariaDB servers on this machine, local files and
fsspec URLs. An unreachable server is an error, never a skip."""

from __future__ import annotations

import gzip
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fsspec
import pandas as pd
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from nexml_ext.errors import InvalidInput
from nexml_ext.ml.connectors import read_source, redact
from nexml_ext.ml.data import content_sha256
from tests.conftest import PG_URL

MYSQL_URL = os.environ.get("NEXML_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


@dataclass
class Server:
    url: str
    engine: Engine

    def with_password(self, user: str, password: str) -> str:
        url = make_url(self.url).set(username=user, password=password)
        return url.render_as_string(hide_password=False)

    def count(self, table: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()

    def run(self, sql: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(sql))


def _connect(url: str) -> Iterator[Server]:
    engine = create_engine(url)
    with engine.connect() as conn:  # fails loudly if the server is not there
        conn.execute(text("SELECT 1"))
    yield Server(url, engine)
    engine.dispose()


@pytest.fixture(scope="module")
def postgres() -> Iterator[Server]:
    yield from _connect(PG_URL)


@pytest.fixture(scope="module")
def mariadb() -> Iterator[Server]:
    yield from _connect(MYSQL_URL)


@pytest.fixture(params=["postgres", "mariadb"])
def server(request) -> Server:
    return request.getfixturevalue(request.param)


@pytest.fixture
def frame(german) -> pd.DataFrame:
    return german.reset_index(names="row_id")


@pytest.fixture
def make_table(frame: pd.DataFrame) -> Iterator:
    """German credit written to a uniquely named table (primary key row_id), dropped after."""
    made: list[tuple[Server, str]] = []

    def make(server: Server) -> str:
        name = f"nexml_t_{uuid.uuid4().hex[:12]}"
        frame.to_sql(name, server.engine, index=False)
        made.append((server, name))
        server.run(f"ALTER TABLE {name} ADD PRIMARY KEY (row_id)")
        return name

    yield make
    for server, name in made:
        server.run(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture
def table(server: Server, make_table) -> str:
    return make_table(server)


def test_table_ingest_hashes_like_the_frame_and_is_stable(server, table, frame):
    first, lineage = read_source(server.url, table=table)
    assert first.dtypes.to_dict() == frame.dtypes.to_dict()
    pd.testing.assert_frame_equal(first, frame)
    # same dtypes and rows in primary-key order, so the database copy hashes like the frame
    assert content_sha256(first) == content_sha256(frame)
    again, _ = read_source(server.url, table=table)
    assert content_sha256(again) == content_sha256(first)
    assert lineage["kind"] == "sql"
    assert lineage["table"] == table
    assert lineage["dialect"] == make_url(server.url).get_backend_name()
    assert lineage["driver"] in {"psycopg", "pymysql"}
    assert lineage["read_at"].endswith("+00:00")
    json.dumps(lineage)


def test_hash_changes_when_a_row_changes_and_returns_when_reverted(server, table):
    before = content_sha256(read_source(server.url, table=table)[0])
    server.run(f"UPDATE {table} SET credit_amount = credit_amount + 1 WHERE row_id = 500")
    changed = read_source(server.url, table=table)[0]
    assert content_sha256(changed) != before
    assert (
        changed.loc[500, "credit_amount"]
        == read_source(server.url, query=f"SELECT credit_amount FROM {table} WHERE row_id = 500")[
            0
        ].iloc[0, 0]
    )
    # PostgreSQL moves an updated row physically; ordering by the key keeps the hash stable
    server.run(f"UPDATE {table} SET credit_amount = credit_amount - 1 WHERE row_id = 500")
    assert content_sha256(read_source(server.url, table=table)[0]) == before


def test_query_ingest(server, table, frame):
    ordered, lineage = read_source(server.url, query=f"SELECT * FROM {table} ORDER BY row_id")
    assert content_sha256(ordered) == content_sha256(frame)
    assert lineage["query"] == f"SELECT * FROM {table} ORDER BY row_id"
    assert "table" not in lineage
    # a literal % and :word reach the server as written
    radio, _ = read_source(
        server.url,
        query=f"SELECT row_id, ':kept' AS note FROM {table} WHERE purpose LIKE 'radio%' "
        "ORDER BY row_id",
    )
    expected = frame.loc[frame["purpose"].str.startswith("radio"), "row_id"]
    assert radio["row_id"].tolist() == expected.tolist()
    assert set(radio["note"]) == {":kept"}


def test_queries_cannot_write(server, table):
    for sql in (
        f"DELETE FROM {table}",
        f"UPDATE {table} SET age = 0",
        f"INSERT INTO {table} (row_id, risk) VALUES (5000, 1)",
        f"DROP TABLE {table}",
        f"TRUNCATE TABLE {table}",
        f"CREATE TABLE {table}_x (a INT)",
        f"SELECT 1 AS a; DROP TABLE {table}",
        f"COMMIT; DROP TABLE {table}",
    ):
        with pytest.raises(InvalidInput, match="cannot read the query"):
            read_source(server.url, query=sql)
    assert server.count(table) == 1000
    assert server.count(f"{table} WHERE age = 0") == 0
    with server.engine.connect() as conn:
        assert not server.engine.dialect.has_table(conn, f"{table}_x")


def test_table_names_cannot_inject_sql(server, table):
    for name in (
        f"{table}; DROP TABLE {table}",
        f'{table}" ; DROP TABLE "{table}',
        f"{table}` ; DROP TABLE `{table}",
        f"{table} WHERE 1=0 --",
        "a.b.c",
        "",
    ):
        with pytest.raises(InvalidInput, match="not a plain identifier"):
            read_source(server.url, table=name)
    with pytest.raises(InvalidInput, match="no such table"):
        read_source(server.url, table=f"{table}_missing")
    assert server.count(table) == 1000


def test_exactly_one_of_table_or_query(server, table):
    with pytest.raises(InvalidInput, match="exactly one of table= or query="):
        read_source(server.url)
    with pytest.raises(InvalidInput, match="exactly one of table= or query="):
        read_source(server.url, table=table, query=f"SELECT * FROM {table}")


def test_empty_result_is_refused(server, table):
    with pytest.raises(InvalidInput, match="has no rows"):
        read_source(server.url, query=f"SELECT * FROM {table} WHERE 1 = 0")


def test_postgres_password_never_reaches_the_lineage(postgres, make_table):
    server, table = postgres, make_table(postgres)
    # trust authentication ignores the password, so the read succeeds with it in the URL
    url = server.with_password("postgres", "pg-s3cret-pw")
    for source in (url, f"{server.url}?password=qs-s3cret-pw", url.replace("+psycopg", "")):
        frame, lineage = read_source(source, table=table)
        assert len(frame) == 1000
        dumped = json.dumps(lineage)
        assert "s3cret" not in dumped
        assert "***" in lineage["uri"]
        with pytest.raises(InvalidInput) as refused:
            read_source(source, table=f"{table}_missing")
        assert "s3cret" not in str(refused.value)


@pytest.fixture
def mariadb_reader(mariadb: Server) -> Iterator[tuple[str, str]]:
    server = mariadb
    user, password = f"nexml_reader_{uuid.uuid4().hex[:6]}", "s3cret-pw"
    server.run(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
    server.run(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{password}'")
    server.run(f"GRANT SELECT ON test.* TO '{user}'@'%'")
    server.run(f"GRANT SELECT ON test.* TO '{user}'@'localhost'")
    yield user, password
    server.run(f"DROP USER IF EXISTS '{user}'@'%'")
    server.run(f"DROP USER IF EXISTS '{user}'@'localhost'")


def test_mariadb_password_never_reaches_the_lineage(mariadb, make_table, mariadb_reader):
    server, table = mariadb, make_table(mariadb)
    user, password = mariadb_reader
    url = server.with_password(user, password)
    for source in (url, url.replace("mysql+pymysql://", "mariadb://")):
        frame, lineage = read_source(source, table=table)
        assert len(frame) == 1000
        assert password not in json.dumps(lineage)
        assert lineage["uri"].startswith(("mysql+pymysql://", "mariadb+pymysql://"))
        assert f"{user}:***@" in lineage["uri"]
    # the reader may read but not write, and a wrong password says so without echoing it
    with pytest.raises(InvalidInput, match="cannot read the query") as refused:
        read_source(url, query=f"DELETE FROM {table}")
    with pytest.raises(InvalidInput, match="Access denied") as refused:
        read_source(server.with_password(user, "wrong-s3cret"), table=table)
    assert "s3cret" not in str(refused.value)
    assert server.count(table) == 1000


def test_unreachable_server_is_a_clear_error():
    with pytest.raises(InvalidInput, match="cannot read table 't'") as refused:
        read_source("postgresql://u:hidden-pw@127.0.0.1:1/db", table="t")
    assert "hidden-pw" not in str(refused.value)


# --- files and fsspec -----------------------------------------------------------------------


def test_local_csv_and_parquet(tmp_path, german):
    csv, parquet = tmp_path / "german.csv", tmp_path / "german.parquet"
    german.to_csv(csv, index=False)
    german.to_parquet(parquet, index=False)
    with gzip.open(tmp_path / "german.csv.gz", "wb") as handle:
        handle.write(csv.read_bytes())
    expected = content_sha256(german)
    for source in (csv, str(parquet), tmp_path / "german.csv.gz"):
        frame, lineage = read_source(source)
        assert content_sha256(frame) == expected
        assert lineage["kind"] == "file"
        assert lineage["uri"] == str(Path(source).resolve())
    assert read_source(csv)[1]["format"] == "csv"
    assert read_source(parquet)[1]["format"] == "parquet"
    odd = tmp_path / "german.data"
    odd.write_bytes(csv.read_bytes())
    with pytest.raises(InvalidInput, match="cannot tell the format"):
        read_source(odd)
    assert content_sha256(read_source(odd, format="csv")[0]) == expected


def test_fsspec_file_and_memory_urls(tmp_path, german):
    csv = tmp_path / "german.csv"
    german.to_csv(csv, index=False)
    expected = content_sha256(german)
    frame, lineage = read_source(csv.as_uri())
    assert content_sha256(frame) == expected
    assert lineage == {**lineage, "kind": "fsspec", "uri": csv.as_uri(), "format": "csv"}

    root = f"memory://nexml-test-{uuid.uuid4().hex[:8]}"
    try:
        with fsspec.open(f"{root}/german.parquet", "wb") as handle:
            german.to_parquet(handle, index=False)
        with fsspec.open(f"{root}/german.csv.gz", "wb", compression="gzip") as handle:
            handle.write(csv.read_bytes())
        with fsspec.open(f"{root}/blob", "wb") as handle:
            german.to_parquet(handle, index=False)
        for url, fmt in (
            (f"{root}/german.parquet", None),
            (f"{root}/german.csv.gz", None),
            (f"{root}/blob", "parquet"),
        ):
            frame, lineage = read_source(url, format=fmt)
            assert content_sha256(frame) == expected
            assert lineage["uri"] == url
    finally:
        fsspec.filesystem("memory").rm(root.removeprefix("memory://"), recursive=True)


def test_storage_option_secrets_stay_out_of_the_lineage(german):
    url = f"memory://nexml-test-{uuid.uuid4().hex[:8]}/german.csv"
    with fsspec.open(url, "w") as handle:
        german.to_csv(handle, index=False)
    options = {
        "key": "AKIAEXAMPLEKEYID",
        "secret": "wJalrXUtnFEMI-secret-value",
        "token": "session-token-value",
        "client_kwargs": {"endpoint_url": "http://minio:9000", "aws_secret_access_key": "nested"},
        "anon": False,
    }
    try:
        _, lineage = read_source(url, storage_options=options)
    finally:
        fsspec.filesystem("memory").rm(url.removeprefix("memory://"))
    dumped = json.dumps(lineage)
    for secret in ("AKIAEXAMPLEKEYID", "wJalrXUtnFEMI", "session-token-value", "nested"):
        assert secret not in dumped
    assert lineage["storage_options"]["client_kwargs"]["endpoint_url"] == "http://minio:9000"
    assert lineage["storage_options"]["anon"] is False


def test_bad_sources_are_named(tmp_path, german):
    with pytest.raises(InvalidInput, match="no such file"):
        read_source(tmp_path / "missing.csv")
    with pytest.raises(InvalidInput, match="no such file"):
        read_source((tmp_path / "missing.csv").as_uri())
    with pytest.raises(InvalidInput, match="unsupported URL scheme nosuch://"):
        read_source("nosuch://bucket/x.csv")
    with pytest.raises(InvalidInput, match="unknown format 'xlsx'"):
        read_source(tmp_path / "x.csv", format="xlsx")
    with pytest.raises(InvalidInput, match="cannot read a int"):
        read_source(42)
    with pytest.raises(InvalidInput, match="SQL URLs only"):
        read_source(german, table="t")
    with pytest.raises(InvalidInput, match="has no rows"):
        read_source(german.head(0))
    empty, header_only, junk = tmp_path / "e.csv", tmp_path / "h.csv", tmp_path / "j.parquet"
    empty.write_text("")
    header_only.write_text("a,b\n")
    junk.write_text("this is not parquet")
    for path in (empty, header_only):
        with pytest.raises(InvalidInput, match="has no rows"):
            read_source(path)
    with pytest.raises(InvalidInput, match="cannot read .*j.parquet as parquet"):
        read_source(junk)


def test_dataframe_passes_through():
    df = pd.DataFrame({"a": [1, 2]})
    frame, lineage = read_source(df)
    assert frame is df
    assert lineage["kind"] == "dataframe" and lineage["uri"] is None


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("postgresql://bob:pw@db:5432/x", "postgresql://bob:***@db:5432/x"),
        (
            "mysql+pymysql://bob:p%40ss@db/x?charset=utf8",
            "mysql+pymysql://bob:***@db/x?charset=utf8",
        ),
        ("mysql://bob:p@ss@db/x", "mysql://bob:***@db/x"),
        (
            "postgresql://bob@db/x?password=pw&sslmode=require",
            "postgresql://bob@db/x?password=***&sslmode=require",
        ),
        ("s3://AKIA:secret@bucket/x.csv", "s3://***@bucket/x.csv"),
        (
            "https://h/x.csv?X-Amz-Signature=abc&X-Amz-Credential=def&v=1",
            "https://h/x.csv?X-Amz-Signature=***&X-Amz-Credential=***&v=1",
        ),
        ("abfs://c/x.csv?sig=abc&sv=2020", "abfs://c/x.csv?sig=***&sv=2020"),
        (
            "https://h/x.csv?token=t&api_key=k&secret=s",
            "https://h/x.csv?token=***&api_key=***&secret=***",
        ),
        ("simplecache::s3://k:s@b/x.csv", "simplecache::s3://***@b/x.csv"),
        ("mysql://u:pa#s?s@h/db", "mysql://u:***@h/db"),
        ("postgresql://u:p@h?password=x#frag", "postgresql://u:***@h?password=***"),
        ("s3://bucket/key@2024.csv", "s3://bucket/key@2024.csv"),
        ("/data/plain/path.csv", "/data/plain/path.csv"),
    ],
)
def test_redact(uri, expected):
    assert redact(uri) == expected
