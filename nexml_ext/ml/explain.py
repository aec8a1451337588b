"""Explanations of a loaded model: local SHAP values, global importance, adverse-action reasons.

Every explanation is in the model's original, pre-encoding input space (``model.input_columns``)
and in its margin space: log-odds of ``classes[1]`` for binary models, the prediction itself for
regression. Two ways to compute local values, chosen by the model:

- tree ensembles with a :class:`~nexml_ext.ml.model_view.TreeView`: exact TreeSHAP on the encoded
  features, through the library's native contributions when it has them (LightGBM, XGBoost:
  ``"tree-native"``) or ``shap.TreeExplainer`` (``"tree-shap"``, path-dependent, so no background
  is needed), then summed over each input's encoded columns. Local accuracy is exact: base value
  plus contributions equals the model margin (to float rounding). Random-forest classifiers are
  the one exception to the log-odds space: their trees add up to a probability, so their values
  are in probability space (``LocalExplanation.space`` says which).
- everything else: shap's permutation explainer on the margin function over the input columns,
  masked with a small background sample (categorical columns travel as integer codes through
  shap's masker and are decoded before the model sees them). Additivity holds by construction of
  the permutation estimate; the values are estimates, exact for models additive in their inputs.

The model is anything with the ``LoadedModel`` attributes: ``input_columns``, ``problem_type``,
``classes``, ``reason_codes``, ``validate``, ``score``, ``tree_view``. Multiclass models are
refused.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInput
from .model_view import TreeView, group_matrix

ATTRIBUTIONS = ("baseline-average", "interventional")
_EPS = 1e-12  # probabilities are clipped to [eps, 1 - eps] before taking log-odds
_NEGLIGIBLE = 1e-9  # a contribution closer to zero than this (margin units) is no reason


@dataclass(frozen=True)
class LocalExplanation:
    """Per-row contributions of each input column to the model margin.

    values: rows x model.input_columns, same index as the explained rows.
    base_values: per-row base value (the expected margin the contributions start from).
    output: per-row margin; base_values + values.sum(axis=1) == output.
    method: "tree-native", "tree-shap" or "permutation".
    space: "log_odds", "probability" (random-forest classifiers) or "raw" (regression).
    """

    values: pd.DataFrame
    base_values: np.ndarray
    output: np.ndarray
    method: str
    space: str

    def to_dict(self, row: int) -> dict[str, Any]:
        """The explanation of the ``row``-th (positional) row as plain JSON-ready values."""
        if not -len(self.values) <= row < len(self.values):
            raise InvalidInput(f"row {row} is out of range for {len(self.values)} explained rows")
        return {
            "method": self.method,
            "space": self.space,
            "base_value": float(self.base_values[row]),
            "output": float(self.output[row]),
            "contributions": {k: float(v) for k, v in self.values.iloc[row].items()},
        }


@dataclass(frozen=True)
class Reason:
    """One principal reason for an adverse decision; ``contribution`` < 0, in margin units."""

    feature: str
    reason: str
    contribution: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def explain_local(
    model: Any,
    X: pd.DataFrame,
    *,
    background: pd.DataFrame | None = None,
    max_background: int = 100,
    seed: int = 0,
) -> LocalExplanation:
    """SHAP values of each row of ``X`` per input column, in margin space.

    ``background`` (rows like ``X``; at most ``max_background`` of them, sampled with ``seed``)
    is required for models without a tree view and ignored for tree models, whose path-dependent
    TreeSHAP needs none. Raises InvalidInput for multiclass models, rows that fail the model's
    schema, or a missing or empty background where one is needed.
    """
    _check_explainable(model)
    rows = model.validate(X)
    view = model.tree_view()
    if view is not None:
        return _tree_explanation(model, view, rows)
    sample = _background(model, background, max_background, seed)
    return _permutation_explanation(model, rows, sample, seed)


def global_importance(
    model: Any,
    X: pd.DataFrame,
    y: Any = None,
    *,
    background: pd.DataFrame | None = None,
    n_repeats: int = 5,
    seed: int = 0,
    shap_rows: int = 500,
) -> pd.DataFrame:
    """Global importance per input column, most important first by mean |SHAP|.

    Columns: feature, mean_abs_shap (margin units, over at most ``shap_rows`` rows of ``X``
    sampled with ``seed``), permutation_importance_mean and _std (drop in ROC AUC for binary, R²
    for regression, when a column is shuffled, over ``n_repeats`` shuffles of all rows; NaN when
    ``y`` is not given). Raises InvalidInput as ``explain_local`` does, or when ``y`` does not
    match ``X`` or has a single class.
    """
    rows = model.validate(X)
    if n_repeats < 1 or shap_rows < 1:
        raise InvalidInput("n_repeats and shap_rows must be at least 1")
    explained = explain_local(
        model, _sample(rows, shap_rows, seed), background=background, seed=seed
    )
    table = pd.DataFrame(
        {
            "feature": list(model.input_columns),
            "mean_abs_shap": explained.values.abs().mean().to_numpy(),
            "permutation_importance_mean": np.nan,
            "permutation_importance_std": np.nan,
        }
    )
    if y is not None:
        drops = _permutation_drops(model, rows, y, n_repeats, seed)
        table["permutation_importance_mean"] = drops.mean(axis=1)
        table["permutation_importance_std"] = drops.std(axis=1)
    return table.sort_values("mean_abs_shap", ascending=False, kind="stable").reset_index(
        drop=True
    )


def reason_baseline(
    model: Any, pool: pd.DataFrame, cutoff: float, *, band: float = 0.05, min_rows: int = 20
) -> pd.DataFrame:
    """The applicants of ``pool`` at or just above the approval ``cutoff`` (a score).

    Rows whose score lies in [cutoff, cutoff + band]; while fewer than ``min_rows`` are found, the
    band doubles (never reaching below the cutoff) until it holds ``min_rows`` rows or every
    approved applicant of the pool. This is the reference group of Regulation B comment
    9(b)(2)-5 ("applicants whose total score was at or slightly above the minimum passing
    score"). Raises InvalidInput if no applicant of the pool is approved or the band is not > 0.
    """
    if band <= 0 or min_rows < 1:
        raise InvalidInput("reason baseline needs band > 0 and min_rows >= 1")
    scores = np.asarray(model.score(pool), dtype=float)
    approved = scores >= cutoff
    if not approved.any():
        raise InvalidInput(f"no applicant in the pool scores at or above the cutoff {cutoff}")
    width = band
    while True:
        chosen = approved & (scores <= cutoff + width)
        if chosen.sum() >= min(min_rows, approved.sum()):
            return pool.iloc[np.flatnonzero(chosen)]
        width *= 2


def reason_codes(
    model: Any,
    X: pd.DataFrame,
    *,
    baseline: pd.DataFrame,
    cutoff: float,
    reason_table: dict[str, str] | None = None,
    protected: Sequence[str] = (),
    max_reasons: int = 4,
    attribution: str = "baseline-average",
    explanation: LocalExplanation | None = None,
    max_background: int = 100,
    seed: int = 0,
) -> list[list[Reason]]:
    """Adverse-action reasons for each row of ``X``: [] if approved (score >= cutoff).

    For a denied row, the input columns whose contribution lowered its margin relative to the
    ``baseline`` applicants (see ``reason_baseline``), most lowering first, at most
    ``max_reasons``, only contributions below zero, never a column named in ``protected``
    (compared case-insensitively; such a column may still be a model input, it is just never
    named). A denied row can get fewer than ``max_reasons``, and none only if every lowering
    input is protected. Contributions, in margin units, by ``attribution``:

    - "baseline-average" (default): the row's TreeSHAP value per input minus the mean TreeSHAP
      value of that input over the baseline (at most ``max_background`` rows, sampled with
      ``seed``): the per-factor comparison of comment 9(b)(2)-5 ("factors for which the
      applicant's score fell furthest below the average score for each of those factors
      achieved by applicants ... at or slightly above the minimum passing score"). It sums
      exactly to margin(row) minus the baseline's mean margin and equals interventional SHAP
      against the baseline for models additive in their inputs. It costs one TreeSHAP pass over
      the baseline, reusing ``explanation`` (``explain_local`` of the same ``X``) when given.
    - "interventional": SHAP values with the baseline as background (``shap.TreeExplainer``,
      ``feature_perturbation="interventional"``): exact Shapley values against the baseline
      also under interactions, at a cost linear in the baseline size per denied row (in
      ``benchmarks/bench_explain.py``, half the throughput of the default).

    Models without a tree view are always explained by permutation SHAP with the baseline as
    background, which is interventional by construction (both attributions are the same).

    Reason texts: ``reason_table``, else ``model.reason_codes``, per column; a column found in
    neither is named by its own column name (the documented generic fallback).
    Raises InvalidInput for an unknown attribution, max_reasons < 1, an empty baseline, an
    ``explanation`` of other rows, or a tree model shap cannot explain interventionally.
    """
    _check_explainable(model)
    if attribution not in ATTRIBUTIONS:
        raise InvalidInput(f"attribution must be one of {ATTRIBUTIONS}, not {attribution!r}")
    if max_reasons < 1:
        raise InvalidInput("max_reasons must be at least 1")
    rows = model.validate(X)
    if explanation is not None and len(explanation.values) != len(rows):
        raise InvalidInput("the explanation passed to reason_codes is not of the same rows as X")
    denied = np.flatnonzero(np.asarray(model.score(rows), dtype=float) < cutoff)
    reasons: list[list[Reason]] = [[] for _ in range(len(rows))]
    if denied.size == 0:
        return reasons
    reference = _sample(model.validate(baseline), max_background, seed)
    if reference.empty:
        raise InvalidInput("the reason-code baseline has no rows")

    view = model.tree_view()
    if view is None:
        lowered = explain_local(
            model, rows.iloc[denied], background=reference, seed=seed
        ).values.to_numpy()
    elif attribution == "interventional":
        lowered = _interventional(model, view, rows.iloc[denied], reference)
    else:
        if explanation is not None and explanation.method != "permutation":
            own = explanation.values.to_numpy()[denied]
        else:
            own = explain_local(model, rows.iloc[denied]).values.to_numpy()
        lowered = own - explain_local(model, reference).values.to_numpy().mean(axis=0)

    names = list(model.input_columns)
    texts = _reason_texts(model, reason_table, names)
    blocked = {p.casefold() for p in protected}
    ranked = lowered.copy()
    ranked[:, [n.casefold() in blocked for n in names]] = np.inf
    ranked[ranked > -_NEGLIGIBLE] = np.inf
    order = np.argsort(ranked, axis=1, kind="stable")[:, :max_reasons]
    for i, row in enumerate(denied):
        reasons[row] = [
            Reason(names[j], texts[names[j]], float(lowered[i, j]))
            for j in order[i]
            if ranked[i, j] != np.inf
        ]
    return reasons


def load_reason_table(name: str = "german_credit") -> dict[str, str]:
    """The packaged reason-code table ``nexml_ext/data/<name>_reasons.yaml`` (column -> text).

    Raises InvalidInput if there is no such table or it is not a mapping of text to text.
    """
    import yaml

    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise InvalidInput(f"reason table name {name!r} must be lower-case letters, digits and _")
    resource = resources.files("nexml_ext.data").joinpath(f"{name}_reasons.yaml")
    if not resource.is_file():
        raise InvalidInput(f"there is no reason-code table named {name!r}")
    table = yaml.safe_load(resource.read_text(encoding="utf-8"))
    if not isinstance(table, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in table.items()
    ):
        raise InvalidInput(f"reason-code table {name!r} must map column names to reason texts")
    return table


# -- tree models --------------------------------------------------------------------------------


def _tree_explanation(model: Any, view: TreeView, rows: pd.DataFrame) -> LocalExplanation:
    encoded = view.encode(rows)
    if view.contributions is not None:
        raw = view.contributions(encoded)
        phi, base, method = raw[:, :-1], raw[:, -1], "tree-native"
    else:
        shap = _shap()
        with _quiet_shap():
            explainer = shap.TreeExplainer(view.model, feature_perturbation="tree_path_dependent")
            phi = _positive_class(explainer.shap_values(encoded))
        base = np.full(len(rows), _positive_class_base(explainer.expected_value))
        method = "tree-shap"
    grouped = phi @ group_matrix(view.groups, phi.shape[1], model.input_columns)
    values = pd.DataFrame(grouped, index=rows.index, columns=list(model.input_columns))
    return LocalExplanation(values, base, base + grouped.sum(axis=1), method, view.output)


def _interventional(
    model: Any, view: TreeView, rows: pd.DataFrame, reference: pd.DataFrame
) -> np.ndarray:
    shap = _shap()
    from shap.utils._exceptions import ExplainerError

    encoded = view.encode(rows)
    try:
        with _quiet_shap():
            explainer = shap.TreeExplainer(
                view.model,
                data=view.encode(reference),
                feature_perturbation="interventional",
                model_output="raw",
            )
            phi = _positive_class(explainer.shap_values(encoded))
    except ExplainerError as exc:  # e.g. LightGBM categorical splits
        raise InvalidInput(
            f"shap cannot explain this tree model interventionally ({exc}); "
            "use attribution='baseline-average'"
        ) from exc
    if view.contributions is not None:
        # A view's native contributions may be oriented to classes[1] by a sign the raw model
        # does not know (AutoGluon's positive class); its margin is the one to agree with.
        native = view.contributions(encoded).sum(axis=1)
        margin = _positive_class_base(explainer.expected_value) + phi.sum(axis=1)
        if np.allclose(margin, -native, atol=1e-4) and not np.allclose(margin, native, atol=1e-4):
            phi = -phi
        elif not np.allclose(margin, native, atol=1e-4):
            raise InvalidInput(
                "shap's interventional reading of this tree model does not reproduce its "
                "margin; use attribution='baseline-average'"
            )
    return phi @ group_matrix(view.groups, phi.shape[1], model.input_columns)


def _positive_class(values: Any) -> np.ndarray:
    """shap values of classes[1]: forests give one slice per class, boosted trees the margin."""
    if isinstance(values, list):
        values = values[-1]
    values = np.asarray(values, dtype=float)
    return values[..., -1] if values.ndim == 3 else values


def _positive_class_base(expected: Any) -> float:
    return float(np.atleast_1d(np.asarray(expected, dtype=float))[-1])


def _shap() -> Any:
    """shap, imported without failing under warnings-as-errors."""
    with warnings.catch_warnings():
        # importing shap builds colormaps with a matplotlib call matplotlib plans to deprecate
        warnings.filterwarnings(
            "ignore", message="The set_bad function", category=PendingDeprecationWarning
        )
        import shap
    return shap


@contextlib.contextmanager
def _quiet_shap() -> Iterator[None]:
    # shap warns that LightGBM binary output "has changed to a list" even though it returns
    # one array; the shapes are handled in _positive_class.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightGBM binary classifier")
        yield


# -- other models: permutation SHAP over the input columns --------------------------------------


def _permutation_explanation(
    model: Any, rows: pd.DataFrame, sample: pd.DataFrame, seed: int
) -> LocalExplanation:
    shap = _shap()
    codec = _Codec(rows, sample)
    margin = _margin_function(model)
    masker = shap.maskers.Independent(codec.encode(sample), max_samples=len(sample))
    explainer = shap.PermutationExplainer(lambda codes: margin(codec.decode(codes)), masker,
                                          seed=seed)
    evals = max(500, 2 * len(rows.columns) + 1)
    result = explainer(codec.encode(rows), max_evals=evals, silent=True)
    values = pd.DataFrame(np.asarray(result.values, dtype=float), index=rows.index,
                          columns=list(model.input_columns))
    space = "log_odds" if model.problem_type == "binary" else "raw"
    return LocalExplanation(values, np.asarray(result.base_values, dtype=float), margin(rows),
                            "permutation", space)


class _Codec:
    """Rows of mixed types <-> float matrix for shap's maskers (categories as integer codes)."""

    def __init__(self, *frames: pd.DataFrame) -> None:
        first = frames[0]
        self.columns = list(first.columns)
        self.dtypes = first.dtypes
        self.categories = {
            column: pd.Index(pd.unique(pd.concat([f[column] for f in frames]).dropna()))
            for column in self.columns
            if not _is_number(first[column])
        }

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(frame), len(self.columns)))
        for j, column in enumerate(self.columns):
            if column in self.categories:
                codes = self.categories[column].get_indexer(frame[column]).astype(float)
                out[:, j] = np.where(codes < 0, np.nan, codes)
            else:
                out[:, j] = frame[column].to_numpy(dtype=float, na_value=np.nan)
        return out

    def decode(self, codes: np.ndarray) -> pd.DataFrame:
        data = {}
        for j, column in enumerate(self.columns):
            values = codes[:, j]
            if column in self.categories:
                missing = np.isnan(values)
                taken = self.categories[column].to_numpy()[np.where(missing, 0, values).astype(int)]
                decoded = pd.Series(np.where(missing, None, taken), dtype=object)
            else:
                decoded = pd.Series(values)
                dtype = self.dtypes[column]
                if pd.api.types.is_integer_dtype(dtype) and not np.isnan(values).any():
                    decoded = decoded.astype(dtype)
            data[column] = decoded
        frame = pd.DataFrame(data)
        for column in self.categories:
            if isinstance(self.dtypes[column], pd.CategoricalDtype):
                frame[column] = frame[column].astype(self.dtypes[column])
        return frame


def _is_number(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _margin_function(model: Any):
    if model.problem_type == "binary":

        def log_odds(rows: pd.DataFrame) -> np.ndarray:
            p = np.clip(np.asarray(model.score(rows), dtype=float), _EPS, 1 - _EPS)
            return np.log(p) - np.log1p(-p)

        return log_odds
    return lambda rows: np.asarray(model.score(rows), dtype=float)


# -- shared -------------------------------------------------------------------------------------


def _check_explainable(model: Any) -> None:
    if model.problem_type not in ("binary", "regression"):
        raise InvalidInput(
            f"explanations cover binary and regression models, not {model.problem_type!r}"
        )


def _background(
    model: Any, background: pd.DataFrame | None, max_background: int, seed: int
) -> pd.DataFrame:
    if background is None:
        raise InvalidInput(
            "explaining a model without a tree view needs background=<rows like the ones "
            "explained> (e.g. a sample of the training data)"
        )
    if max_background < 1:
        raise InvalidInput("max_background must be at least 1")
    rows = _sample(model.validate(background), max_background, seed)
    if rows.empty:
        raise InvalidInput("the background sample has no rows")
    return rows


def _sample(rows: pd.DataFrame, limit: int, seed: int) -> pd.DataFrame:
    """At most ``limit`` rows, a seeded sample without replacement, in their original order."""
    if len(rows) <= limit:
        return rows
    chosen = np.random.default_rng(seed).choice(len(rows), size=limit, replace=False)
    return rows.iloc[np.sort(chosen)]


def _reason_texts(
    model: Any, reason_table: dict[str, str] | None, names: list[str]
) -> dict[str, str]:
    table = reason_table or {}
    own = getattr(model, "reason_codes", None) or {}
    return {name: table.get(name) or own.get(name) or name for name in names}


def _permutation_drops(
    model: Any, rows: pd.DataFrame, y: Any, n_repeats: int, seed: int
) -> np.ndarray:
    """(columns, n_repeats) metric drops when each column is shuffled; one score call each."""
    from sklearn.metrics import r2_score, roc_auc_score

    target = np.asarray(y)
    if target.shape != (len(rows),):
        raise InvalidInput(f"y has shape {target.shape}; expected one label per row ({len(rows)})")
    if model.problem_type == "binary":
        truth = (target == model.classes[1]).astype(int)
        if truth.min() == truth.max():
            raise InvalidInput("permutation importance needs both classes in y")

        def metric(scores: np.ndarray) -> float:
            return float(roc_auc_score(truth, scores))
    else:

        def metric(scores: np.ndarray) -> float:
            return float(r2_score(target, scores))

    rng = np.random.default_rng(seed)
    n = len(rows)
    reference = metric(np.asarray(model.score(rows), dtype=float))
    stacked = pd.concat([rows] * n_repeats, ignore_index=True)
    drops = np.empty((len(model.input_columns), n_repeats))
    for k, column in enumerate(model.input_columns):
        original = stacked[column].copy()
        column_values = rows[column].to_numpy()
        shuffled = [column_values[rng.permutation(n)] for _ in range(n_repeats)]
        stacked[column] = pd.Series(np.concatenate(shuffled), dtype=original.dtype)
        scores = np.asarray(model.score(stacked), dtype=float).reshape(n_repeats, n)
        drops[k] = [reference - metric(s) for s in scores]
        stacked[column] = original
    return drops
