"""The join of captured predictions with late labels, in SQLite, exactly once.

Two tables keyed by the join key (the capture's ``inferenceId`` when it has one, else its
``eventId``; a ground-truth record's ``eventMetadata.eventId`` holds that same key, as in
SageMaker): ``mq_predictions`` and ``mq_labels``. Either may arrive first. Inserts are
``INSERT OR IGNORE`` on the key, so a file read twice after a crash or a label posted twice
counts once; the caller runs each batch inside the store's one write transaction together
with whatever marks the batch as read, so a ``kill -9`` loses or doubles nothing.

The halves still waiting for the other are listed in two narrow tables,
``mq_predictions_alone`` (key, inference time) and ``mq_labels_alone`` (key, arrival time);
at every commit a key is listed there exactly when its other half is not stored. Joining
deletes from them and never rewrites a wide prediction row. The label counts of
``/monitor/status`` come from row totals kept in ``mq_totals`` as rows change and an index
range over the rows still within the wait, read in one snapshot: never a scan or a join of
the tables. A batch
only looks up its own keys (handed to SQLite as one JSON array, ``json_each``).

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
from operator import itemgetter

import numpy as np
import numpy.typing as npt
import orjson
from sqlite_utils import Database

from analyzer.monitors.model_quality.predictions import Extracted, PredictionRow
from analyzer.store.database import Store, add_counters
from analyzer.store.multi_row import PREDICTION_VALUES, bindable_predictions, insert_rows

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
    "join_changes",
    "label_counts",
    "mark_evaluated",
    "predictions_between",
    "prune",
    "store_predictions",
    "window_pairs",
]

FETCH = 50_000
PREDICTION_COLUMNS = (
    "key TEXT NOT NULL, event_id TEXT, inference_id TEXT, inference_time REAL NOT NULL,"
    " prediction TEXT, probability REAL, row BLOB"
)


def create_tables(db: Database) -> None:
    """The join's tables and indexes (idempotent; the store's migration m003 runs it)."""
    # predictions: appended, read by window, deleted by retention; never updated. No index
    # on the key (a key is stored at most once, see add_predictions): appending costs the
    # rows' pages and the time index, no random b-tree insert
    db.execute(f"CREATE TABLE IF NOT EXISTS mq_predictions ({PREDICTION_COLUMNS})")
    db.execute("CREATE INDEX IF NOT EXISTS mq_predictions_time ON mq_predictions (inference_time)")
    db.execute(
        "CREATE TABLE IF NOT EXISTS mq_labels (key TEXT PRIMARY KEY, label TEXT NOT NULL,"
        " received_at REAL NOT NULL) WITHOUT ROWID"
    )
    # the halves still waiting for the other: narrow, so joining touches no wide page
    for side, moment in (("mq_predictions_alone", "inference_time"),
                         ("mq_labels_alone", "received_at")):  # fmt: skip
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {side} (key TEXT PRIMARY KEY, {moment} REAL NOT NULL)"
            " WITHOUT ROWID"
        )
        db.execute(f"CREATE INDEX IF NOT EXISTS {side}_time ON {side} ({moment})")
    db.execute(
        "CREATE TABLE IF NOT EXISTS mq_dirty (window_start INTEGER PRIMARY KEY,"
        " version INTEGER NOT NULL)"
    )
    # row counts kept as rows change, so that counting never scans a table
    db.execute(
        "CREATE TABLE IF NOT EXISTS mq_totals (name TEXT PRIMARY KEY, value INTEGER NOT NULL)"
    )


def _conn(db: Database | sqlite3.Connection) -> sqlite3.Connection:
    return db.conn if isinstance(db, Database) else db


def _window(column: str, window_s: int) -> str:
    width = int(window_s)
    return f"CAST(floor({column} / {width}) AS INTEGER) * {width}"


_BUMP = " ON CONFLICT (window_start) DO UPDATE SET version = version + 1"
LABELS, PREDICTIONS_ALONE, LABELS_ALONE = "labels", "predictions_alone", "labels_alone"
# rows added or removed, ever (never decreases): the evaluation's "did the join change?"
CHANGES = "changes"


def _add_totals(conn: sqlite3.Connection, deltas: dict[str, int]) -> None:
    conn.executemany(
        "INSERT INTO mq_totals VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        [(name, delta) for name, delta in deltas.items() if delta],
    )


def _totals(conn: sqlite3.Connection) -> dict[str, int]:
    return {name: int(value) for name, value in conn.execute("SELECT * FROM mq_totals")}


# A key is stored iff it is listed alone, or its label is stored and not waiting (joined):
# every stored prediction is one or the other at every commit, so these probes replace an
# index on ``mq_predictions.key`` (a random-key b-tree insert per row, ~40% of a chunk's
# written pages). A key listed among the waiting labels has no stored prediction: it is new.
_NEW_KEY = (
    "NOT EXISTS (SELECT 1 FROM mq_predictions_alone a WHERE a.key = {k})"
    " AND (EXISTS (SELECT 1 FROM mq_labels_alone w WHERE w.key = {k})"
    " OR NOT EXISTS (SELECT 1 FROM mq_labels l WHERE l.key = {k}))"
)


def _insert_predictions(conn: sqlite3.Connection, rows: Sequence[PredictionRow]) -> int:
    """Insert the rows whose key is not stored yet (``rows`` hold one row per key); returns
    how many went in."""
    head = "INSERT INTO mq_predictions SELECT * FROM ("
    tail = f") v WHERE {_NEW_KEY.format(k='v.column1')}"
    return insert_rows(conn, head, bindable_predictions(rows), tail, PREDICTION_VALUES)


def _first_of_each_key(rows: Sequence[PredictionRow]) -> Sequence[PredictionRow]:
    """The rows without the later repeats of a key (the first stands, as for labels)."""
    if len(set(map(itemgetter(0), rows))) == len(rows):
        return rows
    seen: set[str] = set()
    out = []
    for row in rows:
        if row[0] not in seen:
            seen.add(row[0])
            out.append(row)
    return out


def add_predictions(
    db: Database | sqlite3.Connection, rows: Sequence[PredictionRow], window_s: int
) -> int:
    """Store captured predictions (inside the caller's transaction); returns how many were new.

    A key already stored (read again, or repeated by the client) keeps its first row. A
    prediction whose label is already here joins it and marks its window. Each step is one
    statement over the chunk's keys (one JSON array), not one per row: the new rows in (their
    keys probed among the lone predictions and the labels), then the keys waiting among the
    labels (usually few: labels come later) mark their windows and leave
    ``mq_labels_alone``, then the others without a stored label are listed alone.
    """
    conn = _conn(db)
    # in key order: every step below walks the keys' b-trees (the waiting labels', the
    # labels', the lone predictions') in the order of their pages, not at random
    rows = sorted(_first_of_each_key(rows), key=itemgetter(0))
    # the new rows are those after the last rowid (a rowid table appends at max + 1)
    last = conn.execute("SELECT coalesce(max(rowid), 0) FROM mq_predictions").fetchone()[0]
    added = _insert_predictions(conn, rows)
    joined = 0
    if added and conn.execute("SELECT 1 FROM mq_labels_alone LIMIT 1").fetchone() is not None:
        # a waiting key had no stored prediction: the row just stored gives the window
        conn.execute(
            f"INSERT INTO mq_dirty SELECT DISTINCT {_window('p.inference_time', window_s)}, 1"
            " FROM mq_predictions p WHERE p.rowid > ? AND EXISTS (SELECT 1"
            " FROM mq_labels_alone l WHERE l.key = p.key)" + _BUMP,
            [last],
        )
        joined = conn.execute(
            "DELETE FROM mq_labels_alone WHERE key IN (SELECT key FROM mq_predictions"
            " WHERE rowid > ?)",
            [last],
        ).rowcount
    # alone unless its label is stored (a key stored before is joined or alone already)
    alone = conn.execute(
        "INSERT OR IGNORE INTO mq_predictions_alone SELECT p.key, p.inference_time"
        " FROM mq_predictions p WHERE p.rowid > ?"
        " AND NOT EXISTS (SELECT 1 FROM mq_labels l WHERE l.key = p.key)",
        [last],
    ).rowcount
    _add_totals(conn, {PREDICTIONS_ALONE: alone, LABELS_ALONE: -joined, CHANGES: added})
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
    # in key order (stable: a repeated key's first label still comes first), as predictions
    batch = sorted(((key, label, received_at) for key, label in rows), key=itemgetter(0))
    keys = orjson.dumps([b[0] for b in batch]).decode()
    # alone unless the prediction is stored: a key without a stored label is not joined, so
    # its prediction is stored iff it is listed alone (no index on the predictions' keys);
    # a repeat keeps the first arrival time
    alone = conn.execute(
        "INSERT OR IGNORE INTO mq_labels_alone SELECT j.value, ? FROM json_each(?) j"
        " WHERE NOT EXISTS (SELECT 1 FROM mq_labels l WHERE l.key = j.value)"
        " AND NOT EXISTS (SELECT 1 FROM mq_predictions_alone a WHERE a.key = j.value)",
        [received_at, keys],
    ).rowcount
    added = insert_rows(conn, "INSERT OR IGNORE INTO mq_labels", batch)
    # the lone predictions of the batch's keys now have their label: mark, then unflag them
    conn.execute(
        f"INSERT INTO mq_dirty SELECT DISTINCT {_window('a.inference_time', window_s)}, 1"
        " FROM json_each(?) j JOIN mq_predictions_alone a ON a.key = j.value WHERE true" + _BUMP,
        [keys],
    )
    joined = conn.execute(
        "DELETE FROM mq_predictions_alone WHERE key IN (SELECT value FROM json_each(?))", [keys]
    ).rowcount
    _add_totals(
        conn, {LABELS: added, PREDICTIONS_ALONE: -joined, LABELS_ALONE: alone, CHANGES: added}
    )
    return added, len(batch) - added


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
        " WHERE p.inference_time >= ? AND p.inference_time < ?"
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


def join_changes(conn: sqlite3.Connection) -> int:
    """How many prediction and label rows were ever added or removed (retention included):
    equal at two moments only if the join did not change in between."""
    row = conn.execute("SELECT value FROM mq_totals WHERE name = ?", [CHANGES]).fetchone()
    return int(row[0]) if row is not None else 0


def predictions_between(conn: sqlite3.Connection, start: float, end: float) -> bool:
    """Whether any prediction was inferred in ``[start, end)`` (an index probe)."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM mq_predictions"
        " WHERE inference_time >= ? AND inference_time < ?)",
        [start, end],
    ).fetchone()
    return bool(row[0])


def label_counts(conn: sqlite3.Connection, now: float, label_delay_s: float) -> LabelCounts:
    """Counts over everything stored (within retention): the kept totals and the index range
    of the rows still within the wait (never a scan of a table). Its reads agree only in one
    read transaction (as :meth:`~analyzer.store.database.Store.read` runs them)."""
    cutoff = now - label_delay_s
    totals = _totals(conn)
    pending = conn.execute(
        "SELECT count(*) FROM mq_labels_alone WHERE received_at >= ?", [cutoff]
    ).fetchone()[0]
    awaiting = conn.execute(
        "SELECT count(*) FROM mq_predictions_alone WHERE inference_time >= ?", [cutoff]
    ).fetchone()[0]
    labels_alone = totals.get(LABELS_ALONE, 0)
    return LabelCounts(
        matched=totals.get(LABELS, 0) - labels_alone,
        unmatched=labels_alone - int(pending),
        pending=int(pending),
        awaiting=int(awaiting),
        unlabeled=totals.get(PREDICTIONS_ALONE, 0) - int(awaiting),
    )


def prune(db: Database | sqlite3.Connection, before: float) -> tuple[int, int]:
    """Retention: forget predictions inferred before ``before`` (with their labels) and lone
    labels received before it; returns ``(predictions, labels)`` removed."""
    conn = _conn(db)
    labels = conn.execute(
        "DELETE FROM mq_labels WHERE key IN (SELECT key FROM mq_predictions"
        " WHERE inference_time < ?)",
        [before],
    ).rowcount
    predictions_alone = conn.execute(
        "DELETE FROM mq_predictions_alone WHERE inference_time < ?", [before]
    ).rowcount
    predictions = conn.execute(
        "DELETE FROM mq_predictions WHERE inference_time < ?", [before]
    ).rowcount
    labels += conn.execute(
        "DELETE FROM mq_labels WHERE key IN (SELECT key FROM mq_labels_alone"
        " WHERE received_at < ?)",
        [before],
    ).rowcount
    labels_alone = conn.execute(
        "DELETE FROM mq_labels_alone WHERE received_at < ?", [before]
    ).rowcount
    conn.execute("DELETE FROM mq_dirty WHERE window_start < ?", [math.floor(before) - 90 * 86400])
    _add_totals(
        conn,
        {
            LABELS: -labels,
            PREDICTIONS_ALONE: -predictions_alone,
            LABELS_ALONE: -labels_alone,
            CHANGES: predictions + labels,
        },
    )
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
