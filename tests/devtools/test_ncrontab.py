"""The local host's reading of NCRONTAB schedules: the next moment each names, and the schedules it refuses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from devtools.ncrontab import Schedule, ScheduleError

AT = datetime(2026, 12, 1, 10, 7, 42, 500_000, tzinfo=UTC)  # a Tuesday


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 */5 * * * *", datetime(2026, 12, 1, 10, 10, 0, tzinfo=UTC)),
        ("30 */5 * * * *", datetime(2026, 12, 1, 10, 10, 30, tzinfo=UTC)),
        ("* * * * * *", datetime(2026, 12, 1, 10, 7, 43, tzinfo=UTC)),
        ("*/10 * * * * *", datetime(2026, 12, 1, 10, 7, 50, tzinfo=UTC)),
        ("0 0 9-17 * * *", datetime(2026, 12, 1, 11, 0, 0, tzinfo=UTC)),
        ("0 30 9 * * *", datetime(2026, 12, 2, 9, 30, 0, tzinfo=UTC)),
        ("0 0 0 * * 0", datetime(2026, 12, 6, 0, 0, 0, tzinfo=UTC)),  # Sunday
        ("0 0 0 1 1 *", datetime(2027, 1, 1, 0, 0, 0, tzinfo=UTC)),
        ("5,15 7 10 * * *", datetime(2026, 12, 2, 10, 7, 5, tzinfo=UTC)),
        ("0 0 12 29 2 *", datetime(2028, 2, 29, 12, 0, 0, tzinfo=UTC)),
    ],
)
def test_the_next_moment_a_schedule_names(expression: str, expected: datetime) -> None:
    assert Schedule.parse(expression).next_after(AT) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("*/5 * * * *", "six fields"),
        ("0 */5 * * * * *", "six fields"),
        ("60 * * * * *", "outside 0-59"),
        ("0 0 24 * * *", "outside 0-23"),
        ("0 0 0 0 * *", "outside 1-31"),
        ("0 0 0 * 13 *", "outside 1-12"),
        ("0 0 0 * * 7", "outside 0-6"),
        ("*/0 * * * * *", "outside"),
        ("5-1 * * * * *", "outside"),
        ("a * * * * *", "not a number"),
        ("0 0 0 * Jan *", "not a number"),
        ("0 0 0 1 * 1", "not both"),
        ("0 0 0 31 2 *", "no moment"),
    ],
)
def test_a_schedule_the_local_host_cannot_run_is_refused(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        Schedule.parse(expression).next_after(AT)
