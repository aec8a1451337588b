"""The pure parts of monitoring: calendar windows, thresholds, and what one window measures."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest

from nexml_ext.errors import InvalidInput
from nexml_ext.ml.drift import drift_report
from nexml_ext.ml.profile import profile
from nexml_ext.monitoring import thresholds, windows
from nexml_ext.monitoring.checks import Reference, WindowData, check_checks, measure, split_outcome


def test_windows_follow_the_calendar():
    # Thursday 2026-01-01: its ISO week starts Monday 2025-12-29
    at = datetime(2026, 1, 1, 15, 30)
    assert windows.window_at("daily", at).start == datetime(2026, 1, 1)
    week = windows.window_at("weekly", at)
    assert (week.start, week.end) == (datetime(2025, 12, 29), datetime(2026, 1, 5))
    assert str(week) == "week 2026-W01 (2025-12-29 to 2026-01-05)"
    december = windows.window_at("monthly", datetime(2025, 12, 31, 23, 59))
    assert (december.start, december.end) == (datetime(2025, 12, 1), datetime(2026, 1, 1))
    february = windows.window_at("monthly", datetime(2028, 2, 29))
    assert february.end == datetime(2028, 3, 1)


def test_only_complete_windows_are_judged():
    since, until = datetime(2026, 1, 7, 12), datetime(2026, 1, 26)
    weeks = list(windows.complete_windows("weekly", since, until))
    assert [w.start for w in weeks] == [datetime(2026, 1, 5), datetime(2026, 1, 12),
                                        datetime(2026, 1, 19)]
    # the week of the 5th ends on the 12th: at 23:59 on the 11th it is not complete yet
    assert list(windows.complete_windows("weekly", since, datetime(2026, 1, 11, 23, 59))) == []
    days = list(windows.complete_windows("daily", datetime(2026, 3, 1), datetime(2026, 3, 3, 9)))
    assert [d.start.day for d in days] == [1, 2]
    with pytest.raises(InvalidInput, match="more than 366 daily windows"):
        list(windows.complete_windows("daily", datetime(2020, 1, 1), datetime(2026, 1, 1)))
    with pytest.raises(InvalidInput, match="unknown window 'hourly'"):
        windows.window_at("hourly", since)
    assert windows.parse_moment("2026-01-05", "until") == datetime(2026, 1, 5)
    assert windows.parse_moment(date(2026, 1, 5), "until") == datetime(2026, 1, 5)
    assert windows.parse_moment("2026-01-05T10:00:00+02:00", "x") == datetime(2026, 1, 5, 8)
    with pytest.raises(InvalidInput, match="until must be a date"):
        windows.parse_moment("last tuesday", "until")


def test_thresholds_come_from_the_template_then_the_overrides():
    template = {"psi_warning": 0.1, "psi_alert": 0.25, "auc_min": 0.7}
    merged = thresholds.resolve(template, {"psi_alert": 0.2, "min_rows": 300})
    assert merged["psi_alert"] == 0.2 and merged["auc_min"] == 0.7 and merged["min_rows"] == 300
    assert thresholds.resolve(None, None) == thresholds.DEFAULTS
    with pytest.raises(InvalidInput, match="unknown threshold 'auc'"):
        thresholds.check_overrides({"auc": 0.7})
    with pytest.raises(InvalidInput, match="auc_min must be between 0 and 1"):
        thresholds.check_overrides({"auc_min": 7})
    with pytest.raises(InvalidInput, match="min_rows must be a whole number"):
        thresholds.check_overrides({"min_rows": 10.5})
    with pytest.raises(InvalidInput, match="finite number"):
        thresholds.check_overrides({"psi_alert": float("nan")})
    with pytest.raises(InvalidInput, match="psi_warning .* is above psi_alert"):
        thresholds.resolve(template, {"psi_warning": 0.3})
    assert check_checks("health, performance") == ("health", "performance")
    with pytest.raises(InvalidInput, match="unknown monitor check"):
        check_checks(["drift"])


def _window(n: int, seed: int, shift: float = 1.0, outcomes=None) -> WindowData:
    rng = np.random.default_rng(seed)
    inputs = pd.DataFrame({"amount": rng.normal(100, 10, n) * shift,
                           "kind": rng.choice(["a", "b"], n)})
    scores = list(rng.uniform(0, 1, n))
    return WindowData(inputs, scores, [5.0] * n, outcomes or [None] * n)


def _reference(baseline: dict) -> Reference:
    return Reference(problem_type="binary", input_columns=("amount", "kind"), baseline=baseline,
                     score_baseline=None, positive_label=1, negative_label=0, cutoff=0.5)


def test_a_window_is_measured_with_ml_drift_and_judged_only_with_enough_rows():
    base = _window(2000, 0).inputs
    baseline = profile(base)
    limits = thresholds.resolve({"psi_alert": 0.25}, {"min_rows": 100, "traffic_min": 150})
    small = measure(("data_drift", "health"), _window(60, 1, shift=1.5), _reference(baseline),
                    limits)
    psi = {m.feature: m for m in small if m.metric == "psi"}
    oracle = drift_report(baseline, _window(60, 1, shift=1.5).inputs, psi_alert=0.25)
    assert psi["amount"].value == pytest.approx(oracle.columns["amount"].psi)
    assert psi["amount"].value >= 0.25 and not psi["amount"].breached  # too few rows to alert
    assert not psi["amount"].judged
    traffic = next(m for m in small if m.metric == "requests")
    assert traffic.value == 60 and traffic.breached and traffic.direction == "min"
    big = measure(("data_drift",), _window(400, 2, shift=1.5), _reference(baseline), limits)
    flagged = {m.feature for m in big if m.breached}
    assert flagged == {"amount"}
    calm = measure(("data_drift",), _window(400, 3), _reference(baseline), limits)
    assert not any(m.breached for m in calm)


def test_outcomes_may_carry_attributes_beside_the_label():
    assert split_outcome(1) == (1, {})
    assert split_outcome({"label": 0, "sex": "female"}) == (0, {"sex": "female"})
    outcomes = [{"label": i % 2, "sex": "female" if i % 3 else "male"} for i in range(120)]
    outcomes[0] = "unknown-class"
    data = _window(120, 4, outcomes=outcomes)
    ref = Reference(problem_type="binary", input_columns=("amount", "kind"), baseline=None,
                    score_baseline=None, positive_label=1, negative_label=0, cutoff=0.5,
                    protected=("sex",))
    limits = thresholds.resolve(None, {"min_outcomes": 50, "accuracy_min": 0.99})
    measured = {(m.metric, m.scope, m.feature): m for m in measure(("performance",), data, ref,
                                                                     limits)}
    assert measured[("outcomes", "overall", "")].value == 119
    assert measured[("outcomes", "overall", "")].details["unusable"] == 1
    assert measured[("accuracy", "overall", "")].breached  # random scores, demanding threshold
    assert ("auc", "group", "sex=female") in measured
    assert not measured[("auc", "group", "sex=female")].breached  # groups are not alerted on
