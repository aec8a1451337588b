"""Batch inference and drift over a directory of Parquet files larger than memory.

The input is every Parquet file under a directory (``pyarrow.dataset`` discovery; names starting
with ``.`` or ``_`` are skipped), read file by file in chunks of at most ``chunk_rows`` rows, the
number derived from a memory budget (``memory_limit="256MB"``, the working memory for data on top
of the interpreter and the model) and the Parquet footers' column sizes. Nothing but a chunk and
the running statistics is ever held.

**Scoring** (``score_files``) validates each chunk against the model's schema, scores it and
appends the predictions to one output file per input file (``part-00000.parquet``, ... in the
input files' sorted order), so the output is in input row order.

**Drift** (``drift_files``) computes exactly what ``drift.drift_report`` computes on the whole
table, from statistics that add up across chunks:

* PSI: per numeric column the count of values at or below each interior edge of the baseline's
  bins; per categorical column the count of each category's text. ``drift.py`` turns the summed
  counts into the report (``numeric_column``, ``categorical_column``), so the numbers are the
  same numbers.
* Kolmogorov-Smirnov against the profile's reference sample ``u_0 < ... < u_K`` (unique): the
  two empirical CDFs are step functions, so the supremum of their difference is reached at a
  sample value or at the largest current value below the next one. Per slot ``[u_j, u_j+1)``
  the count of current values, and of those equal to ``u_j``, give every candidate scipy
  evaluates; the p-value is scipy's for the same statistic and sample sizes.
* Wasserstein-1 to the reference sample, the integral of ``|F_u - F_v|``: per slot the count and
  the sum of offsets ``v - u_j`` give the integral in closed form wherever ``F_v`` stays on one
  side of the sample's level ``F_u(u_j)``. In a slot where it crosses, the crossing value is an
  order statistic of the current data, found exactly by further passes over the files: each
  pass histograms only the values inside each unresolved range (256 bins over the values'
  order-preserving integer keys, with counts, offset sums, minima and maxima), which narrows the
  range at least 256-fold, until a range holds few enough values to collect, or one value.
  Ordinary data needs one or two extra passes; float64 has 64 bits, so never more than eight.

Chunked, Dask and in-process results agree to float rounding (sums are added in another order).

**Dask**: with a scheduler address the same per-file functions run as tasks on that cluster
(``distributed.Client``), one per file, and their partial statistics are added up here. The
model travels as its artifact's bytes and is loaded on each worker only after the manifest's
SHA-256 matches the registry's and every file matches the manifest. Workers must see the input
and output paths (a shared filesystem; a LocalCluster does).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import IntegrityError, InvalidInput
from . import drift as d

DEFAULT_MEMORY = "256MB"
MIN_CHUNK_ROWS = 256
WORKING_COPIES = 8  # in-memory copies of a chunk's data a scoring step may hold at once
BINS = 256  # histogram bins per unresolved range and pass
MAX_PASSES = 10  # passes after the counting pass; 64-bit keys, 8 bits per pass: 8 suffice
Progress = Callable[[int], None]


# --- input ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParquetInput:
    """The Parquet files of an input directory, sorted, with their sizes and row counts."""

    root: str
    files: tuple[str, ...]  # paths relative to root, sorted
    sizes: tuple[int, ...]
    rows: tuple[int, ...]
    columns: tuple[str, ...]
    row_bytes: dict[str, float]  # uncompressed bytes per row and column, from the footers

    @property
    def total_rows(self) -> int:
        return sum(self.rows)

    def path(self, i: int) -> str:
        return os.path.join(self.root, self.files[i])

    def fingerprint(self) -> dict[str, Any]:
        """What was read: each file's name, size and rows, and the SHA-256 of that list."""
        files = [
            {"name": f, "bytes": b, "rows": r}
            for f, b, r in zip(self.files, self.sizes, self.rows, strict=True)
        ]
        digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
        return {
            "sha256": digest,
            "files": len(files),
            "bytes": sum(self.sizes),
            "rows": self.total_rows,
            "listing": files,
        }


def open_input(input_dir: str | os.PathLike[str]) -> ParquetInput:
    """Discover the Parquet files under ``input_dir``. InvalidInput if it is not a directory,
    holds no Parquet file, or a file is not Parquet."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    root = Path(input_dir)
    if not root.is_dir():
        raise InvalidInput(f"batch input {str(root)!r} is not a directory")
    try:
        dataset = ds.dataset(str(root), format="parquet")
        fragments = sorted(dataset.get_fragments(), key=lambda f: f.path)
        metas = [f.metadata for f in fragments]
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"batch input {str(root)!r}: {_first_line(exc)}") from None
    if not fragments:
        raise InvalidInput(f"batch input {str(root)!r} holds no Parquet file")
    names = [os.path.relpath(f.path, root) for f in fragments]
    columns = tuple(dataset.schema.names)
    rows = tuple(int(m.num_rows) for m in metas)
    uncompressed = dict.fromkeys(columns, 0)
    for meta in metas:
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for c in range(group.num_columns):
                chunk = group.column(c)
                name = chunk.path_in_schema.split(".")[0]
                if name in uncompressed:
                    uncompressed[name] += chunk.total_uncompressed_size
    total = max(sum(rows), 1)
    return ParquetInput(
        root=str(root),
        files=tuple(names),
        sizes=tuple(os.path.getsize(f.path) for f in fragments),
        rows=rows,
        columns=columns,
        row_bytes={c: uncompressed[c] / total for c in columns},
    )


def parse_memory(limit: str | int) -> int:
    """Bytes of a memory budget: an int, or text such as ``"256MB"`` or ``"1GiB"`` (Dask's
    units: MB = 10**6, MiB = 2**20). InvalidInput for anything else or below 1 MB."""
    from dask.utils import parse_bytes

    try:
        value = int(limit) if isinstance(limit, int) else int(parse_bytes(str(limit)))
    except (ValueError, TypeError):
        raise InvalidInput(f"memory limit {limit!r} is not a size such as 256MB or 1GiB") from None
    if value < 1_000_000:
        raise InvalidInput(f"memory limit {limit!r} is below 1MB: too small to read a chunk")
    return value


def chunk_rows(source: ParquetInput, columns: list[str], memory_limit: str | int) -> int:
    """Rows per chunk so that ``WORKING_COPIES`` in-memory copies of a chunk of ``columns``
    fit in the budget (a text value also costs a Python object, counted as 64 bytes)."""
    budget = parse_memory(memory_limit)
    per_row = sum(source.row_bytes.get(c, 8.0) + 64.0 for c in columns) or 64.0
    return max(MIN_CHUNK_ROWS, int(budget // (WORKING_COPIES * per_row)))


def iter_frames(path: str, columns: list[str], rows: int) -> Iterator[pd.DataFrame]:
    """The file's ``columns`` as DataFrames of at most ``rows`` rows, read one at a time."""
    import pyarrow.dataset as ds

    fragment = next(iter(ds.dataset(path, format="parquet").get_fragments()))
    batches = fragment.to_batches(
        columns=columns, batch_size=rows, batch_readahead=0, fragment_readahead=0
    )
    for batch in batches:
        if batch.num_rows:
            yield batch.to_pandas()


def read_frame(input_dir: str | os.PathLike[str], columns: list[str] | None = None) -> pd.DataFrame:
    """The whole input as one DataFrame, converted as the chunks are (for data that fits)."""
    import pyarrow.parquet as pq

    source = open_input(input_dir)
    wanted = list(source.columns) if columns is None else columns
    frames = [
        pq.read_table(source.path(i), columns=wanted).to_pandas() for i in range(len(source.files))
    ]
    return pd.concat(frames, ignore_index=True)


# --- executing per-file tasks in process or on Dask -------------------------------------------


class _Runner:
    """Runs ``fn(path, *args)`` for every input file and yields results as they finish: in this
    process one file after the other, or as tasks on a Dask cluster."""

    def __init__(self, dask: str | None) -> None:
        self.address = dask
        self.client: Any = None
        if dask:
            from distributed import Client

            try:
                self.client = Client(dask, timeout="10s", set_as_default=False)
            except (OSError, TimeoutError, ValueError) as exc:
                raise InvalidInput(
                    f"cannot reach the Dask scheduler at {dask}: {_first_line(exc)}"
                ) from None

    def __enter__(self) -> _Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()

    def share(self, value: Any) -> Any:
        """``value`` sent once to every worker (a future), or itself in process."""
        if self.client is None:
            return value
        return self.client.scatter(value, broadcast=True, hash=False)

    def map(self, fn: Callable[..., Any], items: list[Any], *args: Any) -> Iterator[Any]:
        if self.client is None:
            for item in items:
                yield fn(item, *args)
            return
        futures = [self.client.submit(fn, item, *args, pure=False) for item in items]
        try:
            for future in futures:  # in input order; each result released once added up
                yield future.result()
                future.release()
        finally:
            for future in futures:
                future.cancel()


# --- the model on workers ---------------------------------------------------------------------


@dataclass(frozen=True)
class ArtifactPayload:
    """A verified artifact's files as bytes, to load on a Dask worker: refused there unless
    ``MODEL.json`` hashes to ``manifest_sha256`` (the registry's) and every file to its entry."""

    manifest_sha256: str
    files: dict[str, bytes]

    @classmethod
    def of(cls, directory: str | os.PathLike[str], manifest_sha256: str) -> ArtifactPayload:
        root = Path(directory)
        files = {
            p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }
        return cls(manifest_sha256, files)


_WORKER_MODELS: dict[str, Any] = {}
_WORKER_LOCK = threading.Lock()


def _model_of(source: Any) -> Any:
    """A LoadedModel as is; an ArtifactPayload verified, loaded and kept per worker process."""
    if not isinstance(source, ArtifactPayload):
        return source
    with _WORKER_LOCK:
        cached = _WORKER_MODELS.get(source.manifest_sha256)
        if cached is not None:
            return cached
        from .artifact import load
        from .artifact_metadata import MANIFEST_NAME

        manifest = source.files.get(MANIFEST_NAME, b"")
        if hashlib.sha256(manifest).hexdigest() != source.manifest_sha256:
            raise IntegrityError("batch worker: the artifact's manifest is not the registered one")
        local = Path(tempfile.mkdtemp(prefix="nexml-batch-model-"))
        try:
            for rel, data in source.files.items():
                parts = rel.split("/")
                if any(p in ("", ".", "..") for p in parts) or "\\" in rel:
                    raise IntegrityError(f"batch worker: artifact file name {rel!r} is unsafe")
                target = local.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            model = load(local)  # every file against the manifest, before unpickling
        except BaseException:
            shutil.rmtree(local, ignore_errors=True)
            raise
        weakref.finalize(model, shutil.rmtree, str(local), True)
        _WORKER_MODELS.clear()  # one model per worker at a time
        _WORKER_MODELS[source.manifest_sha256] = model
        return model


# --- scoring --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreRun:
    """What a batch scoring run read and wrote."""

    rows: int
    chunks: int
    chunk_rows: int
    outputs: list[str]
    input: dict[str, Any]
    executor: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prediction_frame(model: Any, frame: pd.DataFrame, keep: list[str]) -> pd.DataFrame:
    """The output rows for ``frame``, as the gateway decides: the ``keep`` columns, then for a
    binary model ``score`` (the probability of ``classes[1]``), ``prediction`` (``classes[1]``
    when the score reaches the artifact's cutoff) and ``approved``; for regression
    ``prediction`` and ``score`` (the same number); for multiclass ``prediction`` and
    ``proba_<class>`` per class."""
    from .validation import cutoff_of

    rows = model.validate(frame)
    out = pd.DataFrame({k: frame[k].to_numpy() for k in keep})
    if model.problem_type == "binary":
        scores = np.asarray(model.score(rows), dtype=float)
        approved = scores >= cutoff_of(model)
        negative, positive = model.classes
        out["score"] = scores
        out["prediction"] = np.where(approved, positive, negative)
        out["approved"] = approved
    elif model.problem_type == "regression":
        predicted = np.asarray(model.predict(rows), dtype=float)
        out["prediction"] = predicted
        out["score"] = predicted
    else:
        proba = model.predict_proba(rows)
        out["prediction"] = np.asarray(model.predict(rows))
        for j, cls in enumerate(model.classes):
            out[f"proba_{cls}"] = proba[:, j]
    return out


def _score_file(
    job: tuple[str, str],
    model: Any,
    columns: list[str],
    keep: list[str],
    rows: int,
    progress: Progress | None = None,
) -> tuple[int, int]:
    """Score one input file into one output file, chunk by chunk: (rows, chunks)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path, out_path = job
    model = _model_of(model)
    tmp = out_path + ".tmp"
    writer = None
    done = chunks = 0
    try:
        for frame in iter_frames(path, columns, rows):
            try:
                out = prediction_frame(model, frame, keep)
            except InvalidInput as exc:
                raise InvalidInput(
                    f"{os.path.basename(path)} rows {done}-{done + len(frame) - 1}: {exc}"
                ) from None
            table = pa.Table.from_pandas(out, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
            done += len(frame)
            chunks += 1
            if progress is not None:
                progress(len(frame))
        if writer is not None:
            writer.close()
            writer = None
            os.replace(tmp, out_path)
    finally:
        if writer is not None:
            writer.close()
        if os.path.exists(tmp):
            os.unlink(tmp)
    return done, chunks


def score_files(
    model: Any,
    input_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    memory_limit: str | int = DEFAULT_MEMORY,
    keep: list[str] | None = None,
    dask: str | None = None,
    payload: ArtifactPayload | None = None,
    progress: Progress | None = None,
) -> ScoreRun:
    """Score every row under ``input_dir`` with ``model`` (a LoadedModel) into ``output_dir``.

    ``output_dir`` must not exist or be empty; it receives ``part-NNNNN.parquet`` per input
    file with rows (see ``prediction_frame``). With ``dask`` (a scheduler address) the files
    are scored on that cluster from ``payload`` (the model's verified artifact). ``progress``
    is called with the rows done after each chunk (in process) or each file (Dask). Raises
    InvalidInput for a bad directory, budget or ``keep`` column, or a chunk the model's schema
    refuses (naming its file and rows); a failed run leaves no output file.
    """
    source = open_input(input_dir)
    keep = list(keep or [])
    missing = [c for c in [*model.input_columns, *keep] if c not in source.columns]
    if missing:
        raise InvalidInput(
            f"batch input lacks column(s) the model needs or keep names: {', '.join(missing)}"
        )
    columns = list(dict.fromkeys([*keep, *model.input_columns]))
    rows = chunk_rows(source, columns, memory_limit)
    out = Path(output_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidInput(f"batch output {str(out)!r} exists and is not an empty directory")
    if dask and payload is None:
        raise InvalidInput("scoring on Dask needs the model's artifact payload")
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(source.path(i), str(out / f"part-{i:05d}.parquet")) for i in range(len(source.files))]
    total = chunks = 0
    try:
        with _Runner(dask) as runner:
            shipped = runner.share(payload) if dask else model
            results = runner.map(
                _score_file, jobs, shipped, columns, keep, rows, None if dask else progress
            )
            for done, n in results:
                total, chunks = total + done, chunks + n
                if dask and progress is not None:
                    progress(done)
    except BaseException:
        for _, path in jobs:
            for p in (path, path + ".tmp"):
                if os.path.exists(p):
                    os.unlink(p)
        raise
    outputs = [os.path.basename(p) for _, p in jobs if os.path.exists(p)]
    return ScoreRun(total, chunks, rows, outputs, source.fingerprint(), dask or "in-process")


# --- drift: mergeable statistics ----------------------------------------------------------------


def _keys(values: np.ndarray) -> np.ndarray:
    """Order-preserving uint64 keys of float64 values (-0.0 taken as 0.0)."""
    bits = (np.asarray(values, dtype=np.float64) + 0.0).view(np.uint64)
    negative = (bits >> np.uint64(63)).astype(bool)
    return np.where(negative, ~bits, bits | np.uint64(1 << 63))


def _key(value: float) -> int:
    return int(_keys(np.array([value]))[0])


@dataclass
class _NumericPlan:
    interior: np.ndarray
    points: np.ndarray  # unique reference-sample values, sorted


def _plans(profiles: dict[str, dict], names: list[str]) -> dict[str, Any]:
    """Per column what a chunk must count: numeric cells and sample points, or categories."""
    plans: dict[str, Any] = {}
    for name in names:
        profile = profiles[name]
        if profile["kind"] == "numeric":
            interior = d.numeric_cells(name, profile)[0] if profile["edges"] else np.zeros(0)
            plans[name] = _NumericPlan(interior, np.unique(d.reference_sample(profile)))
        else:
            plans[name] = None
    return plans


def _count_file(path: str, plans: dict[str, Any], rows: int) -> tuple[int, int, dict[str, Any]]:
    """The counting pass over one file: (rows, chunks, per column statistics that add up)."""
    parts: dict[str, Any] = {}
    done = chunks = 0
    for frame in iter_frames(path, list(plans), rows):
        done += len(frame)
        chunks += 1
        for name, plan in plans.items():
            _add(parts, name, _count_column(name, plan, frame[name]))
    return done, chunks, parts


def _count_column(name: str, plan: Any, series: pd.Series) -> dict[str, Any]:
    if plan is None:
        counts = d.category_counts(series)
        return {"total": len(series), "counts": counts.to_dict()}
    values = d.numeric_values(name, series)
    current = np.sort(values[np.isfinite(values)])
    points = plan.points
    slot = np.searchsorted(points, current, side="right")  # 0: below u_0; j+1: [u_j, u_j+1)
    slots = points.size + 1
    left = np.concatenate(([0.0], points))[slot]
    left[slot == 0] = points[0] if points.size else 0.0
    offsets = np.where(slot == 0, left - current, current - left)
    equal = (slot > 0) & (current == left)
    return {
        "total": values.size,
        "rows": current.size,
        "at_or_below": np.searchsorted(current, plan.interior, side="right").astype(np.int64),
        "slot_count": np.bincount(slot, minlength=slots).astype(np.int64),
        "slot_equal": np.bincount(slot[equal], minlength=slots).astype(np.int64),
        "slot_offset": np.bincount(slot, weights=offsets, minlength=slots),
    }


def _add(parts: dict[str, Any], name: str, part: dict[str, Any]) -> None:
    """Add ``part`` (one chunk's or one file's statistics of a column) into ``parts``."""
    if name not in parts:
        parts[name] = part
        return
    into = parts[name]
    for key, value in part.items():
        if key == "counts":
            merged = into["counts"]
            for k, v in value.items():
                merged[k] = merged.get(k, 0) + v
        else:
            into[key] = into[key] + value


def _ks_from_counts(
    sample: np.ndarray, points: np.ndarray, n: int, counts: np.ndarray, equal: np.ndarray
) -> tuple[float, float]:
    """scipy's ``ks_2samp(sample, current)`` (statistic, p-value) from the slot counts."""
    from scipy import stats

    m = sample.size
    at_or_below_sample = np.searchsorted(sample, points, side="right")  # F_u(u_j) * m
    below = np.cumsum(counts)[:-1]  # current values < u_j, j = 0..K
    le = below + equal[1:]  # current values <= u_j
    after = np.append(below[1:], n)  # current values < u_j+1 (all of them after u_K)
    high = at_or_below_sample / m - le / n  # at the sample values
    low = at_or_below_sample / m - after / n  # at the largest current value of each slot
    candidates_low = [(0.0 - below[0] / n, 0, int(below[0]))] + [
        (float(v), int(i), int(j)) for v, i, j in zip(low, at_or_below_sample, after, strict=True)
    ]
    lo_value, lo_i, lo_j = min(candidates_low, key=lambda c: c[0])
    k = int(np.argmax(high))
    hi_value, hi_i, hi_j = float(high[k]), int(at_or_below_sample[k]), int(le[k])
    min_s = min(max(-lo_value, 0.0), 1.0)
    if min_s > hi_value:
        statistic, i, j = min_s, lo_i, lo_j
    else:
        statistic, i, j = hi_value, hi_i, hi_j
    if max(m, n) <= 10_000:
        # scipy's exact p-value depends only on the statistic and the sizes: two samples with
        # the same sizes whose CDFs differ by this statistic at one point give it
        a = np.where(np.arange(m) < i, 0.0, 2.0)
        b = np.where(np.arange(n) < j, 0.0, 2.0)
        result = stats.ks_2samp(a, b)
        return float(result.statistic), float(result.pvalue)
    big, small = sorted([float(m), float(n)], reverse=True)  # scipy's asymptotic branch
    en = big * small / (big + small)
    return statistic, float(np.clip(stats.kstwo.sf(statistic, np.round(en)), 0, 1))


@dataclass
class _Crossing:
    """An unresolved crossing in slot [a, b): the ``target``-th smallest value of the slot, and
    the offsets' sum of the values before it."""

    column: str
    slot: int
    a: float
    target: int  # 1-based rank within the slot
    lo: int  # key range [lo, hi] holding the target
    hi: int
    count: int  # values in the range
    below: int = 0  # values of the slot below the range
    below_offset: float = 0.0
    value: float | None = None  # the answer: the target value
    prefix: float | None = None  # and the offsets' sum of the target - 1 smallest


def _select_file(path: str, plans: dict[str, list[tuple]], rows: int) -> dict[str, Any]:
    """One selection pass over a file. ``plans[column]`` holds per range ``(slot, lo, hi, a,
    mode, width)``; mode ``collect`` returns the values in the range, ``hist`` per bin the
    count, offset sum, minimum and maximum."""
    out: dict[tuple[str, int], Any] = {}
    for frame in iter_frames(path, list(plans), rows):
        for name, ranges in plans.items():
            values = d.numeric_values(name, frame[name])
            values = np.sort(values[np.isfinite(values)]) + 0.0
            keys = _keys(values)
            for slot, lo, hi, a, mode, width in ranges:
                start = int(np.searchsorted(keys, np.uint64(lo), side="left"))
                stop = int(np.searchsorted(keys, np.uint64(hi), side="right"))
                seg = values[start:stop]
                key = (name, slot)
                if mode == "collect":
                    if seg.size:
                        out[key] = np.concatenate([out[key], seg]) if key in out else seg
                    continue
                bins = ((keys[start:stop] - np.uint64(lo)) // np.uint64(width)).astype(np.int64)
                count = np.bincount(bins, minlength=BINS)
                offset = np.bincount(bins, weights=seg - a, minlength=BINS)
                first = np.searchsorted(bins, np.arange(BINS), side="left")
                last = np.searchsorted(bins, np.arange(BINS), side="right") - 1
                present = count > 0
                low = np.full(BINS, np.inf)
                high = np.full(BINS, -np.inf)
                low[present] = seg[first[present]]
                high[present] = seg[last[present]]
                if key in out:
                    c, o, lw, hg = out[key]
                    out[key] = (c + count, o + offset, np.minimum(lw, low), np.maximum(hg, high))
                else:
                    out[key] = (count, offset, low, high)
    return out


def _merge_selection(total: dict, part: dict) -> None:
    for key, value in part.items():
        if key not in total:
            total[key] = value
        elif isinstance(value, np.ndarray):
            total[key] = np.concatenate([total[key], value])
        else:
            c, o, lw, hg = total[key]
            total[key] = (
                c + value[0],
                o + value[1],
                np.minimum(lw, value[2]),
                np.maximum(hg, value[3]),
            )


@dataclass(frozen=True)
class DriftRun:
    """A batch drift run: the report (``drift.DriftReport``) and what was read."""

    report: Any
    rows: int
    chunks: int
    chunk_rows: int
    passes: int
    input: dict[str, Any]
    executor: str

    def to_dict(self) -> dict[str, Any]:
        run = {k: v for k, v in asdict(self).items() if k != "report"}
        return {**self.report.to_dict(), "run": run}


def drift_files(
    baseline: dict,
    input_dir: str | os.PathLike[str],
    *,
    columns: list[str] | None = None,
    memory_limit: str | int = DEFAULT_MEMORY,
    dask: str | None = None,
    progress: Progress | None = None,
    collect_limit: int | None = None,
    **settings: Any,
) -> DriftRun:
    """Drift of every row under ``input_dir`` against ``baseline``, as ``drift.drift_report``
    computes it on the whole table (``settings`` are its keyword thresholds), in chunks, in
    process or on the Dask cluster at ``dask``. ``progress`` gets the rows of each file read in
    the counting pass. ``collect_limit`` caps the values gathered per selection pass (default:
    an eighth of the budget). Raises InvalidInput as ``drift_report`` does and for bad input."""
    s = d.DriftSettings(**settings)
    source = open_input(input_dir)
    profiles, names = d.drift_columns(baseline, list(source.columns), columns)
    if source.total_rows == 0:
        raise InvalidInput(f"cannot compute drift: batch input {source.root!r} has no rows")
    rows = chunk_rows(source, names, memory_limit)
    limit = collect_limit or max(1024, parse_memory(memory_limit) // 64)
    paths = [source.path(i) for i in range(len(source.files))]
    plans = _plans(profiles, names)
    passes = 0
    with _Runner(dask) as runner:
        totals: dict[str, Any] = {}
        read = chunks = 0
        for done, n, part in runner.map(_count_file, paths, plans, rows):
            chunks += n
            for name, value in part.items():
                _add(totals, name, value)
            read += done
            if progress is not None:
                progress(done)
        if read != source.total_rows or len(totals) != len(names):
            raise InvalidInput("batch drift: the input changed while it was read")
        results: dict[str, d.ColumnDrift] = {}
        crossings: list[_Crossing] = []
        numeric: dict[str, dict[str, Any]] = {}
        for name in names:
            profile, part = profiles[name], totals[name]
            if plans[name] is None:
                counts = pd.Series(part["counts"], dtype="int64").sort_index(kind="mergesort")
                results[name] = d.categorical_column(name, profile, s, counts, part["total"])
                continue
            n = int(part["rows"])
            if n == 0 or not profile["edges"]:
                results[name] = d.one_side_empty(name, "numeric", profile, n, int(part["total"]))
                continue
            numeric[name] = part
            sample = d.reference_sample(profile)
            if sample.size and not d.uses_test(n, s):
                crossings += _crossings(name, plans[name].points, sample, n, part)
        passes = _resolve(runner, paths, crossings, rows, limit)
        for name, part in numeric.items():
            profile = profiles[name]
            sample = d.reference_sample(profile)
            n = int(part["rows"])
            test = statistic = p = None
            if sample.size and d.uses_test(n, s):
                test = "ks"
                statistic, p = _ks_from_counts(
                    sample, plans[name].points, n, part["slot_count"], part["slot_equal"]
                )
            elif sample.size:
                test = "wasserstein"
                mine = {c.slot: c for c in crossings if c.column == name}
                statistic = _wasserstein(plans[name].points, sample, n, part, mine)
                statistic /= d.distance_scale(profile)
            results[name] = d.numeric_column(
                name,
                profile,
                s,
                rows=n,
                total=int(part["total"]),
                at_or_below=part["at_or_below"],
                test=test,
                statistic=statistic,
                p_value=p,
            )
    ordered = {name: results[name] for name in names}
    report = d.assemble_report(baseline, source.total_rows, s, ordered)
    return DriftRun(
        report,
        source.total_rows,
        chunks,
        rows,
        1 + passes,
        source.fingerprint(),
        dask or "in-process",
    )


def _crossings(
    name: str, points: np.ndarray, sample: np.ndarray, n: int, part: dict[str, Any]
) -> list[_Crossing]:
    """The slots [u_j, u_j+1) where the current CDF crosses the sample's level F_u(u_j)."""
    m = sample.size
    counts = part["slot_count"]
    level = np.searchsorted(sample, points, side="right")  # m * F_u(u_j)
    below = 0
    found = []
    for j in range(points.size - 1):
        below += int(counts[j])  # values < u_j
        r = int(counts[j + 1])
        top = (int(level[j]) * n) // m - below  # largest i with (below + i) / n <= F_u(u_j)
        if 0 <= top < r:
            lo, hi = _key(points[j]), _key(points[j + 1]) - 1
            found.append(_Crossing(name, j + 1, float(points[j]), top + 1, lo, hi, r))
    return found


def _resolve(
    runner: _Runner, paths: list[str], crossings: list[_Crossing], rows: int, limit: int
) -> int:
    """Find every crossing's order statistic with as few passes as the data allows."""
    passes = 0
    while any(c.value is None for c in crossings):
        if passes >= MAX_PASSES:  # cannot happen with 64-bit keys; a guard, not a limit
            raise InvalidInput("batch drift: order statistics did not converge")
        passes += 1
        open_ = [c for c in crossings if c.value is None]
        budget = limit
        plans: dict[str, list[tuple]] = {}
        for c in sorted(open_, key=lambda c: c.count):
            collect = c.count <= budget
            if collect:
                budget -= c.count
            width = -(-(c.hi - c.lo + 1) // BINS)
            plans.setdefault(c.column, []).append(
                (c.slot, c.lo, c.hi, c.a, "collect" if collect else "hist", width)
            )
        for ranges in plans.values():
            ranges.sort(key=lambda r: r[1])
        total: dict = {}
        for part in runner.map(_select_file, paths, plans, rows):
            _merge_selection(total, part)
        for c in open_:
            got = total.get((c.column, c.slot))
            rank = c.target - c.below  # within the range, 1-based
            if got is None:
                raise InvalidInput("batch drift: the input changed while it was read")
            if isinstance(got, np.ndarray):
                values = np.sort(got)
                if not 1 <= rank <= values.size:
                    raise InvalidInput("batch drift: the input changed while it was read")
                c.value = float(values[rank - 1])
                c.prefix = c.below_offset + float(np.sum(values[: rank - 1] - c.a))
                continue
            count, offset, low, high = got
            cumulative = np.cumsum(count)
            b = int(np.searchsorted(cumulative, rank, side="left"))
            if rank < 1 or b >= BINS:
                raise InvalidInput("batch drift: the input changed while it was read")
            before = int(cumulative[b - 1]) if b else 0
            c.below += before
            c.below_offset += float(np.sum(offset[:b]))
            c.count = int(count[b])
            if low[b] == high[b]:  # one value, repeated
                c.value = float(low[b])
                c.prefix = c.below_offset + (c.target - c.below - 1) * (c.value - c.a)
            else:
                c.lo, c.hi = _key(low[b]), _key(high[b])
    return passes


def _wasserstein(
    points: np.ndarray,
    sample: np.ndarray,
    n: int,
    part: dict[str, Any],
    crossings: dict[int, _Crossing],
) -> float:
    """W1 between the reference sample and the current values from the slot statistics."""
    m = sample.size
    counts, offsets = part["slot_count"], part["slot_offset"]
    level = np.searchsorted(sample, points, side="right")
    total = float(offsets[0]) / n + float(offsets[-1]) / n  # the two tails
    below = int(counts[0])
    for j in range(points.size - 1):
        a, b = float(points[j]), float(points[j + 1])
        r, off = int(counts[j + 1]), float(offsets[j + 1])
        c = int(level[j]) / m
        top = (int(level[j]) * n) // m - below
        if top < 0:  # the current CDF above the sample's level all through the slot
            total += (b - a) * ((below + r) / n - c) - off / n
        elif top >= r:  # below it all through
            total += (b - a) * (c - (below + r) / n) + off / n
        else:
            x = crossings[j + 1]
            t, prefix = float(x.value), float(x.prefix)
            total += (t - a) * (c - (below + top) / n) + prefix / n
            total += (b - t) * ((below + r) / n - c) - ((off - prefix) - (r - top) * (t - a)) / n
        below += r
    return total


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


__all__ = [
    "ArtifactPayload",
    "DriftRun",
    "ParquetInput",
    "ScoreRun",
    "chunk_rows",
    "drift_files",
    "iter_frames",
    "open_input",
    "parse_memory",
    "prediction_frame",
    "read_frame",
    "score_files",
]
