"""A monitor's thresholds: platform defaults, then the model's compliance template, then the
overrides given at enrolment (each later source wins, name by name).

The template's names keep their meaning (``governance/tiers.THRESHOLDS``); monitoring adds a few
of its own below. An override of an unknown name, or a value that is not a finite number in its
range, is refused by name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidInput
from ..governance.tiers import THRESHOLDS as TEMPLATE_THRESHOLDS

#: Monitoring's own threshold names, beside the template's.
MONITOR_THRESHOLDS: dict[str, str] = {
    "min_rows": "fewest decisions in a window for drift and health to be judged (fewer: "
    "measured, never alerted)",
    "min_outcomes": "fewest outcomes in a window for performance to be judged",
    "accuracy_min": "lowest acceptable accuracy on the outcomes of a window",
    "precision_min": "lowest acceptable precision on the outcomes of a window",
    "recall_min": "lowest acceptable recall on the outcomes of a window",
    "f1_min": "lowest acceptable F1 score on the outcomes of a window",
    "ece_max": "largest acceptable expected calibration error on the outcomes of a window",
    "brier_max": "largest acceptable Brier score on the outcomes of a window",
    "latency_p95_ms_max": "largest acceptable 95th percentile of recorded latency (ms)",
    "traffic_min": "fewest decisions a complete window may hold before it is a traffic alert",
}
KNOWN: dict[str, str] = {**TEMPLATE_THRESHOLDS, **MONITOR_THRESHOLDS}

DEFAULTS: dict[str, float] = {
    "psi_warning": 0.10,
    "psi_alert": 0.25,
    "min_rows": 100,
    "min_outcomes": 50,
}
_COUNTS = frozenset({"min_rows", "min_outcomes", "traffic_min"})
_UNBOUNDED = frozenset({"psi_warning", "psi_alert", "latency_p95_ms_max", *_COUNTS})


def check_overrides(overrides: Mapping[str, Any] | None) -> dict[str, float]:
    """Clean threshold overrides; InvalidInput naming an unknown name or a bad value."""
    if overrides is None:
        return {}
    if not isinstance(overrides, Mapping):
        raise InvalidInput("thresholds must be a mapping of threshold name to number")
    clean: dict[str, float] = {}
    for name, value in overrides.items():
        if name not in KNOWN:
            raise InvalidInput(
                f"unknown threshold {name!r}: known thresholds are {', '.join(sorted(KNOWN))}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value
        ):
            raise InvalidInput(f"threshold {name} must be a finite number, got {value!r}")
        if value < 0 or (name not in _UNBOUNDED and value > 1):
            limit = "at least 0" if name in _UNBOUNDED else "between 0 and 1"
            raise InvalidInput(f"threshold {name} must be {limit}, got {value!r}")
        if name in _COUNTS and value != int(value):
            raise InvalidInput(f"threshold {name} must be a whole number, got {value!r}")
        clean[name] = int(value) if name in _COUNTS else float(value)
    return clean


def resolve(template: Mapping[str, Any] | None, overrides: Mapping[str, Any] | None) -> dict:
    """Thresholds in force: defaults, then the template's, then the overrides. InvalidInput
    when the result has psi_warning above psi_alert."""
    merged: dict[str, float] = {**DEFAULTS, **dict(template or {}), **check_overrides(overrides)}
    if merged["psi_warning"] > merged["psi_alert"]:
        raise InvalidInput(
            f"threshold psi_warning ({merged['psi_warning']}) is above psi_alert "
            f"({merged['psi_alert']})"
        )
    return merged
