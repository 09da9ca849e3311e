"""Reads of the prediction–label join for the model-quality monitor (reader threads)."""

from __future__ import annotations

import math
import sqlite3

import numpy as np

from analyzer.monitors.model_quality.monitor import ModelQualityWindow
from analyzer.store.model_quality import label_counts, window_pairs

__all__ = ["HOUR_S", "has_join_tables", "read_hour", "read_window"]

FETCH = 50_000
HOUR_S = 3600


def has_join_tables(conn: sqlite3.Connection) -> bool:
    """Whether the join's tables exist yet (a fresh database before its first ingest)."""
    row = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'mq_predictions'"
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
    pairs = window_pairs(conn, start, end)
    predictions: list[str] = []
    probabilities: list[float] = []
    cursor = conn.execute(
        "SELECT prediction, probability FROM mq_predictions"
        " WHERE inference_time >= ? AND inference_time < ?",
        [start, end],
    )
    while chunk := cursor.fetchmany(FETCH):
        for prediction, probability in chunk:
            predictions.append(prediction)
            probabilities.append(math.nan if probability is None else probability)
    counts: dict[str, int] = {}
    if with_counts:
        stand = label_counts(conn, now, label_delay_s)
        counts = {
            "matched": stand.matched,
            "unmatched": stand.unmatched,
            "pending": stand.pending,
            "awaiting": stand.awaiting,
            "unlabeled": stand.unlabeled,
        }
    return ModelQualityWindow(
        pairs.labels,
        pairs.predictions,
        pairs.probabilities,
        predictions,
        np.array(probabilities, dtype=np.float64),
        counts,
    )


def read_hour(conn: sqlite3.Connection, *, hour: int, now: float) -> ModelQualityWindow:
    """The pairs and predictions of one report hour (no label counts: those are live)."""
    return read_window(conn, hour, hour + HOUR_S, now=now, label_delay_s=0, with_counts=False)
