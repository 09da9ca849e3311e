"""The join's migrations (run by :mod:`analyzer.store.database`'s m003, m004, m007, m008
and m009): the tables of :mod:`analyzer.store.model_quality` as each version made them, and
what changed, applied to a database made before.

Until m008 the join kept a row per prediction (``mq_predictions``) and the halves waiting
for the other in ``mq_predictions_alone`` / ``mq_labels_alone``; m008 turns those into
blocks (:mod:`analyzer.store.model_quality_blocks`) and label batches. The
functions for the versions before m008 are frozen here as they were, so that a database of
any version goes through the same steps. m008 makes the current tables (``create_tables``,
``add_label_batch``): a database it converts today has the label batches' keys apart
already, and m009 (which moves them for a database m008 converted before) leaves it as is.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any

import numpy as np
import orjson
from sqlite_utils import Database

from analyzer.monitors.model_quality.predictions import PredictionRow
from analyzer.store.model_quality import create_tables, recount_totals
from analyzer.store.model_quality_blocks import HOUR_S, encode_block, insert_block, pack
from analyzer.store.model_quality_claims import add_label_batch

log = logging.getLogger("modelmon.analyzer.store")

__all__ = [
    "create_tables_v1",
    "drop_key_index",
    "label_keys_apart",
    "recount_totals_v1",
    "to_blocks",
]

# mq_predictions as m007 left it (m003 had ``key TEXT PRIMARY KEY``)
PREDICTION_COLUMNS_V1 = (
    "key TEXT NOT NULL, event_id TEXT, inference_id TEXT, inference_time REAL NOT NULL,"
    " prediction TEXT, probability REAL, row BLOB"
)
BLOCK_ROWS = 10_000  # predictions per block made by m008


def create_tables_v1(db: Database) -> None:
    """The join's tables as migration m003 created them (a row per prediction)."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS mq_predictions (key TEXT PRIMARY KEY, event_id TEXT,"
        " inference_id TEXT, inference_time REAL NOT NULL, prediction TEXT,"
        " probability REAL, row BLOB)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS mq_predictions_time ON mq_predictions (inference_time)")
    db.execute(
        "CREATE TABLE IF NOT EXISTS mq_labels (key TEXT PRIMARY KEY, label TEXT NOT NULL,"
        " received_at REAL NOT NULL) WITHOUT ROWID"
    )
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
    db.execute(
        "CREATE TABLE IF NOT EXISTS mq_totals (name TEXT PRIMARY KEY, value INTEGER NOT NULL)"
    )


def recount_totals_v1(db: Database) -> None:
    """Count the (m003) totals afresh (one scan; migration m004, for a database whose join
    tables were filled before the totals were kept)."""
    create_tables_v1(db)
    db.execute(
        "INSERT OR REPLACE INTO mq_totals SELECT 'labels', count(*) FROM mq_labels"
        " UNION ALL SELECT 'predictions_alone', count(*) FROM mq_predictions_alone"
        " UNION ALL SELECT 'labels_alone', count(*) FROM mq_labels_alone"
    )


def drop_key_index(db: Database) -> bool:
    """Rebuild ``mq_predictions`` without its key index (migration m007), the rows kept in
    their order; False when it has none (created so)."""
    found = db.execute("SELECT sql FROM sqlite_master WHERE name = 'mq_predictions'").fetchone()
    if found is None or "PRIMARY KEY" not in found[0].upper():
        return False
    db.execute(f"CREATE TABLE mq_predictions_m007 ({PREDICTION_COLUMNS_V1})")
    db.execute("INSERT INTO mq_predictions_m007 SELECT * FROM mq_predictions ORDER BY rowid")
    db.execute("DROP TABLE mq_predictions")
    db.execute("ALTER TABLE mq_predictions_m007 RENAME TO mq_predictions")
    db.execute("CREATE INDEX mq_predictions_time ON mq_predictions (inference_time)")
    return True


def _add_block(conn: sqlite3.Connection, bucket: int, rows: Sequence[PredictionRow]) -> None:
    """One block of converted rows (one key each), its claimed bits set where the key's
    label is stored (then it was joined)."""
    block = encode_block(bucket, rows)
    block_id = insert_block(conn, block)
    joined = {
        key
        for (key,) in conn.execute(
            "SELECT key FROM mq_labels WHERE key IN (SELECT value FROM json_each(?))",
            [orjson.dumps(block.keys).decode()],
        )
    }
    claimed = np.array([key in joined for key in block.keys], dtype=bool)
    conn.execute(
        "INSERT INTO mq_claims VALUES (?, ?, ?, ?)",
        [block_id, block.values[2], len(rows) - len(joined), pack(claimed)],
    )


def _add_batch(conn: sqlite3.Connection, rows: Sequence[tuple[str, str, float, int]]) -> None:
    """One batch of converted labels of one arrival time: ``(key, label, received_at,
    joined)``."""
    joined = np.array([row[3] for row in rows], dtype=bool)
    batch = add_label_batch(conn, rows[0][2], [row[0] for row in rows], joined)
    conn.executemany(
        "INSERT INTO mq_labels VALUES (?, ?, ?, ?, ?)",
        [(key, label, moment, batch, pos) for pos, (key, label, moment, _) in enumerate(rows)],
    )


def _groups(
    cursor: sqlite3.Cursor, group: Callable[[tuple[Any, ...]], object]
) -> Iterator[list[tuple[Any, ...]]]:
    """The cursor's rows in runs of one ``group`` value, at most :data:`BLOCK_ROWS` each."""
    part: list[tuple[Any, ...]] = []
    while rows := cursor.fetchmany(BLOCK_ROWS):
        for row in rows:
            if part and (group(row) != group(part[0]) or len(part) == BLOCK_ROWS):
                yield part
                part = []
            part.append(tuple(row))
    if part:
        yield part


def to_blocks(db: Database) -> int:
    """Migration m008: every row of ``mq_predictions`` into blocks (by hour, in time order,
    at most :data:`BLOCK_ROWS` each) and every label into a batch (by arrival time), joined
    as before (a stored key had one row, joined iff its label was stored; a label was
    waiting iff listed in ``mq_labels_alone``); the old tables go and the totals are counted
    afresh. Returns the predictions converted."""
    conn = db.conn
    had = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'mq_predictions'").fetchone()
    if had is None:
        create_tables(conn)
        recount_totals(conn)
        return 0
    started = time.monotonic()
    (rows,) = conn.execute("SELECT count(*) FROM mq_predictions").fetchone()
    log.info(
        "analyzer.db: converting %s stored predictions to blocks (migration m008; about"
        " 7 s a million, once)",
        f"{rows:,}",
    )
    conn.execute("ALTER TABLE mq_labels RENAME TO mq_labels_v1")
    create_tables(conn)
    labels = conn.execute(
        "SELECT l.key, l.label, l.received_at, a.key IS NULL FROM mq_labels_v1 l"
        " LEFT JOIN mq_labels_alone a ON a.key = l.key ORDER BY l.received_at, l.key"
    )
    for part in _groups(labels, itemgetter(2)):
        _add_batch(conn, part)
    predictions = conn.execute(
        "SELECT key, event_id, inference_id, inference_time, prediction, probability, row"
        " FROM mq_predictions ORDER BY inference_time, rowid"
    )
    converted = 0
    for part in _groups(predictions, lambda row: math.floor(row[3] / HOUR_S)):
        _add_block(conn, math.floor(part[0][3] / HOUR_S) * HOUR_S, part)
        converted += len(part)
    for table in ("mq_predictions", "mq_predictions_alone", "mq_labels_alone", "mq_labels_v1"):
        conn.execute(f"DROP TABLE {table}")
    recount_totals(conn)
    log.info(
        "analyzer.db: %s predictions converted to blocks in %.1f s (migration m008)",
        f"{converted:,}",
        time.monotonic() - started,
    )
    return converted


def label_keys_apart(db: Database) -> None:
    """Migration m009: the label batches' keys into ``mq_label_keys`` (m008 kept them in
    the batch's row, which every join rewrites); a database m008 converted since has them
    apart already. The batches' table is rebuilt without the column (no ``DROP COLUMN``:
    SQLite 3.35) and keeps its ``AUTOINCREMENT`` sequence: a pruned batch's id is never
    given again (its joined labels still name it)."""
    conn = db.conn
    columns = [row[1] for row in conn.execute("PRAGMA table_info(mq_label_batches)")]
    if "keys" not in columns:
        create_tables(conn)
        return
    started = time.monotonic()
    conn.execute("ALTER TABLE mq_label_batches RENAME TO mq_label_batches_v2")
    for index in ("mq_label_batches_wait", "mq_label_batches_received"):
        conn.execute(f"DROP INDEX IF EXISTS {index}")
    create_tables(conn)
    conn.execute(
        "INSERT INTO mq_label_batches (id, received_at, n, waiting, joined)"
        " SELECT id, received_at, n, waiting, joined FROM mq_label_batches_v2"
    )
    conn.execute("INSERT INTO mq_label_keys SELECT id, keys FROM mq_label_batches_v2")
    # the rename took the sequence's row with it; the new table has one only if rows went in
    (seq,) = conn.execute(
        "SELECT max(seq) FROM sqlite_sequence"
        " WHERE name IN ('mq_label_batches', 'mq_label_batches_v2')"
    ).fetchone()
    conn.execute("DELETE FROM sqlite_sequence WHERE name = 'mq_label_batches'")
    if seq is not None:
        conn.execute("INSERT INTO sqlite_sequence VALUES ('mq_label_batches', ?)", [seq])
    conn.execute("DROP TABLE mq_label_batches_v2")
    log.info(
        "analyzer.db: the label batches' keys moved apart in %.1f s (migration m009)",
        time.monotonic() - started,
    )
