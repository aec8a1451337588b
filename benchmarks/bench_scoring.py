"""Single-row scoring latency of the champion artifact, against AutoGluon's own predict_proba.

Run:  python benchmarks/bench_scoring.py [--rows 500] [--time-limit 30]

Trains the German-credit AutoGluon champion (binary, ROC AUC; GBM, XGB, CAT, RF, XT and LR;
AutoGluon's default seeds; protected attributes sex and age left out), saves it with
``artifact.save_autogluon``, stores it and loads it back verified, then times N single-row calls,
one request row (a one-row DataFrame) at a time, of:

  autogluon default    - ``predictor.predict_proba(row)`` on the fitted predictor: its champion
  autogluon persisted  - the same after ``predictor.persist("all")`` (models kept in memory)
  autogluon served     - ``predictor.predict_proba(row, model=<the artifact's served model>)``
  artifact (ours)      - ``LoadedModel.predict_proba(row)``: schema validation + the fast path
  artifact validate    - ``LoadedModel.validate(row)`` alone (part of the line above)

and the same for a scikit-learn pipeline saved with ``save_sklearn`` (the pipeline's own
``predict_proba`` against ``LoadedModel.predict_proba``). It also checks the fast path against
the cloned predictor's own predict_proba on every row and on each timed single row.
Ratios, not milliseconds, are the result: these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from nexml_ext.ml import artifact
from nexml_ext.ml.data import schema_of
from nexml_ext.sample_data import german_credit
from nexml_ext.store.artifacts import ArtifactStore

TARGET = "risk"
PROTECTED = ["sex", "age"]
HYPERPARAMETERS = {"GBM": {}, "XGB": {}, "CAT": {}, "RF": {}, "XT": {}, "LR": {}}


def _latencies(call: Callable[[pd.DataFrame], object], rows: list[pd.DataFrame]) -> np.ndarray:
    """Milliseconds per single-row call, after 20 warm-up calls."""
    for row in rows[:20]:
        call(row)
    out = np.empty(len(rows))
    for i, row in enumerate(rows):
        start = time.perf_counter()
        call(row)
        out[i] = (time.perf_counter() - start) * 1000
    return out


def _line(name: str, ms: np.ndarray, reference: float | None) -> str:
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    ratio = f"{reference / p50:.1f}x" if reference else "1.0x"
    return f"| {name} | {p50:.2f} | {p95:.2f} | {p99:.2f} | {ratio} |"


def _autogluon(data: pd.DataFrame, work: Path, store: ArtifactStore, n: int,
               time_limit: float) -> list[str]:
    from autogluon.tabular import TabularPredictor

    schema = schema_of(data.drop(columns=[TARGET, *PROTECTED]))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictor = TabularPredictor(
            label=TARGET, problem_type="binary", eval_metric="roc_auc", verbosity=0,
            path=str(work / "predictor"),
        ).fit(data.drop(columns=PROTECTED), time_limit=time_limit,
              hyperparameters=HYPERPARAMETERS)
        fit_s = time.perf_counter() - start
        directory = artifact.save_autogluon(predictor, work / "artifact", problem_type="binary",
                                            target=TARGET, input_schema=schema)
    stored = store.put_directory(directory, "models/german-ag/1")
    model = artifact.load_verified(store, stored.uri, stored.sha256)
    fast = model.fast_path
    served = fast["model"]

    requests = data.drop(columns=[TARGET])
    rows = [requests.iloc[[i % len(requests)]] for i in range(n)]
    parity_all = float(np.max(np.abs(model.predict_proba(requests)
                                     - model.predict_proba_full(requests))))
    parity_rows = max(float(np.max(np.abs(model.predict_proba(r) - model.predict_proba_full(r))))
                      for r in rows)

    default = _latencies(predictor.predict_proba, rows)
    ours = _latencies(model.predict_proba, rows)
    validate = _latencies(model.validate, rows)
    same_model = _latencies(lambda r: predictor.predict_proba(r, model=served), rows)
    predictor.persist("all")
    persisted = _latencies(predictor.predict_proba, rows)
    reference = float(np.percentile(default, 50))

    board = {c["model"]: c["score_val"] for c in fast["candidates"]}
    champion = predictor._trainer.load_model(predictor.model_best)
    weights = getattr(champion, "_get_model_weights", dict)()
    members = ", ".join(f"{m} {w:.2f}" for m, w in weights.items()) or "a single model"
    return [
        f"AutoGluon fit {fit_s:.0f} s; champion (predictor.model_best) "
        f"`{predictor.model_best}` ({members}), validation ROC AUC "
        f"{board[predictor.model_best]:.4f}; "
        f"served model `{served}` ({fast['kind']} {fast.get('library', '')}), validation ROC AUC "
        f"{board[served]:.4f}, chosen under a {fast['latency_budget_ms']} ms budget.",
        f"Parity, fast path vs the cloned predictor's predict_proba: max |Δ| = {parity_all:.1e} "
        f"over all {len(requests)} rows, {parity_rows:.1e} over the {n} single rows.",
        "",
        "| path | p50 ms | p95 ms | p99 ms | speed-up vs AutoGluon default (p50) |",
        "|---|---|---|---|---|",
        _line(f"AutoGluon default `predict_proba` ({predictor.model_best})", default, None),
        _line("AutoGluon after `persist('all')`", persisted, reference),
        _line(f"AutoGluon `predict_proba(model='{served}')`", same_model, reference),
        _line("**artifact `LoadedModel.predict_proba` (ours)**", ours, reference),
        _line("  of which `LoadedModel.validate` (schema check)", validate, reference),
    ]


def _sklearn(data: pd.DataFrame, work: Path, store: ArtifactStore, n: int) -> list[str]:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    inputs = data.drop(columns=[TARGET, *PROTECTED])
    numeric = [c for c in inputs.columns if pd.api.types.is_numeric_dtype(inputs[c])]
    prepare = ColumnTransformer(
        [(c, "passthrough", [c]) for c in numeric]
        + [(c, OneHotEncoder(handle_unknown="ignore"), [c]) for c in inputs if c not in numeric]
    )
    pipeline = Pipeline([("prepare", prepare),
                         ("model", HistGradientBoostingClassifier(random_state=0))])
    pipeline.fit(inputs, data[TARGET])
    directory = artifact.save_sklearn(pipeline, work / "sklearn", problem_type="binary",
                                      target=TARGET, input_schema=schema_of(inputs))
    stored = store.put_directory(directory, "models/german-sk/1")
    model = artifact.load_verified(store, stored.uri, stored.sha256)
    requests = data.drop(columns=[TARGET])
    rows = [requests.iloc[[i % len(requests)]] for i in range(n)]
    assert np.array_equal(model.predict_proba(requests), pipeline.predict_proba(requests))
    own = _latencies(pipeline.predict_proba, rows)
    ours = _latencies(model.predict_proba, rows)
    return [
        "| path | p50 ms | p95 ms | p99 ms | speed-up vs the pipeline (p50) |",
        "|---|---|---|---|---|",
        _line("pipeline `predict_proba` (HistGradientBoosting)", own, None),
        _line("artifact `LoadedModel.predict_proba` (validation included)", ours,
              float(np.percentile(own, 50))),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500, help="single-row calls per path")
    parser.add_argument("--time-limit", type=float, default=30, help="AutoGluon fit seconds")
    args = parser.parse_args()

    data = german_credit()
    with tempfile.TemporaryDirectory(prefix="nexml-bench-") as tmp:
        work = Path(tmp)
        store = ArtifactStore(str(work / "store"))
        # scikit-learn first: once AutoGluon's boosters have run, their idle OpenMP threads
        # can stall HistGradientBoosting's single-row calls for hundreds of milliseconds
        sklearn_lines = _sklearn(data, work, store, args.rows)
        lines = _autogluon(data, work, store, args.rows, args.time_limit)
        lines += ["", "scikit-learn flavour:", "", *sklearn_lines]
    print(f"# Scoring latency: {args.rows} single-row calls; {platform.machine()}, "
          f"{platform.python_implementation()} {platform.python_version()}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
