"""A 5-field cron expression (``minute hour day-of-month month day-of-week``, UTC).

Each field takes ``*``, a number, a range ``a-b``, a step ``*/n`` or ``a-b/n``, and lists of
these separated by commas. Day of week is 0-7 (0 and 7 are Sunday). As in Vixie cron, when
both day fields are restricted a day matching either one fires. Names (``MON``, ``JAN``) and
the ``@hourly`` shorthands are not supported; the error says so.

Examples
--------
>>> from datetime import datetime, UTC
>>> every_5 = CronSchedule.parse("*/5 * * * *")
>>> start = datetime(2026, 11, 27, 7, 1, 30, tzinfo=UTC).timestamp()
>>> every_5.seconds_until_next(start)
210.0
>>> CronSchedule.parse("0 9 * * 1-5").next_after(start) - start
7110.0
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["CronSchedule"]

_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base == "*":
                start, end = low, high
            elif "-" in base:
                first, last = base.split("-", 1)
                start, end = int(first), int(last)
            else:
                start = end = int(base)
                if step_text:
                    end = high
        except ValueError:
            raise ValueError(
                f"{name} field {text!r}: use numbers, *, a-b, */n or lists (names and "
                "@shorthands are not supported)"
            ) from None
        if step < 1 or not low <= start <= end <= high:
            raise ValueError(f"{name} field {text!r}: values must be within {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    """When a cron expression fires."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    @classmethod
    def parse(cls, text: str) -> CronSchedule:
        parts = text.split()
        if len(parts) != 5:
            raise ValueError(
                f"expected 5 fields 'minute hour day-of-month month day-of-week', got {text!r}"
            )
        sets = [_field(p, *spec) for p, spec in zip(parts, _FIELDS, strict=True)]
        weekdays = frozenset(d % 7 for d in sets[4])
        return cls(sets[0], sets[1], sets[2], sets[3], weekdays, parts[2] != "*", parts[4] != "*")

    def _day_matches(self, moment: datetime) -> bool:
        in_days = moment.day in self.days
        in_weekdays = (moment.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_days or in_weekdays
        return in_days and in_weekdays

    def next_after(self, now: float) -> float:
        """The first firing time strictly after ``now`` (epoch seconds)."""
        moment = datetime.fromtimestamp(now, UTC).replace(second=0, microsecond=0)
        moment += timedelta(minutes=1)
        limit = moment + timedelta(days=366 * 5)
        while moment < limit:
            if moment.month not in self.months or not self._day_matches(moment):
                moment = (moment + timedelta(days=1)).replace(hour=0, minute=0)
            elif moment.hour not in self.hours:
                moment = (moment + timedelta(hours=1)).replace(minute=0)
            elif moment.minute not in self.minutes:
                moment += timedelta(minutes=1)
            else:
                return moment.timestamp()
        raise ValueError("this cron expression never fires")

    def seconds_until_next(self, now: float) -> float:
        return self.next_after(now) - now
