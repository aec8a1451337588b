"""The AutoGluon AutoML backend: a ``TabularPredictor`` over tree models and a linear model.

LightGBM, XGBoost, CatBoost, random forest, extra trees and a linear model plus a weighted
ensemble, with no torch models; each seeded, the time limit enforced by AutoGluon itself.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
import weakref
from typing import Any

from .json_values import jsonable

AUTOGLUON_MODELS = ("GBM", "XGB", "CAT", "RF", "XT", "LR")
AUTOGLUON_PRESETS = "medium_quality"


class _NoTorchProbe(logging.Filter):
    """Drops AutoGluon's "Failed to import torch" message: this platform has no torch on
    purpose, and none of the models it asks AutoGluon for need it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "torch" not in record.getMessage().lower()


_TORCH_FILTER = _NoTorchProbe()


def fit_autogluon(X, y, target, kind, eval_metric, time_limit, seed, progress):
    """Fit a ``TabularPredictor`` for ``target`` scored by AutoGluon's ``eval_metric``.

    Returns ``train``'s result; the champion is the predictor, whose models live in a
    temporary folder deleted with it.
    """
    from autogluon.tabular import TabularPredictor
    from autogluon.tabular.registry import ag_model_registry
    from tqdm.auto import tqdm

    probe = logging.getLogger("autogluon.common.utils.resource_utils")
    if _TORCH_FILTER not in probe.filters:
        probe.addFilter(_TORCH_FILTER)
    # Each model family names its seed differently (LightGBM "seed", CatBoost "random_seed",
    # forests "random_state"); the registry knows which. The learner's random_state fixes the
    # train/validation split.
    hyperparameters = {
        key: {ag_model_registry.key_to_cls(key).seed_name: seed} for key in AUTOGLUON_MODELS
    }
    path = tempfile.mkdtemp(prefix="nexml-autogluon-")
    train_frame = X.assign(**{target: y.to_numpy()})
    try:
        predictor = TabularPredictor(
            label=target,
            problem_type=kind,
            eval_metric=eval_metric,
            path=path,
            verbosity=0,
            learner_kwargs={"random_state": seed},
        )
        with (
            tqdm(desc="AutoGluon", unit="model", disable=not progress, leave=False) as bar,
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")  # library chatter; failures still raise
            predictor.fit(
                train_frame,
                time_limit=time_limit,
                presets=AUTOGLUON_PRESETS,
                hyperparameters=hyperparameters,
                fit_weighted_ensemble=True,
                callbacks=[_progress_callback(bar)],
            )
            board = predictor.leaderboard(silent=True)
            _, y_val = predictor.load_data_internal("val", return_X=False)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    # The predictor reads its models from ``path``; the folder goes when the predictor does.
    weakref.finalize(predictor, shutil.rmtree, path, True)
    validation_rows = max(len(y_val), 1)
    rows = [
        {
            "model": r.model,
            "score_val": float(r.score_val),
            "fit_time_s": float(r.fit_time),
            "predict_time_per_row_s": float(r.pred_time_val) / validation_rows,
        }
        for r in board.itertuples()
    ]
    features_in = predictor.feature_metadata_in
    preprocessing = [
        {
            "step": "autogluon_features",
            "columns": list(predictor.original_features),
            "params": {
                "raw_types": dict(features_in.type_map_raw),
                "special_types": features_in.get_type_map_special(),
                "model_features": predictor.features(feature_stage="transformed"),
            },
        }
    ]
    return {
        "rows": rows,
        "champion_name": predictor.model_best,
        "champion": predictor,
        "candidates": list(predictor.model_names()),
        "preprocessing": jsonable(preprocessing),
        "classes": list(predictor.class_labels) if kind != "regression" else [],
        "search": {
            "method": "TabularPredictor",
            "presets": AUTOGLUON_PRESETS,
            "hyperparameters": hyperparameters,
            "fit_weighted_ensemble": True,
            "eval_metric": eval_metric,
            "learner_random_state": seed,
            "validation_rows": len(y_val),
        },
    }


def _progress_callback(bar: Any = None) -> Any:
    """An AutoGluon callback that ticks ``bar`` once per fitted model.

    AutoGluon pickles its trainer, callbacks included, while fitting; the callback pickles as
    a call to this function, so it needs no importable class and never carries the bar along.
    """
    from autogluon.core.callbacks import AbstractCallback

    class Progress(AbstractCallback):
        def __reduce__(self) -> tuple[Any, tuple]:
            return _progress_callback, ()

        def _before_model_fit(self, trainer, model, **kwargs):
            if bar is not None:
                bar.set_postfix_str(model.name)
            return False, False

        def _after_model_fit(self, trainer, model_names, **kwargs):
            if bar is not None:
                bar.update(len(model_names))
            return False

    return Progress()
