"""``analyzer.schedule_cron``: when the analyzer runs, as a cron expression (UTC), via croniter.

Accepted forms:

- standard 5-field cron (``minute hour day-of-month month day-of-week``) with what croniter
  reads: ``*/5 * * * *``, names (``0 9 * * MON-FRI``, ``0 0 1 JAN *``), ``?`` for "any",
  ``L`` (last day of the month) and ``MON#2``;
- the shorthands ``@hourly``, ``@daily`` (``@midnight``), ``@weekly``, ``@monthly``,
  ``@yearly`` (``@annually``);
- SageMaker's own schedule expressions, so that a schedule moves over unchanged: the AWS
  six-field form ``cron(minutes hours day-of-month month day-of-week year)`` (with or without
  the ``cron( )`` wrapper), as made by the SageMaker SDK's ``CronExpressionGenerator``:
  ``hourly()`` is ``cron(0 * ? * * *)``, ``daily(17)`` is ``cron(0 17 ? * * *)``,
  ``daily_every_x_hours(6, 1)`` is ``cron(0 1/6 ? * * *)``. In this form day-of-week numbers
  are AWS's (1 = Sunday … 7 = Saturday) and the year must be ``*``. SageMaker's one-time
  ``NOW`` has no place in a running service: it is refused with a pointer to
  ``modelmon analyze --once``.

Days follow Vixie cron: when both day fields are restricted, a day matching either fires.

Examples
--------
>>> from datetime import datetime, UTC
>>> start = datetime(2026, 11, 27, 7, 1, 30, tzinfo=UTC).timestamp()
>>> Schedule.parse("*/5 * * * *").seconds_until_next(start)
210.0
>>> Schedule.parse("cron(0 * ? * * *)").seconds_until_next(start)
3510.0
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["MAX_EXPRESSION_CHARS", "Schedule"]

MAX_EXPRESSION_CHARS = 256  # as SageMaker's ScheduleExpression
_SHORTHANDS = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")
_AWS = re.compile(r"^\s*cron\((.*)\)\s*$", re.IGNORECASE | re.DOTALL)
_AWS_WEEKDAY = re.compile(r"(?<![#\d])\d+")  # a day number, not the n of MON#n


def _from_aws(fields: list[str]) -> str:
    """A six-field AWS cron expression as the five fields croniter reads."""
    minute, hour, day, month, weekday, year = fields
    if year != "*":
        raise ValueError(f"the year field of {' '.join(fields)!r} must be * (schedules repeat)")

    def unix_day(match: re.Match[str]) -> str:
        number = int(match.group())
        if not 1 <= number <= 7:
            raise ValueError(
                f"AWS day-of-week numbers are 1 (Sunday) to 7 (Saturday), got {weekday!r}"
            )
        return str(number - 1)

    weekday = _AWS_WEEKDAY.sub(unix_day, weekday)
    return " ".join((minute, hour, day, month, weekday))


def _normalise(text: str) -> str:
    stripped = text.strip()
    if stripped.upper() == "NOW":
        raise ValueError(
            "NOW runs a SageMaker job once; for one pass use `modelmon analyze --once`, "
            "for a schedule e.g. cron(0 * ? * * *)"
        )
    if stripped.lower() in _SHORTHANDS:
        return stripped.lower()
    aws = _AWS.match(stripped)
    fields = (aws.group(1) if aws else stripped).split()
    if len(fields) == 6:
        return _from_aws(fields)
    if aws or len(fields) != 5:
        raise ValueError(
            f"expected 5 fields 'minute hour day-of-month month day-of-week', a shorthand "
            f"({', '.join(_SHORTHANDS)}) or SageMaker's cron(0 * ? * * *), got {text!r}"
        )
    return " ".join(fields)


@dataclass(frozen=True)
class Schedule:
    """When a schedule expression fires (UTC)."""

    expression: str  # as written in the config
    cron: str  # what croniter reads

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """The schedule of ``text``; ``ValueError`` saying what is wrong when it is not one."""
        if len(text) > MAX_EXPRESSION_CHARS:
            raise ValueError(f"at most {MAX_EXPRESSION_CHARS} characters, got {len(text)}")
        schedule = cls(text, _normalise(text))
        schedule.next_after(datetime(2026, 1, 1, tzinfo=UTC).timestamp())  # fires at all?
        return schedule

    def next_after(self, now: float) -> float:
        """The first firing time strictly after ``now`` (epoch seconds)."""
        from croniter import CroniterError, croniter  # only when a schedule is configured

        try:
            moment = croniter(self.cron, datetime.fromtimestamp(now, UTC)).get_next(datetime)
        except CroniterError as exc:
            message = str(exc).replace("failed to find next date", "this expression never fires")
            raise ValueError(f"{self.expression!r}: {message}") from None
        return float(moment.timestamp())

    def seconds_until_next(self, now: float) -> float:
        """Seconds from ``now`` to the next firing time."""
        return self.next_after(now) - now
