"""Schedules: jobs the platform submits on a cron schedule, exactly once per fire time.

A schedule names a job kind, its parameters (which may name the fire time's period, see
:mod:`nexml_ext.jobs.schedules`), a cron expression and a time zone. Managers and superadmins
manage them (``schedule.manage``); whoever creates one must be allowed to submit its kind
themselves, and each fire is submitted on their behalf, checked again as them at that time.

``run_schedules(now)`` (``nexml scheduler``, ``schedule.run``) submits each due fire time in its
own transaction: lock the schedule, record the fire under the unique (schedule, fire time)
pair, queue the job, advance ``next_run_at``, append the events — so a scheduler that stops
between two fires resumes at the first one not recorded (nothing skipped, nothing repeated),
and two schedulers at once never submit the same fire twice (the second finds the schedule
advanced, and the unique pair backs that up). A scheduler that was down catches up every
missed fire in order (``catch_up="all"``, the default: each month's audit report and each
day's drift report is its own evidence) or only the latest (``catch_up="latest"``, the missed
ones counted in the fire's record). A fire whose job is refused (the deployment is gone, the
creator lost the right) is recorded with the refusal and the schedule moves on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError as DatabaseIntegrityError
from sqlalchemy.orm import Session

from ..errors import Conflict, InvalidInput, NexmlError, NotFound, PermissionDenied
from ..governance.naming import check_name
from ..governance.roles import Principal, Role
from ..jobs import schedules as cron
from ..store import tables as t
from .core import WorkspaceCore
from .jobs import _append_log, _json_object


@dataclass(frozen=True)
class Schedule:
    """A schedule as stored. Times are naive UTC; ``params`` may hold placeholders."""

    name: str
    cron: str
    timezone: str
    kind: str
    params: dict[str, Any]
    catch_up: str
    enabled: bool
    created_by: str
    created_at: datetime
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_job_id: int | None

    @classmethod
    def of(cls, row: t.Schedule) -> Schedule:
        return cls(row.name, row.cron, row.timezone, row.kind, dict(row.params or {}),
                   row.catch_up, bool(row.enabled), row.created_by, row.created_at,
                   row.next_run_at, row.last_run_at, row.last_job_id)


@dataclass(frozen=True)
class ScheduleFire:
    """One fire time of a schedule: the job it submitted, or why none was."""

    schedule: str
    fire_at: datetime
    kind: str
    job_id: int | None
    params: dict[str, Any]
    error: str | None = None
    skipped: int = 0  # earlier missed fires coalesced into this one (catch_up="latest")

    def line(self) -> str:
        when = f"{self.fire_at:%Y-%m-%d %H:%M} UTC"
        if self.job_id is None:
            return f"schedule {self.schedule} {when}: no job: {self.error}"
        shown = " ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        extra = f" ({self.skipped} earlier missed fire(s) coalesced)" if self.skipped else ""
        return f"schedule {self.schedule} {when}: job {self.job_id} {self.kind} queued" + (
            f" {shown}" if shown else "") + extra


class _AlreadyFired(Exception):
    """Another scheduler recorded this fire first (raised inside the write to roll it back)."""


class SchedulesMixin(WorkspaceCore):
    # --- managing -----------------------------------------------------------------------------

    def add_schedule(
        self,
        name: str,
        cron_expression: str,
        kind: str,
        params: dict[str, Any] | None = None,
        *,
        timezone: str = "UTC",
        catch_up: str = "all",
        enabled: bool = True,
        now: datetime | None = None,
    ) -> Schedule:
        """Create a schedule submitting a ``kind`` job at each fire time of ``cron_expression``
        in ``timezone``; the first fire is the first after ``now`` (naive UTC, default the
        clock). The creator must be allowed to submit that job now (checked with the first
        fire's parameters). Raises InvalidInput (bad cron, zone, kind, parameters), Conflict
        (the name is taken), PermissionDenied, NotFound (e.g. the deployment)."""
        self._authorize("schedule.manage", f"schedule {name}")
        spec = cron.ScheduleSpec(check_name("schedule", name), cron.check_cron(cron_expression),
                                 kind, dict(params or {}), cron.check_timezone(timezone),
                                 catch_up)
        return self._add_schedules([spec], now=now, enabled=enabled)[0]

    def add_default_schedules(
        self, *, now: datetime | None = None
    ) -> tuple[list[Schedule], list[str]]:
        """Create the platform's default schedules that do not exist yet: a monthly audit
        report (``report-audit`` over the previous calendar month, 06:00 UTC on the first)
        and a daily drift report (``report-drift`` over the previous day, 05:00 UTC) for
        each active deployment. Returns (created, names that already existed); all or
        nothing. Whoever runs it must be allowed to have the platform make those reports."""
        self._authorize("schedule.manage", "the default schedules")
        with self._read() as s:
            deployments = list(s.scalars(
                select(t.Deployment.name).where(t.Deployment.status == "active")
                .order_by(t.Deployment.name)))
            existing = set(s.scalars(select(t.Schedule.name)))
        specs = cron.default_specs(deployments)
        wanted = [spec for spec in specs if spec.name not in existing]
        kept = [spec.name for spec in specs if spec.name in existing]
        return (self._add_schedules(wanted, now=now) if wanted else []), kept

    def _add_schedules(
        self, specs: list[cron.ScheduleSpec], *, now: datetime | None, enabled: bool = True
    ) -> list[Schedule]:
        now = now or t.utcnow()
        prepared = []
        for spec in specs:
            if spec.catch_up not in cron.CATCH_UP:
                raise InvalidInput(f"catch_up must be one of {', '.join(cron.CATCH_UP)}, "
                                   f"got {spec.catch_up!r}")
            if not isinstance(spec.params, dict):
                raise InvalidInput(f"schedule {spec.name}: parameters must be a mapping")
            params = _json_object(spec.params, f"schedule {spec.name} parameters")
            first = cron.next_fire(spec.cron, spec.timezone, now)
            # Refused now rather than at 06:00 on the first of next month.
            self._job_for(self, spec.kind, params, first, spec.timezone)
            prepared.append((spec, params, first))
        with self._write() as s:
            rows = []
            for spec, params, first in prepared:
                taken = s.scalars(select(t.Schedule.id).where(t.Schedule.name == spec.name))
                if taken.first() is not None:
                    raise Conflict(f"schedule {spec.name!r} already exists; nothing was changed")
                row = t.Schedule(
                    name=spec.name, cron=spec.cron, timezone=spec.timezone, kind=spec.kind,
                    params=params, catch_up=spec.catch_up, enabled=enabled,
                    created_by=self.principal.name, created_at=t.utcnow(),
                    next_run_at=first if enabled else None,
                )
                s.add(row)
                s.flush()
                self._event(s, "schedule.add", f"schedule:{spec.name}", cron=spec.cron,
                            timezone=spec.timezone, kind=spec.kind, params=params,
                            catch_up=spec.catch_up, enabled=enabled,
                            next_run_at=_iso(row.next_run_at))
                rows.append(Schedule.of(row))
            return rows

    def schedules(self) -> list[Schedule]:
        """Every schedule, by name."""
        self._authorize("schedule.view", "schedules")
        with self._read() as s:
            return [Schedule.of(r) for r in s.scalars(select(t.Schedule).order_by(t.Schedule.name))]

    def schedule(self, name: str) -> Schedule:
        """One schedule by name."""
        self._authorize("schedule.view", f"schedule {name}")
        with self._read() as s:
            return Schedule.of(_schedule_row(s, name))

    def schedule_fires(self, name: str, *, limit: int = 50) -> list[ScheduleFire]:
        """The fire times a schedule has submitted (or recorded as refused), newest first."""
        self._authorize("schedule.view", f"schedule {name}")
        if limit < 1:
            raise InvalidInput(f"limit must be a positive number, got {limit}")
        with self._read() as s:
            row = _schedule_row(s, name)
            runs = s.execute(
                select(t.ScheduleRun, t.Job.params)
                .outerjoin(t.Job, t.Job.id == t.ScheduleRun.job_id)
                .where(t.ScheduleRun.schedule_id == row.id)
                .order_by(t.ScheduleRun.fire_at.desc()).limit(limit)
            ).all()
            return [ScheduleFire(row.name, run.fire_at, row.kind, run.job_id, dict(p or {}),
                                 run.error, run.skipped) for run, p in runs]

    def enable_schedule(self, name: str, *, now: datetime | None = None) -> Schedule:
        """Enable a schedule: its next fire is the first after ``now``; fire times that passed
        while it was disabled are not caught up (disabled means "do not run")."""
        return self._switch_schedule(name, True, now or t.utcnow())

    def disable_schedule(self, name: str) -> Schedule:
        """Disable a schedule: no fire is submitted until it is enabled again."""
        return self._switch_schedule(name, False, None)

    def _switch_schedule(self, name: str, enabled: bool, now: datetime | None) -> Schedule:
        self._authorize("schedule.manage", f"schedule {name}")
        with self._write() as s:
            row = _schedule_row(s, name, lock=True)
            if row.enabled == enabled:
                return Schedule.of(row)
            row.enabled = enabled
            row.next_run_at = cron.next_fire(row.cron, row.timezone, now) if now else None
            self._event(s, "schedule.enable" if enabled else "schedule.disable",
                        f"schedule:{name}", next_run_at=_iso(row.next_run_at))
            return Schedule.of(row)

    def remove_schedule(self, name: str) -> Schedule:
        """Delete a schedule and its record of fire times (its jobs and their events stay)."""
        self._authorize("schedule.manage", f"schedule {name}")
        with self._write() as s:
            row = _schedule_row(s, name, lock=True)
            gone = Schedule.of(row)
            fired = s.scalars(select(t.ScheduleRun.id).where(
                t.ScheduleRun.schedule_id == row.id)).all()
            s.execute(delete(t.ScheduleRun).where(t.ScheduleRun.schedule_id == row.id))
            s.delete(row)
            self._event(s, "schedule.remove", f"schedule:{name}", cron=gone.cron,
                        timezone=gone.timezone, kind=gone.kind, params=gone.params,
                        created_by=gone.created_by, fires=len(fired))
            return gone

    # --- the scheduler's side -----------------------------------------------------------------

    def run_schedules(self, *, now: datetime | None = None) -> list[ScheduleFire]:
        """Submit every fire time due by ``now`` (naive UTC; default the clock), oldest first
        per schedule, each in its own transaction. Returns what was fired, in order."""
        self._authorize("schedule.run", "due schedules")
        now = now or t.utcnow()
        platform: Any = self._as_platform()
        with self._read() as s:
            due = list(s.scalars(
                select(t.Schedule.id)
                .where(t.Schedule.enabled.is_(True), t.Schedule.next_run_at <= now)
                .order_by(t.Schedule.next_run_at, t.Schedule.id)))
        fired: list[ScheduleFire] = []
        for schedule_id in due:
            while True:
                fire = platform._fire_next(schedule_id, now)
                if fire is None:
                    break
                if fire is not _TAKEN:
                    fired.append(fire)
        return fired

    def _fire_next(self, schedule_id: int, now: datetime) -> ScheduleFire | object | None:
        """Submit the schedule's next fire if it is due: the fire, _TAKEN if another scheduler
        recorded it first, None when nothing is due."""
        with self._read() as s:
            row = s.get(t.Schedule, schedule_id)
            if row is None or not row.enabled or row.next_run_at is None or row.next_run_at > now:
                return None
            snapshot = Schedule.of(row)
        owed = snapshot.next_run_at
        assert owed is not None
        fire_at, skipped = owed, 0
        following = cron.next_fire(snapshot.cron, snapshot.timezone, fire_at)
        if snapshot.catch_up == "latest":
            while following <= now:
                fire_at, skipped = following, skipped + 1
                following = cron.next_fire(snapshot.cron, snapshot.timezone, fire_at)
        job_params: dict[str, Any] = {}
        error = None
        try:
            creator = self._person(snapshot.created_by)
            job_params = self._job_for(creator, snapshot.kind, snapshot.params, fire_at,
                                       snapshot.timezone)
        except NexmlError as exc:
            error = str(exc)
        try:
            with self._write() as s:
                row = s.scalars(select(t.Schedule).where(t.Schedule.id == schedule_id)
                                .with_for_update()).first()
                if row is None or not row.enabled or row.next_run_at != owed:
                    raise _AlreadyFired
                run = t.ScheduleRun(schedule_id=row.id, fire_at=fire_at, error=error,
                                    skipped=skipped, submitted_at=t.utcnow())
                s.add(run)
                try:
                    s.flush()
                except DatabaseIntegrityError:
                    raise _AlreadyFired("recorded") from None
                job_id = None
                if error is None:
                    job_id = self._queue_scheduled(s, snapshot, fire_at, job_params)
                    run.job_id = job_id
                    row.last_job_id = job_id
                row.last_run_at = fire_at
                row.next_run_at = following
                self._event(s, "schedule.fire", f"schedule:{row.name}", fire_at=_iso(fire_at),
                            job=job_id, kind=row.kind, params=job_params, error=error,
                            skipped=skipped, next_run_at=_iso(following))
        except _AlreadyFired as taken:
            if taken.args and taken.args[0] == "recorded":
                self._skip_recorded(schedule_id, owed, following)
            return _TAKEN
        return ScheduleFire(snapshot.name, fire_at, snapshot.kind, job_id, job_params, error,
                            skipped)

    def _skip_recorded(self, schedule_id: int, owed: datetime, following: datetime) -> None:
        """The fire ``owed`` is already recorded but the schedule still owes it (it can only
        be so after a hand edit or a clock set back): move on without submitting it again."""
        with self._write() as s:
            row = s.scalars(select(t.Schedule).where(t.Schedule.id == schedule_id)
                            .with_for_update()).first()
            if row is not None and row.next_run_at == owed:
                row.next_run_at = following
                self._event(s, "schedule.skip", f"schedule:{row.name}", fire_at=_iso(owed),
                            reason="this fire time was already recorded",
                            next_run_at=_iso(following))

    def _queue_scheduled(
        self, s: Session, schedule: Schedule, fire_at: datetime, params: dict[str, Any]
    ) -> int:
        from ..jobs.registry import kind as lookup

        entry = lookup(schedule.kind)
        job = t.Job(
            kind=schedule.kind, status="queued", progress=0.0, message="queued", params=params,
            result={}, created_by=schedule.created_by, attempts=0,
            max_attempts=entry.max_attempts,
        )
        s.add(job)
        s.flush()
        _append_log(s, job.id, 0, f"submitted by schedule {schedule.name} for "
                                  f"{schedule.created_by} (fire time {fire_at:%Y-%m-%d %H:%M} UTC)")
        self._event(s, "job.submit", f"job:{job.id}", kind=schedule.kind, params=params,
                    max_attempts=entry.max_attempts, schedule=schedule.name,
                    fire_at=_iso(fire_at), on_behalf_of=schedule.created_by)
        return job.id

    # --- helpers ------------------------------------------------------------------------------

    def _person(self, name: str) -> Any:
        """This workspace acting as the (stored, enabled) user ``name``, for the kind checks."""
        with self._read() as s:
            user = s.scalars(select(t.User).where(t.User.name == name)).first()
            if user is None or user.disabled:
                state = "no longer exists" if user is None else "is disabled"
                raise PermissionDenied(f"permission denied: the schedule's creator {name} {state}")
            role = Role(user.role)
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.principal = Principal(name, role)
        return clone

    def _job_for(
        self, ws: Any, kind: str, params: dict[str, Any], fire_at: datetime, timezone: str
    ) -> dict[str, Any]:
        """The checked parameters of the ``kind`` job ``ws`` (a workspace acting as the person
        concerned) would submit at ``fire_at``; raises what ``submit_job`` would refuse."""
        from ..jobs.registry import kind as lookup

        entry = lookup(kind)
        resolved = cron.resolve_params(params, fire_at, timezone)
        if entry.check is not None:
            resolved = entry.check(ws, dict(resolved))
        resolved = _json_object(resolved, f"{kind} job parameters")
        owner = entry.owner(ws, resolved) if entry.owner is not None else None
        about = resolved.get(entry.subject) if entry.subject else None
        ws._authorize(entry.action, f"a {kind} job" + (f" on {about}" if about else ""), owner)
        return resolved


_TAKEN = object()


def _schedule_row(s: Session, name: str, *, lock: bool = False) -> t.Schedule:
    query = select(t.Schedule).where(t.Schedule.name == name)
    if lock:
        query = query.with_for_update()
    row = s.scalars(query).first()
    if row is None:
        raise NotFound(f"schedule {name!r} not found")
    return row


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
