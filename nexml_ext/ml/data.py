"""Tables in, facts out: content hash, schema, checks and splits of a DataFrame.

No database and no principal here: ``connectors`` reads tables, this module describes and checks
them, ``profile`` summarises them for drift.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInput

PROBLEM_TYPES = ("binary", "multiclass", "regression")
STRATIFY_MAX_CLASSES = 20  # a numeric target with more distinct values is split unstratified
_SHOWN = 5  # example values named per bad column


def read_table(source: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file (Parquet by suffix, anything else as CSV).

    Raises InvalidInput naming the file if it is missing, unreadable or has no rows.
    """
    from .connectors import read_source

    path = Path(source)
    is_parquet = path.suffix.lower() in {".parquet", ".pq"} or path.is_dir()
    return read_source(path, format="parquet" if is_parquet else "csv")[0]


def content_sha256(df: pd.DataFrame) -> str:
    """SHA-256 of a table's content: exactly its column names, dtypes and rows, in order.

    Covered: each column's name (as text) and dtype name, in column order, then one 64-bit
    ``pandas.util.hash_pandas_object`` hash per row (values of every column, combined in column
    order), in row order. So the same rows in another order, a renamed or reordered column, or
    the same numbers held as ``float64`` instead of ``int64`` hash differently.
    Not covered: the index (labels are ignored; ``reset_index`` changes nothing), ``attrs``,
    memory layout. pandas hashes with a fixed key, so the digest is the same on every machine
    and in every process.
    """
    digest = hashlib.sha256()
    for name, dtype in df.dtypes.items():
        digest.update(f"{name}\x1f{dtype}\x1e".encode())
    rows = pd.util.hash_pandas_object(df, index=False).to_numpy()
    digest.update(rows.tobytes())
    return digest.hexdigest()


def schema_of(df: pd.DataFrame, max_categories: int = 50) -> dict[str, Any]:
    """``{"columns": {name: entry}}`` in column order; each entry holds ``dtype``, ``kind``
    (``numeric``, ``boolean``, ``datetime`` or ``categorical``) and ``nullable`` (it holds a
    missing value); numeric columns add ``min``/``max`` (when not all missing); categorical
    columns with at most ``max_categories`` distinct values add ``categories`` (sorted text)."""
    columns: dict[str, Any] = {}
    for name in df.columns:
        col = df[name]
        kind = _kind_of(col)
        entry: dict[str, Any] = {
            "dtype": str(col.dtype),
            "kind": kind,
            "nullable": bool(col.isna().any()),
        }
        if kind == "numeric":
            if col.notna().any():
                entry["min"], entry["max"] = float(col.min()), float(col.max())
        elif kind == "categorical":
            values = sorted({str(v) for v in col.dropna().unique()})
            if len(values) <= max_categories:
                entry["categories"] = values
        columns[str(name)] = entry
    return {"columns": columns}


def to_parquet_bytes(df: pd.DataFrame) -> bytes:
    """The table as Parquet (index dropped); InvalidInput when a column cannot be stored."""
    buffer = io.BytesIO()
    try:
        df.to_parquet(buffer, index=False)
    except (ValueError, TypeError) as exc:  # pyarrow's errors subclass these
        raise InvalidInput(f"cannot store the table as Parquet: {exc}") from None
    return buffer.getvalue()


def from_parquet_bytes(data: bytes) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(data))


def check_frame(df: pd.DataFrame) -> None:
    """Refuse a table nothing useful can be made of, naming every problem at once: not a
    DataFrame, no columns, no rows, duplicate or non-text column names, all-missing columns."""
    if not isinstance(df, pd.DataFrame):
        raise InvalidInput(f"expected a DataFrame, got {type(df).__name__}")
    problems = []
    if df.shape[1] == 0:
        problems.append("the table has no columns")
    if len(df) == 0:
        problems.append("the table has no rows")
    duplicated = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
    if duplicated:
        problems.append(f"duplicate column names: {', '.join(duplicated)}")
    not_text = [repr(c) for c in df.columns if not isinstance(c, str)]
    if not_text:
        problems.append(f"column names must be text: {', '.join(not_text)}")
    if len(df) and df.shape[1]:
        empty = df.columns[df.isna().all(axis=0).to_numpy()]
        if len(empty):
            problems.append(f"all values missing in: {', '.join(map(str, empty))}")
    if problems:
        raise InvalidInput("; ".join(problems))


def check_target(df: pd.DataFrame, target: str, problem_type: str) -> None:
    """Refuse a target that cannot be learnt as ``problem_type`` (binary, multiclass,
    regression): absent, any missing value, a single class, two classes for binary / at least
    three for multiclass, a non-numeric or constant regression target. Raises InvalidInput."""
    if problem_type not in PROBLEM_TYPES:
        raise InvalidInput(
            f"unknown problem type {problem_type!r}; use one of: {', '.join(PROBLEM_TYPES)}"
        )
    if target not in df.columns:
        raise InvalidInput(f"target column {target!r} is not in the data")
    y = df[target]
    missing = int(y.isna().sum())
    if missing:
        raise InvalidInput(f"target {target!r} has {missing} missing value(s)")
    if problem_type == "regression":
        if pd.api.types.is_bool_dtype(y) or not pd.api.types.is_numeric_dtype(y):
            example = _examples(y[pd.to_numeric(y, errors="coerce").isna()]) or _examples(y)
            raise InvalidInput(f"regression target {target!r} is not numeric (e.g. {example})")
        if not np.isfinite(y.to_numpy(dtype=float)).all():
            raise InvalidInput(f"regression target {target!r} has infinite values")
        if y.nunique() < 2:
            raise InvalidInput(f"regression target {target!r} is constant")
        return
    classes = y.nunique()
    if classes < 2:
        raise InvalidInput(f"target {target!r} has a single class ({_examples(y)})")
    if problem_type == "binary" and classes != 2:
        raise InvalidInput(f"binary target {target!r} has {classes} classes; it needs exactly 2")
    if problem_type == "multiclass" and classes < 3:
        raise InvalidInput(f"multiclass target {target!r} has 2 classes; use problem type binary")


def split(
    df: pd.DataFrame,
    target: str,
    *,
    test_size: float = 0.25,
    seed: int = 0,
    stratify: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded train/holdout split; each part keeps the source's row order, with a fresh index.

    Stratified on ``target`` when ``stratify`` and the target is class-like (text, boolean or
    categorical, or numeric with at most ``STRATIFY_MAX_CLASSES`` distinct values): each class's
    holdout share is then within one row of ``test_size``. The same data and seed give the same
    split. Raises InvalidInput for a missing target, a ``test_size`` outside (0, 1), a stratified
    target with missing values or a class of fewer than 2 rows, or a part that would be empty.
    """
    from sklearn.model_selection import train_test_split

    if target not in df.columns:
        raise InvalidInput(f"target column {target!r} is not in the data")
    if not 0 < test_size < 1:
        raise InvalidInput(f"test_size must be between 0 and 1, got {test_size}")
    y = df[target]
    strata = None
    if stratify and (_kind_of(y) != "numeric" or y.nunique() <= STRATIFY_MAX_CLASSES):
        missing = int(y.isna().sum())
        if missing:
            raise InvalidInput(f"cannot stratify on {target!r}: {missing} missing value(s)")
        sizes = y.value_counts()
        lonely = sizes[sizes < 2]
        if len(lonely):
            named = ", ".join(repr(v) for v in lonely.index[:_SHOWN])
            raise InvalidInput(
                f"cannot stratify on {target!r}: class {named} has fewer than 2 rows; "
                "pass stratify=False"
            )
        strata = y.to_numpy()
    try:
        train, holdout = train_test_split(
            np.arange(len(df)), test_size=test_size, random_state=seed, stratify=strata
        )
    except ValueError as exc:
        raise InvalidInput(f"cannot split {len(df)} row(s) on {target!r}: {exc}") from None
    return (
        df.iloc[np.sort(train)].reset_index(drop=True),
        df.iloc[np.sort(holdout)].reset_index(drop=True),
    )


def coerce_to_schema(
    df: pd.DataFrame, schema: dict[str, Any], *, allow_missing: bool = False
) -> pd.DataFrame:
    """``df`` checked against ``schema`` (as made by ``schema_of``) and made to fit it.

    Returns the schema's columns in the schema's order (other columns dropped), numbers coerced
    to the schema's numeric dtype (integers stay floats when a value is fractional or missing),
    categories as text, booleans and datetimes parsed. Raises ONE InvalidInput naming every bad
    column: missing, text that is not a number / boolean / date, categories not in the schema,
    and (unless ``allow_missing``) missing values in a column the schema says had none. The
    error's ``problems`` attribute maps each bad column to its problem.
    """
    columns = schema.get("columns") if isinstance(schema, dict) else None
    if not columns:
        raise InvalidInput("the schema has no columns")
    if not isinstance(df, pd.DataFrame):
        raise InvalidInput(f"expected a DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise InvalidInput("the input has no rows")
    problems: dict[str, str] = {}
    out: dict[str, pd.Series] = {}
    for name, entry in columns.items():
        if name not in df.columns:
            problems[name] = "missing column"
            continue
        col = df[name]
        if isinstance(col, pd.DataFrame):
            problems[name] = "duplicate column"
            continue
        converted, problem = _coerce_column(col, entry)
        if problem is None and not allow_missing and entry.get("nullable") is False:
            missing = int(converted.isna().sum())
            if missing:
                problem = f"{missing} missing value(s), but it had none in training"
        if problem is not None:
            problems[name] = problem
        else:
            out[name] = converted
    if problems:
        listed = "; ".join(f"{name!r}: {problem}" for name, problem in problems.items())
        error = InvalidInput(f"input does not match the schema: {listed}")
        error.problems = problems  # type: ignore[attr-defined]
        raise error
    return pd.DataFrame(out, index=df.index)


def _kind_of(col: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(col):
        return "boolean"
    if pd.api.types.is_numeric_dtype(col):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(col):
        return "datetime"
    return "categorical"


def _schema_kind(entry: dict[str, Any]) -> str:
    if "kind" in entry:
        return entry["kind"]
    dtype = pd.api.types.pandas_dtype(entry.get("dtype", "object"))
    return _kind_of(pd.Series([], dtype=dtype))


def _coerce_column(col: pd.Series, entry: dict[str, Any]) -> tuple[pd.Series, str | None]:
    kind = _schema_kind(entry)
    present = col.notna()
    if kind == "numeric":
        if pd.api.types.is_numeric_dtype(col):
            numbers = col.astype(float) if pd.api.types.is_bool_dtype(col) else col
        else:
            numbers = pd.to_numeric(col, errors="coerce")
            bad = present & numbers.isna()
            if bad.any():
                return col, f"not numbers: {_examples(col[bad])}"
        return _numeric_dtype(numbers, entry.get("dtype", "float64")), None
    if kind == "boolean":
        if pd.api.types.is_bool_dtype(col):
            return col, None
        text = col.astype(str).str.strip().str.lower()
        flags = text.map({"true": True, "1": True, "false": False, "0": False})
        bad = present & flags.isna()
        if bad.any():
            return col, f"not booleans: {_examples(col[bad])}"
        flags = flags.where(present)
        return (flags.astype(bool) if present.all() else flags.astype("boolean")), None
    if kind == "datetime":
        if pd.api.types.is_datetime64_any_dtype(col):
            return col, None
        stamps = pd.to_datetime(col, errors="coerce", format="ISO8601")
        bad = present & stamps.isna()
        if bad.any():
            return col, f"not dates: {_examples(col[bad])}"
        return stamps, None
    text = col.astype(object).where(~present, col.astype(str)).astype(object)
    categories = entry.get("categories")
    if categories is not None:
        unseen = sorted(set(text[present]) - set(categories))
        if unseen:
            shown = ", ".join(repr(v) for v in unseen[:_SHOWN])
            more = f" and {len(unseen) - _SHOWN} more" if len(unseen) > _SHOWN else ""
            return col, f"unseen categories {shown}{more}"
    return text, None


def _numeric_dtype(numbers: pd.Series, dtype_name: str) -> pd.Series:
    try:
        dtype = pd.api.types.pandas_dtype(dtype_name)
    except TypeError:
        return numbers.astype(float)
    if isinstance(dtype, np.dtype) and dtype.kind in "iu":
        values = numbers.to_numpy(dtype=float, na_value=np.nan)
        if np.isfinite(values).all() and (values == np.round(values)).all():
            return numbers.astype(dtype)
        return numbers.astype(float)
    try:
        return numbers.astype(dtype)
    except (TypeError, ValueError):
        return numbers.astype(float)


def _examples(values: pd.Series) -> str:
    # by their repr: a value posted as JSON may be a list or an object, which cannot be hashed
    unique = list(dict.fromkeys(repr(v) for v in values.tolist()))
    shown = ", ".join(unique[:_SHOWN])
    return shown + (f" and {len(unique) - _SHOWN} more" if len(unique) > _SHOWN else "")
