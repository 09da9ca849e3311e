"""What every part of the HTML report writes the same way: badges, numbers, UTC times.

Pure: values in, escaped HTML out. Every string from the data goes through :func:`text`.

Examples
--------
>>> text('<b>"x"</b>')
'&lt;b&gt;&quot;x&quot;&lt;/b&gt;'
>>> count(60000)
'60,000'
>>> utc("2026-11-27T07:26:00Z")
'2026-11-27 07:26 UTC'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from analyzer.web.svg_charts import STATE_COLORS, fmt

__all__ = [
    "alert_since",
    "badge",
    "color",
    "count",
    "mapping",
    "num",
    "text",
    "time_ticks",
    "utc",
    "x_of",
]


def color(state: str | None) -> str:
    """The colour of a state (grey for one this build does not know)."""
    return STATE_COLORS.get(state or "", "#8a8f98")


def badge(state: Any, big: bool = False) -> str:
    """A state as a coloured pill."""
    shown = str(state) if state is not None else "unknown"
    cls = "badge big" if big else "badge"
    return (
        f'<span class="{cls}" style="background:{color(shown)}">'
        f"{escape(shown.replace('_', ' '))}</span>"
    )


def mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a mapping, else an empty one (data may be missing or odd)."""
    return value if isinstance(value, Mapping) else {}


def num(value: Any) -> float | None:
    """A number, or None for anything else (booleans included)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def text(value: Any) -> str:
    """Any value as escaped text (None is empty)."""
    return escape("" if value is None else str(value))


def count(value: Any) -> str:
    """A count as people write it: ``60,000`` (never ``6e+04``)."""
    number = num(value)
    if number is None:
        return text(value)
    return f"{number:,.0f}" if number == int(number) else escape(fmt(number))


def x_of(time_value: Any, index: int) -> float | None:
    """Epoch seconds of an ISO time; ``index`` when there is no time, None when unreadable."""
    try:
        return datetime.fromisoformat(str(time_value)).timestamp()
    except ValueError:
        return None if time_value is not None else float(index)


def utc(stamp: Any) -> str:
    """``2026-11-27T07:26:00Z`` → ``2026-11-27 07:26 UTC``."""
    x = x_of(stamp, 0)
    if stamp is None or x is None:
        return text(stamp)
    return datetime.fromtimestamp(x, UTC).strftime("%Y-%m-%d %H:%M UTC")


def alert_since(history: Sequence[Mapping[str, Any]]) -> str | None:
    """When the current run of ``alert`` states began (None when the last run is not alert)."""
    since = None
    for run in history:
        if run.get("state") == "alert":
            since = since or run.get("time")
        else:
            since = None
    return str(since) if since is not None else None


def time_ticks(lo: float, hi: float, n: int = 4) -> list[tuple[float, str]]:
    """``n`` labels from ``lo`` to ``hi`` (epoch seconds): the date on the first (and on any
    tick of another day), else ``HH:MM`` in UTC."""
    if hi <= lo:
        return [(lo, datetime.fromtimestamp(lo, UTC).strftime("%Y-%m-%d %H:%M"))]
    ticks: list[tuple[float, str]] = []
    day = ""
    for i in range(n):
        x = lo + (hi - lo) * i / (n - 1)
        moment = datetime.fromtimestamp(x, UTC)
        label = moment.strftime("%H:%M")
        if moment.strftime("%Y-%m-%d") != day:
            day = moment.strftime("%Y-%m-%d")
            label = moment.strftime("%Y-%m-%d %H:%M" if i == 0 else "%m-%d %H:%M")
        ticks.append((x, label))
    return ticks
