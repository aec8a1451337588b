"""Read a table from wherever it lives, and say where it came from without leaking credentials.

``read_source`` takes a DataFrame, a local CSV/Parquet path, an fsspec URL (``file://``,
``memory://``, ``s3://`` ...) or a SQLAlchemy URL of PostgreSQL or MySQL/MariaDB, and returns the
rows with a lineage dict fit to store: the URL passed through ``redact``, never the storage options'
secrets. SQL reads run in a read-only transaction that is rolled back, so a query cannot write.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pandas as pd

from ..errors import InvalidInput

FORMATS = ("csv", "parquet")
_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}
_COMPRESSION = {".gz", ".bz2", ".zip", ".xz", ".zst"}
# scheme -> SQLAlchemy drivername: the project ships psycopg 3 and PyMySQL, nothing else
_SQL_DRIVERS = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "postgresql+psycopg2": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mysql+pymysql": "mysql+pymysql",
    "mysql+mysqldb": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
    "mariadb+pymysql": "mariadb+pymysql",
}
_SECRET_WORDS = ("pass", "pwd", "token", "secret", "key", "credential", "signature", "auth")
_SECRET_NAMES = {"sig", "sas"}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
MASK = "***"


def read_source(
    source: Any,
    *,
    table: str | None = None,
    query: str | None = None,
    storage_options: dict[str, Any] | None = None,
    format: str | None = None,  # noqa: A002 - pandas' own word for it
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read ``source`` into a DataFrame and describe where it came from.

    ``source``: a DataFrame; a local path; an fsspec URL (CSV or Parquet, told by the suffix,
    compressed or not, or by ``format``); or a SQLAlchemy URL (``postgresql://``,
    ``postgresql+psycopg://``, ``mysql://``, ``mysql+pymysql://``, ``mariadb://``) with exactly one
    of ``table`` (``name`` or ``schema.name``, ordered by its primary key when it has one) or
    ``query``. ``storage_options`` go to fsspec only; they are recorded with secrets masked.

    Returns ``(frame, lineage)``; lineage is JSON-serialisable: ``kind`` (``dataframe``, ``file``,
    ``fsspec``, ``sql``), ``uri`` (redacted), ``format`` or ``table``/``query`` and ``dialect``,
    and ``read_at`` (ISO 8601, UTC). Raises InvalidInput for an unsupported scheme or format, a
    missing file or table, unreadable content, a failed query or connection, or no rows.
    """
    if format is not None and format not in FORMATS:
        raise InvalidInput(f"unknown format {format!r}; use one of: {', '.join(FORMATS)}")
    if isinstance(source, pd.DataFrame):
        _only_files_take(table, query, "a DataFrame")
        frame, lineage = source, {"kind": "dataframe", "uri": None}
    elif isinstance(source, Path) or (isinstance(source, str) and "://" not in source):
        _only_files_take(table, query, "a file")
        frame, lineage = _read_file(Path(source), format)
    elif isinstance(source, str):
        scheme = source.split("://", 1)[0].lower()
        if scheme in _SQL_DRIVERS:
            frame, lineage = _read_sql(source, table, query)
        else:
            _only_files_take(table, query, f"a {scheme}:// URL")
            frame, lineage = _read_fsspec(source, scheme, format, storage_options or {})
    else:
        raise InvalidInput(
            f"cannot read a {type(source).__name__}: give a DataFrame, a path or a URL"
        )
    if len(frame) == 0:
        raise InvalidInput(f"cannot ingest {_describe(lineage)}: it has no rows")
    lineage["read_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return frame, lineage


def redact(uri: str) -> str:
    """``uri`` with every credential removed: passwords (``user:password@`` keeps the user for SQL
    URLs; other URLs lose the whole ``user:password@`` part) and query parameters whose names look
    like secrets (``password``, ``token``, ``key``, ``secret``, ``signature``, ...) masked as
    ``***``. A string that is not a URL is returned unchanged."""
    if "::" in uri:  # fsspec chaining: simplecache::s3://...
        return "::".join(redact(part) for part in uri.split("::"))
    if "://" not in uri:
        return uri
    scheme, rest = uri.split("://", 1)
    # the authority ends at the first "/" after the last "@" before it, so an unencoded
    # "#", "?" or "@" inside a password still counts as password
    slash = rest.find("/")
    authority, tail = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    after_user = authority.rfind("@") + 1
    ends = [i for i in (authority.find(c, after_user) for c in "?#") if i >= 0]
    if ends:  # "host?query" without a path
        authority, tail = authority[: min(ends)], authority[min(ends) :] + tail
    if "@" in authority:
        userinfo, host = authority.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        if scheme.lower() in _SQL_DRIVERS:
            authority = f"{user}:{MASK}@{host}" if has_password else f"{user}@{host}"
        else:
            authority = f"{MASK}@{host}"
    path, _, query = tail.split("#", 1)[0].partition("?")
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        path += "?" + urlencode([(k, MASK if _is_secret(k) else v) for k, v in pairs], safe="*")
    return f"{scheme}://{authority}{path}"


def redact_options(options: dict[str, Any]) -> dict[str, Any]:
    """Storage options fit for lineage: secret-looking keys masked, nested dicts too, and values
    that are not plain JSON scalars replaced by their type name."""
    clean: dict[str, Any] = {}
    for key, value in options.items():
        if _is_secret(str(key)):
            clean[str(key)] = MASK
        elif isinstance(value, dict):
            clean[str(key)] = redact_options(value)
        elif value is None or isinstance(value, bool | int | float):
            clean[str(key)] = value
        elif isinstance(value, str):
            clean[str(key)] = redact(value)
        else:
            clean[str(key)] = type(value).__name__
    return clean


def _describe(lineage: dict[str, Any]) -> str:
    if "table" in lineage:
        return f"table {lineage['table']!r} from {lineage['uri']}"
    if "query" in lineage:
        return f"the query on {lineage['uri']}"
    return lineage["uri"] or "the DataFrame"


def _is_secret(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SECRET_NAMES or any(word in lowered for word in _SECRET_WORDS)


def _only_files_take(table: str | None, query: str | None, what: str) -> None:
    if table is not None or query is not None:
        raise InvalidInput(f"table= and query= apply to SQL URLs only, not to {what}")


def _format_of(name: str, fmt: str | None) -> str:
    if fmt is not None:
        return fmt
    suffixes = [s.lower() for s in Path(urlsplit(name).path if "://" in name else name).suffixes]
    while suffixes and suffixes[-1] in _COMPRESSION:
        suffixes.pop()
    if suffixes and suffixes[-1] in _SUFFIXES:
        return _SUFFIXES[suffixes[-1]]
    raise InvalidInput(
        f"cannot tell the format of {redact(name)}; name it .csv or .parquet or pass format="
    )


def _parse(handle: Any, fmt: str, name: str, compression: str | None = "infer") -> pd.DataFrame:
    try:
        if fmt == "parquet":
            return pd.read_parquet(handle)
        if name.lower().endswith(".tsv") or ".tsv." in name.lower():
            return pd.read_csv(handle, sep="\t", compression=compression)
        return pd.read_csv(handle, compression=compression)
    except pd.errors.EmptyDataError:
        raise InvalidInput(f"cannot ingest {name}: it has no rows") from None
    except (ValueError, OSError, TypeError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {name} as {fmt}: {_first_line(exc)}") from None


def _read_file(path: Path, fmt: str | None) -> tuple[pd.DataFrame, dict[str, Any]]:
    name = str(path)
    if path.is_dir() and fmt in (None, "parquet"):  # a partitioned Parquet dataset
        fmt = "parquet"
    elif not path.is_file():
        raise InvalidInput(f"cannot read {name}: no such file")
    fmt = _format_of(name, fmt)
    frame = _parse(path, fmt, name)
    return frame, {"kind": "file", "uri": str(path.resolve()), "format": fmt}


def _read_fsspec(
    url: str,
    scheme: str,
    fmt: str | None,
    options: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    import fsspec

    shown = redact(url)
    protocols = [p.split("://")[0].lower() for p in url.split("::")]
    known = set(fsspec.available_protocols())
    unknown = [p for p in protocols if p not in known]
    if unknown:
        raise InvalidInput(f"unsupported URL scheme {unknown[0]}:// in {shown}")
    fmt = _format_of(url.split("::")[-1], fmt)
    try:
        with fsspec.open(url, "rb", compression="infer", **options) as handle:
            frame = _parse(handle, fmt, shown, compression=None)
    except InvalidInput:
        raise
    except FileNotFoundError:
        raise InvalidInput(f"cannot read {shown}: no such file") from None
    except ImportError as exc:
        raise InvalidInput(f"cannot read {scheme}:// URLs here: {_first_line(exc)}") from None
    except (OSError, ValueError, TypeError) as exc:
        raise InvalidInput(f"cannot read {shown}: {_first_line(exc)}") from None
    lineage: dict[str, Any] = {"kind": "fsspec", "uri": shown, "format": fmt}
    if options:
        lineage["storage_options"] = redact_options(options)
    return frame, lineage


def _read_sql(
    url: str, table: str | None, query: str | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    from sqlalchemy import MetaData, Table, create_engine, select
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchTableError, SQLAlchemyError
    from sqlalchemy.pool import NullPool

    shown = redact(url)
    if (table is None) == (query is None):
        raise InvalidInput(f"reading {shown} needs exactly one of table= or query=")
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InvalidInput(f"cannot parse the database URL {shown}") from None
    parsed = parsed.set(drivername=_SQL_DRIVERS[parsed.drivername.lower()])
    shown = redact(parsed.render_as_string(hide_password=False))
    if table is not None:
        schema, name = _table_name(table)
    engine = create_engine(parsed, poolclass=NullPool, connect_args=_connect_args(parsed))
    what = f"table {table!r}" if table is not None else "the query"
    try:
        with engine.connect() as conn:
            _begin_read_only(conn)
            try:
                if table is not None:
                    reflected = Table(name, MetaData(), schema=schema, autoload_with=conn)
                    statement = select(reflected).order_by(*reflected.primary_key.columns)
                    frame = pd.read_sql(statement, conn)
                else:  # no parameters: a literal % or :name in the query stays as written
                    frame = pd.read_sql(query, conn.execution_options(no_parameters=True))
            finally:
                conn.rollback()
    except NoSuchTableError:
        raise InvalidInput(f"cannot read table {table!r} from {shown}: no such table") from None
    except (SQLAlchemyError, ValueError, TypeError) as exc:
        reason = _first_line(getattr(exc, "orig", None) or exc)
        raise InvalidInput(f"cannot read {what} from {shown}: {reason}") from None
    finally:
        engine.dispose()
    lineage: dict[str, Any] = {
        "kind": "sql",
        "uri": shown,
        "dialect": parsed.get_backend_name(),
        "driver": parsed.get_driver_name(),
    }
    lineage["table" if table is not None else "query"] = table if table is not None else query
    return frame, lineage


def _table_name(table: str) -> tuple[str | None, str]:
    """``name`` or ``schema.name`` of plain identifiers; SQLAlchemy quotes them, and anything
    else is refused before it reaches the server."""
    parts = table.split(".")
    if len(parts) > 2 or not all(_IDENTIFIER.fullmatch(p) for p in parts):
        raise InvalidInput(
            f"table name {table!r} is not a plain identifier (letters, digits, _ and $, "
            "optionally schema.table); use query= for anything else"
        )
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def _connect_args(url: Any) -> dict[str, Any]:
    """One statement per call: psycopg prepares every statement (the extended protocol refuses
    ``SELECT 1; COMMIT; DROP ...``), PyMySQL never gets the multi-statement flag."""
    args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        args["connect_timeout"] = 10
    if url.get_backend_name() == "postgresql":
        args["prepare_threshold"] = 0
    else:
        from pymysql.constants import CLIENT

        flags = int(url.query.get("client_flag", 0)) | CLIENT.FOUND_ROWS
        args["client_flag"] = flags & ~CLIENT.MULTI_STATEMENTS
    return args


def _begin_read_only(conn: Any) -> None:
    # Writes fail inside the transaction, and it is rolled back whatever happens.
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
    else:
        # DDL commits implicitly and would leave a read-only transaction, so the whole session
        # is read-only too; START TRANSACTION ends the implicit transaction the SET began.
        conn.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")
        conn.exec_driver_sql("START TRANSACTION READ ONLY")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
