"""Migration m007: a database made by m006 (predictions keyed by a text primary key, rows in
it) keeps every row and every count, and joins and de-duplicates as before afterwards."""

from __future__ import annotations

from pathlib import Path

from sqlite_utils import Database

from analyzer.monitors.model_quality.predictions import PredictionRow
from analyzer.store.database import MIGRATIONS, Store
from analyzer.store.model_quality import (
    LabelCounts,
    add_labels,
    add_predictions,
    dirty_windows,
    label_counts,
    mark_evaluated,
    window_pairs,
)

WINDOW = 3600
# mq_predictions as m003 created it (until m007)
M006_PREDICTIONS = (
    "CREATE TABLE mq_predictions (key TEXT PRIMARY KEY, event_id TEXT, inference_id TEXT,"
    " inference_time REAL NOT NULL, prediction TEXT, probability REAL, row BLOB)"
)


def prediction(key: str, t: float, yhat: str = "1") -> PredictionRow:
    return (key, key, None, t, yhat, 0.75, b'{"x":1}')


def m006_database(path: Path) -> None:
    """Every migration before m007, the predictions' table as m006 left it, and rows in it
    stored the way m006's code stored them (``INSERT OR IGNORE`` on the key)."""
    db = Database(path)
    db.execute("PRAGMA journal_mode=WAL")
    MIGRATIONS.apply(db, stop_before="m007_model_quality_no_key_index")
    db.execute("DROP TABLE mq_predictions")
    db.execute(M006_PREDICTIONS)
    db.execute("CREATE INDEX mq_predictions_time ON mq_predictions (inference_time)")
    with db.conn:
        add_labels(db, [("a", "1"), ("lone", "0")], received_at=5.0, window_s=WINDOW)
        add_predictions(db, [prediction(k, t) for k, t in [("a", 10), ("b", 20), ("c", 30)]],
                        WINDOW)  # fmt: skip
        add_predictions(db, [prediction("b", 99.0, "0")], WINDOW)  # a repeat, ignored
        mark_evaluated(db, dirty_windows(db.conn))
    assert db.execute("SELECT count(*) FROM mq_predictions").fetchone()[0] == 3
    db.close()


def test_m007_keeps_the_rows_of_an_m006_database_and_the_join_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    m006_database(path)
    before = Database(path).execute("SELECT * FROM mq_predictions ORDER BY rowid").fetchall()
    store = Store(path)
    store.start()
    try:
        applied = {m.name for m in MIGRATIONS.applied(Database(path))}
        assert "m007_model_quality_no_key_index" in applied
        schema = store.read(
            lambda c: c.execute("SELECT sql FROM sqlite_master WHERE name = 'mq_predictions'")
        ).fetchone()[0]
        assert "PRIMARY KEY" not in schema.upper()
        after = store.read(
            lambda c: c.execute("SELECT * FROM mq_predictions ORDER BY rowid").fetchall()
        )
        assert after == before  # every row, in its order
        assert store.read(lambda c: label_counts(c, 40.0, 0.0)) == LabelCounts(
            matched=1, unmatched=1, pending=0, awaiting=0, unlabeled=2
        )

        def more(db: Database) -> tuple[int, tuple[int, int]]:
            # rows stored before m007 are still recognised: a repeat is not stored again
            added = add_predictions(db, [prediction(k, 50.0) for k in ("a", "b", "d")], WINDOW)
            return added, add_labels(db, [("b", "0"), ("a", "0")], 60.0, WINDOW)

        assert store.write(more) == (1, (1, 1))  # d new; b's label new, a's a repeat
        assert store.read(lambda c: label_counts(c, 70.0, 0.0)) == LabelCounts(
            matched=2, unmatched=1, pending=0, awaiting=0, unlabeled=2
        )
        pairs = store.read(lambda c: window_pairs(c, 0, WINDOW))
        assert (pairs.labels, pairs.predictions) == (["1", "0"], ["1", "1"])  # b's first row
        assert [w.start for w in store.read(dirty_windows)] == [0]
    finally:
        store.close()
