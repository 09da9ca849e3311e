"""``analyzer.schedule_cron``: cron, names, shorthands and SageMaker's own expressions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from modelmon.schedule import Schedule

NOW = datetime(2026, 11, 27, 7, 1, 30, tzinfo=UTC)  # a Friday


def _next(expression: str) -> str:
    fired = Schedule.parse(expression).next_after(NOW.timestamp())
    return datetime.fromtimestamp(fired, UTC).strftime("%a %Y-%m-%d %H:%M")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("*/5 * * * *", "Fri 2026-11-27 07:05"),
        ("0 9 * * 1-5", "Fri 2026-11-27 09:00"),
        ("0 9 * * MON", "Mon 2026-11-30 09:00"),  # names
        ("0 0 1 JAN *", "Fri 2027-01-01 00:00"),
        ("@hourly", "Fri 2026-11-27 08:00"),
        ("@daily", "Sat 2026-11-28 00:00"),
        ("@weekly", "Sun 2026-11-29 00:00"),
        ("0 12 L * *", "Mon 2026-11-30 12:00"),  # the last day of the month
        # SageMaker: CronExpressionGenerator.hourly(), daily(), daily(17), daily_every_x_hours
        ("cron(0 * ? * * *)", "Fri 2026-11-27 08:00"),
        ("cron(0 0 ? * * *)", "Sat 2026-11-28 00:00"),
        ("cron(0 17 ? * * *)", "Fri 2026-11-27 17:00"),
        ("cron(0 0/6 ? * * *)", "Fri 2026-11-27 12:00"),
        ("0 * ? * * *", "Fri 2026-11-27 08:00"),  # the six AWS fields without cron( )
        ("cron(0 9 ? * 2 *)", "Mon 2026-11-30 09:00"),  # AWS day 2 is Monday (cron's 1)
        ("cron(0 9 ? * 1,7 *)", "Sat 2026-11-28 09:00"),  # AWS 1 = Sunday, 7 = Saturday
        ("cron(0 0 ? * MON#1 *)", "Mon 2026-12-07 00:00"),
    ],
)
def test_each_form_fires_when_it_should(expression: str, expected: str) -> None:
    assert _next(expression) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("@reboot", "expected 5 fields"),
        ("* * *", "expected 5 fields"),
        ("61 * * * *", "61"),
        ("0 0 31 2 *", "never fires"),
        ("cron(0 9 ? * 8 *)", "1 (Sunday) to 7 (Saturday)"),
        ("cron(0 9 ? * * 2027)", "the year field"),
        ("cron(0 9 * *)", "expected 5 fields"),
        ("NOW", "modelmon analyze --once"),
        ("* " * 200, "at most 256 characters"),
    ],
)
def test_a_bad_expression_says_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Schedule.parse(expression)
