"""The drift baseline of a table: a small JSON summary, so drift never needs the raw rows again.

Format ``nexml-profile/1``::

    {"format": "nexml-profile/1", "rows": int, "columns": {name: column, ...}}

A numeric column (any numeric dtype except bool, whatever its number of distinct values)::

    {"kind": "numeric", "missing_rate": float, "edges": [float, ...], "counts": [int, ...],
     "mean": float, "std": float, "min": float, "max": float, "sample": [float, ...]}

``edges`` are the quantiles at 0, 1/bins, ..., 1 of the present values (numpy's default linear
interpolation), de-duplicated, ascending; ``counts`` has one entry per bin, by ``bin_counts``.
A constant column has the single edge ``[c]`` and no bins (``counts == []``). ``std`` is the
population standard deviation (ddof=0). ``sample`` is up to ``sample_size`` present values drawn
without replacement (all of them, in row order, when there are fewer), seeded per column from
``seed`` and the column's name. Missing means NaN/None and, for numeric columns, ±inf; a column
with no present value has empty ``edges``/``counts``/``sample`` and null statistics.

Anything else except dates (text, category, boolean, object) is categorical::

    {"kind": "categorical", "missing_rate": float, "frequencies": {text: int, ...}}

``frequencies`` counts present values by their text (``str(value)``, so ``True`` is "True"),
the ``top_categories`` most frequent first (ties by text), the rest summed under ``"__other__"``
(present only when there is a rest). Datetime and timedelta columns are not profiled: calendar
time always drifts; profile the features derived from it instead.

Binning convention (``bin_counts``): with edges ``e0 < e1 < ... < ek``, bin 0 is ``[e0, e1]`` and
bin i is ``(ei, ei+1]``; values below ``e0`` count in bin 0, above ``ek`` in bin k-1, NaN nowhere.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInput

FORMAT = "nexml-profile/1"
OTHER = "__other__"


def profile(
    df: pd.DataFrame,
    *,
    bins: int = 10,
    sample_size: int = 2000,
    top_categories: int = 50,
    seed: int = 0,
) -> dict[str, Any]:
    """The ``nexml-profile/1`` drift baseline of ``df`` (see the module docstring): plain JSON
    types only, no NaN or infinity. Raises InvalidInput for a table without rows or for
    non-positive ``bins`` / negative ``sample_size`` / ``top_categories``."""
    if not isinstance(df, pd.DataFrame) or len(df) == 0:
        raise InvalidInput("cannot profile a table without rows")
    if bins < 1 or sample_size < 0 or top_categories < 0:
        raise InvalidInput("bins must be at least 1; sample_size and top_categories at least 0")
    columns: dict[str, Any] = {}
    for name in df.columns:
        col = df[name]
        if isinstance(col, pd.DataFrame):
            raise InvalidInput(f"cannot profile duplicate column {name!r}")
        kind = column_kind(col)
        if kind == "numeric":
            rng = np.random.default_rng([seed, zlib.crc32(str(name).encode())])
            columns[str(name)] = _numeric(col, bins, sample_size, rng)
        elif kind == "categorical":
            columns[str(name)] = _categorical(col, top_categories)
    return {"format": FORMAT, "rows": int(len(df)), "columns": columns}


def column_kind(col: pd.Series) -> str | None:
    """``numeric``, ``categorical``, or None for a column the profile leaves out (dates)."""
    if pd.api.types.is_bool_dtype(col):
        return "categorical"
    if pd.api.types.is_datetime64_any_dtype(col) or pd.api.types.is_timedelta64_dtype(col):
        return None
    if pd.api.types.is_numeric_dtype(col):
        return "numeric"
    return "categorical"


def bin_counts(values: Any, edges: Any) -> np.ndarray:
    """How many ``values`` fall in each bin of ``edges`` (``len(edges) - 1`` counts).

    Bin 0 is ``[e0, e1]``, bin i is ``(ei, ei+1]``; values below ``e0`` count in bin 0, values
    above the last edge in the last bin; NaN is not counted. Fewer than two edges make no bins.
    """
    edges = np.asarray(edges, dtype=float)
    values = np.asarray(values, dtype=float).ravel()
    nbins = edges.size - 1
    if nbins < 1:
        return np.zeros(0, dtype=np.int64)
    values = values[~np.isnan(values)]
    # searchsorted(left) - 1 puts a value equal to an edge into the bin that edge closes
    index = np.clip(np.searchsorted(edges, values, side="left") - 1, 0, nbins - 1)
    return np.bincount(index, minlength=nbins).astype(np.int64)


def _numeric(col: pd.Series, bins: int, sample_size: int, rng: np.random.Generator) -> dict:
    raw = col.to_numpy(dtype=float, na_value=np.nan)
    values = raw[np.isfinite(raw)]
    entry: dict[str, Any] = {
        "kind": "numeric",
        "missing_rate": (raw.size - values.size) / raw.size,
    }
    if values.size == 0:
        entry.update(edges=[], counts=[], mean=None, std=None, min=None, max=None, sample=[])
        return entry
    edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)))
    if values.size > sample_size:
        sample = rng.choice(values, size=sample_size, replace=False)
    else:
        sample = values
    entry.update(
        edges=edges.tolist(),
        counts=bin_counts(values, edges).tolist(),
        mean=float(values.mean()),
        std=float(values.std()),
        min=float(edges[0]),
        max=float(edges[-1]),
        sample=sample.tolist(),
    )
    return entry


def _categorical(col: pd.Series, top_categories: int) -> dict:
    counts = col.value_counts(dropna=True, sort=False)
    counts = counts[counts > 0]
    if pd.api.types.infer_dtype(counts.index, skipna=False) != "string":
        keys = counts.index.astype(object).map(str)  # 1 and "1" are one category
        counts = counts.groupby(keys, sort=False).sum()
    present = int(counts.sum())
    # stable sorts: by text, then by count descending, so ties stay in text order
    ranked = counts.sort_index(kind="mergesort").sort_values(ascending=False, kind="mergesort")
    frequencies = {str(key): int(n) for key, n in ranked.iloc[:top_categories].items()}
    rest = int(ranked.iloc[top_categories:].sum())
    if rest:
        frequencies[OTHER] = frequencies.get(OTHER, 0) + rest
    return {
        "kind": "categorical",
        "missing_rate": (len(col) - present) / len(col),
        "frequencies": frequencies,
    }
