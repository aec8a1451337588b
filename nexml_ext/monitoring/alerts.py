"""Alerts from breached measurements: what is said, how severe, and which re-review trigger of
the compliance record it is.

One alert stands for one (deployment, metric, feature, window kind): a breach that persists
window after window counts up on the same alert (``count``, ``last_seen_at``) instead of
opening new ones, until the metric is back within its threshold (the alert is then resolved)
— a new breach after that is a new alert.
"""

from __future__ import annotations

from typing import Any

from .checks import Measurement
from .windows import Window

STATUSES: tuple[str, ...] = ("open", "acknowledged", "resolved")
#: Statuses of an alert a new breach counts on instead of opening another.
ACTIVE: tuple[str, ...] = ("open", "acknowledged")
#: check kind -> the compliance record's re-review trigger it fires (None: none)
RE_REVIEW_TRIGGER: dict[str, str | None] = {
    "data_drift": "drift_alert",
    "prediction_drift": "drift_alert",
    "performance": "performance_breach",
    "health": None,
}
_WORDS = {"at": "reached", "max": "is above", "min": "is below"}


def severity(m: Measurement) -> str:
    """``critical`` for performance, ``warning`` for drift and health."""
    return "critical" if m.kind == "performance" else "warning"


def message(deployment: str, m: Measurement, window: Window) -> str:
    """One line naming the deployment, what breached, by how much, and the window."""
    what = f"{m.metric} of {m.feature}" if m.feature else m.metric
    value = "none" if m.value is None else f"{m.value:.4g}"
    return (
        f"{deployment}: {what} {value} {_WORDS.get(m.direction or '', 'breached')} the "
        f"threshold {m.threshold:.4g} in {window} ({m.rows} rows)"
    )


def payload(alert: Any, deployment: str, model_ref: str) -> dict[str, Any]:
    """The JSON a sink receives for a stored alert row."""
    return {
        "id": alert.id,
        "kind": alert.kind,
        "severity": alert.severity,
        "status": alert.status,
        "deployment": deployment,
        "model": model_ref,
        "metric": alert.metric,
        "feature": alert.feature or "",
        "window": alert.window_kind,
        "window_start": alert.last_window_start.isoformat() if alert.last_window_start else None,
        "value": alert.value,
        "threshold": alert.threshold,
        "count": alert.count,
        "message": alert.message,
        "first_seen_at": alert.first_seen_at.isoformat() if alert.first_seen_at else None,
        "last_seen_at": alert.last_seen_at.isoformat() if alert.last_seen_at else None,
    }
