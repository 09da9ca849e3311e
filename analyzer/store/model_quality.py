"""The join of captured predictions with late labels, in SQLite, exactly once.

Two tables keyed by the join key (the capture's ``inferenceId`` when it has one, else its
``eventId``; a ground-truth record's ``eventMetadata.eventId`` holds that same key, as in
SageMaker): ``mq_predictions`` and ``mq_labels``. Either may arrive first. Inserts are
``INSERT OR IGNORE`` on the key, so a file read twice after a crash or a label posted twice
counts once; the caller runs each batch inside the store's one write transaction together
with whatever marks the batch as read, so a ``kill -9`` loses or doubles nothing.

A window is keyed by *inference* time. When a label joins a prediction whose window may
already have been evaluated (or a prediction joins a label that came first), that window is
marked in ``mq_dirty`` and evaluated again; memory never holds more than one window's pairs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlite_utils import Database

__all__ = [
    "LabelCounts",
    "WindowPairs",
    "add_labels",
    "add_predictions",
    "create_tables",
    "expire",
    "label_counts",
    "take_dirty_windows",
    "window_pairs",
]

FETCH = 50_000


def create_tables(db: Database) -> None:
    """The join's tables and indexes (idempotent)."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS mq_predictions (key TEXT PRIMARY KEY, event_id TEXT,"
        " inference_id TEXT, inference_time REAL NOT NULL, prediction TEXT,"
        " probability REAL, row BLOB)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS mq_predictions_time ON mq_predictions (inference_time)")
    db.execute(
        "CREATE TABLE IF NOT EXISTS mq_labels (key TEXT PRIMARY KEY, label TEXT NOT NULL,"
        " received_at REAL NOT NULL)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS mq_labels_received ON mq_labels (received_at)")
    db.execute("CREATE TABLE IF NOT EXISTS mq_dirty (window_start INTEGER PRIMARY KEY)")


def _window(inference_time: float, window_s: int) -> int:
    return int(math.floor(inference_time / window_s) * window_s)


def add_predictions(db: Database, rows: Iterable[Mapping[str, Any]], window_s: int) -> int:
    """Store captured predictions; returns how many were new.

    Each row: ``key``, ``event_id``, ``inference_id``, ``inference_time`` (epoch seconds),
    ``prediction`` (text), ``probability`` (float or None), optionally ``row`` (bytes: the
    input row, kept for bias). A prediction whose label is already here marks its window.
    """
    batch = [
        (
            r["key"],
            r.get("event_id"),
            r.get("inference_id"),
            float(r["inference_time"]),
            r.get("prediction"),
            r.get("probability"),
            r.get("row"),
        )
        for r in rows
    ]
    _stage(db, [(b[0],) for b in batch], "mq_predictions")
    db.conn.executemany("INSERT OR IGNORE INTO mq_predictions VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
    return _mark_joined(db, window_s)


def add_labels(
    db: Database, rows: Iterable[tuple[str, str]], received_at: float, window_s: int
) -> tuple[int, int]:
    """Store ``(key, label)`` pairs; returns ``(new, duplicates)``.

    The first label for a key stands; a later one for the same key is a duplicate and is
    counted, not applied. A label that joins a stored prediction marks its window.
    """
    batch = [(key, label, received_at) for key, label in rows]
    _stage(db, [(key,) for key, _, _ in batch], "mq_labels")
    db.conn.executemany("INSERT OR IGNORE INTO mq_labels VALUES (?, ?, ?)", batch)
    added = _mark_joined(db, window_s)
    return added, len(batch) - added


def _stage(db: Database, keys: list[tuple[str]], table: str) -> None:
    """Keep the batch's keys that ``table`` does not hold yet: only they change anything."""
    db.execute("CREATE TEMP TABLE IF NOT EXISTS mq_batch (key TEXT PRIMARY KEY)")
    db.execute("DELETE FROM mq_batch")
    db.conn.executemany("INSERT OR IGNORE INTO mq_batch VALUES (?)", keys)
    # EXISTS, not IN: an IN list would be built from the whole table at every batch.
    db.execute(
        f"DELETE FROM mq_batch WHERE EXISTS (SELECT 1 FROM {table} t WHERE t.key = mq_batch.key)"
    )


def _mark_joined(db: Database, window_s: int) -> int:
    """Mark the windows of the staged new keys that now have both halves; count the keys."""
    added = int(db.execute("SELECT count(*) FROM mq_batch").fetchone()[0])
    db.execute(
        "INSERT OR IGNORE INTO mq_dirty SELECT DISTINCT"
        f" CAST(inference_time / {int(window_s)} AS INTEGER) * {int(window_s)}"
        " FROM mq_batch b JOIN mq_predictions p USING (key) JOIN mq_labels l USING (key)"
    )
    db.execute("DELETE FROM mq_batch")
    return added


def take_dirty_windows(db: Database) -> list[int]:
    """The window starts whose pairs changed since the last call (and forget them)."""
    starts = [int(r[0]) for r in db.execute("SELECT window_start FROM mq_dirty ORDER BY 1")]
    db.execute("DELETE FROM mq_dirty")
    return starts


@dataclass(frozen=True)
class WindowPairs:
    """The joined pairs of one window, as arrays."""

    labels: list[str]
    predictions: list[str]
    probabilities: npt.NDArray[np.float64]  # NaN where the capture had none

    def __len__(self) -> int:
        return len(self.labels)


def window_pairs(db: Database, start: float, end: float) -> WindowPairs:
    """Every joined pair whose prediction's inference time is in ``[start, end)``."""
    cursor = db.execute(
        "SELECT l.label, p.prediction, p.probability FROM mq_predictions p"
        " JOIN mq_labels l USING (key)"
        " WHERE p.inference_time >= ? AND p.inference_time < ? ORDER BY p.inference_time, p.key",
        [start, end],
    )
    labels: list[str] = []
    predictions: list[str] = []
    probabilities: list[float] = []
    while chunk := cursor.fetchmany(FETCH):
        for label, prediction, probability in chunk:
            labels.append(label)
            predictions.append(prediction)
            probabilities.append(math.nan if probability is None else probability)
    return WindowPairs(labels, predictions, np.array(probabilities, dtype=np.float64))


@dataclass(frozen=True)
class LabelCounts:
    """Where the labels stand: what ``/monitor/status`` shows under ``labels``."""

    matched: int  # labels joined to a stored prediction
    unmatched: int  # labels with no prediction, older than the label wait
    waiting: int  # labels with no prediction yet, still within the wait
    pending: int  # predictions still within the wait, without a label
    expired: int  # predictions past the wait that never got a label


def label_counts(db: Database, now: float, label_delay_s: float) -> LabelCounts:
    """Counts over everything stored (within retention)."""
    cutoff = now - label_delay_s
    matched = db.execute(
        "SELECT count(*) FROM mq_labels l JOIN mq_predictions p USING (key)"
    ).fetchone()[0]
    orphans = db.execute(
        "SELECT count(*) FILTER (WHERE l.received_at < ?), count(*) FILTER (WHERE"
        " l.received_at >= ?) FROM mq_labels l LEFT JOIN mq_predictions p USING (key)"
        " WHERE p.key IS NULL",
        [cutoff, cutoff],
    ).fetchone()
    unlabelled = db.execute(
        "SELECT count(*) FILTER (WHERE p.inference_time >= ?), count(*) FILTER (WHERE"
        " p.inference_time < ?) FROM mq_predictions p LEFT JOIN mq_labels l USING (key)"
        " WHERE l.key IS NULL",
        [cutoff, cutoff],
    ).fetchone()
    return LabelCounts(
        matched=int(matched),
        unmatched=int(orphans[0] or 0),
        waiting=int(orphans[1] or 0),
        pending=int(unlabelled[0] or 0),
        expired=int(unlabelled[1] or 0),
    )


def expire(db: Database, before: float) -> tuple[int, int]:
    """Forget predictions inferred before ``before`` and labels received before it."""
    predictions = db.execute("DELETE FROM mq_predictions WHERE inference_time < ?", [before])
    labels = db.execute("DELETE FROM mq_labels WHERE received_at < ?", [before])
    return int(predictions.rowcount), int(labels.rowcount)
