"""The recommendation rule (nexml_ext.reports.comparison), on hand-made validations."""

from __future__ import annotations

import math

import pytest

from nexml_ext.reports.comparison import KEEP, PROMOTE, deltas, recommend


def _rec(champion, challenger, *, problem="binary", champion_status="passed",
         challenger_status="passed"):
    return recommend(champion_ref="m:1", challenger_ref="m:2", problem_type=problem,
                     champion_metrics=champion, challenger_metrics=challenger,
                     champion_status=champion_status, challenger_status=challenger_status)


def test_deltas_are_challenger_minus_champion_with_the_better_side():
    table = deltas({"roc_auc": 0.70, "brier": 0.20, "ks": math.nan},
                   {"roc_auc": 0.75, "brier": 0.22, "ks": 0.4}, "binary")
    assert set(table) == {"roc_auc", "brier"}  # a NaN on either side is not compared
    assert table["roc_auc"]["delta"] == pytest.approx(0.05) and table["roc_auc"]["improved"]
    assert table["brier"]["delta"] == pytest.approx(0.02)
    assert table["brier"]["improved"] is False and table["brier"]["lower_is_better"]
    same = deltas({"accuracy": 0.8}, {"accuracy": 0.8}, "binary")
    assert same["accuracy"]["improved"] is None


@pytest.mark.parametrize(
    ("champion", "challenger", "statuses", "decision", "why"),
    [
        (0.70, 0.80, ("passed", "failed"), KEEP, "missed a template threshold"),
        (0.70, 0.706, ("passed", "passed"), PROMOTE, "is better"),
        (0.70, 0.704, ("passed", "passed"), KEEP, "not materially better"),
        (0.70, 0.698, ("failed", "passed"), PROMOTE, "now misses a template threshold"),
        (0.70, 0.69, ("failed", "passed"), KEEP, "is worse"),
        (0.70, 0.69, ("passed", "passed"), KEEP, "is worse"),
    ],
)
def test_the_rule(champion, challenger, statuses, decision, why):
    made = _rec({"roc_auc": champion}, {"roc_auc": challenger},
                champion_status=statuses[0], challenger_status=statuses[1])
    assert made.decision == decision and why in made.reason
    assert made.primary == "roc_auc" and made.min_improvement == 0.005


def test_lower_is_better_for_regression_error():
    made = _rec({"rmse": 10.0, "r2": 0.5}, {"rmse": 9.0, "r2": 0.6}, problem="regression")
    assert made.decision == PROMOTE and made.deltas["rmse"]["delta"] == pytest.approx(-1.0)
    worse = _rec({"rmse": 9.0}, {"rmse": 10.0}, problem="regression")
    assert worse.decision == KEEP and "is worse" in worse.reason
