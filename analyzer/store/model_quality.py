"""The join of captured predictions with late labels, in SQLite, exactly once.

Two tables keyed by the join key (the capture's ``inferenceId`` when it has one, else its
``eventId``; a ground-truth record's ``eventMetadata.eventId`` holds that same key, as in
SageMaker): ``mq_predictions`` and ``mq_labels``. Either may arrive first. Inserts are
``INSERT OR IGNORE`` on the key, so a file read twice after a crash or a label posted twice
counts once; the caller runs each batch inside the store's one write transaction together
with whatever marks the batch as read, so a ``kill -9`` loses or doubles nothing.

Each side has a ``joined`` flag, set when its other half is stored, and an index that leads
with it (predictions: ``(joined, inference_time)``; labels: a partial index on the lone
ones): the label counts of ``/monitor/status`` are range counts over those, never a join of
the two tables. The flags keep one invariant at every commit: a row is
alone exactly when its key has no other half. So a batch only looks up its own keys (handed
to SQLite as one JSON array, ``json_each``) among the rows still alone.

A window is keyed by *inference* time. When a label joins a prediction (or a prediction
joins a label that came first), that window's version is bumped in ``mq_dirty``; the
evaluation reads :func:`dirty_windows`, evaluates, and :func:`mark_evaluated` clears a window
only if no label landed in it meanwhile. Memory never holds more than one window's pairs.

:class:`ModelQualityStore` is the same on a running :class:`~analyzer.store.database.Store`
(reads on the reader pool, writes on the writer thread); the module functions run inside a
caller's transaction.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import orjson
from sqlite_utils import Database

from analyzer.monitors.model_quality.predictions import Extracted, PredictionRow
from analyzer.store.database import Store, add_counters

__all__ = [
    "DirtyWindow",
    "LabelCounts",
    "ModelQualityStore",
    "PredictionRow",
    "WindowPairs",
    "add_labels",
    "add_predictions",
    "create_tables",
    "dirty_windows",
    "label_counts",
    "mark_evaluated",
    "prune",
    "store_predictions",
    "window_pairs",
]

FETCH = 50_000


def create_tables(db: Database) -> None:
    """The join's tables and indexes (idempotent; the store's migration m003 runs it)."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS mq_predictions (key TEXT PRIMARY KEY, event_id TEXT,"
        " inference_id TEXT, inference_time REAL NOT NULL, prediction TEXT,"
        " probability REAL, row BLOB, joined INTEGER NOT NULL DEFAULT 0)"
    )
    # one index for the window's pairs (joined = 1), the counts (joined = 0) and the retention
    db.execute(
        "CREATE INDEX IF NOT EXISTS mq_predictions_time ON mq_predictions (joined, inference_time)"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS mq_labels (key TEXT PRIMARY KEY, label TEXT NOT NULL,"
        " received_at REAL NOT NULL, joined INTEGER NOT NULL DEFAULT 0)"
    )
    db.execute(
        "CREATE INDEX IF NOT EXISTS mq_labels_alone ON mq_labels (received_at) WHERE joined = 0"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS mq_dirty (window_start INTEGER PRIMARY KEY,"
        " version INTEGER NOT NULL)"
    )


def _conn(db: Database | sqlite3.Connection) -> sqlite3.Connection:
    return db.conn if isinstance(db, Database) else db


def add_predictions(
    db: Database | sqlite3.Connection, rows: Sequence[PredictionRow], window_s: int
) -> int:
    """Store captured predictions (inside the caller's transaction); returns how many were new.

    A prediction whose label is already here joins it and marks its window.
    """
    conn = _conn(db)
    before = conn.total_changes
    conn.executemany("INSERT OR IGNORE INTO mq_predictions VALUES (?, ?, ?, ?, ?, ?, ?, 0)", rows)
    added = conn.total_changes - before
    if conn.execute("SELECT 1 FROM mq_labels WHERE joined = 0 LIMIT 1").fetchone() is None:
        return added  # no label waits for its prediction (labels usually come after)
    keys = orjson.dumps([r[0] for r in rows]).decode()
    # A lone label of a key in the batch now has its prediction (stored now: before, the
    # label would not be alone). Mark the windows, then flag both halves.
    # ``+joined``: look the batch's keys up by key, never scan the index of lone rows
    width = int(window_s)
    alone = (
        "SELECT l.key FROM json_each(?) j JOIN mq_labels l ON l.key = j.value WHERE +l.joined = 0"
    )
    conn.execute(
        f"INSERT INTO mq_dirty SELECT DISTINCT {_WINDOW.format(width=width)}, 1"
        f" FROM mq_predictions p WHERE p.key IN ({alone})" + _BUMP,
        [keys],
    )
    conn.execute(f"UPDATE mq_predictions SET joined = 1 WHERE key IN ({alone})", [keys])
    conn.execute(
        "UPDATE mq_labels SET joined = 1 WHERE +joined = 0 AND key IN"
        " (SELECT value FROM json_each(?))",
        [keys],
    )
    return added


def store_predictions(db: Database, extracted: Extracted, window_s: int) -> int:
    """Add a capture chunk's predictions and count them and the records left out (inside the
    chunk's transaction); returns how many were new. Counters: ``model_quality:predictions``,
    ``model_quality:skipped:{reason}``, ``model_quality:rows_too_large``."""
    new = add_predictions(db, extracted.rows, window_s) if extracted.rows else 0
    deltas = {"model_quality:predictions": new, "model_quality:rows_too_large":
              extracted.rows_too_large}  # fmt: skip
    deltas.update({f"model_quality:skipped:{r}": n for r, n in extracted.skipped.items()})
    add_counters(db, deltas)
    return new


def add_labels(
    db: Database | sqlite3.Connection,
    rows: Iterable[tuple[str, str]],
    received_at: float,
    window_s: int,
) -> tuple[int, int]:
    """Store ``(key, label)`` pairs; returns ``(new, duplicates)``.

    The first label for a key stands; a later one for the same key is a duplicate and is
    counted, not applied. A label that joins a stored prediction marks its window.
    """
    conn = _conn(db)
    batch = [(key, label, received_at) for key, label in rows]
    before = conn.total_changes
    conn.executemany("INSERT OR IGNORE INTO mq_labels VALUES (?, ?, ?, 0)", batch)
    added = conn.total_changes - before
    keys = orjson.dumps([b[0] for b in batch]).decode()
    # A prediction of a key in the batch still alone gets its label now (a label stored
    # earlier would have joined it then).
    width = int(window_s)
    alone = (
        "SELECT p.key FROM json_each(?) j JOIN mq_predictions p ON p.key = j.value"
        " WHERE +p.joined = 0"
    )
    conn.execute(
        f"INSERT INTO mq_dirty SELECT DISTINCT {_WINDOW.format(width=width)}, 1"
        f" FROM mq_predictions p WHERE p.key IN ({alone})" + _BUMP,
        [keys],
    )
    conn.execute(f"UPDATE mq_labels SET joined = 1 WHERE key IN ({alone})", [keys])
    conn.execute(
        "UPDATE mq_predictions SET joined = 1 WHERE +joined = 0 AND key IN"
        " (SELECT value FROM json_each(?))",
        [keys],
    )
    return added, len(batch) - added


_WINDOW = "CAST(floor(p.inference_time / {width}) AS INTEGER) * {width}"
_BUMP = " ON CONFLICT (window_start) DO UPDATE SET version = version + 1"


@dataclass(frozen=True)
class DirtyWindow:
    """A window whose pairs changed; ``version`` says which change was seen."""

    start: int
    version: int


def dirty_windows(conn: sqlite3.Connection) -> list[DirtyWindow]:
    """The windows whose pairs changed since they were last marked evaluated, oldest first."""
    rows = conn.execute("SELECT window_start, version FROM mq_dirty ORDER BY 1").fetchall()
    return [DirtyWindow(int(start), int(version)) for start, version in rows]


def mark_evaluated(db: Database | sqlite3.Connection, windows: Iterable[DirtyWindow]) -> int:
    """Forget the windows evaluated at the version seen (a newer change keeps its mark)."""
    conn = _conn(db)
    cleared = 0
    for window in windows:
        cursor = conn.execute(
            "DELETE FROM mq_dirty WHERE window_start = ? AND version = ?",
            [window.start, window.version],
        )
        cleared += cursor.rowcount
    return cleared


@dataclass(frozen=True)
class WindowPairs:
    """The joined pairs of one window, as arrays."""

    labels: list[str]
    predictions: list[str]
    probabilities: npt.NDArray[np.float64]  # NaN where the capture had none

    def __len__(self) -> int:
        return len(self.labels)


def window_pairs(conn: sqlite3.Connection, start: float, end: float) -> WindowPairs:
    """Every joined pair whose prediction's inference time is in ``[start, end)``."""
    cursor = conn.execute(
        "SELECT l.label, p.prediction, p.probability FROM mq_predictions p"
        " JOIN mq_labels l ON l.key = p.key"
        " WHERE p.joined = 1 AND p.inference_time >= ? AND p.inference_time < ?"
        " ORDER BY p.inference_time, p.key",
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
    unmatched: int  # labels with no prediction, received longer than the label wait ago
    pending: int  # labels with no prediction yet, still within the wait
    awaiting: int  # predictions without a label, still within the wait
    unlabeled: int  # predictions past the wait that never got a label (expired)


def label_counts(conn: sqlite3.Connection, now: float, label_delay_s: float) -> LabelCounts:
    """Counts over everything stored (within retention); index range counts only."""
    cutoff = now - label_delay_s
    labels = int(conn.execute("SELECT count(*) FROM mq_labels").fetchone()[0])
    alone = conn.execute(
        "SELECT count(*) FILTER (WHERE received_at < ?), count(*) FILTER (WHERE"
        " received_at >= ?) FROM mq_labels WHERE joined = 0",
        [cutoff, cutoff],
    ).fetchone()
    waiting = conn.execute(
        "SELECT count(*) FILTER (WHERE inference_time >= ?), count(*) FILTER (WHERE"
        " inference_time < ?) FROM mq_predictions WHERE joined = 0",
        [cutoff, cutoff],
    ).fetchone()
    unmatched, pending = int(alone[0] or 0), int(alone[1] or 0)
    return LabelCounts(
        matched=labels - unmatched - pending,
        unmatched=unmatched,
        pending=pending,
        awaiting=int(waiting[0] or 0),
        unlabeled=int(waiting[1] or 0),
    )


def prune(db: Database | sqlite3.Connection, before: float) -> tuple[int, int]:
    """Retention: forget predictions inferred before ``before`` (with their labels) and lone
    labels received before it; returns ``(predictions, labels)`` removed."""
    conn = _conn(db)
    labels = conn.execute(
        "DELETE FROM mq_labels WHERE key IN (SELECT key FROM mq_predictions"
        " WHERE joined = 1 AND inference_time < ?)",
        [before],
    ).rowcount
    predictions = conn.execute(
        "DELETE FROM mq_predictions WHERE joined IN (0, 1) AND inference_time < ?", [before]
    ).rowcount
    labels += conn.execute(
        "DELETE FROM mq_labels WHERE joined = 0 AND received_at < ?", [before]
    ).rowcount
    conn.execute("DELETE FROM mq_dirty WHERE window_start < ?", [math.floor(before) - 90 * 86400])
    return int(predictions), int(labels)


class ModelQualityStore:
    """The join on a running store: blocking calls, from a thread (never the event loop)."""

    def __init__(self, store: Store, *, window_s: int, label_delay_s: float) -> None:
        self.store = store
        self.window_s = window_s
        self.label_delay_s = label_delay_s

    def window_pairs(self, start: float, end: float) -> WindowPairs:
        """The joined pairs of ``[start, end)`` by inference time (one window's worth)."""
        return self.store.read(lambda conn: window_pairs(conn, start, end))

    def dirty_windows(self) -> list[DirtyWindow]:
        """Windows to evaluate (again): their pairs changed since the last evaluation."""
        return self.store.read(dirty_windows)

    def mark_evaluated(self, windows: Sequence[DirtyWindow]) -> int:
        """Clear the windows just evaluated, unless a label landed in them meanwhile."""
        return self.store.write(lambda db: mark_evaluated(db, windows))

    def label_counts(self, now: float) -> LabelCounts:
        """matched / unmatched / pending labels; awaiting / unlabeled predictions."""
        return self.store.read(lambda conn: label_counts(conn, now, self.label_delay_s))

    def prune(self, before: float) -> tuple[int, int]:
        """Retention (``analyzer.retention_days``): everything older than ``before``."""
        return self.store.write(lambda db: prune(db, before))
