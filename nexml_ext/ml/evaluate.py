"""Performance metrics of a fitted model on a labelled table (scikit-learn's implementations)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from ..errors import InvalidInput


def evaluate(model: Any, data: pd.DataFrame, target: str, problem_type: str) -> dict[str, float]:
    """Score ``data`` with ``model`` and compare with ``data[target]``.

    Binary: accuracy, ROC AUC, log loss, Brier score, KS statistic; multiclass: accuracy,
    macro F1, log loss; regression: RMSE, MAE, R².
    """
    if target not in data.columns:
        raise InvalidInput(f"cannot evaluate: target column {target!r} is not in the data")
    y = data[target]
    x = data.drop(columns=[target])
    if problem_type == "binary":
        proba = model.predict_proba(x)[:, 1]
        positive = model.classes_[1]
        y_bin = (y == positive).astype(int).to_numpy()
        pred = np.where(proba >= 0.5, positive, model.classes_[0])
        from scipy.stats import ks_2samp

        return {
            "accuracy": float(skm.accuracy_score(y, pred)),
            "roc_auc": float(skm.roc_auc_score(y_bin, proba)),
            "log_loss": float(skm.log_loss(y_bin, proba, labels=[0, 1])),
            "brier": float(skm.brier_score_loss(y_bin, proba)),
            "ks": float(ks_2samp(proba[y_bin == 1], proba[y_bin == 0]).statistic),
            "rows": float(len(y)),
        }
    if problem_type == "multiclass":
        proba = model.predict_proba(x)
        pred = model.predict(x)
        return {
            "accuracy": float(skm.accuracy_score(y, pred)),
            "f1_macro": float(skm.f1_score(y, pred, average="macro")),
            "log_loss": float(skm.log_loss(y, proba, labels=model.classes_)),
            "rows": float(len(y)),
        }
    if problem_type == "regression":
        pred = model.predict(x)
        return {
            "rmse": float(np.sqrt(skm.mean_squared_error(y, pred))),
            "mae": float(skm.mean_absolute_error(y, pred)),
            "r2": float(skm.r2_score(y, pred)),
            "rows": float(len(y)),
        }
    raise InvalidInput(f"cannot evaluate problem type {problem_type!r}")
