"""Reads of the prediction–label join for the model-quality monitor (reader threads)."""

from __future__ import annotations

import sqlite3

import numpy as np

from analyzer.monitors.model_quality.monitor import ModelQualityWindow
from analyzer.store.model_quality_blocks import HOUR_S
from analyzer.store.model_quality_window import (
    join_changes,
    label_counts,
    predictions_between,
    window_columns,
)

__all__ = [
    "HOUR_S",
    "counts_doc",
    "has_join_tables",
    "read_changes",
    "read_hour",
    "read_window",
    "unchanged_since",
]


def has_join_tables(conn: sqlite3.Connection) -> bool:
    """Whether the join's tables exist yet (a fresh database before its first ingest)."""
    row = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'mq_blocks'"
    ).fetchone()
    return bool(row[0])


def read_window(
    conn: sqlite3.Connection,
    start: float,
    end: float,
    *,
    now: float,
    label_delay_s: float,
    with_counts: bool = True,
) -> ModelQualityWindow:
    """The labelled pairs and every prediction inferred in ``[start, end)``, and the counts."""
    if not has_join_tables(conn):
        return ModelQualityWindow([], [], np.zeros(0))
    columns = window_columns(conn, start, end)
    pairs = columns.pairs
    counts = counts_doc(conn, now, label_delay_s) if with_counts else {}
    return ModelQualityWindow(
        pairs.labels,
        pairs.predictions,
        pairs.probabilities,
        columns.predictions,
        columns.probabilities,
        counts,
    )


def read_hour(conn: sqlite3.Connection, *, hour: int, now: float) -> ModelQualityWindow:
    """The pairs and predictions of one report hour (no label counts: those are live)."""
    return read_window(conn, hour, hour + HOUR_S, now=now, label_delay_s=0, with_counts=False)


def counts_doc(conn: sqlite3.Connection, now: float, label_delay_s: float) -> dict[str, int]:
    """``labels`` of the status section: where the labels stand at ``now``."""
    if not has_join_tables(conn):
        return {}
    stand = label_counts(conn, now, label_delay_s)
    return {
        "matched": stand.matched,
        "unmatched": stand.unmatched,
        "pending": stand.pending,
        "awaiting": stand.awaiting,
        "unlabeled": stand.unlabeled,
    }


def read_changes(conn: sqlite3.Connection) -> int:
    """:func:`~analyzer.store.model_quality.join_changes` (0 before the tables exist)."""
    return join_changes(conn) if has_join_tables(conn) else 0


def unchanged_since(
    conn: sqlite3.Connection,
    changes: int,
    before: tuple[float, float],
    after: tuple[float, float],
) -> bool:
    """Whether the window ``after`` holds exactly what the window ``before`` held when the join
    had seen ``changes`` row changes: no row added or removed since, and no prediction between
    the old and the new start, nor between the old and the new end (the edges passed none)."""
    if read_changes(conn) != changes:
        return False
    return not any(
        predictions_between(conn, min(old, new), max(old, new))
        for old, new in zip(before, after, strict=True)
        if old != new
    )
