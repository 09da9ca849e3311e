"""Migration m008: a database whose join kept a row per prediction (as m006 or m007 left
it) keeps every prediction, label, pair and count as blocks, and the join goes on."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlite_utils import Database

import analyzer.store.model_quality_migrations as migrations
from analyzer.monitors.model_quality.predictions import PredictionRow
from analyzer.store.database import MIGRATIONS, Store
from analyzer.store.model_quality import (
    LabelCounts,
    add_labels,
    add_predictions,
    dirty_windows,
    label_counts,
    window_pairs,
)
from analyzer.store.model_quality_blocks import stored_predictions

WINDOW = 3600
# as the row-per-prediction code stored them: a joined (its label stored), b, c, d alone
ROWS: list[PredictionRow] = [
    ("a", "a", None, 10.0, "1", 0.75, b'{"x":1}'),
    ("b", "b", "", 20.0, "1", None, None),
    ("c", "c", "c-id", 30.0, "0", 0.25, b"{}"),
    ("d", "d", None, 7300.0, "1", 0.5, b'{"x":2}'),
]


def old_database(path: Path, stop_before: str) -> None:
    """Every migration before ``stop_before``, and rows stored with the invariants of the
    code of then: a key stored once, listed alone while its other half is not stored."""
    db = Database(path)
    db.execute("PRAGMA journal_mode=WAL")
    MIGRATIONS.apply(db, stop_before=stop_before)
    with db.conn:
        db.conn.executemany("INSERT INTO mq_predictions VALUES (?, ?, ?, ?, ?, ?, ?)", ROWS)
        db.conn.executemany(
            "INSERT INTO mq_labels VALUES (?, ?, ?)", [("a", "1", 5.0), ("lone", "0", 5.0)]
        )
        db.conn.executemany(
            "INSERT INTO mq_predictions_alone VALUES (?, ?)", [(r[0], r[3]) for r in ROWS[1:]]
        )
        db.execute("INSERT INTO mq_labels_alone VALUES ('lone', 5.0)")
        db.conn.executemany(
            "INSERT OR REPLACE INTO mq_totals VALUES (?, ?)",
            [("labels", 2), ("predictions_alone", 3), ("labels_alone", 1), ("changes", 6)],
        )
    db.close()


@pytest.mark.parametrize(
    ("stop_before", "block_rows"),
    [
        ("m007_model_quality_no_key_index", 10_000),  # the key still a primary key
        ("m008_model_quality_blocks", 10_000),
        ("m008_model_quality_blocks", 2),  # an hour's rows over several blocks
    ],
)
def test_m008_keeps_rows_pairs_and_counts_and_the_join_goes_on(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    stop_before: str,
    block_rows: int,
) -> None:
    monkeypatch.setattr(migrations, "BLOCK_ROWS", block_rows)
    path = tmp_path / "m.db"
    old_database(path, stop_before)
    store = Store(path)
    with caplog.at_level(logging.INFO, logger="modelmon.analyzer.store"):
        store.start()
    said = [r.getMessage() for r in caplog.records if r.name == "modelmon.analyzer.store"]
    assert said[0].startswith(f"analyzer.db: converting {len(ROWS)} stored predictions to blocks")
    assert said[1].startswith(f"analyzer.db: {len(ROWS)} predictions converted to blocks in ")
    try:
        assert "m008_model_quality_blocks" in {m.name for m in MIGRATIONS.applied(Database(path))}
        tables = store.read(
            lambda c: {name for (name,) in c.execute("SELECT name FROM sqlite_master")}
        )
        assert not {"mq_predictions", "mq_predictions_alone", "mq_labels_alone"} & tables
        assert store.read(stored_predictions) == ROWS  # every row, byte for byte
        blocks = store.read(lambda c: c.execute("SELECT count(*) FROM mq_blocks").fetchone()[0])
        assert blocks == (2 if block_rows > 2 else 3)  # by hour, at most block_rows each
        # d, in the next hour, is still within the wait
        assert store.read(lambda c: label_counts(c, 40.0, 0.0)) == LabelCounts(
            matched=1, unmatched=1, pending=0, awaiting=1, unlabeled=2
        )
        assert store.read(lambda c: label_counts(c, 40.0, 35.0)) == LabelCounts(
            matched=1, unmatched=0, pending=1, awaiting=3, unlabeled=0
        )
        pairs = store.read(lambda c: window_pairs(c, 0, WINDOW))
        assert (pairs.labels, pairs.predictions) == (["1"], ["1"])

        def more(db: Database) -> tuple[int, tuple[int, int]]:
            added = add_predictions(db, [(k, k, None, 50.0, "0", None, None) for k in "abe"],
                                    WINDOW)  # fmt: skip
            return added, add_labels(db, [("b", "0"), ("a", "0")], 60.0, WINDOW)

        # a and b stored again (unlabelled); b's new label joins its converted row
        assert store.write(more) == (3, (1, 1))
        pairs = store.read(lambda c: window_pairs(c, 0, WINDOW))
        assert (pairs.labels, pairs.predictions) == (["1", "0"], ["1", "1"])
        assert [w.start for w in store.read(dirty_windows)] == [0]
        assert store.read(lambda c: label_counts(c, 70.0, 0.0)) == LabelCounts(
            matched=2, unmatched=1, pending=0, awaiting=1, unlabeled=4
        )
    finally:
        store.close()
