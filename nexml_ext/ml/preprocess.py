"""Declared preprocessing as a scikit-learn pipeline, and its fitted parameters as lineage.

Every input column gets its own transformer, named after the column, inside one
``ColumnTransformer`` (``verbose_feature_names_out=True``), so each encoded feature traces back to
one input column through ``output_indices_`` (and the selector's ``get_support()``). Numeric
columns: impute → clip to learned quantiles → scale. Text and categorical columns: cast to text →
impute → one-hot (unknown categories encode as all zeros) or ordinal (unknown → -1). Boolean
columns are numbers (0/1). The fitted pipeline travels inside the artifact, so what was validated
is what is served; ``describe_fitted`` records every step's fitted parameters as JSON lineage.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_selection import SelectKBest, f_classif, f_regression
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from ..errors import InvalidInput
from .evaluate import jsonable

NUMERIC_IMPUTATION = ("median", "mean", "most_frequent", "constant")  # constant fills 0
CATEGORICAL_IMPUTATION = ("most_frequent", "constant")  # constant fills "missing"
ENCODINGS = ("onehot", "ordinal")
UNKNOWN_CODE = -1  # ordinal code of a category (or missing value) not seen in training
_RESERVED = set(ColumnTransformer([]).get_params(deep=False))  # names a transformer cannot take
_UNUSABLE_DTYPES = ("datetime", "timedelta", "period", "interval", "complex")


@dataclass(frozen=True)
class PreprocessSpec:
    """The declared preprocessing steps; invalid choices raise InvalidInput on construction.

    ``clip_quantiles`` (lower, upper) clips each numeric column to those training quantiles
    (None: no clipping); ``select_k`` keeps the k encoded features with the highest univariate
    F score against the target (None: keep all; not for clustering).
    """

    impute_numeric: str = "median"
    impute_categorical: str = "most_frequent"
    encode: str = "onehot"
    scale: bool = True
    clip_quantiles: tuple[float, float] | None = (0.01, 0.99)
    select_k: int | None = None

    def __post_init__(self) -> None:
        if self.impute_numeric not in NUMERIC_IMPUTATION:
            raise InvalidInput(
                f"impute_numeric {self.impute_numeric!r} is not one of {NUMERIC_IMPUTATION}"
            )
        if self.impute_categorical not in CATEGORICAL_IMPUTATION:
            raise InvalidInput(
                f"impute_categorical {self.impute_categorical!r} is not one of "
                f"{CATEGORICAL_IMPUTATION}"
            )
        if self.encode not in ENCODINGS:
            raise InvalidInput(f"encode {self.encode!r} is not one of {ENCODINGS}")
        if self.clip_quantiles is not None:
            try:
                low, high = (float(q) for q in self.clip_quantiles)
            except (TypeError, ValueError):
                raise InvalidInput(
                    f"clip_quantiles must be two numbers, got {self.clip_quantiles!r}"
                ) from None
            if not 0 <= low < high <= 1:
                raise InvalidInput(
                    f"clip_quantiles must satisfy 0 <= lower < upper <= 1, got {(low, high)}"
                )
            object.__setattr__(self, "clip_quantiles", (low, high))
        if self.select_k is not None and (
            isinstance(self.select_k, bool) or not isinstance(self.select_k, int)
            or self.select_k < 1
        ):
            raise InvalidInput(f"select_k must be a positive integer, got {self.select_k!r}")

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


class QuantileClipper(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Clips each column to its ``lower`` and ``upper`` training quantiles (``lower_``,
    ``upper_``, computed like ``pandas.Series.quantile``; missing values are ignored)."""

    def __init__(self, lower: float = 0.01, upper: float = 0.99):
        self.lower = lower
        self.upper = upper

    def fit(self, X: Any, y: Any = None) -> QuantileClipper:
        values = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        with warnings.catch_warnings():  # an all-missing column has no quantiles: keep it as is
            warnings.simplefilter("ignore", RuntimeWarning)
            self.lower_ = np.nanquantile(values, self.lower, axis=0)
            self.upper_ = np.nanquantile(values, self.upper, axis=0)
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        values = validate_data(
            self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=False
        )
        low = np.where(np.isnan(self.lower_), -np.inf, self.lower_)
        high = np.where(np.isnan(self.upper_), np.inf, self.upper_)
        return np.clip(values, low, high)


class SelectTopK(SelectKBest):
    """``SelectKBest`` that keeps every feature, silently, when fewer than k exist: a
    cross-validation subsample can hold fewer categories, hence fewer encoded columns."""

    def _check_params(self, X: Any, y: Any) -> None:
        pass


def as_text(X: Any) -> np.ndarray:
    """Values as ``str`` objects, missing values as NaN: the form serving passes categories in,
    whatever dtype (object, category, string) the column had."""
    values = np.asarray(pd.DataFrame(X).astype(object))
    missing = pd.isna(values)
    text = values.astype(str).astype(object)
    text[missing] = np.nan
    return text


def as_float(X: Any) -> np.ndarray:
    """Booleans (also nullable ones) as 0.0/1.0, missing as NaN."""
    return pd.DataFrame(X).astype("float64").to_numpy()


def anova_f(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """``f_classif`` with constant columns scored 0 instead of warned about."""
    return _quiet_scores(f_classif, X, y)


def regression_f(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """``f_regression`` with constant columns scored 0 instead of warned about."""
    return _quiet_scores(f_regression, X, y)


def _quiet_scores(score: Any, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        scores, p_values = score(X, y)
    return np.nan_to_num(scores, nan=0.0), np.nan_to_num(p_values, nan=1.0)


def column_kinds(X: pd.DataFrame) -> dict[str, str]:
    """Each column's kind: ``numeric``, ``boolean`` or ``categorical``.

    Raises InvalidInput naming the column for names a transformer cannot take (not text,
    containing ``__``, or a ColumnTransformer parameter name) and for types a model cannot use:
    dates, durations, periods, intervals, complex numbers, and text columns that also hold
    numbers or other objects.
    """
    kinds: dict[str, str] = {}
    for name in X.columns:
        if not isinstance(name, str) or not name or "__" in name or name in _RESERVED:
            raise InvalidInput(
                f"column name {name!r} cannot name a model input: use text without '__' "
                f"and not one of {sorted(_RESERVED)}"
            )
        col = X[name]
        dtype = str(col.dtype)
        if any(bad in dtype for bad in _UNUSABLE_DTYPES):
            raise InvalidInput(
                f"column {name!r} has type {dtype}, which a model cannot use; "
                "derive numbers or text from it, or exclude it"
            )
        if pd.api.types.is_bool_dtype(col):
            kinds[name] = "boolean"
        elif pd.api.types.is_numeric_dtype(col):
            kinds[name] = "numeric"
        else:
            inferred = pd.api.types.infer_dtype(col, skipna=True)
            if inferred not in ("string", "empty", "categorical", "boolean"):
                shown = ", ".join(repr(v) for v in list(dict.fromkeys(col.dropna()))[:3])
                raise InvalidInput(
                    f"column {name!r} mixes types ({inferred}: {shown}); make it all numbers "
                    "or all text, or exclude it"
                )
            kinds[name] = "categorical"
    return kinds


def _column_pipeline(kind: str, spec: PreprocessSpec) -> Pipeline:
    if kind == "categorical":
        fill = {"fill_value": "missing"} if spec.impute_categorical == "constant" else {}
        encoder: Any = (
            OneHotEncoder(handle_unknown="ignore", sparse_output=False)
            if spec.encode == "onehot"
            else OrdinalEncoder(
                handle_unknown="use_encoded_value",
                unknown_value=UNKNOWN_CODE,
                encoded_missing_value=UNKNOWN_CODE,
            )
        )
        return Pipeline([
            ("text", FunctionTransformer(as_text, feature_names_out="one-to-one")),
            ("impute", SimpleImputer(strategy=spec.impute_categorical, **fill)),
            ("encode", encoder),
        ])
    steps: list[tuple[str, Any]] = []
    if kind == "boolean":
        steps.append(("number", FunctionTransformer(as_float, feature_names_out="one-to-one")))
    fill = {"fill_value": 0} if spec.impute_numeric == "constant" else {}
    steps.append(
        ("impute", SimpleImputer(strategy=spec.impute_numeric, keep_empty_features=True, **fill))
    )
    if spec.clip_quantiles is not None and kind == "numeric":
        steps.append(("clip", QuantileClipper(*spec.clip_quantiles)))
    if spec.scale:
        steps.append(("scale", StandardScaler()))
    return Pipeline(steps)


def build_preprocessor(
    spec: PreprocessSpec | None, X: pd.DataFrame, *, problem_type: str = "binary"
) -> Pipeline:
    """An unfitted ``Pipeline([("prepare", ColumnTransformer), ("select", SelectTopK)?])`` for
    the columns of ``X``, one transformer per column, named after it.

    ``problem_type`` picks the selector's score (F test for classification, F regression for
    regression). Raises InvalidInput for unusable columns (see ``column_kinds``), for no
    columns, and for ``select_k`` with clustering (there is no target to select against).
    """
    spec = spec or PreprocessSpec()
    if X.shape[1] == 0:
        raise InvalidInput("there are no input columns to preprocess")
    transformers = [
        (name, _column_pipeline(kind, spec), [name]) for name, kind in column_kinds(X).items()
    ]
    prepare = ColumnTransformer(
        transformers, remainder="drop", sparse_threshold=0, verbose_feature_names_out=True
    )
    steps: list[tuple[str, Any]] = [("prepare", prepare)]
    if spec.select_k is not None:
        if problem_type == "clustering":
            raise InvalidInput("select_k needs a target; it cannot be used for clustering")
        score = regression_f if problem_type == "regression" else anova_f
        steps.append(("select", SelectTopK(score, k=spec.select_k)))
    return Pipeline(steps)


def build_pipeline(
    spec: PreprocessSpec | None, X: pd.DataFrame, estimator: Any, *, problem_type: str
) -> Pipeline:
    """``build_preprocessor(spec, X)`` followed by ``("model", estimator)``, unfitted."""
    preprocessor = build_preprocessor(spec, X, problem_type=problem_type)
    return Pipeline([*preprocessor.steps, ("model", estimator)])


def describe_fitted(pipeline: Pipeline) -> list[dict[str, Any]]:
    """Each fitted step as ``{"step", "columns", "params"}``, JSON-serialisable.

    Per input column: ``impute`` (strategy, value), ``clip`` (quantiles, lower, upper),
    ``scale`` (mean, scale), ``encode`` (method, categories, outputs), plus the casts ``text``
    and ``number``. Then ``select`` (k, selected encoded features, scores) and ``model``
    (estimator class and its parameters). Raises InvalidInput if the pipeline is not fitted.
    """
    try:
        check_is_fitted(pipeline)
    except Exception as exc:  # NotFittedError, or not an estimator at all
        raise InvalidInput(f"cannot describe an unfitted pipeline: {exc}") from None
    described: list[dict[str, Any]] = []
    features: list[str] = []
    for step, estimator in pipeline.steps:
        if isinstance(estimator, ColumnTransformer):
            names = estimator.get_feature_names_out()
            for name, transformer, columns in estimator.transformers_:
                if name == "remainder" or transformer in ("drop", "passthrough"):
                    continue
                outputs = [str(n) for n in names[estimator.output_indices_[name]]]
                parts = transformer.steps if isinstance(transformer, Pipeline) else [
                    (type(transformer).__name__, transformer)
                ]
                for part, fitted in parts:
                    params = _fitted_params(fitted)
                    if part == parts[-1][0]:
                        params["outputs"] = outputs
                    described.append({"step": part, "columns": list(columns), "params": params})
            features = [str(n) for n in names]
        elif hasattr(estimator, "get_support"):
            support = estimator.get_support()
            kept = [f for f, keep in zip(features, support, strict=True) if keep]
            params = {"method": type(estimator).__name__, "k": getattr(estimator, "k", None),
                      "selected": kept}
            if getattr(estimator, "scores_", None) is not None:
                params["scores"] = dict(zip(features, estimator.scores_.tolist(), strict=True))
            described.append({"step": step, "columns": features, "params": params})
            features = kept
        else:
            params = {"estimator": type(estimator).__name__}
            params.update(_plain_params(estimator))
            described.append({"step": step, "columns": features, "params": params})
    return jsonable(described)


def _fitted_params(fitted: Any) -> dict[str, Any]:
    method = type(fitted).__name__
    if isinstance(fitted, SimpleImputer):
        return {"method": method, "strategy": fitted.strategy,
                "value": _one(fitted.statistics_)}
    if isinstance(fitted, QuantileClipper):
        return {"method": method, "quantiles": [fitted.lower, fitted.upper],
                "lower": _one(fitted.lower_), "upper": _one(fitted.upper_)}
    if isinstance(fitted, StandardScaler):
        return {"method": method, "mean": _one(fitted.mean_), "scale": _one(fitted.scale_)}
    if isinstance(fitted, OneHotEncoder | OrdinalEncoder):
        return {"method": method, "categories": _one([list(c) for c in fitted.categories_]),
                "handle_unknown": fitted.handle_unknown}
    if isinstance(fitted, FunctionTransformer):
        func = getattr(fitted.func, "__name__", repr(fitted.func))
        return {"method": method, "function": func}
    return {"method": method, **_plain_params(fitted)}


def _one(values: Any) -> Any:
    """A per-column array of a one-column transformer as its single value."""
    values = list(values)
    return values[0] if len(values) == 1 else values


def _plain_params(estimator: Any) -> dict[str, Any]:
    """Constructor parameters, with anything that is not plain data shown as its name."""
    params = {}
    for key, value in estimator.get_params(deep=False).items():
        if value is None or isinstance(value, bool | int | float | str | np.generic):
            params[key] = value
        elif isinstance(value, list | tuple | dict):
            params[key] = jsonable(value) if _is_plain(value) else repr(value)
        else:
            params[key] = getattr(value, "__name__", type(value).__name__)
    return params


def _is_plain(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_is_plain(k) and _is_plain(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_is_plain(v) for v in value)
    return value is None or isinstance(value, bool | int | float | str | np.generic)
