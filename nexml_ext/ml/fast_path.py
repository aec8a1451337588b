"""The AutoGluon fast path: a served model's own booster behind lookup-table feature encoding.

When the served model is LightGBM or CatBoost, ``write_fast_path`` writes the model's own booster
in its library's native format (``fast/lightgbm.txt`` or ``fast/catboost.cbm``) and AutoGluon's
fitted feature transform compiled into lookup tables (``fast/encoder.json``). The fast path skips
AutoGluon's pandas machinery, not its arithmetic: the tables hold what AutoGluon's feature
generator and the model's preprocessing output for every schema value, and probabilities are
rounded to float32 as AutoGluon rounds them, so scores equal the full predictor's. The files are
checked against the cloned predictor on probe rows and removed if they differ.
Scoring (``NativeScorer``) imports only the booster's library, never AutoGluon.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

FAST_DIR = "fast"
FAST_ENCODER = "fast/encoder.json"
PARITY_TOLERANCE = 1e-6

_SMALL_BATCH = 256  # up to this many rows a booster scores on one thread (no pool start-up)
_UNSEEN = "\x00nexml-unseen\x00"  # a category value no training set holds


# ---- the native fast path ------------------------------------------------------------------------


class NativeScorer:
    """AutoGluon's feature transform as lookup tables in front of the model's own booster."""

    def __init__(self, spec: dict[str, Any], native: Any, classes: list[Any]) -> None:
        import numpy as np

        self.library: str = spec["library"]
        self.model = native
        self.problem_type: str = spec["problem_type"]
        self.columns: list[dict[str, Any]] = spec["columns"]
        self.inputs = [c["input"] for c in self.columns]
        self.categorical = [j for j, c in enumerate(self.columns) if c.get("categorical")]
        for column in self.columns:
            column["_missing"] = _float(column["missing"])
            if column["kind"] == "lookup":
                column["_table"] = {k: _float(v) for k, v in column["table"].items()}
                column["_unseen"] = _float(column["unseen"])
            else:
                column["_dtype"] = np.dtype(column["dtype"])
        ag = spec.get("autogluon_classes") or []
        internal = spec.get("internal_columns") or []
        # the output column behind each of our classes (None: a class the model never saw)
        self.order = [internal[ag.index(c)] for c in classes] if internal else []

    @classmethod
    def read(cls, directory: Path, classes: list[Any]) -> NativeScorer:
        spec = json.loads((directory / FAST_ENCODER).read_text())
        path = str(directory / spec["file"])
        if spec["library"] == "lightgbm":
            import lightgbm

            native = lightgbm.Booster(model_file=path)
        else:
            from catboost import CatBoostClassifier, CatBoostRegressor

            regression = spec["problem_type"] == "regression"
            native = (CatBoostRegressor if regression else CatBoostClassifier)()
            native.load_model(path)
        return cls(spec, native, classes)

    def encode(self, rows: pd.DataFrame) -> np.ndarray:
        """Validated input rows -> the matrix the booster was fit on (CatBoost: objects)."""
        import numpy as np

        matrix = np.empty((len(rows), len(self.columns)))
        for j, column in enumerate(self.columns):
            values = rows[column["input"]].to_numpy()
            if column["kind"] == "lookup":
                table, unseen, missing = column["_table"], column["_unseen"], column["_missing"]
                matrix[:, j] = [
                    missing
                    if _is_missing(v)
                    else table.get(v if type(v) is str else str(v), unseen)
                    for v in values
                ]
                continue
            numbers = values.astype(float)
            dtype = column["_dtype"]
            if dtype.kind in "iu":  # AutoGluon fills a missing whole number, then truncates
                numbers = np.where(np.isnan(numbers), column["_missing"], numbers)
            matrix[:, j] = numbers.astype(dtype).astype(float)
        if self.library != "catboost" or not self.categorical:
            return matrix
        mixed = matrix.astype(object)  # CatBoost hashes category codes as whole numbers
        mixed[:, self.categorical] = matrix[:, self.categorical].astype(np.int64)
        return mixed

    def raw(self, rows: pd.DataFrame) -> np.ndarray:
        """AutoGluon's own output of the model: the booster's prediction rounded to float32."""
        import numpy as np

        matrix = self.encode(rows)
        small = len(matrix) <= _SMALL_BATCH
        if self.library == "lightgbm":
            out = self.model.predict(matrix, num_threads=1 if small else 0)
        elif self.problem_type == "regression":
            out = self.model.predict(matrix, thread_count=1 if small else -1)
        else:
            out = self.model.predict_proba(matrix, thread_count=1 if small else -1)
            out = out[:, 1] if self.problem_type == "binary" else out
        return np.asarray(out).astype(np.float32)

    def proba(self, rows: pd.DataFrame) -> np.ndarray:
        import numpy as np

        out = self.raw(rows)
        if self.problem_type == "binary":  # as AutoGluon: negative = 1 - positive, in float32
            out = np.column_stack([1 - out, out])
        result = np.zeros((len(out), len(self.order)))
        for i, column in enumerate(self.order):
            if column is not None:
                result[:, i] = out[:, column]
        return result

    def contributions(self, matrix: Any) -> np.ndarray:
        """Per-row contributions in margin space, bias last: the booster's own TreeSHAP."""
        if self.library == "lightgbm":
            return self.model.predict(matrix, pred_contrib=True)
        from catboost import Pool

        pool = Pool(matrix, cat_features=self.categorical)
        return self.model.get_feature_importance(pool, type="ShapValues")


class NotCompilable(Exception):
    """The fast path cannot reproduce this model exactly; the full predictor serves it."""


def compile_encoder(
    predictor: Any, name: str, probes: pd.DataFrame, columns: dict[str, Any]
) -> tuple[dict[str, Any], Any]:
    """Compile AutoGluon's feature transform for the predictor's LightGBM or CatBoost ``name``.

    Returns ``(encoder spec, native model)``. Raises NotCompilable when the model is of
    another kind or uses features AutoGluon derives, or the tables do not reproduce AutoGluon's
    own preprocessing on ``probes``: the AutoGluon internals read here are checked, not trusted.
    """
    try:
        return _compile_unchecked(predictor, name, probes, columns)
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise NotCompilable(f"{type(exc).__name__}: {exc}") from None


def _compile_unchecked(
    predictor: Any, name: str, probes: pd.DataFrame, entries: dict[str, Any]
) -> tuple[dict[str, Any], Any]:
    import numpy as np
    import pandas as pd
    from autogluon.tabular.models import CatBoostModel, LGBModel

    model = predictor._trainer.load_model(name)
    library = {LGBModel: "lightgbm", CatBoostModel: "catboost"}.get(type(model))
    if library is None:
        raise NotCompilable(
            f"{name} is a {type(model).__name__}; the fast path serves LightGBM and CatBoost models"
        )
    features = list(model.features)
    derived = [f for f in features if f not in probes.columns]
    if derived:
        raise NotCompilable(f"features {derived} are derived by AutoGluon, not input columns")
    # the reference: the model's own preprocessing of AutoGluon's own feature transform
    frame = model.preprocess(predictor._learner.feature_generator.transform(probes))
    if frame.shape[1] != len(features):
        raise NotCompilable(
            f"{name} preprocesses into {frame.shape[1]} columns, not {len(features)}"
        )
    native = model.model
    categorical = [
        j for j, c in enumerate(frame.columns) if isinstance(frame[c].dtype, pd.CategoricalDtype)
    ]
    if library == "lightgbm":
        known = dict(zip(categorical, native.pandas_categorical or [], strict=True))
    elif categorical != sorted(native.get_cat_feature_indices()):
        raise NotCompilable("CatBoost's categorical features are not AutoGluon's")
    reference = np.empty((len(probes), len(features)))
    columns = []
    for j, feature in enumerate(features):
        out = frame.iloc[:, j]
        if j in categorical:
            labels = out.astype(object).tolist()
            if library == "lightgbm":  # LightGBM's rule: the position among fit categories
                codes = [known[j].index(v) if v in known[j] else np.nan for v in labels]
            else:  # AutoGluon hands CatBoost whole-number codes
                codes = [float(v) for v in labels]
            out = pd.Series(codes, dtype=float)
        reference[:, j] = out.to_numpy(dtype=float)
        kind, raw = _kind(entries[feature]), probes[feature]
        if kind != "number":
            if kind == "category" and not entries[feature].get("categories"):
                raise NotCompilable(f"the schema lists no categories for {feature!r}")
            column = _lookup_column(feature, raw, reference[:, j])
        elif j in categorical:
            raise NotCompilable(f"AutoGluon treats the number column {feature!r} as categories")
        else:
            missing = reference[raw.isna().to_numpy(), j]
            column = {
                "input": feature,
                "kind": "number",
                "dtype": str(out.dtype),
                "missing": _json_float(missing[0] if missing.size else math.nan),
            }
        columns.append({**column, "categorical": j in categorical})
    spec = {"library": library, "problem_type": predictor.problem_type, "columns": columns}
    encoded = NativeScorer(json.loads(json.dumps(spec)), native, []).encode(probes)
    if not np.array_equal(encoded.astype(float), reference, equal_nan=True):
        raise NotCompilable("the lookup tables do not reproduce AutoGluon's preprocessing")
    return spec, native


def _lookup_column(feature: str, raw: pd.Series, encoded: np.ndarray) -> dict[str, Any]:
    table: dict[str, Any] = {}
    unseen = missing = None
    for value, code in zip(raw.to_numpy(), encoded, strict=True):
        if _is_missing(value):
            missing = _json_float(code)
        elif value == _UNSEEN:
            unseen = _json_float(code)
        else:
            key = value if type(value) is str else str(value)
            if table.setdefault(key, _json_float(code)) != _json_float(code):
                raise NotCompilable(f"{feature}: value {key!r} encodes two ways")
    return {
        "input": feature,
        "kind": "lookup",
        "table": table,
        "unseen": unseen,
        "missing": missing,
    }


def write_fast_path(
    clone: Any,
    name: str,
    directory: Path,
    probes: pd.DataFrame,
    columns: dict[str, Any],
    ag_classes: list[Any],
) -> dict[str, Any]:
    """Write the native fast path of ``clone``'s model ``name`` if it is exact; describe it."""
    import numpy as np
    import pandas as pd

    full = {
        "kind": "autogluon-predictor",
        "description": "AutoGluon's own predict_proba on the persisted cloned predictor",
    }
    try:
        spec, native = compile_encoder(clone, name, probes, columns)
    except NotCompilable as exc:
        return {**full, "reason": str(exc)}
    library = spec["library"]
    spec["file"] = f"{FAST_DIR}/{library}.{'txt' if library == 'lightgbm' else 'cbm'}"
    spec["autogluon_classes"] = ag_classes
    if clone.problem_type == "multiclass":
        spec["internal_columns"] = [clone.class_labels_internal_map.get(c) for c in ag_classes]
    elif clone.problem_type == "binary":
        spec["internal_columns"] = [int(c == clone.positive_class) for c in ag_classes]
    (directory / FAST_DIR).mkdir(parents=True, exist_ok=True)
    (directory / FAST_ENCODER).write_text(json.dumps(spec, indent=1, sort_keys=True))
    native.save_model(str(directory / spec["file"]))

    # parity, from the files just written, against the clone the artifact carries
    check = pd.concat([probes, random_rows(columns, list(probes.columns), 500)], ignore_index=True)
    scorer = NativeScorer.read(directory, ag_classes)
    if clone.problem_type == "regression":
        ours = scorer.raw(check).astype(float)
        theirs = clone.predict(check, model=name).to_numpy(dtype=float)
    else:
        ours = scorer.proba(check)
        theirs = clone.predict_proba(check, model=name, as_multiclass=True)[ag_classes]
        theirs = theirs.to_numpy(dtype=float)
    difference = float(np.max(np.abs(ours - theirs)))
    if not difference <= PARITY_TOLERANCE:
        shutil.rmtree(directory / FAST_DIR)
        return {**full, "reason": f"the native path differed from it by {difference:.3g}"}
    return {
        "kind": "native",
        "library": library,
        "files": [FAST_ENCODER, spec["file"]],
        "description": (
            f"{name}'s own {library} booster scores a matrix built by lookup tables; skips "
            "TabularPredictor/learner/trainer dispatch and pandas feature generation"
        ),
        "exact_because": (
            "the tables hold what AutoGluon's feature generator and the model's preprocessing "
            "output for every schema value, an unseen value and a missing one; numbers get the "
            "same dtype casts; the booster is the model's own in its native format; outputs are "
            "rounded to float32 as AutoGluon rounds them"
        ),
        "parity": {"rows": len(check), "max_abs_diff": difference},
    }


# ---- rows drawn from the schema ------------------------------------------------------------------


def probe_frame(columns: dict[str, Any], features: list[str]) -> pd.DataFrame:
    """Rows walking each input column through its values, an unseen value and a missing one."""
    import pandas as pd

    base = {name: _probe_values(columns[name])[0] for name in features}
    rows = [{**base, name: value} for name in features for value in _probe_values(columns[name])]
    frame = pd.DataFrame(rows, columns=features)
    for name in features:
        if _kind(columns[name]) == "category":
            frame[name] = frame[name].astype(object)
    return frame


def _probe_values(entry: dict[str, Any]) -> list[Any]:
    import pandas as pd

    kind = _kind(entry)
    if kind == "category":
        return [*entry.get("categories", []), _UNSEEN, None]
    if kind == "bool":
        return [False, True, None]
    if kind == "datetime":
        return [pd.Timestamp("2000-01-01"), pd.Timestamp("2020-06-30"), None]
    low, high = float(entry.get("min", 0.0)), float(entry.get("max", 1.0))
    ends = [round(low), round(high)] if _is_integer(entry) else [low, high]
    return [*ends, (low + high) / 2, low + 0.5, math.nan]


def random_rows(columns: dict[str, Any], features: list[str], n: int) -> pd.DataFrame:
    """``n`` rows of ``features`` drawn from the schema's ranges and categories (seeded)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    data: dict[str, Any] = {}
    for name in features:
        entry = columns[name]
        kind = _kind(entry)
        if kind == "category":
            data[name] = rng.choice(np.array(entry.get("categories") or [_UNSEEN], dtype=object), n)
        elif kind == "bool":
            data[name] = rng.random(n) < 0.5
        elif kind == "datetime":
            days = pd.to_timedelta(rng.integers(0, 7300, n), unit="D")
            data[name] = pd.Timestamp("2000-01-01") + days
        else:
            values = rng.uniform(float(entry.get("min", 0.0)), float(entry.get("max", 1.0)), n)
            data[name] = np.round(values).astype(np.int64) if _is_integer(entry) else values
    return pd.DataFrame(data, columns=features)


# ---- schema entries and values -----------------------------------------------------------------


def _kind(entry: dict[str, Any]) -> str:
    """number, bool, datetime or category: from ``entry["kind"]`` if given, else its dtype."""
    named = {
        "numeric": "number",
        "boolean": "bool",
        "datetime": "datetime",
        "categorical": "category",
    }
    if entry.get("kind") in named:
        return named[entry["kind"]]
    dtype = str(entry.get("dtype", "object")).lower()
    if dtype.startswith("bool"):
        return "bool"
    if dtype.startswith(("int", "uint", "float")):
        return "number"
    return "datetime" if dtype.startswith("datetime") else "category"


def _is_integer(entry: dict[str, Any]) -> bool:
    return str(entry.get("dtype", "")).lower().startswith(("int", "uint"))


def _json_float(value: Any) -> float | None:
    number = float(value)
    return None if math.isnan(number) else number


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _is_missing(value: Any) -> bool:
    if value is None or (isinstance(value, float) and value != value):
        return True
    return type(value).__name__ in ("NAType", "NaTType")
