"""Migration m009: the label batches' keys in a table of their own, apart from the bits that
every join rewrites; a database that m008 made (keys in the batch's row) keeps every label,
pair and count, and retention still finds a batch's waiting labels by its keys."""

from __future__ import annotations

from pathlib import Path

import orjson
from sqlite_utils import Database

from analyzer.monitors.model_quality.predictions import PredictionRow
from analyzer.store.database import MIGRATIONS, Store
from analyzer.store.model_quality import (
    LabelCounts,
    add_labels,
    add_predictions,
    label_counts,
    prune,
    window_pairs,
)

WINDOW = 3600


def prediction(key: str, t: float) -> PredictionRow:
    return (key, key, None, t, "1", 0.75, None)


def batch_columns(conn: object) -> list[str]:
    return [row[1] for row in conn.execute("PRAGMA table_info(mq_label_batches)")]  # type: ignore[attr-defined]


def test_a_batch_s_row_holds_its_bits_and_its_keys_are_apart(tmp_path: Path) -> None:
    """A join rewrites its label's batch row: 10,000 keys in that row were read and compared
    at every rewrite. The row has the bits; the keys, in the batch's order, are apart."""
    store = Store(tmp_path / "s.db")
    store.start()
    try:
        keys = [f"k{i:05d}" for i in range(10_000)]
        store.write(lambda db: add_labels(db, [(k, "1") for k in reversed(keys)], 1.0, WINDOW))
        assert store.read(batch_columns) == ["id", "received_at", "n", "waiting", "joined"]
        stored = store.read(lambda c: c.execute("SELECT batch, keys FROM mq_label_keys").fetchall())
        assert [(batch, orjson.loads(blob)) for batch, blob in stored] == [(1, keys)]
        # a prediction joins one of them: the batch's bit, not its keys, changes
        store.write(lambda db: add_predictions(db, [prediction("k00007", 10.0)], WINDOW))
        assert store.read(lambda c: label_counts(c, 20.0, 3600.0)) == LabelCounts(
            matched=1, unmatched=0, pending=9_999, awaiting=0, unlabeled=0
        )
    finally:
        store.close()


# the label batches' table as m008 made it before m009 (d30d2b1), with its indexes
M008_BATCHES = (
    "CREATE TABLE mq_label_batches (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " received_at REAL NOT NULL, n INTEGER NOT NULL, waiting INTEGER NOT NULL,"
    " joined BLOB NOT NULL, keys BLOB NOT NULL)",
    "CREATE INDEX mq_label_batches_wait ON mq_label_batches (received_at, waiting)"
    " WHERE waiting > 0",
    "CREATE INDEX mq_label_batches_received ON mq_label_batches (received_at)",
)


def m008_database(path: Path) -> None:
    """Every migration before m009, a join's rows (the newest batch pruned: the sequence
    must remember its id), then the batches laid out as m008 made them: the keys (JSON, in
    the batch's order) a column of the batch's row."""
    db = Database(path)
    db.execute("PRAGMA journal_mode=WAL")
    MIGRATIONS.apply(db, stop_before="m009_model_quality_label_keys")
    with db.conn:
        add_predictions(db, [prediction(k, 1000.0) for k in "abc"], WINDOW)
        add_labels(db, [("a", "1"), ("x", "0")], 5.0, WINDOW)  # a joins; x waits
        add_labels(db, [("b", "0"), ("y", "1"), ("z", "1")], 500.0, WINDOW)  # b joins
        add_labels(db, [("gone", "1")], 50.0, WINDOW)  # batch 3, pruned below
        db.execute("DELETE FROM mq_labels WHERE key = 'gone'")
        db.execute("DELETE FROM mq_label_batches WHERE id = 3")
        db.execute("DELETE FROM mq_label_keys WHERE batch = 3")
        db.execute("UPDATE mq_totals SET value = value - 1 WHERE name IN ('labels', 'waiting')")
        rows = db.execute(
            "SELECT b.id, b.received_at, b.n, b.waiting, b.joined, k.keys FROM mq_label_batches b"
            " JOIN mq_label_keys k ON k.batch = b.id"
        ).fetchall()
        db.execute("DROP TABLE mq_label_batches")
        db.execute("DROP TABLE mq_label_keys")
        for sql in M008_BATCHES:
            db.execute(sql)
        db.conn.executemany("INSERT INTO mq_label_batches VALUES (?, ?, ?, ?, ?, ?)", rows)
        db.execute("UPDATE sqlite_sequence SET seq = 3 WHERE name = 'mq_label_batches'")
    db.close()


def test_m009_moves_the_keys_and_the_join_and_retention_go_on(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    m008_database(path)
    assert batch_columns(Database(path).conn)[-1] == "keys"
    store = Store(path)
    store.start()
    try:
        assert "m009_model_quality_label_keys" in {
            m.name for m in MIGRATIONS.applied(Database(path))
        }
        assert store.read(batch_columns) == ["id", "received_at", "n", "waiting", "joined"]
        indexes = store.read(
            lambda c: {
                name
                for (name,) in c.execute(
                    "SELECT name FROM sqlite_master WHERE tbl_name = 'mq_label_batches'"
                    " AND type = 'index' AND sql IS NOT NULL"
                )
            }
        )
        assert indexes == {"mq_label_batches_wait", "mq_label_batches_received"}
        moved = store.read(lambda c: c.execute("SELECT batch, keys FROM mq_label_keys").fetchall())
        assert [(batch, orjson.loads(blob)) for batch, blob in moved] == [
            (1, ["a", "x"]),
            (2, ["b", "y", "z"]),
        ]
        assert store.read(lambda c: label_counts(c, 1100.0, 3600.0)) == LabelCounts(
            matched=2, unmatched=0, pending=3, awaiting=1, unlabeled=0
        )
        # the pruned batch's id is not given again (the sequence kept through the rebuild)
        assert store.write(lambda db: add_labels(db, [("w", "1")], 600.0, WINDOW)) == (1, 0)
        ids = store.read(lambda c: c.execute("SELECT id FROM mq_label_batches").fetchall())
        assert [i for (i,) in ids] == [1, 2, 4]
        # the join goes on: y's prediction comes
        store.write(lambda db: add_predictions(db, [prediction("y", 1010.0)], WINDOW))
        pairs = store.read(lambda c: window_pairs(c, 0, WINDOW))
        assert sorted(zip(pairs.labels, pairs.predictions, strict=True)) == [
            ("0", "1"),
            ("1", "1"),
            ("1", "1"),
        ]
        # retention: the first batch goes with x, its waiting label, found by its moved keys
        # (a, joined, stays with its prediction's block)
        assert store.write(lambda db: prune(db, before=100.0)) == (0, 1)
        left = store.read(lambda c: c.execute("SELECT key FROM mq_labels ORDER BY key").fetchall())
        assert [key for (key,) in left] == ["a", "b", "w", "y", "z"]
        kept = store.read(lambda c: c.execute("SELECT batch FROM mq_label_keys").fetchall())
        assert kept == [(2,), (4,)]
    finally:
        store.close()
