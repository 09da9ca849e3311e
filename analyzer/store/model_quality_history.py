"""The model-quality runs over time, for the HTML report (a reader thread's connection).

Every tick stores one run of kind ``model_quality`` whose ``features`` column holds
``{"metrics": {name: {value, standard_deviation, threshold, state, …}}, "estimated": {name:
{value, low, high, …}}}`` (:class:`analyzer.monitors.model_quality.monitor.ModelQuality`).
:func:`read_model_quality_history` gives them over ``span_s`` (the service passes
``retention_days``), oldest first, thinned to at most ``max_points`` (the newest always kept),
with only the numbers the charts draw. The run retention (``store.retention``) keeps exactly
those numbers (:func:`history_detail`) in the runs it summarizes, and does not strip them
after a day as it does a data-quality run's features, so the chart spans the retention.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["KIND", "history_detail", "read_model_quality_history"]

KIND = "model_quality"
_METRIC_KEYS = ("value", "standard_deviation", "threshold", "state")
_ESTIMATE_KEYS = ("value", "low", "high")
DAY_S = 86400


def _pick(entries: Any, keys: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    if not isinstance(entries, Mapping):
        return {}
    return {
        str(name): {key: entry.get(key) for key in keys}
        for name, entry in entries.items()
        if isinstance(entry, Mapping)
    }


def history_detail(stored: Any) -> dict[str, Any]:
    """Of a run's ``features`` column, only what the charts draw: per metric its value,
    standard deviation, threshold and state; per estimate its value, low and high."""
    if not isinstance(stored, Mapping):
        stored = {}
    return {
        "metrics": _pick(stored.get("metrics"), _METRIC_KEYS),
        "estimated": _pick(stored.get("estimated"), _ESTIMATE_KEYS),
    }


def read_model_quality_history(
    conn: sqlite3.Connection, max_points: int = 300, span_s: float = DAY_S
) -> list[dict[str, Any]]:
    """Model-quality runs of the last ``span_s`` (before the newest run), oldest first.

    Each is ``{"run_id", "time", "state", "samples", "metrics", "estimated"}``; a run whose
    stored detail cannot be read keeps its state and has no metrics.
    """
    rows = conn.execute(
        "SELECT id, time, state, samples, features FROM runs WHERE kind = ? "
        "AND time_epoch >= (SELECT MAX(time_epoch) FROM runs WHERE kind = ?) - ? ORDER BY id",
        [KIND, KIND, span_s],
    ).fetchall()
    step = max(1, -(-len(rows) // max(1, max_points)))
    picked = rows[::step]
    if rows and picked[-1] is not rows[-1]:
        picked.append(rows[-1])
    history = []
    for run_id, time, state, samples, detail in picked:
        try:
            parsed = orjson.loads(detail or "{}")
        except orjson.JSONDecodeError:
            parsed = {}
        history.append(
            {"run_id": run_id, "time": time, "state": state, "samples": samples}
            | history_detail(parsed)
        )
    return history
