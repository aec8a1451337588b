"""Choosing the AutoGluon model an artifact serves: validation score within a latency budget.

Each candidate is timed as it would serve one row, schema validation included: through the fast
path when it compiles (``fast_path.py``), else through AutoGluon's own predictor.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput
from .fast_path import NativeScorer, NotCompilable, compile_encoder, random_rows

if TYPE_CHECKING:
    import pandas as pd


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
