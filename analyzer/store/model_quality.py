"""The join of captured predictions with late labels, in SQLite, exactly once.

The join key is the capture's ``inferenceId`` when it has one, else its ``eventId`` (a
ground-truth record's ``eventMetadata.eventId`` holds that same key, as in SageMaker).

**Predictions** are stored as blocks (:mod:`analyzer.store.model_quality_blocks`): each
capture chunk's predictions of one hour as one row of columns in ``mq_blocks`` (a quiet
endpoint's small chunks appended to their hour's last block while it is small), with a
narrow ``mq_claims`` row (a bit per prediction, set when its label is joined). A chunk costs
a few rows, never a row or an index entry per prediction. Within a chunk a repeated key
keeps its first row. There is no index on the keys: a prediction whose key was stored by
an earlier chunk is stored again, and only the first stored one (lowest block id) can be
joined; the later one stays an unlabelled prediction.

**Labels** are rows of ``mq_labels`` (key, label, arrival time, and the batch and position
of the label in ``mq_label_batches``: one row per ``add_labels`` call, whose bits say which
of its labels are joined). ``INSERT`` of the keys not stored yet: the first label for a key
stands, a repeat is counted and not applied. A new label finds its prediction through sorted
runs of the blocks' key hashes read a page at a time (:mod:`analyzer.store.model_quality_runs`,
built and merged a bounded step per chunk) and a scan of the few blocks not in a run yet,
each hit confirmed by the full key. A chunk whose keys include
waiting labels (looked up only while a label waits) claims them
(:mod:`analyzer.store.model_quality_claims`): a join sets a bit on each side, in narrow
rows ordered by arrival, never a row found by its key.

Either may arrive first. The caller runs each batch inside the store's one write
transaction together with whatever marks the batch as read (a capture file's offset, a
ground-truth file's offset), so a ``kill -9`` loses or doubles nothing. The label counts of
``/monitor/status`` come from totals kept in ``mq_totals``, the waiting labels' partial
index and the blocks' ``unclaimed`` counts (:mod:`analyzer.store.model_quality_window`).

A window is keyed by *inference* time. When a label joins a prediction, that window's
version is bumped in ``mq_dirty``; the evaluation reads :func:`dirty_windows`, evaluates,
and :func:`mark_evaluated` clears a window only if no label landed in it meanwhile.

:class:`ModelQualityStore` is the same on a running :class:`~analyzer.store.database.Store`
(reads on the reader pool, writes on the writer thread); the module functions run inside a
caller's transaction.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import orjson
from sqlite_utils import Database

from analyzer.monitors.model_quality.predictions import (
    Extracted,
    PredictionColumns,
    PredictionRow,
)
from analyzer.store import model_quality_claims as claims
from analyzer.store import model_quality_runs as runs
from analyzer.store.database import Store, add_counters
from analyzer.store.model_quality_blocks import (
    BLOCK_COLUMNS,
    Block,
    ChunkBlocks,
    bits,
    block_columns,
    chunk_blocks,
    encode_block,
    insert_block,
    keys_of,
    pack,
    update_block,
)
from analyzer.store.model_quality_claims import add_totals, claim_waiting, mark_windows
from analyzer.store.model_quality_runs import DEFAULT_SIZES, RunSizes
from analyzer.store.model_quality_window import (
    CHANGES,
    LABELS,
    UNCLAIMED,
    WAITING,
    LabelCounts,
    WindowPairs,
    join_changes,
    label_counts,
    predictions_between,
    read_totals,
    window_pairs,
)

__all__ = [
    "DirtyWindow",
    "LabelCounts",
    "ModelQualityStore",
    "PredictionRow",
    "RunSizes",
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
    "read_totals",
    "recount_totals",
    "store_predictions",
    "window_pairs",
]


def create_tables(db: Database | sqlite3.Connection) -> None:
    """The join's tables and indexes (idempotent; the store's migration m008 runs it)."""
    conn = _conn(db)
    conn.execute(f"CREATE TABLE IF NOT EXISTS mq_blocks ({BLOCK_COLUMNS})")
    conn.execute("CREATE INDEX IF NOT EXISTS mq_blocks_bucket ON mq_blocks (bucket)")
    conn.execute("CREATE INDEX IF NOT EXISTS mq_blocks_t_max ON mq_blocks (t_max)")  # prune
    # what a join changes, narrow (a join never rewrites a block's wide row); the index sums
    # the unclaimed predictions within the label wait (its entries: blocks with some)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS mq_claims (block INTEGER PRIMARY KEY, t_min REAL NOT NULL,"
        " unclaimed INTEGER NOT NULL, claimed BLOB NOT NULL)"
    )
    conn.execute(
        "CREATE INDEX IF NOT EXISTS mq_claims_wait ON mq_claims (t_min, unclaimed)"
        " WHERE unclaimed > 0"
    )
    conn.execute(
        "CREATE TABLE IF NOT EXISTS mq_labels (key TEXT PRIMARY KEY, label TEXT NOT NULL,"
        " received_at REAL NOT NULL, batch INTEGER NOT NULL, pos INTEGER NOT NULL)"
        " WITHOUT ROWID"
    )
    # the labels of one add_labels call: which are joined (a bit each), how many wait; the
    # index sums the waiting ones within the label wait (its entries: batches with some).
    # AUTOINCREMENT: retention deletes a batch whose joined labels stay (their prediction
    # is kept), still naming it by (batch, pos): its id must never name another batch
    conn.execute(
        "CREATE TABLE IF NOT EXISTS mq_label_batches (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " received_at REAL NOT NULL, n INTEGER NOT NULL, waiting INTEGER NOT NULL,"
        " joined BLOB NOT NULL)"
    )
    # a batch's keys, in its order (JSON), for retention alone: apart from the row whose
    # bits every join rewrites (an UPDATE reads and compares a row's whole record, so a
    # batch of 10,000 keys in it made each join of one of its labels read 390 KB)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS mq_label_keys (batch INTEGER PRIMARY KEY, keys BLOB NOT NULL)"
    )
    conn.execute(
        "CREATE INDEX IF NOT EXISTS mq_label_batches_wait ON mq_label_batches"
        " (received_at, waiting) WHERE waiting > 0"
    )
    # retention finds the batches received before its cutoff by range, not by a scan (one
    # row a POST: a label a request makes many)
    conn.execute(
        "CREATE INDEX IF NOT EXISTS mq_label_batches_received ON mq_label_batches (received_at)"
    )
    conn.execute(
        "CREATE TABLE IF NOT EXISTS mq_dirty (window_start INTEGER PRIMARY KEY,"
        " version INTEGER NOT NULL)"
    )
    # totals kept as rows change, so that counting never scans a table
    conn.execute(
        "CREATE TABLE IF NOT EXISTS mq_totals (name TEXT PRIMARY KEY, value INTEGER NOT NULL)"
    )
    runs.create_tables(conn)  # the blocks' hashes in sorted runs (m010)


# a block holding fewer predictions, and fewer bytes of them, takes the next chunk's of its
# hour (see _store_block): an append rewrites the block, so the bytes bound what a
# prediction can cost in rewrites (at most SMALL_BLOCK_BYTES / 2 on average)
SMALL_BLOCK = 1000
SMALL_BLOCK_BYTES = 64 * 1024


def _conn(db: Database | sqlite3.Connection) -> sqlite3.Connection:
    return db.conn if isinstance(db, Database) else db


class _Last(NamedTuple):
    """The last block stored: its id, hour, predictions and their bytes (``_state``)."""

    id: int
    bucket: int
    n: int
    size: int


def _state(conn: sqlite3.Connection) -> tuple[bool, int, _Last | None]:
    """Whether a label waits, the runs' ``merged_upto`` and the last block, in one statement
    (beside the busy ingest thread the writer can wait for the GIL after each)."""
    row = conn.execute(
        "SELECT (SELECT value FROM mq_totals WHERE name = ?),"
        " (SELECT coalesce(max(last_block), 0) FROM mq_runs), b.* FROM (SELECT 1)"
        " LEFT JOIN (SELECT id, bucket, n, length(keys) + length(rows) + length(event_ids)"
        " + length(inference_ids) + length(predictions) FROM mq_blocks ORDER BY id DESC"
        " LIMIT 1) b ON 1",
        [WAITING],
    ).fetchone()
    last = None if row[2] is None else _Last(*map(int, row[2:]))
    return row[0] is not None and row[0] > 0, int(row[1]), last


def _store_block(
    conn: sqlite3.Connection, bucket: int, rows: PredictionColumns, encoded: Block,
    claim: bool, window_s: int, upto: int, last: _Last | None,
) -> tuple[int, int]:  # fmt: skip
    """Store one hour's rows of a chunk as a block (and its claims row); with ``claim``, join
    them to the waiting labels of their keys. ``encoded``: the rows' block; ``upto``: the
    runs' ``merged_upto``; ``last``: the last block stored, to append to (None: insert).
    Returns how many it joined, and the block's id.

    A quiet endpoint's chunks are a few records each: a block of one would make the labels'
    scan step through tens of thousands of rows. So while the last block stored is of the
    same hour and holds fewer than :data:`SMALL_BLOCK` predictions and
    :data:`SMALL_BLOCK_BYTES` of them, and is in no run of hashes, the rows are appended to
    it (its row rewritten, its claims kept): it stays the last block, so the order in which
    predictions were stored (which one of a key is first) does not change."""
    if (last is not None and last.bucket == bucket and last.n < SMALL_BLOCK
            and last.size < SMALL_BLOCK_BYTES
            and last.id > upto):  # fmt: skip
        # (a block in a run is never rewritten: retention can leave one last)
        block_id = last.id
        (claims,) = conn.execute(
            "SELECT claimed FROM mq_claims WHERE block = ?", [block_id]
        ).fetchone()  # written with its block, always
        held = bits(claims, last.n)
        stored = block_columns(conn, block_id)
        stored.extend(rows)
        block = encode_block(bucket, stored)
        update_block(conn, block_id, block)
    else:
        held = np.zeros(0, dtype=bool)
        block = encoded
        block_id = insert_block(conn, block, upto)
    keys = block.keys[held.size :]
    fresh = claim_waiting(conn, block_id, keys) if claim else np.zeros(len(keys), dtype=bool)
    count = int(fresh.sum())
    if count:
        mark_windows(conn, block.times[held.size :][fresh].tolist(), window_s)
    claimed = np.concatenate([held, fresh])
    n = len(block.keys)
    conn.execute(
        "INSERT OR REPLACE INTO mq_claims VALUES (?, ?, ?, ?)",
        [block_id, block.values[2], n - int(claimed.sum()), pack(claimed)],
    )
    return count, block_id


def add_predictions(
    db: Database | sqlite3.Connection,
    rows: Sequence[PredictionRow] | PredictionColumns | ChunkBlocks,
    window_s: int,
    *,
    run_sizes: RunSizes = DEFAULT_SIZES,
) -> int:
    """Store captured predictions, as rows, as their columns or as their blocks already
    encoded (:func:`chunk_blocks`, by the ingest thread), inside the caller's transaction,
    as one block per hour; returns how many were stored (a chunk's repeats of a key left
    out).

    Only while a label waits (a kept total) are the chunk's keys looked up among the
    waiting labels: those join and mark their windows. Then at most one run of the level-0
    blocks' hashes is built and one merge made (``run_sizes``).
    """
    conn = _conn(db)
    if not isinstance(rows, ChunkBlocks):
        rows = chunk_blocks(rows)
    n = rows.n
    if not n:
        return 0
    claim, upto, last = _state(conn)
    joined = block_id = 0
    for bucket, part, block in rows.parts:
        count, block_id = _store_block(conn, bucket, part, block, claim, window_s, upto, last)
        joined += count
        last = None  # the chunk's next hour: another hour than this block's, never appended
    add_totals(conn, {UNCLAIMED: n - joined, WAITING: -joined, CHANGES: n})
    runs.maintain(conn, run_sizes, upto=upto, last=block_id)  # the last block stored
    return n


def store_predictions(
    db: Database,
    extracted: Extracted,
    window_s: int,
    counters: dict[str, int] | None = None,
    blocks: ChunkBlocks | None = None,
) -> int:
    """Add a capture chunk's predictions and count them and the records left out (inside the
    chunk's transaction); returns how many were stored. Counters:
    ``model_quality:predictions``, ``model_quality:skipped:{reason}``,
    ``model_quality:rows_too_large``: added to ``counters`` when given (the chunk's other
    counters, written by the caller in one statement), else written here. ``blocks``: the
    extraction's columns already encoded (:func:`chunk_blocks`), else they are here."""
    new = 0
    if extracted.columns:
        new = add_predictions(db, extracted.columns if blocks is None else blocks, window_s)
    deltas = {"model_quality:predictions": new, "model_quality:rows_too_large":
              extracted.rows_too_large}  # fmt: skip
    deltas.update({f"model_quality:skipped:{r}": n for r, n in extracted.skipped.items()})
    if counters is None:
        add_counters(db, deltas)
    else:
        for name, delta in deltas.items():
            counters[name] = counters.get(name, 0) + delta
    return new


def add_labels(
    db: Database | sqlite3.Connection,
    rows: Iterable[tuple[str, str]],
    received_at: float,
    window_s: int,
) -> tuple[int, int]:
    """Store ``(key, label)`` pairs; returns ``(new, duplicates)``.

    The first label for a key stands; a later one for the same key is a duplicate and is
    counted, not applied. A new label joins the first stored prediction of its key (the runs
    of the blocks' hashes, then level 0) and marks its window; without one it waits.
    """
    return claims.add_labels(_conn(db), rows, received_at, window_s)


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


def prune(db: Database | sqlite3.Connection, before: float) -> tuple[int, int]:
    """Retention, a block at a time: forget the blocks whose every prediction was inferred
    before ``before`` (with the labels joined to them) and the waiting labels received
    before it, and the runs of hashes left without a block; returns ``(predictions,
    labels)`` removed."""
    conn = _conn(db)
    old = conn.execute(
        "SELECT b.id, b.n, c.unclaimed, c.claimed FROM mq_blocks b JOIN mq_claims c"
        " ON c.block = b.id WHERE b.t_max < ?",
        [before],
    ).fetchall()
    joined: list[str] = []
    for block, n, unclaimed, claimed in old:
        if unclaimed < n:  # the keys of its claimed predictions: their labels go with it
            keys = conn.execute("SELECT keys FROM mq_blocks WHERE id = ?", [block]).fetchone()
            joined.extend(np.array(keys_of(keys[0]), dtype=object)[bits(claimed, n)].tolist())
    labels = conn.execute(
        "DELETE FROM mq_labels WHERE key IN (SELECT value FROM json_each(?))",
        [orjson.dumps(joined).decode()],
    ).rowcount
    ids = orjson.dumps([row[0] for row in old]).decode()
    conn.execute("DELETE FROM mq_claims WHERE block IN (SELECT value FROM json_each(?))", [ids])
    conn.execute("DELETE FROM mq_blocks WHERE id IN (SELECT value FROM json_each(?))", [ids])
    if old:
        runs.prune_runs(conn)
    # batches received before: their waiting labels go, and the batch (a label whose batch
    # is gone counts as joined: it is, or it is gone too)
    lone = 0
    for batch, n, joined_blob, keys_blob in conn.execute(
        "SELECT b.id, b.n, b.joined, k.keys FROM mq_label_batches b"
        " JOIN mq_label_keys k ON k.batch = b.id WHERE b.received_at < ?",
        [before],
    ).fetchall():
        waiting = np.array(orjson.loads(keys_blob), dtype=object)[~bits(joined_blob, n)]
        lone += conn.execute(
            "DELETE FROM mq_labels WHERE key IN (SELECT value FROM json_each(?)) AND batch = ?",
            [orjson.dumps(waiting.tolist()).decode(), batch],
        ).rowcount
        conn.execute("DELETE FROM mq_label_batches WHERE id = ?", [batch])
        conn.execute("DELETE FROM mq_label_keys WHERE batch = ?", [batch])
    conn.execute("DELETE FROM mq_dirty WHERE window_start < ?", [math.floor(before) - 90 * 86400])
    predictions = sum(row[1] for row in old)
    add_totals(
        conn,
        {
            LABELS: -(labels + lone),
            WAITING: -lone,
            UNCLAIMED: -sum(row[2] for row in old),
            CHANGES: predictions + labels + lone,
        },
    )
    return predictions, labels + lone


def recount_totals(db: Database | sqlite3.Connection) -> None:
    """Count the totals afresh from the tables (migration m008; ``changes`` is kept)."""
    conn = _conn(db)
    conn.execute("DELETE FROM mq_totals WHERE name NOT IN (?)", [CHANGES])
    conn.execute(
        "INSERT INTO mq_totals SELECT ?, count(*) FROM mq_labels"
        " UNION ALL SELECT ?, coalesce(sum(waiting), 0) FROM mq_label_batches"
        " UNION ALL SELECT ?, coalesce(sum(unclaimed), 0) FROM mq_claims",
        [LABELS, WAITING, UNCLAIMED],
    )


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
