"""Schedules: cron expressions, their fire times, fire-time parameters, and the scheduler loop.

Cron evaluation is croniter's (standard five-field crontab: minute hour day-of-month month
day-of-week, with names, ranges, steps, ``L`` and ``#``, and the ``@daily``-style macros), in
the schedule's time zone (IANA name, UTC by default). Fire times are stored as naive UTC. Around
daylight-saving changes a schedule behaves like Vixie cron: a fire in the skipped hour runs at
the first time that exists after it (``30 2 * * *`` in New York on the spring-forward day runs
at 03:00 EDT) and a fire in the repeated hour runs once, at its first occurrence.

Parameters may name the fire time: a value that is exactly ``{previous_month}`` (YYYY-MM),
``{previous_day}`` or ``{fire_date}`` (YYYY-MM-DD) becomes that period of the *scheduled* fire
time in the schedule's time zone — never of the wall clock — so a late or caught-up run
reports the period it was due for.

:class:`Scheduler` is what ``nexml scheduler`` runs: every ``poll`` seconds it asks the
Workspace to submit the due fires (``Workspace.run_schedules``); it never runs a job itself
(``nexml worker`` does). Its clock is a parameter, so tests give it any "now".
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import InvalidInput

if TYPE_CHECKING:
    from ..workspace import Workspace

CATCH_UP = ("all", "latest")
DEFAULT_POLL = 30.0
_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_FIELDS = "minute hour day-of-month month day-of-week"
_PLACEHOLDER = re.compile(r"^\{([a-z_]+)\}$")
#: How many croniter candidates one fire time may skip (the repeated hour of a DST change).
_MAX_SKIPS = 1000

# Defaults the platform offers (`nexml schedule defaults`).
AUDIT_MONTHLY = "audit-monthly"
AUDIT_MONTHLY_CRON = "0 6 1 * *"  # 06:00 UTC on the first of each month
DRIFT_DAILY_CRON = "0 5 * * *"  # 05:00 UTC every day


# --- cron ----------------------------------------------------------------------------------


def check_cron(expression: Any) -> str:
    """``expression``, normalised (single spaces), if croniter accepts it as five-field cron
    or a macro and it ever fires; InvalidInput naming the expression and why otherwise."""
    from croniter import CroniterBadDateError, CroniterError, croniter

    if not isinstance(expression, str) or not expression.strip():
        raise InvalidInput(f"bad cron expression {expression!r}: expected five fields ({_FIELDS})")
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text.lower() not in _MACROS:
            raise InvalidInput(
                f"bad cron expression {text!r}: the macros are {', '.join(_MACROS)}"
            )
    elif len(text.split(" ")) != 5:
        raise InvalidInput(
            f"bad cron expression {text!r}: expected five fields ({_FIELDS}), "
            f"got {len(text.split(' '))}"
        )
    try:
        croniter(text, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        raise InvalidInput(f"bad cron expression {text!r}: it never fires") from None
    except (CroniterError, ValueError, KeyError, IndexError) as exc:
        raise InvalidInput(f"bad cron expression {text!r}: {exc}") from None
    return text


def check_timezone(name: Any) -> str:
    """``name`` if it is an IANA time zone (``UTC``, ``Europe/Berlin``); InvalidInput if not."""
    if not isinstance(name, str) or not name or len(name) > 64:
        raise InvalidInput(f"unknown time zone {name!r}: use an IANA name such as "
                           "UTC or Europe/Berlin")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"unknown time zone {name!r}: use an IANA name such as "
                           "UTC or Europe/Berlin") from None
    return name


def next_fire(cron: str, timezone: str, after: datetime) -> datetime:
    """The first fire time of ``cron`` in ``timezone`` strictly after ``after``.

    Times in and out are naive UTC (what the tables store). A candidate whose wall-clock time
    in ``timezone`` is not after ``after``'s is the repeated hour of a DST change, and skipped.
    """
    from croniter import croniter

    zone = ZoneInfo(timezone)
    start = after.replace(tzinfo=UTC).astimezone(zone)
    floor = start.replace(tzinfo=None)
    candidates = croniter(cron, start)
    for _ in range(_MAX_SKIPS):
        candidate = candidates.get_next(datetime)
        if candidate.replace(tzinfo=None) > floor:
            return candidate.astimezone(UTC).replace(tzinfo=None)
    raise InvalidInput(f"cron expression {cron!r} found no fire time after {after:%Y-%m-%d %H:%M}")


def fires_between(cron: str, timezone: str, after: datetime, until: datetime) -> Iterator[datetime]:
    """Every fire time in (``after``, ``until``], in order (naive UTC)."""
    at = next_fire(cron, timezone, after)
    while at <= until:
        yield at
        at = next_fire(cron, timezone, at)


# --- fire-time parameters ------------------------------------------------------------------


def local_date(fire_at: datetime, timezone: str) -> date:
    """The calendar date of a (naive UTC) fire time in the schedule's time zone."""
    return fire_at.replace(tzinfo=UTC).astimezone(ZoneInfo(timezone)).date()


def placeholders(fire_at: datetime, timezone: str) -> dict[str, str]:
    """What each placeholder stands for at this fire time."""
    day = local_date(fire_at, timezone)
    previous_month = (day.replace(day=1) - timedelta(days=1))
    return {
        "previous_month": f"{previous_month:%Y-%m}",
        "previous_day": f"{day - timedelta(days=1):%Y-%m-%d}",
        "fire_date": f"{day:%Y-%m-%d}",
    }


def resolve_params(params: dict[str, Any], fire_at: datetime, timezone: str) -> dict[str, Any]:
    """``params`` with each placeholder value replaced by its value at ``fire_at``."""
    values = placeholders(fire_at, timezone)
    resolved = {}
    for key, value in params.items():
        found = _PLACEHOLDER.match(value) if isinstance(value, str) else None
        if found:
            if found.group(1) not in values:
                raise InvalidInput(
                    f"unknown placeholder {value!r} in parameter {key}: use "
                    + ", ".join(f"{{{name}}}" for name in values)
                )
            value = values[found.group(1)]
        resolved[key] = value
    return resolved


# --- the defaults --------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule to create: what ``nexml schedule defaults`` proposes."""

    name: str
    cron: str
    kind: str
    params: dict[str, Any]
    timezone: str = "UTC"
    catch_up: str = "all"


def default_specs(deployments: list[str]) -> list[ScheduleSpec]:
    """The platform's default schedules for these active deployments.

    One monthly audit report (it covers every deployment's decisions and every model's
    events, so one per month serves each deployed model), and a daily drift report per
    deployment over the previous day. Missed fires are each caught up: every month and every
    day is its own report.
    """
    specs = [ScheduleSpec(AUDIT_MONTHLY, AUDIT_MONTHLY_CRON, "report-audit",
                          {"month": "{previous_month}"})]
    for name in deployments:
        schedule = f"drift-daily-{name}"
        if len(schedule) > 64:
            digest = hashlib.sha256(name.encode()).hexdigest()[:8]
            schedule = f"drift-daily-{name[:40]}-{digest}"
        specs.append(ScheduleSpec(schedule, DRIFT_DAILY_CRON, "report-drift",
                                  {"deployment": name, "since": "{previous_day}",
                                   "until": "{previous_day}"}))
    return specs


# --- the loop ------------------------------------------------------------------------------


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Scheduler:
    """Submits due schedule fires. ``ws`` must hold ``schedule.run`` (a superadmin's
    workspace, or the platform's). ``clock()`` returns naive UTC "now"; ``echo`` receives one
    line per submitted (or refused) fire.

    ``run_once()`` submits everything due now and returns what it fired; ``run()`` repeats it
    every ``poll_seconds`` until ``stop()``.
    """

    def __init__(
        self,
        ws: Workspace,
        *,
        poll_seconds: float = DEFAULT_POLL,
        clock: Callable[[], datetime] = utc_now,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        ws._authorize("schedule.run", "due schedules")
        if isinstance(poll_seconds, bool) or not isinstance(poll_seconds, (int, float)) or not (
            poll_seconds > 0
        ):
            raise InvalidInput(f"scheduler poll must be a positive number of seconds, "
                               f"got {poll_seconds!r}")
        self.ws = ws
        self.poll_seconds = float(poll_seconds)
        self.clock = clock
        self.echo = echo
        self._stop = threading.Event()

    def run_once(self) -> list[Any]:
        fired = self.ws.run_schedules(now=self.clock())
        if self.echo is not None:
            for fire in fired:
                self.echo(fire.line())
        return fired

    def run(self) -> int:
        """Submit due fires until stopped; returns how many were submitted."""
        count = 0
        while not self._stop.is_set():
            count += len(self.run_once())
            self._stop.wait(self.poll_seconds)
        return count

    def stop(self) -> None:
        self._stop.set()
