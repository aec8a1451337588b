"""Read-only aggregates for the dashboards: inventory, deployment health, traffic, activity.

Each query is checked against the permission matrix like every other use case and returns plain
snapshots. Aggregates over prediction records need ``prediction.read`` (as
``decision_summary`` does) but return no individual record, so they are not audited reads; the
same holds for event counts (``audit.view``).

Deployment health comes from the recorded decisions only: how many were answered, their latency
and how many have an outcome. A request the gateway refused (401, 422, 5xx) records nothing, so
error counts are not here: they live in each gateway process's ``/metrics`` (Prometheus counters,
per process, lost when it restarts).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
from sqlalchemy import func, select

from ..errors import InvalidInput
from ..governance.naming import format_ref
from ..store import tables as t
from . import views
from .audit import _when
from .core import WorkspaceCore


@dataclass(frozen=True)
class DeploymentHealth:
    """One deployment's recorded traffic in a period. Latencies in milliseconds (None when no
    decision carried one); ``decisions`` excludes shadow records, counted apart."""

    deployment: str
    model_ref: str
    status: str
    size: str
    decisions: int
    shadow: int
    with_outcome: int
    latency_mean_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_max_ms: float | None
    first_at: datetime | None
    last_at: datetime | None


@dataclass(frozen=True)
class DayTraffic:
    """Decisions a deployment answered on one UTC day, and how many of them have an outcome."""

    day: date
    decisions: int
    shadow: int
    with_outcome: int
    latency_mean_ms: float | None


@dataclass(frozen=True)
class ActorActivity:
    """How many events one person (or the platform) appended in a period, and the last one."""

    actor: str
    role: str
    events: int
    last_at: datetime


class OverviewMixin(WorkspaceCore):
    def inventory(self) -> dict[str, int]:
        """Model versions counted by lifecycle status (every status, zero included)."""
        from ..governance.lifecycle import Status

        self._authorize("model.view")
        counts = {s.value: 0 for s in Status}
        with self._read() as s:
            query = select(t.ModelVersion.status, func.count()).group_by(t.ModelVersion.status)
            for status, n in s.execute(query):
                counts[status] = int(n)
        return counts

    def all_versions(self, *, status: str | None = None) -> list[views.ModelVersion]:
        """Every model version (optionally only those in ``status``), by model name, then
        version."""
        self._authorize("model.view")
        query = (
            select(t.ModelVersion)
            .join(t.Model, t.Model.id == t.ModelVersion.model_id)
            .order_by(t.Model.name, t.ModelVersion.version)
        )
        if status is not None:
            query = query.where(t.ModelVersion.status == status)
        with self._read() as s:
            return [views.ModelVersion.of(row) for row in s.scalars(query)]

    def deployment_health(
        self,
        *,
        since: date | datetime | str | None = None,
        until: date | datetime | str | None = None,
    ) -> list[DeploymentHealth]:
        """Each deployment's recorded decisions in a period (UTC; a bare ``until`` date includes
        that day): counts, latency mean/median/95th percentile/max (numpy's linear
        percentiles), outcomes attached. Aggregates only; failed requests are not recorded
        (see the module's note)."""
        self._authorize("prediction.read", "prediction records")
        P = t.PredictionRecord
        query = select(P.deployment_id, P.shadow, P.latency_ms, P.outcome_at, P.at)
        query = _period(query, P.at, since, until)
        with self._read() as s:
            deployments = {
                d.id: (d.name, format_ref(d.model_version.model.name, d.model_version.version),
                       d.status, d.size)
                for d in s.scalars(select(t.Deployment).order_by(t.Deployment.name))
            }
            grouped: dict[int, dict[str, Any]] = {
                i: {"decisions": 0, "shadow": 0, "outcomes": 0, "latency": [], "at": []}
                for i in deployments
            }
            for dep_id, shadow, latency, outcome_at, at in s.execute(
                query.execution_options(yield_per=5000)
            ):
                g = grouped[dep_id]
                g["at"].append(at)
                if shadow:
                    g["shadow"] += 1
                    continue
                g["decisions"] += 1
                g["outcomes"] += outcome_at is not None
                if latency is not None:
                    g["latency"].append(latency)
        out = []
        for dep_id, (name, ref, status, size) in sorted(deployments.items(), key=lambda i: i[1]):
            g = grouped[dep_id]
            lat = np.asarray(g["latency"], dtype=float)
            stats = (
                (float(lat.mean()), float(np.percentile(lat, 50)), float(np.percentile(lat, 95)),
                 float(lat.max()))
                if lat.size else (None, None, None, None)
            )
            out.append(
                DeploymentHealth(
                    name, ref, status, size, g["decisions"], g["shadow"], g["outcomes"], *stats,
                    min(g["at"]) if g["at"] else None, max(g["at"]) if g["at"] else None,
                )
            )
        return out

    def traffic_by_day(
        self,
        deployment: str,
        *,
        since: date | datetime | str | None = None,
        until: date | datetime | str | None = None,
    ) -> list[DayTraffic]:
        """Decisions deployment ``deployment`` recorded per UTC day (days with none left out),
        oldest first. Raises NotFound for an unknown deployment."""
        self._authorize("prediction.read", f"prediction records of {deployment}")
        P = t.PredictionRecord
        with self._read() as s:
            dep = self._active_or_any_deployment(s, deployment)
            query = select(P.at, P.shadow, P.outcome_at, P.latency_ms).where(
                P.deployment_id == dep.id
            )
            query = _period(query, P.at, since, until)
            days: dict[date, dict[str, Any]] = {}
            for at, shadow, outcome_at, latency in s.execute(
                query.execution_options(yield_per=5000)
            ):
                d = days.setdefault(
                    at.date(), {"decisions": 0, "shadow": 0, "outcomes": 0, "latency": []}
                )
                if shadow:
                    d["shadow"] += 1
                    continue
                d["decisions"] += 1
                d["outcomes"] += outcome_at is not None
                if latency is not None:
                    d["latency"].append(latency)
        return [
            DayTraffic(
                day, d["decisions"], d["shadow"], d["outcomes"],
                float(np.mean(d["latency"])) if d["latency"] else None,
            )
            for day, d in sorted(days.items())
        ]

    def recent_events(self, limit: int = 20) -> list[views.Event]:
        """The newest ``limit`` events of the audit chain, newest first."""
        self._authorize("audit.view", "the audit trail")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInput(f"limit must be a positive number, got {limit!r}")
        with self._read() as s:
            rows = s.scalars(select(t.Event).order_by(t.Event.seq.desc()).limit(limit))
            return [views.Event.of(row) for row in rows]

    def activity(
        self,
        *,
        since: date | datetime | str | None = None,
        until: date | datetime | str | None = None,
    ) -> list[ActorActivity]:
        """Events per actor in a period, most active first (ties by name)."""
        self._authorize("audit.view", "the audit trail")
        E = t.Event
        query = select(E.actor, E.actor_role, func.count(), func.max(E.at)).group_by(
            E.actor, E.actor_role
        )
        query = _period(query, E.at, since, until)
        with self._read() as s:
            rows = [ActorActivity(a, r, int(n), last) for a, r, n, last in s.execute(query)]
        # One line per actor: a person whose role changed keeps the latest role.
        merged: dict[str, ActorActivity] = {}
        totals: Counter[str] = Counter()
        for row in rows:
            totals[row.actor] += row.events
            kept = merged.get(row.actor)
            if kept is None or row.last_at > kept.last_at:
                merged[row.actor] = row
        return sorted(
            (ActorActivity(a, m.role, totals[a], m.last_at) for a, m in merged.items()),
            key=lambda x: (-x.events, x.actor),
        )

    def chain_sizes(self) -> dict[str, int]:
        """How many records each audit chain holds (from the chain heads; cheap)."""
        self._authorize("audit.view", "the audit trail")
        with self._read() as s:
            return {h.chain: int(h.seq) for h in s.scalars(select(t.ChainHead))}

    def _active_or_any_deployment(self, s: Any, name: str) -> t.Deployment:
        from ..errors import NotFound

        row = s.execute(
            select(t.Deployment).where(t.Deployment.name == name)
        ).scalar_one_or_none()
        if row is None:
            raise NotFound(f"deployment {name!r} not found")
        return row


def _period(query: Any, column: Any, since: Any, until: Any) -> Any:
    start = _when(since, end=False) if since is not None else None
    end = _when(until, end=True) if until is not None else None
    if start is not None and end is not None and start > end:
        raise InvalidInput(f"the period starts after it ends: {since} is after {until}")
    if start is not None:
        query = query.where(column >= start)
    if end is not None:
        query = query.where(column <= end)
    return query
