"""Monitoring windows: calendar days, ISO weeks (Monday to Monday) and calendar months, in UTC.

A window is half-open, ``[start, end)``, over naive UTC datetimes (what every table stores). A
window is *complete* at ``until`` when ``end <= until``: monitors judge complete windows only,
so a run in the middle of a week never reports half a week as a drop in traffic.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from ..errors import InvalidInput

KINDS: tuple[str, ...] = ("daily", "weekly", "monthly")
#: The most windows one run evaluates (a year of days); older ones need ``since``.
MAX_WINDOWS = 366


@dataclass(frozen=True)
class Window:
    kind: str
    start: datetime
    end: datetime

    def __str__(self) -> str:
        if self.kind == "daily":
            return f"day {self.start:%Y-%m-%d}"
        if self.kind == "weekly":
            year, week, _ = self.start.isocalendar()
            return f"week {year}-W{week:02d} ({self.start:%Y-%m-%d} to {self.end:%Y-%m-%d})"
        return f"month {self.start:%Y-%m}"


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidInput(f"unknown window {kind!r}: choose one of {', '.join(KINDS)}")
    return kind


def floor(kind: str, at: datetime) -> datetime:
    """Start of the ``kind`` window holding ``at``."""
    day = datetime.combine(at.date(), time())
    if kind == "daily":
        return day
    if kind == "weekly":
        return day - timedelta(days=at.weekday())
    if kind == "monthly":
        return day.replace(day=1)
    raise InvalidInput(f"unknown window {kind!r}: choose one of {', '.join(KINDS)}")


def following(kind: str, start: datetime) -> datetime:
    """Start of the window after the one starting at ``start``."""
    if kind == "daily":
        return start + timedelta(days=1)
    if kind == "weekly":
        return start + timedelta(days=7)
    month = start.month % 12 + 1
    return start.replace(year=start.year + (start.month == 12), month=month, day=1)


def window_at(kind: str, at: datetime) -> Window:
    start = floor(check_kind(kind), at)
    return Window(kind, start, following(kind, start))


def complete_windows(kind: str, since: datetime, until: datetime) -> Iterator[Window]:
    """Every complete ``kind`` window from the one holding ``since`` up to ``until``, oldest
    first; at most ``MAX_WINDOWS`` (InvalidInput beyond, naming how to narrow it)."""
    start = floor(check_kind(kind), since)
    count = 0
    while True:
        end = following(kind, start)
        if end > until:
            return
        count += 1
        if count > MAX_WINDOWS:
            raise InvalidInput(
                f"more than {MAX_WINDOWS} {kind} windows between {since:%Y-%m-%d} and "
                f"{until:%Y-%m-%d}: give a later since"
            )
        yield Window(kind, start, end)
        start = end


def parse_moment(value: datetime | date | str | None, what: str) -> datetime | None:
    """A naive UTC datetime from a datetime, a date (its midnight) or ISO text; None stays."""
    if value is None or isinstance(value, datetime):
        if isinstance(value, datetime) and value.tzinfo is not None:
            from datetime import UTC

            return value.astimezone(UTC).replace(tzinfo=None)
        return value
    if isinstance(value, date):
        return datetime.combine(value, time())
    if isinstance(value, str):
        try:
            return parse_moment(datetime.fromisoformat(value.strip()), what)
        except ValueError:
            pass
    raise InvalidInput(f"{what} must be a date (YYYY-MM-DD) or an ISO date-time, got {value!r}")
