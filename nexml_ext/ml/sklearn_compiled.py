"""A compiled small-batch scoring path for the project's scikit-learn pipelines, exact to the bit.

``compile_pipeline`` reads a fitted pipeline of ``preprocess.build_pipeline`` (a
``ColumnTransformer`` of one small pipeline per input column, an optional ``SelectTopK``, then the
estimator) once into plain Python and numpy structures: per column, the cast, the imputed value,
the clipping bounds, the scaler's mean and scale, or the encoder's category table; per tree, its
node arrays as lists. Scoring a few rows then walks those structures instead of making ~25
scikit-learn calls per row (and 100 per-tree calls for a forest), replicating scikit-learn's own
arithmetic: trees compare ``float32(x) <= threshold`` (forests) or ``x <= threshold``
(histogram boosting) and send a missing value where the node says; forests add the per-tree
values in estimator order and divide by their number; boosting adds the iterations' leaf values
to the baseline and applies the loss's own inverse link; linear models run the same numpy
products as scikit-learn on the same matrix shape.

What it cannot replicate — an unknown step or estimator, an option it does not model (dropped or
infrequent categories, categorical boosting splits, multiple outputs, multiclass linear and
boosting models) — raises ``NotCompilable``; so does a pipeline whose compiled encoding and
scores differ from its own, by ``==``, on probe rows covering every category, an unseen one,
missing values and the ends of each numeric range (``fast_path.probe_frame``, ``random_rows``).
Callers then keep scikit-learn's path. A batch larger than ``MAX_ROWS``, a value the compiled
casts do not cover, or an encoding that is not finite also goes to scikit-learn.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import pandas as pd

from .fast_path import NotCompilable, probe_frame, random_rows

__all__ = ["MAX_ROWS", "CompiledPipeline", "NotCompilable", "compile_model", "compile_pipeline",
           "conforming_records", "conforming_rows", "verify"]

MAX_ROWS = 64  # larger batches stay on scikit-learn's vectorised path
_RANDOM_PROBES = 300
_SINGLE_PROBES = 4  # probe rows also scored alone (a one-row product has its own shape)


class _Fallback(Exception):
    """A value the compiled casts do not cover: score this batch with scikit-learn."""


def _missing(value: Any) -> bool:
    if value is None or (isinstance(value, float) and value != value):
        return True
    return value is pd.NA or value is pd.NaT


# ---- per-column preprocessing --------------------------------------------------------------------


class _Categorical:
    """as_text → impute (missing → statistic) → one-hot (unknown: zeros) or ordinal codes."""

    def __init__(self, fill: str, table: dict[str, int], width: int, onehot: bool, unknown: float):
        self.fill, self.table, self.width = fill, table, width
        self.onehot, self.unknown = onehot, unknown

    def extend(self, out: list[float], value: Any) -> None:
        if _missing(value):
            value = self.fill
        elif type(value) is not str:
            raise _Fallback
        index = self.table.get(value)
        if self.onehot:
            cells = [0.0] * self.width
            if index is not None:
                cells[index] = 1.0
            out.extend(cells)
        else:
            out.append(self.unknown if index is None else float(index))


class _Numeric:
    """(as_float) → impute → clip to [low, high] → (x - mean) / scale, in float64 as sklearn."""

    def __init__(self, boolean: bool, fill: float, low: float | None, high: float | None,
                 mean: float | None, scale: float | None):
        self.boolean, self.fill = boolean, fill
        self.low, self.high, self.mean, self.scale = low, high, mean, scale

    def extend(self, out: list[float], value: Any) -> None:
        if _missing(value):
            x = math.nan
        elif isinstance(value, bool | np.bool_ | int | float | np.integer | np.floating):
            x = float(value)
        else:
            raise _Fallback
        if x != x:
            x = self.fill
        if self.low is not None:
            if x < self.low:
                x = self.low
            if x > self.high:
                x = self.high
        if self.mean is not None:
            x = x - self.mean
        if self.scale is not None:
            x = x / self.scale
        out.append(x)


def _compile_column(transformer: Any) -> _Categorical | _Numeric:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import (
        FunctionTransformer,
        OneHotEncoder,
        OrdinalEncoder,
        StandardScaler,
    )

    from .preprocess import QuantileClipper, as_float, as_text

    if not isinstance(transformer, Pipeline):
        raise NotCompilable(f"column transformer {type(transformer).__name__} is not a pipeline")
    steps = [step for _, step in transformer.steps]
    cast = None
    if steps and isinstance(steps[0], FunctionTransformer):
        cast = steps.pop(0)
        if cast.func not in (as_text, as_float) or cast.kw_args or cast.validate:
            raise NotCompilable(f"unknown cast {cast.func!r}")
        cast = cast.func
    if not steps or type(steps[0]) is not SimpleImputer:
        raise NotCompilable("a column pipeline without its SimpleImputer")
    imputer = steps.pop(0)
    missing = imputer.missing_values
    if imputer.add_indicator or not (isinstance(missing, float) and missing != missing):
        raise NotCompilable("an imputer with an indicator or other missing values")
    if len(imputer.statistics_) != 1:
        raise NotCompilable("an imputer of several columns")
    fill = imputer.statistics_[0]
    if cast is as_text:
        if len(steps) != 1 or not isinstance(steps[0], OneHotEncoder | OrdinalEncoder):
            raise NotCompilable("a text column not ending in its encoder")
        encoder = steps[0]
        if type(fill) is not str or np.dtype(encoder.dtype) != np.float64:
            raise NotCompilable("a text imputer without a text value, or a non-float encoder")
        categories = list(encoder.categories_[0])
        if len(encoder.categories_) != 1 or any(type(c) is not str for c in categories):
            raise NotCompilable("categories that are not all text")
        table = {c: i for i, c in enumerate(categories)}
        if type(encoder) is OneHotEncoder:
            if (encoder.drop_idx_ is not None or encoder.sparse_output
                    or getattr(encoder, "_infrequent_enabled", False)
                    or encoder.handle_unknown != "ignore"):
                raise NotCompilable("one-hot options the compiled path does not replicate")
            return _Categorical(fill, table, len(categories), True, 0.0)
        if type(encoder) is OrdinalEncoder:
            if encoder.handle_unknown != "use_encoded_value" or getattr(
                encoder, "_infrequent_enabled", False
            ):
                raise NotCompilable("ordinal options the compiled path does not replicate")
            return _Categorical(fill, table, 1, False, float(encoder.unknown_value))
        raise NotCompilable(f"unknown encoder {type(encoder).__name__}")
    fill = float(fill)
    if fill != fill:
        raise NotCompilable("a numeric imputer without a value (an empty column)")
    low = high = mean = scale = None
    if steps and type(steps[0]) is QuantileClipper:
        clipper = steps.pop(0)
        low, high = float(clipper.lower_[0]), float(clipper.upper_[0])
        low = -math.inf if low != low else low
        high = math.inf if high != high else high
    if steps and type(steps[0]) is StandardScaler:
        scaler = steps.pop(0)
        if scaler.with_mean:
            mean = float(scaler.mean_[0])
        if scaler.with_std:
            scale = float(scaler.scale_[0])
    if steps:
        raise NotCompilable(f"unknown numeric step {type(steps[0]).__name__}")
    return _Numeric(cast is as_float, fill, low, high, mean, scale)


# ---- final estimators ----------------------------------------------------------------------------


class _Forest:
    """Random forest / extra trees: per-tree node lists; float32 comparisons; values summed in
    estimator order, then divided by the number of trees."""

    def __init__(self, estimator: Any, classifier: bool):
        if estimator.n_outputs_ != 1:
            raise NotCompilable("a forest of several outputs")
        self.classifier = classifier
        self.n = len(estimator.estimators_)
        self.width = int(estimator.n_classes_) if classifier else 1
        self.trees = []
        for tree in estimator.estimators_:
            t = tree.tree_
            missing = getattr(t, "missing_go_to_left", None)
            values = t.value[:, 0, : self.width]
            self.trees.append((
                t.children_left.tolist(), t.children_right.tolist(), t.feature.tolist(),
                t.threshold.tolist(),
                [False] * t.node_count if missing is None else [bool(m) for m in missing],
                [tuple(v) for v in values.tolist()],
            ))

    def output(self, matrix: np.ndarray) -> np.ndarray:
        rows = matrix.astype(np.float32).tolist()  # sklearn's trees read float32
        out = np.zeros((len(rows), self.width), dtype=np.float64)
        for r, x in enumerate(rows):
            total = [0.0] * self.width
            for left, right, feature, threshold, missing_left, values in self.trees:
                node = 0
                child = left[0]
                while child != -1:
                    v = x[feature[node]]
                    if v != v:
                        node = child if missing_left[node] else right[node]
                    elif v <= threshold[node]:
                        node = child
                    else:
                        node = right[node]
                    child = left[node]
                leaf = values[node]
                for j in range(self.width):
                    total[j] += leaf[j]
            out[r] = total
        out /= self.n
        return out if self.classifier else out[:, 0]


class _Boosting:
    """Histogram gradient boosting (binary or regression): baseline + leaf values in iteration
    order, float64 comparisons, then the loss's own inverse link."""

    def __init__(self, estimator: Any, classifier: bool):
        if estimator.n_trees_per_iteration_ != 1:
            raise NotCompilable("multiclass boosting")
        if getattr(estimator, "_preprocessor", None) is not None:
            raise NotCompilable("boosting with its own categorical preprocessing")
        self.estimator, self.classifier = estimator, classifier
        self.baseline = estimator._baseline_prediction
        self.trees = []
        for (predictor,) in estimator._predictors:
            nodes = predictor.nodes
            if nodes["is_categorical"].any():
                raise NotCompilable("boosting with categorical splits")
            self.trees.append((
                nodes["left"].tolist(), nodes["right"].tolist(), nodes["feature_idx"].tolist(),
                nodes["num_threshold"].tolist(), nodes["missing_go_to_left"].astype(bool).tolist(),
                nodes["is_leaf"].astype(bool).tolist(), nodes["value"].tolist(),
            ))

    def output(self, matrix: np.ndarray) -> np.ndarray:
        rows = matrix.tolist()
        raw = np.zeros((len(rows), 1), dtype=self.baseline.dtype, order="F")
        raw += self.baseline
        for r, x in enumerate(rows):
            total = raw[r, 0]
            for left, right, feature, threshold, missing_left, is_leaf, value in self.trees:
                node = 0
                while not is_leaf[node]:
                    v = x[feature[node]]
                    if v != v:
                        node = left[node] if missing_left[node] else right[node]
                    elif v <= threshold[node]:
                        node = left[node]
                    else:
                        node = right[node]
                total += value[node]
            raw[r, 0] = total
        loss = self.estimator._loss
        if self.classifier:
            return loss.predict_proba(raw)
        return loss.link.inverse(raw.ravel())


class _Linear:
    """LogisticRegression (binary) and Ridge: scikit-learn's own numpy products and link."""

    def __init__(self, estimator: Any, classifier: bool):
        self.classifier = classifier
        self.coef, self.intercept = estimator.coef_, estimator.intercept_
        if classifier and (len(estimator.classes_) != 2 or self.coef.shape[0] != 1):
            raise NotCompilable("multiclass linear models")
        if not classifier and self.coef.ndim != 1:
            raise NotCompilable("a linear model of several targets")

    def output(self, matrix: np.ndarray) -> np.ndarray:
        from scipy import special

        if not self.classifier:
            return matrix @ self.coef + self.intercept
        prob = matrix @ self.coef.T + self.intercept
        prob = prob.reshape((-1,))
        prob = special.expit(prob, out=prob)
        return np.stack([1 - prob, prob], axis=1)


def _compile_estimator(estimator: Any) -> Any:
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LogisticRegression, Ridge

    kind = type(estimator)
    if kind in (RandomForestClassifier, ExtraTreesClassifier):
        return _Forest(estimator, True)
    if kind in (RandomForestRegressor, ExtraTreesRegressor):
        return _Forest(estimator, False)
    if kind is HistGradientBoostingClassifier:
        return _Boosting(estimator, True)
    if kind is HistGradientBoostingRegressor:
        return _Boosting(estimator, False)
    if kind is LogisticRegression:
        return _Linear(estimator, True)
    if kind is Ridge:
        return _Linear(estimator, False)
    raise NotCompilable(f"estimator {kind.__name__} has no compiled path")


# ---- the pipeline --------------------------------------------------------------------------------


class CompiledPipeline:
    """A fitted pipeline read into plain structures: ``encode`` gives the matrix the pipeline's
    steps but the last output, ``output`` the final estimator's ``predict_proba`` (classifiers,
    columns in its ``classes_`` order) or ``predict`` (regressors). Each returns None for a batch
    the compiled path does not take (more than ``MAX_ROWS`` rows, uncovered values), and the
    caller scores it with scikit-learn."""

    def __init__(self, pipeline: Any):
        from sklearn.compose import ColumnTransformer
        from sklearn.pipeline import Pipeline

        if not isinstance(pipeline, Pipeline) or len(pipeline.steps) < 2:
            raise NotCompilable("not a pipeline of preprocessing and an estimator")
        steps = [step for _, step in pipeline.steps]
        prepare, final, middle = steps[0], steps[-1], steps[1:-1]
        if type(prepare) is not ColumnTransformer:
            raise NotCompilable("the pipeline does not start with a ColumnTransformer")
        self.columns: list[str] = []
        self.steps: list[Any] = []
        position = 0
        for name, transformer, columns in prepare.transformers_:
            if transformer == "drop" or (name == "remainder" and len(columns) == 0):
                continue
            if (isinstance(transformer, str) or len(columns) != 1
                    or not isinstance(columns[0], str)):
                raise NotCompilable(f"transformer {name!r} is not one named column's pipeline")
            compiled = _compile_column(transformer)
            width = compiled.width if isinstance(compiled, _Categorical) else 1
            if prepare.output_indices_[name] != slice(position, position + width):
                raise NotCompilable(f"transformer {name!r} outputs other columns than expected")
            position += width
            self.columns.append(columns[0])
            self.steps.append(compiled)
        self.width = position
        self.support: np.ndarray | None = None
        for step in middle:
            if self.support is not None or not hasattr(step, "get_support"):
                raise NotCompilable(f"unknown step {type(step).__name__}")
            self.support = step.get_support(indices=True)
        self.final = final
        self.classifier = hasattr(final, "predict_proba")
        self.model = _compile_estimator(final)

    def encode(self, rows: pd.DataFrame) -> np.ndarray | None:
        """The pipeline's encoding of ``rows`` (float64, C order), or None (see the class)."""
        if len(rows) > MAX_ROWS or len(rows) == 0:
            return None
        return self.encode_columns([rows[name].tolist() for name in self.columns], len(rows))

    def encode_columns(self, values: list[list[Any]], n: int) -> np.ndarray | None:
        """``encode`` of ``n`` rows given as each of ``self.columns``' values, in that order,
        as the plain Python values ``Series.tolist()`` gives."""
        if n > MAX_ROWS or n == 0:
            return None
        matrix = []
        try:
            for r in range(n):
                out: list[float] = []
                for step, column in zip(self.steps, values, strict=True):
                    step.extend(out, column[r])
                matrix.append(out)
        except _Fallback:
            return None
        encoded = np.array(matrix, dtype=np.float64)
        if self.support is not None:
            encoded = encoded[:, self.support]
        if not np.isfinite(encoded).all():
            return None  # sklearn's own checks decide what a non-finite encoding does
        return encoded

    def output(self, encoded: np.ndarray) -> np.ndarray:
        """``predict_proba`` (classifiers) or ``predict`` (regressors) of an encoding."""
        return self.model.output(encoded)

    def score(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
        """(encoding, output) of ``rows``, or None when the compiled path declines them."""
        encoded = self.encode(rows)
        if encoded is None:
            return None
        return encoded, self.output(encoded)


def compile_pipeline(pipeline: Any, probes: pd.DataFrame) -> CompiledPipeline:
    """``pipeline`` compiled and checked on ``probes`` (``verify``): its encoding and output
    equal the pipeline's own by ``==``. Raises NotCompilable for anything it does not replicate
    or any difference."""
    compiled = CompiledPipeline(pipeline)
    verify(compiled, pipeline, probes)
    return compiled


def verify(compiled: CompiledPipeline, pipeline: Any, probes: pd.DataFrame) -> None:
    """Raise NotCompilable unless ``compiled`` encodes and scores ``probes`` exactly as
    ``pipeline`` does: encodings in batches of up to ``MAX_ROWS`` rows against the pipeline's
    encoding of all probes (its steps work row by row), the final estimator's outputs on each
    batch and on the first ``_SINGLE_PROBES`` rows alone (a one-row product has its own shape)."""
    encoder = pipeline[:-1]
    final = pipeline.steps[-1][1]
    expected_all = np.asarray(encoder.transform(probes), dtype=float)
    spans = [(i, min(i + MAX_ROWS, len(probes))) for i in range(0, len(probes), MAX_ROWS)]
    spans += [(i, i + 1) for i in range(min(_SINGLE_PROBES, len(probes)))]
    for start, stop in spans:
        expected = expected_all[start:stop]
        ours = compiled.encode(probes.iloc[start:stop])
        if ours is None:
            if np.isfinite(expected).all():  # declined rows sklearn encodes: a gap
                raise NotCompilable("the compiled encoding declines rows the pipeline encodes")
            continue
        if ours.shape != expected.shape or not np.array_equal(ours, expected):
            raise NotCompilable("the compiled encoding differs from the pipeline's")
        want = final.predict_proba(expected) if compiled.classifier else final.predict(expected)
        got = compiled.output(ours)
        if got.shape != np.shape(want) or not np.array_equal(got, want):
            raise NotCompilable("the compiled scores differ from the pipeline's")


def probe_rows(columns: dict[str, Any], features: list[str]) -> pd.DataFrame:
    """Probe rows from an input schema's columns: every category, an unseen one and a missing one
    per column, range ends, and seeded random rows with missing values sprinkled in."""
    walk = probe_frame(columns, features)
    sample = random_rows(columns, features, _RANDOM_PROBES)
    rng = np.random.default_rng(1)
    for name in features:
        hole = rng.random(len(sample)) < 0.1
        col = sample[name]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            sample[name] = col.astype(float).where(~hole)
        else:
            sample[name] = col.astype(object).where(~hole, None)
    return pd.concat([walk, sample], ignore_index=True)


def compile_model(model: Any) -> CompiledPipeline | None:
    """The compiled path of a loaded sklearn-flavour artifact (``artifact.LoadedModel``), checked
    on probe rows drawn from its input schema; None when the pipeline does not compile."""
    from .artifact_metadata import schema_columns

    estimator = getattr(model, "estimator", None)
    try:
        columns = schema_columns(model.input_schema)
        compiled = CompiledPipeline(estimator)  # cheap refusal before any probing
        if any(name not in columns for name in compiled.columns):
            return None
        probes = probe_rows(columns, list(columns))
        return compile_pipeline(estimator, probes)
    except (NotCompilable, AttributeError, TypeError, ValueError, IndexError, KeyError):
        return None  # anything unexpected in the pipeline: scikit-learn's own path serves it


# ---- the schema check of a small, already clean batch --------------------------------------------


def conforming_rows(df: Any, schema: dict[str, Any]) -> pd.DataFrame | None:
    """``df``'s schema columns, in schema order, when ``ml.data.coerce_to_schema`` would return
    them unchanged: at most ``MAX_ROWS`` rows, unique column names, no missing value, numbers
    already of the schema's numeric dtype, booleans of dtype bool, text as ``str`` objects and
    (when the schema lists them) known categories. Anything else returns None, and the caller
    runs ``coerce_to_schema`` itself, with its conversions and its error messages."""
    columns = schema.get("columns") if isinstance(schema, dict) else None
    if (not columns or not isinstance(df, pd.DataFrame) or not 0 < len(df) <= MAX_ROWS
            or not df.columns.is_unique):
        return None
    for name, entry in columns.items():
        if name not in df.columns:
            return None
        col = df[name]
        kind = entry.get("kind")
        dtype = col.dtype
        if kind == "numeric":
            if (not isinstance(dtype, np.dtype) or dtype.kind not in "iuf"
                    or str(dtype) != entry.get("dtype")
                    or (dtype.kind == "f" and col.isna().any())):
                return None
        elif kind == "boolean":
            if dtype != np.bool_:
                return None
        elif kind == "categorical":
            if dtype.kind != "O":
                return None
            known = entry.get("categories")
            for value in col.tolist():
                if type(value) is not str or (known is not None and value not in known):
                    return None
        else:
            return None
    # reindex, not df[list]: the same new frame (copied columns, schema order, df's index),
    # a third of the cost on a small batch
    return df.reindex(columns=_column_index(tuple(columns)))


def conforming_records(
    records: list[Any], schema: dict[str, Any]
) -> dict[str, list[Any]] | None:
    """Each schema column's values (schema order) of ``records``, mappings as a JSON body gives
    them, when ``conforming_rows`` would take the DataFrame they make, with no DataFrame made:
    every record has every schema column, numbers of a ``int64`` column are ``int`` (not
    ``bool``) within its range, of a ``float64`` column ``float`` and not NaN, booleans ``bool``,
    text ``str`` (of a known category when the schema lists them). The lists hold what that
    frame's ``Series.tolist()`` would. Anything else (other dtypes, mixed numbers, a missing
    key, more than ``MAX_ROWS`` records) returns None: the caller makes the frame."""
    columns = schema.get("columns") if isinstance(schema, dict) else None
    if not columns or not 0 < len(records) <= MAX_ROWS:
        return None
    if not all(type(record) is dict for record in records):
        return None
    out: dict[str, list[Any]] = {}
    for name, entry in columns.items():
        try:
            values = [record[name] for record in records]
        except KeyError:
            return None
        kind, dtype = entry.get("kind"), entry.get("dtype")
        if kind == "numeric" and dtype == "int64":
            if not all(type(v) is int and _INT64[0] <= v <= _INT64[1] for v in values):
                return None
        elif kind == "numeric" and dtype == "float64":
            if not all(type(v) is float and v == v for v in values):
                return None
        elif kind == "boolean":
            if not all(type(v) is bool for v in values):
                return None
        elif kind == "categorical":
            known = entry.get("categories")
            if not all(type(v) is str and (known is None or v in known) for v in values):
                return None
        else:
            return None
        out[name] = values
    return out


_INT64 = (-(2**63), 2**63 - 1)


@functools.lru_cache(maxsize=64)
def _column_index(names: tuple[str, ...]) -> pd.Index:
    return pd.Index(names, dtype=object)
