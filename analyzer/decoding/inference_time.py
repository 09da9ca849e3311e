"""``eventMetadata.inferenceTime``: the one parser of a capture record's time (pure, no I/O).

A time is an ISO-8601 string as :meth:`datetime.fromisoformat` reads it (Python 3.11: ``Z`` or
an offset such as ``+00:00``/``+02:00``, fractional seconds of any length cut to microseconds,
a space instead of ``T``); a time without an offset is UTC, one with an offset is converted to
UTC. Anything else (not a string, an hour 24, a lower-case ``z``, surrounding blanks, a time
whose UTC falls outside years 1 to 9999 such as ``0001-01-01T00:00:00+01:00``) is a bad time,
counted by the decoders as ``bad_inference_time``. Every decoding path reads times through
this module: :func:`parse_inference_time` for one record, :func:`parse_inference_times`
for a whole batch, :func:`arrow_stamps` for the Arrow fast path (which only takes the times of
the form ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` and converts them in C++ to what the parser gives).

Examples
--------
>>> parse_inference_time("2024-05-01T10:20:30.5Z").isoformat()
'2024-05-01T10:20:30.500000+00:00'
>>> parse_inference_time("2024-05-01T12:20:30+02:00").isoformat()
'2024-05-01T10:20:30+00:00'
>>> parse_inference_time(5)
Traceback (most recent call last):
...
analyzer.decoding.payload_rows.PayloadError: bad_inference_time: 5
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, overload

import numpy as np

from analyzer.decoding.payload_rows import PayloadError

__all__ = [
    "ARROW_TIME",
    "InferenceTimes",
    "arrow_stamps",
    "parse_inference_time",
    "parse_inference_times",
    "time_span",
]

BAD_TIME = "bad_inference_time"
#: The times the Arrow fast path converts itself (RE2, whole value); others go the slow way.
ARROW_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-5][0-9](\.[0-9]{1,6})?Z$"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is UTC:
        return moment
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_inference_time(value: Any) -> datetime:
    """The time of one record, in UTC; :class:`PayloadError` ``bad_inference_time`` if bad
    (a ``ValueError``)."""
    try:
        moment = datetime.fromisoformat(value)
        return moment if moment.tzinfo is UTC else _utc(moment)
    except (ValueError, TypeError, OverflowError) as exc:  # Overflow: UTC before year 1
        raise PayloadError(BAD_TIME, str(value)[:100]) from exc


def parse_inference_times(values: list[Any]) -> list[datetime] | None:
    """The times of a batch (as :func:`parse_inference_time` gives each), or None when one
    is bad (the caller then reads the batch record by record and counts it)."""
    try:
        times = list(map(datetime.fromisoformat, values))
    except (ValueError, TypeError):
        return None
    if {t.tzinfo for t in times} != {UTC}:
        try:
            times = list(map(_utc, times))
        except OverflowError:
            return None
    return times


def arrow_stamps(pa: Any, pc: Any, strings: Any) -> np.ndarray | None:
    """Microseconds since the epoch of an Arrow string array of times (no null), or None
    unless every one has the form of :data:`ARROW_TIME` (then Arrow's cast reads exactly
    what :func:`parse_inference_time` reads). Pass the ``pyarrow`` modules."""
    if not pc.all(pc.match_substring_regex(strings, ARROW_TIME)).as_py():
        return None
    try:
        stamps = pc.cast(strings, pa.timestamp("us", "UTC")).cast(pa.int64())
    except pa.ArrowInvalid:  # e.g. month 13: parse_inference_time calls it bad
        return None
    return stamps.to_numpy()  # type: ignore[no-any-return]


class InferenceTimes(Sequence[datetime]):
    """Times held as microseconds since the epoch, made ``datetime`` only when read."""

    def __init__(self, stamps: np.ndarray) -> None:
        self._stamps = stamps

    def __len__(self) -> int:
        return len(self._stamps)

    @overload
    def __getitem__(self, index: int) -> datetime: ...
    @overload
    def __getitem__(self, index: slice) -> list[datetime]: ...
    def __getitem__(self, index: int | slice) -> datetime | list[datetime]:
        if isinstance(index, slice):
            return [_moment(int(s)) for s in self._stamps[index]]
        return _moment(int(self._stamps[index]))

    def __iter__(self) -> Iterator[datetime]:
        return map(_moment, self._stamps.tolist())

    def span(self) -> tuple[datetime, datetime] | None:
        """The first and last time (None when empty), without a ``datetime`` per record."""
        if not len(self._stamps):
            return None
        return _moment(int(self._stamps.min())), _moment(int(self._stamps.max()))


def _moment(stamp: int) -> datetime:
    return _EPOCH + timedelta(microseconds=stamp)


def time_span(times: Sequence[datetime]) -> tuple[datetime, datetime] | None:
    """The first and last of ``times`` (None when empty)."""
    if isinstance(times, InferenceTimes):
        return times.span()
    return (min(times), max(times)) if times else None
