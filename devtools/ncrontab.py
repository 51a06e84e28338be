"""NCRONTAB schedules, as the Functions timer trigger reads them, for the local host.

Six fields, ``{second} {minute} {hour} {day} {month} {day-of-week}`` (the
Functions timer trigger's format; day-of-week 0 is Sunday): each ``*``, a number,
a range ``a-b``, a step ``*/n`` or ``a-b/n``, or a comma list of those. Names
(``Mon``, ``Jan``) and restricting both the day and the day of the week are not
supported here: the local host refuses such a schedule rather than guess
(https://learn.microsoft.com/azure/azure-functions/functions-bindings-timer#ncrontab-expressions).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

_FIELDS = (("second", 0, 59), ("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("weekday", 0, 6))


class ScheduleError(ValueError):
    """A schedule the local host cannot run."""


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if span == "*":
                start, end = low, high
            elif "-" in span:
                first, last = span.split("-", 1)
                start, end = int(first), int(last)
            else:
                start = int(span)
                end = high if step_text else start
        except ValueError:
            raise ScheduleError(f"{name}: '{part}' is not a number, range or step") from None
        if step < 1 or not low <= start <= end <= high:
            raise ScheduleError(f"{name}: '{part}' is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        parts = expression.split()
        if len(parts) != len(_FIELDS):
            raise ScheduleError(f"'{expression}': an NCRONTAB expression has six fields")
        fields = [_field(text, *spec) for text, spec in zip(parts, _FIELDS, strict=True)]
        if parts[3] != "*" and parts[5] != "*":
            raise ScheduleError(f"'{expression}': the local host restricts the day or the day of the week, not both")
        return cls(*fields)

    def next_after(self, moment: datetime) -> datetime:
        """The first second after ``moment`` the schedule names (within five years, else ScheduleError)."""
        start = moment.replace(microsecond=0) + timedelta(seconds=1)
        day = start.replace(hour=0, minute=0, second=0)
        for _ in range(5 * 366):
            weekday = (day.weekday() + 1) % 7  # Python's Monday=0; NCRONTAB's Sunday=0
            if day.month in self.months and day.day in self.days and weekday in self.weekdays:
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        for second in sorted(self.seconds):
                            candidate = day.replace(hour=hour, minute=minute, second=second)
                            if candidate >= start:
                                return candidate
            day += timedelta(days=1)
        raise ScheduleError("the schedule names no moment in the next five years")
