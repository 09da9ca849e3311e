"""Reads of the join's blocks and labels (:mod:`analyzer.store.model_quality`): a window's
pairs and predictions, where the labels stand, and the kept totals."""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import orjson

from analyzer.store.model_quality_blocks import (
    F64,
    HOUR_S,
    bits,
    block_ids_overlapping,
    keys_of,
    predictions_of,
)

__all__ = [
    "CHANGES",
    "LABELS",
    "UNCLAIMED",
    "WAITING",
    "LabelCounts",
    "WindowColumns",
    "WindowPairs",
    "join_changes",
    "label_counts",
    "predictions_between",
    "read_totals",
    "window_columns",
    "window_pairs",
]

# mq_totals: labels stored, labels waiting (no prediction joined), predictions unclaimed
LABELS, WAITING, UNCLAIMED = "labels", "waiting", "unclaimed"
# rows added or removed, ever (never decreases): the evaluation's "did the join change?"
CHANGES = "changes"


def read_totals(conn: sqlite3.Connection) -> dict[str, int]:
    """The kept totals (``mq_totals``), name → value."""
    return {name: int(value) for name, value in conn.execute("SELECT * FROM mq_totals")}


@dataclass(frozen=True)
class WindowPairs:
    """The joined pairs of one window, as arrays."""

    labels: list[str]
    predictions: list[str]
    probabilities: npt.NDArray[np.float64]  # NaN where the capture had none

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class WindowColumns:
    """A window's pairs and every prediction inferred in it (paired or not)."""

    pairs: WindowPairs
    predictions: list[str]
    probabilities: npt.NDArray[np.float64]


def window_columns(
    conn: sqlite3.Connection, start: float, end: float, *, every: bool = True
) -> WindowColumns:
    """The pairs whose prediction's inference time is in ``[start, end)`` (ordered by time;
    a tie in the order stored) and, with ``every``, all of the window's predictions: one
    block at a time, its times filtered with numpy; a pair's label is read by its key.
    Memory: the window's columns (no row objects)."""
    pair_times: list[npt.NDArray[np.float64]] = []
    pair_labels: list[str] = []
    pair_predictions: list[str] = []
    pair_probabilities: list[npt.NDArray[np.float64]] = []
    predictions: list[str] = []
    probabilities: list[npt.NDArray[np.float64]] = []
    for block, n, _, _ in block_ids_overlapping(conn, start, end):
        times_blob, predictions_blob, probabilities_blob, claimed_blob = conn.execute(
            "SELECT b.times, b.predictions, b.probabilities, c.claimed FROM mq_blocks b"
            " JOIN mq_claims c ON c.block = b.id WHERE b.id = ?",
            [block],
        ).fetchone()
        times = np.frombuffer(times_blob, F64)
        inside = (times >= start) & (times < end)
        if not inside.any():
            continue
        paired = inside & bits(claimed_blob, n)
        block_predictions = predictions_of(predictions_blob)
        block_probabilities = np.frombuffer(probabilities_blob, F64)
        if every:
            predictions.extend(block_predictions[inside].tolist())
            probabilities.append(block_probabilities[inside])
        if paired.any():
            blob = conn.execute("SELECT keys FROM mq_blocks WHERE id = ?", [block]).fetchone()
            keys = np.array(keys_of(blob[0]), dtype=object)[paired].tolist()
            labels = dict(
                conn.execute(
                    "SELECT key, label FROM mq_labels"
                    " WHERE key IN (SELECT value FROM json_each(?))",
                    [orjson.dumps(keys).decode()],
                ).fetchall()
            )
            pair_labels.extend(labels[key] for key in keys)
            pair_predictions.extend(block_predictions[paired].tolist())
            pair_times.append(times[paired])
            pair_probabilities.append(block_probabilities[paired])
    order = np.argsort(_joined(pair_times), kind="stable").tolist()
    pairs = WindowPairs(
        [pair_labels[i] for i in order],
        [pair_predictions[i] for i in order],
        _joined(pair_probabilities)[order],
    )
    return WindowColumns(pairs, predictions, _joined(probabilities))


def _joined(parts: list[npt.NDArray[np.float64]]) -> npt.NDArray[np.float64]:
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)


def window_pairs(conn: sqlite3.Connection, start: float, end: float) -> WindowPairs:
    """Every joined pair whose prediction's inference time is in ``[start, end)``."""
    return window_columns(conn, start, end, every=False).pairs


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
    """Whether any prediction was inferred in ``[start, end)``: a block wholly inside
    answers from its bounds; only the blocks across an edge read their times."""
    for block, _, t_min, t_max in block_ids_overlapping(conn, start, end):
        if t_min >= start and t_max < end:
            return True
        blob = conn.execute("SELECT times FROM mq_blocks WHERE id = ?", [block]).fetchone()[0]
        times = np.frombuffer(blob, F64)
        if ((times >= start) & (times < end)).any():
            return True
    return False


def _awaiting(conn: sqlite3.Connection, cutoff: float) -> int:
    """Unclaimed predictions inferred at or after ``cutoff``: the blocks wholly after it
    from their ``unclaimed`` (an index range), the few across it (their hour's blocks
    whose bounds hold it) from their times and claimed bits."""
    after = conn.execute(
        "SELECT coalesce(sum(unclaimed), 0) FROM mq_claims WHERE t_min >= ? AND unclaimed > 0",
        [cutoff],
    ).fetchone()[0]
    across = conn.execute(
        "SELECT b.id, b.n, c.claimed FROM mq_blocks b JOIN mq_claims c ON c.block = b.id"
        " WHERE b.bucket = ? AND b.t_min < ? AND b.t_max >= ? AND c.unclaimed > 0",
        [math.floor(cutoff / HOUR_S) * HOUR_S, cutoff, cutoff],
    ).fetchall()
    count = int(after)
    for block, n, claimed in across:
        blob = conn.execute("SELECT times FROM mq_blocks WHERE id = ?", [block]).fetchone()[0]
        times = np.frombuffer(blob, F64)
        count += int(((times >= cutoff) & ~bits(claimed, n)).sum())
    return count


def label_counts(conn: sqlite3.Connection, now: float, label_delay_s: float) -> LabelCounts:
    """Counts over everything stored (within retention), as of ``now``: the kept totals,
    the label batches' ``waiting`` and the blocks' ``unclaimed`` within the wait (index
    ranges; never a scan of a table). Its reads agree only in one read transaction (as
    :meth:`~analyzer.store.database.Store.read` runs them)."""
    cutoff = now - label_delay_s
    totals = read_totals(conn)
    pending = conn.execute(
        "SELECT coalesce(sum(waiting), 0) FROM mq_label_batches"
        " WHERE received_at >= ? AND waiting > 0",
        [cutoff],
    ).fetchone()[0]
    awaiting = _awaiting(conn, cutoff)
    waiting = totals.get(WAITING, 0)
    return LabelCounts(
        matched=totals.get(LABELS, 0) - waiting,
        unmatched=waiting - int(pending),
        pending=int(pending),
        awaiting=awaiting,
        unlabeled=totals.get(UNCLAIMED, 0) - awaiting,
    )
