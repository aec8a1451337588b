"""The model as served: which AutoGluon model an artifact serves, and a loaded model prepared
for the request path.

``choose_model``: the AutoGluon model to serve, by validation score within a latency budget. Each
candidate is timed as it would serve one row, schema validation included: through the fast path
when it compiles (``fast_path.py``), else through AutoGluon's own predictor.

``ServedModel``: a loaded artifact on the gateway's request path, where everything that depends
only on the model is computed once (its explainer, the reference rows of its explanations and
reason codes) and every row is encoded once, for both its score and its explanation.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput
from .fast_path import NativeScorer, NotCompilable, compile_encoder, random_rows

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from .explain import Explainer, Reference


def choose_model(
    predictor: Any,
    columns: dict[str, Any],
    probes: pd.DataFrame,
    model: str | None,
    budget_ms: float | None,
) -> tuple[str, list[dict[str, Any]]]:
    """The model to serve, and each model considered: validation score, path, p50 ms."""
    board = predictor.leaderboard(silent=True)
    scores = dict(zip(board["model"], board["score_val"], strict=True))
    if model is not None:
        if model not in scores:
            raise InvalidInput(f"the predictor has no model {model!r}; it has {sorted(scores)}")
        return model, [
            {
                "model": model,
                "score_val": scores[model],
                "chosen": True,
                "why": "named by the caller",
            }
        ]
    best = predictor.model_best
    singles = board[(board["stack_level"] == 1) & (board["model"] != best)]
    order = [best, *singles.sort_values("score_val", ascending=False)["model"]]
    sample = random_rows(columns, list(probes.columns), 25)
    rows = [sample.iloc[[i]] for i in range(len(sample))]
    considered = []
    for name in order:
        path, call = _serving_call(predictor, name, probes, columns)
        p50 = _p50_ms(call, rows if path == "native" else rows[:10])
        if budget_ms is not None and budget_ms < p50 < 3 * budget_ms:  # near: a busy moment?
            p50 = min(p50, *(_p50_ms(call, rows[:10]) for _ in range(2)))
        entry = {
            "model": name,
            "score_val": scores[name],
            "path": path,
            "single_row_p50_ms": round(p50, 3),
        }
        considered.append(entry)
        if budget_ms is None or p50 <= budget_ms:
            entry["chosen"] = True
            return name, considered
    considered[0]["chosen"] = True
    considered[0]["why"] = f"no model fits the {budget_ms} ms budget; serving the best"
    return best, considered


def _serving_call(
    predictor: Any, name: str, probes: pd.DataFrame, columns: dict[str, Any]
) -> tuple[str, Any]:
    """How model ``name`` would serve one row (validation included): native, else AutoGluon."""
    from .data import coerce_to_schema

    schema = {"columns": columns}
    try:
        spec, native = compile_encoder(predictor, name, probes, columns)
    except NotCompilable:
        return "autogluon-predictor", lambda row: predictor.predict_proba(
            coerce_to_schema(row, schema), model=name
        )
    scorer = NativeScorer(json.loads(json.dumps(spec)), native, [])
    return "native", lambda row: scorer.raw(coerce_to_schema(row, schema))


def _p50_ms(call: Any, rows: list[pd.DataFrame]) -> float:
    call(rows[0])  # warm caches and lazy loads
    times = []
    for row in rows:
        start = time.perf_counter()
        call(row)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1000


class ServedModel:
    """A loaded model (``artifact.LoadedModel``) as the gateway serves it.

    ``score`` takes rows validated by ``model.validate`` and returns their scores (binary: the
    probability of ``classes[1]``; regression: the prediction) with, when the explainer reads the
    pipeline's encoding, that encoding. For the scikit-learn flavour the rows are encoded once —
    by the artifact's compiled path (``model.compiled``, ``sklearn_compiled.py``) when it takes
    them, else by the pipeline's steps but the last — and the final estimator's output is read
    from that encoding, as ``Pipeline.predict_proba`` itself does: the scores equal
    ``model.score`` bit for bit (a test holds them equal). The encoding is handed on only once
    the first batch showed it equal to the explainer's own. Other flavours score through
    ``model.score``.

    ``explainer`` (binary and regression models) and the reference rows, prepared once by
    ``references``, serve every request after. Safe to share between threads.
    """

    def __init__(self, model: Any) -> None:
        from .explain import Explainer

        self.model = model
        self.explainer: Explainer | None = (
            Explainer(model) if model.problem_type in ("binary", "regression") else None
        )
        self._split = _pipeline_split(model)
        self._shared: bool | None = None  # does the explainer read the pipeline's encoding?
        self._lock = threading.Lock()
        self._references: dict[float, tuple[Reference | None, Reference]] = {}

    def score(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """Scores of validated ``rows``, and their encoding when the explainer reads it."""
        import numpy as np

        from .model_view import _dense

        if self._split is None:
            return np.asarray(self.model.score(rows), dtype=float), None
        encoder, final, column = self._split
        compiled = getattr(self.model, "compiled", None)  # small batches: sklearn_compiled.py
        fast = compiled.score(rows) if compiled is not None else None
        if fast is not None:
            raw, output = fast
            scores = np.asarray(output if column is None else output[:, column], dtype=float)
        elif column is None:
            raw = encoder.transform(rows)
            scores = np.asarray(final.predict(raw)).astype(float)
        else:
            raw = encoder.transform(rows)
            scores = np.asarray(final.predict_proba(raw), dtype=float)[:, column]
        if self.explainer is None or self.explainer.kind == "permutation" or self._shared is False:
            return scores, None
        encoded = _dense(raw)
        if self._shared is None:  # first batch: is this what the explainer would encode?
            own = self.explainer.encode(rows)
            self._shared = own is not None and np.array_equal(own, encoded, equal_nan=True)
            if not self._shared:
                return scores, None  # the explainer encodes for itself
        return scores, encoded

    def score_records(
        self, records: list[Any]
    ) -> tuple[dict[str, list[Any]], np.ndarray, np.ndarray] | None:
        """``score`` of a small clean batch of records (mappings, as a JSON body gives them)
        with no DataFrame made: (each schema column's values in schema order, the scores, their
        encoding), equal to ``score`` of the frame ``model.validate`` makes of the records.

        Only for a compiled pipeline whose encoding the explainer has been shown to read (by
        the first batch through ``score``), and records ``sklearn_compiled.conforming_records``
        takes; otherwise None, and the caller validates a frame and calls ``score``. On a
        small request most of the time went to pandas: building the frame, checking its dtypes
        and reading its columns back."""
        import numpy as np

        from .model_view import _dense
        from .sklearn_compiled import conforming_records

        compiled = getattr(self.model, "compiled", None)
        if compiled is None or self._split is None or self._shared is not True:
            return None
        values = conforming_records(records, self.model.input_schema)
        if values is None:
            return None
        encoded = compiled.encode_columns([values[c] for c in compiled.columns], len(records))
        if encoded is None:
            return None
        output = compiled.output(encoded)
        column = self._split[2]
        scores = np.asarray(output if column is None else output[:, column], dtype=float)
        return values, scores, _dense(encoded)

    def references(
        self,
        cutoff: float,
        pool: Callable[[], pd.DataFrame],
        *,
        background_rows: int = 100,
    ) -> tuple[Reference | None, Reference]:
        """The explanation background and the reason-code baseline for ``cutoff``, prepared
        from the rows ``pool()`` returns (the training data) on the first call only — other
        callers wait for it rather than load the pool too: the background is
        ``background_rows`` rows of the pool, seeded (None for tree models, which need none),
        the baseline ``explain.reason_baseline`` of the pool; both validated, sampled and
        summarised. Raises InvalidInput as ``reason_baseline`` does, or whatever ``pool``
        raises."""
        from .explain import reason_baseline

        prepared = self._references.get(cutoff)
        if prepared is not None:
            return prepared
        if self.explainer is None:
            raise InvalidInput("explanations cover binary and regression models")
        with self._lock:
            prepared = self._references.get(cutoff)
            if prepared is None:
                rows = pool()
                background = None
                if self.explainer.kind != "tree":
                    sample = rows.sample(min(background_rows, len(rows)), random_state=0)
                    background = self.explainer.reference(sample, what="background sample")
                baseline = self.explainer.reference(
                    reason_baseline(self.model, rows, cutoff), what="reason-code baseline"
                )
                prepared = self._references[cutoff] = (background, baseline)
            return prepared


def _pipeline_split(model: Any) -> tuple[Any, Any, int | None] | None:
    """(encoder, final estimator, column of classes[1] or None for regression) of a binary or
    regression scikit-learn pipeline; None for anything else."""
    from sklearn.pipeline import Pipeline

    from .artifact_metadata import plain

    pipeline = getattr(model, "estimator", None)
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) < 2:
        return None
    final = pipeline.steps[-1][1]
    if model.problem_type == "regression":
        return pipeline[:-1], final, None
    if model.problem_type != "binary":
        return None
    own = [plain(c) for c in getattr(final, "classes_", [])]
    positive = plain(model.classes[1])
    if len(own) != 2 or positive not in own:
        return None
    return pipeline[:-1], final, own.index(positive)
