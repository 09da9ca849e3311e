"""Migration m008: the waiting labels' index by arrival time becomes counts by arrival time
(``mq_labels_alone_times``); a database made before it keeps its counts, and the counts
follow the joins and the retention afterwards."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlite_utils import Database

from analyzer.monitors.model_quality.predictions import PredictionRow
from analyzer.store.database import MIGRATIONS, Store
from analyzer.store.model_quality import (
    LabelCounts,
    add_labels,
    add_predictions,
    label_counts,
    prune,
)

WINDOW = 3600


def prediction(key: str, t: float) -> PredictionRow:
    return (key, key, None, t, "1", 0.75, None)


def m007_database(path: Path) -> None:
    """Every migration before m008, the waiting labels indexed by arrival time as m003
    made them, labels waiting from three arrivals."""
    db = Database(path)
    db.execute("PRAGMA journal_mode=WAL")
    MIGRATIONS.apply(db, stop_before="m008_model_quality_labels_alone_times")
    with db.conn:
        for at, keys in ((10.0, "abc"), (20.0, "de"), (30.0, "f")):
            add_labels(db, [(k, "1") for k in keys], received_at=at, window_s=WINDOW)
    db.execute("DROP TABLE mq_labels_alone_times")  # as m007 left it: an index instead
    db.execute("CREATE INDEX mq_labels_alone_time ON mq_labels_alone (received_at)")
    db.close()


def test_m008_counts_the_waiting_labels_and_the_counts_follow_the_join(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    m007_database(path)
    store = Store(path)
    store.start()
    try:
        indexes = store.read(
            lambda c: c.execute(
                "SELECT name FROM sqlite_master WHERE tbl_name = 'mq_labels_alone'"
                " AND type = 'index' AND sql IS NOT NULL"
            ).fetchall()
        )
        assert indexes == []
        times = store.read(
            lambda c: c.execute("SELECT * FROM mq_labels_alone_times ORDER BY 1").fetchall()
        )
        assert times == [(10.0, 3), (20.0, 2), (30.0, 1)]
        # at 40 with a wait of 25: the labels of 20 and 30 are pending, those of 10 unmatched
        assert store.read(lambda c: label_counts(c, 40.0, 25.0)) == LabelCounts(
            matched=0, unmatched=3, pending=3, awaiting=0, unlabeled=0
        )
        joined = store.write(
            lambda db: add_predictions(db, [prediction(k, 35.0) for k in "adx"], WINDOW)
        )
        assert joined == 3
        assert store.read(lambda c: label_counts(c, 40.0, 25.0)) == LabelCounts(
            matched=2, unmatched=2, pending=2, awaiting=1, unlabeled=0
        )
        # retention: the lone labels that arrived before 15 go (b and c), the others stay
        assert store.write(lambda db: prune(db, before=15.0)) == (0, 2)
        assert store.read(lambda c: label_counts(c, 40.0, 25.0)) == LabelCounts(
            matched=2, unmatched=0, pending=2, awaiting=1, unlabeled=0
        )
        times = store.read(
            lambda c: c.execute("SELECT * FROM mq_labels_alone_times ORDER BY 1").fetchall()
        )
        assert times == [(20.0, 1), (30.0, 1)]
    finally:
        store.close()


def test_the_counts_of_joined_batches_go_with_the_retention(tmp_path: Path) -> None:
    """A batch of labels all joined leaves a count of 0; retention removes it with the
    rest before its cutoff, so the counts hold only the arrival moments it keeps."""
    store = Store(tmp_path / "m.db")
    store.start()
    try:
        for step in range(200):  # labels first, each batch joined by its predictions
            at = float(step)
            store.write(lambda db, at=at: add_labels(db, [(f"k{at}", "1")], at, WINDOW))
            store.write(lambda db, at=at: add_predictions(db, [prediction(f"k{at}", at)], WINDOW))
        store.write(lambda db: add_labels(db, [("lone", "0")], 150.5, WINDOW))
        assert store.write(lambda db: prune(db, before=100.0)) == (100, 100)
        rows = store.read(
            lambda c: c.execute("SELECT min(received_at), count(*) FROM mq_labels_alone_times")
        ).fetchone()
        assert rows == (100.0, 101)  # before: all 201 stayed, 200 of them at 0
        assert store.read(lambda c: label_counts(c, 200.0, 100.0)) == LabelCounts(
            matched=100, unmatched=0, pending=1, awaiting=0, unlabeled=0
        )
    finally:
        store.close()


def test_the_counts_are_read_in_one_snapshot(tmp_path: Path) -> None:
    """Labels committed by another connection between two of the counts' reads (injected
    with SQLite's statement trace) are seen by none of them: no negative count."""
    store = Store(tmp_path / "m.db")
    store.start()
    try:
        store.write(lambda db: add_labels(db, [("old", "1")], 0.0, WINDOW))
        reader = sqlite3.connect(tmp_path / "m.db")
        injected: list[str] = []

        def between(sql: str) -> None:
            if "mq_labels_alone_times" in sql and not injected:
                injected.append(sql)
                store.write(
                    lambda db: add_labels(db, [(f"new{i}", "1") for i in range(5)], 100.0, WINDOW)
                )

        reader.set_trace_callback(between)
        try:
            seen = label_counts(reader, now=100.0, label_delay_s=50.0)
        finally:
            reader.set_trace_callback(None)
        assert injected  # the write went in between two reads
        assert seen == LabelCounts(matched=0, unmatched=1, pending=0, awaiting=0, unlabeled=0)
        after = label_counts(reader, now=100.0, label_delay_s=50.0)
        assert after == LabelCounts(matched=0, unmatched=1, pending=5, awaiting=0, unlabeled=0)
        reader.close()
    finally:
        store.close()
