"""Explanations of a loaded model: local SHAP values, global importance, adverse-action reasons.

Every explanation is in the model's original, pre-encoding input space (``model.input_columns``)
and in its margin space: log-odds of ``classes[1]`` for binary models, the prediction itself for
regression. Three ways to compute local values, chosen by the model:

- tree ensembles with a :class:`~nexml_ext.ml.model_view.TreeView`: exact TreeSHAP on the encoded
  features, through the library's native contributions when it has them (LightGBM, XGBoost:
  ``"tree-native"``) or ``shap.TreeExplainer`` (``"tree-shap"``, path-dependent, so no background
  is needed), then summed over each input's encoded columns. Local accuracy is exact: base value
  plus contributions equals the model margin (to float rounding). Random-forest classifiers are
  the one exception to the log-odds space: their trees add up to a probability, so their values
  are in probability space (``LocalExplanation.space`` says which).
- linear models (the model's ``estimator`` is a pipeline of the same convention ending in a
  logistic or least-squares linear model, see :func:`linear_view`): exact interventional SHAP
  in closed form, ``coef * (x - mean)`` in the encoded space (the background's mean encoded
  row), summed back into input columns (``"linear"``): what ``shap.LinearExplainer`` computes,
  without sampling, and additive exactly.
- everything else: shap's permutation explainer on the margin function over the input columns,
  masked with a small background sample (categorical columns travel as integer codes through
  shap's masker and are decoded before the model sees them). Additivity holds by construction of
  the permutation estimate; the values are estimates, exact for models additive in their inputs.

The model is anything with the ``LoadedModel`` attributes: ``input_columns``, ``problem_type``,
``classes``, ``reason_codes``, ``validate``, ``score``, ``tree_view`` (and ``estimator`` for the
linear path). Multiclass models are refused.

:class:`Explainer` holds what one model needs (its view, shap's TreeExplainer) and
:class:`Reference` rows prepared for it (validated, sampled, summarised), so a caller explaining
many batches — the gateway — builds them once; ``explain_local`` and ``reason_codes`` build them
per call.
"""

from __future__ import annotations

import contextlib
import re
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInput
from .model_view import TreeView, group_matrix, pipeline_parts

ATTRIBUTIONS = ("baseline-average", "interventional")
_EPS = 1e-12  # probabilities are clipped to [eps, 1 - eps] before taking log-odds
_NEGLIGIBLE = 1e-9  # a contribution closer to zero than this (margin units) is no reason


@dataclass(frozen=True)
class LocalExplanation:
    """Per-row contributions of each input column to the model margin.

    values: rows x model.input_columns, same index as the explained rows.
    base_values: per-row base value (the expected margin the contributions start from).
    output: per-row margin; base_values + values.sum(axis=1) == output.
    method: "tree-native", "tree-shap", "linear" or "permutation".
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
            "contributions": dict(
                zip(self.values.columns, map(float, self.values.to_numpy()[row]), strict=True)
            ),
        }


@dataclass(frozen=True)
class Reason:
    """One principal reason for an adverse decision; ``contribution`` < 0, in margin units."""

    feature: str
    reason: str
    contribution: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Reference:
    """Rows an explanation is measured against, prepared once for one model by
    :meth:`Explainer.reference`: validated and sampled, with what the model's explainer reads
    of them computed already.

    rows: the validated sample (at most ``max_background`` rows).
    mean_encoded: linear models: the sample's mean encoded row (the SHAP background mean).
    mean_values: tree models: the sample's mean local contribution per input column (what the
        baseline-average reason codes subtract).
    """

    rows: pd.DataFrame
    mean_encoded: np.ndarray | None = None
    mean_values: np.ndarray | None = None


@dataclass(frozen=True)
class LinearView:
    """A linear model seen through its encoding: margin = intercept + encode(rows) @ coef.

    encode: validated input rows -> the dense encoded matrix the linear model reads.
    coef, intercept: oriented to the margin the platform reports (log-odds of classes[1] for
        binary classifiers, the prediction for regression).
    groups: input column -> indices of the encoded columns it became.
    output: "log_odds" or "raw".
    """

    encode: Callable[[pd.DataFrame], np.ndarray]
    coef: np.ndarray
    intercept: float
    groups: dict[str, list[int]]
    output: str


# Linear estimators whose decision function is the margin: the log-odds of classes_[1] for a
# binary classifier, the prediction for a regressor.
_LINEAR = {
    "LogisticRegression": "log_odds",
    "LogisticRegressionCV": "log_odds",
    "LinearRegression": "raw",
    "Ridge": "raw",
    "RidgeCV": "raw",
    "Lasso": "raw",
    "LassoCV": "raw",
    "ElasticNet": "raw",
    "ElasticNetCV": "raw",
}


def linear_view(model: Any) -> LinearView | None:
    """The LinearView of a model whose ``estimator`` follows the project's pipeline convention
    (``model_view.sklearn_tree_view``) and ends in a linear model of ``_LINEAR``; else None."""
    from .artifact_metadata import plain

    parts = pipeline_parts(getattr(model, "estimator", None), model.input_columns)
    if parts is None:
        return None
    estimator = parts.estimator
    name = type(estimator).__name__
    if not type(estimator).__module__.startswith("sklearn.linear_model") or name not in _LINEAR:
        return None
    output = _LINEAR[name]
    if (output == "log_odds") != (model.problem_type == "binary"):
        return None
    coef = np.atleast_2d(np.asarray(getattr(estimator, "coef_", None), dtype=float))
    intercept = np.atleast_1d(np.asarray(getattr(estimator, "intercept_", 0.0), dtype=float))
    if coef.shape[0] != 1 or intercept.shape != (1,):
        return None  # multiclass or multi-output
    sign = 1.0
    if output == "log_odds":
        own = [plain(c) for c in estimator.classes_]
        if len(own) != 2 or plain(model.classes[1]) not in own:
            return None
        sign = 1.0 if own.index(plain(model.classes[1])) == 1 else -1.0
    intercept0 = float(sign * intercept[0])
    return LinearView(parts.encode, sign * coef[0], intercept0, parts.groups, output)


class Explainer:
    """One model's explanation machinery, built once: its tree view with shap's TreeExplainer,
    or its linear view, or the permutation explainer. ``local`` and ``reasons`` take rows
    already validated by the model (``model.validate``) and, optionally, their encoding
    (``encode``) so a caller that encoded the rows to score them does not encode them again.
    With the encoding, a tree or linear explainer reads only how many rows there are: the
    rows may then be the records they were validated from (the gateway's small batches).
    Safe to share between threads.
    """

    def __init__(self, model: Any) -> None:
        _check_explainable(model)
        self.model = model
        self.tree: TreeView | None = model.tree_view()
        self.linear: LinearView | None = None if self.tree is not None else linear_view(model)
        self._lock = threading.Lock()
        self._shap_tree: Any = None
        self._groups: dict[int, np.ndarray] = {}
        # the explanations' columns, made once (a list made into an Index per call cost more
        # than the rest of a one-row explanation's frame)
        self._columns = pd.Index(list(model.input_columns), dtype=object)

    @property
    def kind(self) -> str:
        """"tree", "linear" or "permutation"."""
        if self.tree is not None:
            return "tree"
        return "linear" if self.linear is not None else "permutation"

    def encode(self, rows: pd.DataFrame) -> np.ndarray | None:
        """The encoded matrix the tree or linear view reads (None for permutation models)."""
        view = self.tree or self.linear
        return None if view is None else view.encode(rows)

    def reference(
        self, X: pd.DataFrame, *, max_background: int = 100, seed: int = 0, what: str = "reference"
    ) -> Reference:
        """``X`` validated, sampled to at most ``max_background`` rows with ``seed``, and
        summarised for this model. Raises InvalidInput naming ``what`` when it has no rows."""
        if max_background < 1:
            raise InvalidInput("max_background must be at least 1")
        rows = _sample(self.model.validate(X), max_background, seed)
        if rows.empty:
            raise InvalidInput(f"the {what} has no rows")
        if self.linear is not None:
            return Reference(rows, mean_encoded=self.linear.encode(rows).mean(axis=0))
        if self.tree is not None:
            return Reference(rows, mean_values=self._tree_local(rows).values.to_numpy().mean(0))
        return Reference(rows)

    def local(
        self,
        rows: pd.DataFrame,
        *,
        background: Reference | None = None,
        encoded: np.ndarray | None = None,
        seed: int = 0,
    ) -> LocalExplanation:
        """SHAP values of validated ``rows`` (see ``explain_local``); ``background`` is needed
        for linear and permutation models and ignored for trees."""
        if self.tree is not None:
            return self._tree_local(rows, encoded)
        if background is None:
            raise InvalidInput(
                "explaining a model without a tree view needs background=<rows like the ones "
                "explained> (e.g. a sample of the training data)"
            )
        if self.linear is not None:
            return self._linear_local(rows, _mean_encoded(background), encoded)
        return _permutation_explanation(self.model, rows, background.rows, seed)

    def reasons(
        self,
        rows: pd.DataFrame,
        scores: np.ndarray,
        *,
        baseline: Reference,
        cutoff: float,
        reason_table: dict[str, str] | None = None,
        protected: Sequence[str] = (),
        max_reasons: int = 4,
        attribution: str = "baseline-average",
        explanation: LocalExplanation | None = None,
        encoded: np.ndarray | None = None,
        seed: int = 0,
    ) -> list[list[Reason]]:
        """Reason codes of validated ``rows`` scored ``scores`` (see ``reason_codes``)."""
        _check_reason_options(attribution, max_reasons)
        if explanation is not None and len(explanation.values) != len(rows):
            raise InvalidInput(
                "the explanation passed to reason_codes is not of the same rows as X"
            )
        denied = np.flatnonzero(np.asarray(scores, dtype=float) < cutoff)
        reasons: list[list[Reason]] = [[] for _ in range(len(rows))]
        if denied.size == 0:
            return reasons
        if baseline.rows.empty:
            raise InvalidInput("the reason-code baseline has no rows")
        mine = None if encoded is None else encoded[denied]
        if self.linear is not None:
            # exact interventional SHAP against the baseline: both attributions agree
            x = self.linear.encode(rows.iloc[denied]) if mine is None else mine
            lowered = ((x - _mean_encoded(baseline)) * self.linear.coef) @ self._group_matrix(
                self.linear.groups, x.shape[1]
            )
        elif self.tree is None:
            lowered = _permutation_explanation(
                self.model, rows.iloc[denied], baseline.rows, seed
            ).values.to_numpy()
        elif attribution == "interventional":
            lowered = _interventional(self.model, self.tree, rows.iloc[denied], baseline.rows)
        else:
            if explanation is not None and explanation.method.startswith("tree"):
                own = explanation.values.to_numpy()[denied]
            else:
                own = self._tree_local(_take(rows, denied), mine).values.to_numpy()
            if baseline.mean_values is None:
                raise InvalidInput("the reason-code baseline was not prepared for this model")
            lowered = own - baseline.mean_values
        _rank(self.model, reasons, denied, lowered, reason_table, protected, max_reasons)
        return reasons

    # -- internals ------------------------------------------------------------------------------

    def _group_matrix(self, groups: dict[str, list[int]], n_encoded: int) -> np.ndarray:
        matrix = self._groups.get(n_encoded)
        if matrix is None:
            matrix = self._groups[n_encoded] = group_matrix(
                groups, n_encoded, self.model.input_columns
            )
        return matrix

    def _tree_local(
        self, rows: pd.DataFrame, encoded: np.ndarray | None = None
    ) -> LocalExplanation:
        view = self.tree
        assert view is not None
        if encoded is None:
            encoded = view.encode(rows)
        if view.contributions is not None:
            raw = view.contributions(encoded)
            phi, base, method = raw[:, :-1], raw[:, -1], "tree-native"
        else:
            with self._lock:
                if self._shap_tree is None:
                    with _quiet_shap():
                        self._shap_tree = _shap().TreeExplainer(
                            view.model, feature_perturbation="tree_path_dependent"
                        )
                with _quiet_shap():  # additive by construction: base + sum is the output
                    phi = _positive_class(
                        self._shap_tree.shap_values(encoded, check_additivity=False)
                    )
                expected = self._shap_tree.expected_value
            base = np.full(len(rows), _positive_class_base(expected))
            method = "tree-shap"
        grouped = phi @ self._group_matrix(view.groups, phi.shape[1])
        values = pd.DataFrame(grouped, index=_index(rows), columns=self._columns, copy=False)
        return LocalExplanation(values, base, base + grouped.sum(axis=1), method, view.output)

    def _linear_local(
        self, rows: pd.DataFrame, mean: np.ndarray, encoded: np.ndarray | None
    ) -> LocalExplanation:
        view = self.linear
        assert view is not None
        x = view.encode(rows) if encoded is None else encoded
        grouped = ((x - mean) * view.coef) @ self._group_matrix(view.groups, x.shape[1])
        base = np.full(len(rows), view.intercept + float(mean @ view.coef))
        values = pd.DataFrame(grouped, index=_index(rows), columns=self._columns, copy=False)
        return LocalExplanation(values, base, view.intercept + x @ view.coef, "linear",
                                view.output)


def _index(rows: pd.DataFrame | Sequence[Any]) -> pd.Index:
    """The index an explanation of ``rows`` carries: the frame's own, or positions for the
    records a caller passes with their encoding (``ServedModel.score_records``)."""
    return rows.index if isinstance(rows, pd.DataFrame) else pd.RangeIndex(len(rows))


def _take(rows: pd.DataFrame | Sequence[Any], positions: np.ndarray) -> Any:
    if isinstance(rows, pd.DataFrame):
        return rows.iloc[positions]
    return [rows[i] for i in positions]


def explain_local(
    model: Any,
    X: pd.DataFrame,
    *,
    background: pd.DataFrame | Reference | None = None,
    max_background: int = 100,
    seed: int = 0,
) -> LocalExplanation:
    """SHAP values of each row of ``X`` per input column, in margin space.

    ``background`` (rows like ``X``; at most ``max_background`` of them, sampled with ``seed``,
    or a :class:`Reference` prepared for this model) is required for models without a tree view
    and ignored for tree models, whose path-dependent TreeSHAP needs none. Raises InvalidInput
    for multiclass models, rows that fail the model's schema, or a missing or empty background
    where one is needed.
    """
    explainer = Explainer(model)
    rows = model.validate(X)
    reference = None
    if explainer.kind != "tree":
        reference = _as_reference(explainer, background, max_background, seed, "background sample")
    return explainer.local(rows, background=reference, seed=seed)


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
    baseline: pd.DataFrame | Reference,
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

    Models without a tree view are explained with the baseline as background — exactly for
    linear models (``coef * (x - baseline mean)``), by permutation SHAP otherwise — which is
    interventional by construction (both attributions are the same).

    ``baseline`` may be a :class:`Reference` prepared for this model (``Explainer.reference``),
    in which case ``max_background`` and ``seed`` were applied when it was prepared.

    Reason texts: ``reason_table``, else ``model.reason_codes``, per column; a column found in
    neither is named by its own column name (the documented generic fallback).
    Raises InvalidInput for an unknown attribution, max_reasons < 1, an empty baseline, an
    ``explanation`` of other rows, or a tree model shap cannot explain interventionally.
    """
    explainer = Explainer(model)
    _check_reason_options(attribution, max_reasons)
    rows = model.validate(X)
    if explanation is not None and len(explanation.values) != len(rows):
        raise InvalidInput("the explanation passed to reason_codes is not of the same rows as X")
    scores = np.asarray(model.score(rows), dtype=float)
    if not (scores < cutoff).any():
        return [[] for _ in range(len(rows))]
    reference = _as_reference(explainer, baseline, max_background, seed, "reason-code baseline")
    return explainer.reasons(
        rows,
        scores,
        baseline=reference,
        cutoff=cutoff,
        reason_table=reason_table,
        protected=protected,
        max_reasons=max_reasons,
        attribution=attribution,
        explanation=explanation,
        seed=seed,
    )


def _rank(
    model: Any,
    reasons: list[list[Reason]],
    denied: np.ndarray,
    lowered: np.ndarray,
    reason_table: dict[str, str] | None,
    protected: Sequence[str],
    max_reasons: int,
) -> None:
    """Fill ``reasons`` of the denied rows: the most lowering unprotected inputs first."""
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


def _as_reference(
    explainer: Explainer,
    rows: pd.DataFrame | Reference | None,
    max_background: int,
    seed: int,
    what: str,
) -> Reference:
    if isinstance(rows, Reference):
        if rows.rows.empty:
            raise InvalidInput(f"the {what} has no rows")
        return rows
    if rows is None:
        raise InvalidInput(
            "explaining a model without a tree view needs background=<rows like the ones "
            "explained> (e.g. a sample of the training data)"
        )
    return explainer.reference(rows, max_background=max_background, seed=seed, what=what)


def _mean_encoded(reference: Reference) -> np.ndarray:
    if reference.mean_encoded is None:
        raise InvalidInput("the reference rows were not prepared for this linear model")
    return reference.mean_encoded


def _check_reason_options(attribution: str, max_reasons: int) -> None:
    if attribution not in ATTRIBUTIONS:
        raise InvalidInput(f"attribution must be one of {ATTRIBUTIONS}, not {attribution!r}")
    if max_reasons < 1:
        raise InvalidInput("max_reasons must be at least 1")


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
