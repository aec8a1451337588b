"""Tables in, facts out: content hash and schema of a DataFrame (no database, no principal)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import InvalidInput


def read_table(source: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file; InvalidInput naming the file if it cannot be read."""
    path = Path(source)
    if not path.exists():
        raise InvalidInput(f"cannot read {path}: no such file")
    try:
        if path.suffix.lower() in {".parquet", ".pq"}:
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from exc


def content_sha256(df: pd.DataFrame) -> str:
    """SHA-256 of a table's columns, types and rows, in order.

    Equal tables (same columns, dtypes and rows in the same order) hash equal on every machine;
    ``pandas.util.hash_pandas_object`` uses a fixed key, so no per-process salt leaks in.
    """
    digest = hashlib.sha256()
    for name, dtype in df.dtypes.items():
        digest.update(f"{name}\x1f{dtype}\x1e".encode())
    rows = pd.util.hash_pandas_object(df, index=False).to_numpy()
    digest.update(rows.tobytes())
    return digest.hexdigest()


def schema_of(df: pd.DataFrame, max_categories: int = 50) -> dict[str, Any]:
    """Column types, nullability and (for text columns with few values) categories."""
    columns: dict[str, Any] = {}
    for name in df.columns:
        col = df[name]
        entry: dict[str, Any] = {"dtype": str(col.dtype), "nullable": bool(col.isna().any())}
        if pd.api.types.is_bool_dtype(col):
            pass
        elif pd.api.types.is_numeric_dtype(col):
            if col.notna().any():
                entry["min"], entry["max"] = float(col.min()), float(col.max())
        else:
            values = sorted(str(v) for v in col.dropna().unique())
            if len(values) <= max_categories:
                entry["categories"] = values
        columns[str(name)] = entry
    return {"columns": columns}


def to_parquet_bytes(df: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    return buffer.getvalue()


def from_parquet_bytes(data: bytes) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(data))
