"""The prediction–label join on a real SQLite file: either order, exactly once, kill -9."""

from __future__ import annotations

import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlite_utils import Database

import analyzer.store.multi_row as multi_row
from analyzer.monitors.model_quality.predictions import PredictionRow
from analyzer.store.database import Store
from analyzer.store.model_quality import (
    DirtyWindow,
    LabelCounts,
    add_labels,
    add_predictions,
    create_tables,
    dirty_windows,
    join_changes,
    label_counts,
    mark_evaluated,
    prune,
    recount_totals,
    window_pairs,
)
from analyzer.store.model_quality_blocks import stored_predictions

WINDOW = 3600


def open_db(path: Path) -> Database:
    db = Database(path)
    create_tables(db)
    return db


def prediction(key: str, t: float, yhat: str = "1", p: float | None = 0.8) -> PredictionRow:
    return (key, key, None, t, yhat, p, None)


def take_dirty_windows(db: Database) -> list[int]:
    with db.conn:
        windows = dirty_windows(db.conn)
        mark_evaluated(db, windows)
    return [w.start for w in windows]


def test_labels_join_in_either_order_and_count_once(tmp_path: Path) -> None:
    db = open_db(tmp_path / "m.db")
    with db.conn:
        assert add_predictions(db, [prediction("a", 10.0), prediction("b", 20.0)], WINDOW) == 2
        assert add_labels(db, [("b", "0")], received_at=30.0, window_s=WINDOW) == (1, 0)
    assert take_dirty_windows(db) == [0]
    assert take_dirty_windows(db) == []  # taken
    with db.conn:  # the label first, its prediction later (in the next hour's window)
        assert add_labels(db, [("c", "1"), ("b", "1")], received_at=40.0, window_s=WINDOW) == (
            1,
            1,
        )
        assert add_predictions(db, [prediction("c", 3700.0, "0", None)], WINDOW) == 1
        # a key stored by an earlier chunk is stored again (no key index), never joined
        assert add_predictions(db, [prediction("a", 10.0)], WINDOW) == 1
    assert take_dirty_windows(db) == [3600]
    first = window_pairs(db.conn, 0, 3600)
    assert (first.labels, first.predictions) == (["0"], ["1"])  # b's first label stands
    with db.conn:
        add_labels(db, [("a", "1")], received_at=50.0, window_s=WINDOW)
    assert len(window_pairs(db.conn, 0, 3600)) == 2  # a joined once, to its first row
    assert label_counts(db.conn, 60.0, 0.0).unlabeled == 1  # the later a
    second = window_pairs(db.conn, 3600, 7200)
    assert second.labels == ["1"] and second.predictions == ["0"]
    assert str(second.probabilities[0]) == "nan"


def test_label_counts(tmp_path: Path) -> None:
    db = open_db(tmp_path / "m.db")
    with db.conn:
        add_predictions(db, [prediction(k, t) for k, t in [("a", 0), ("b", 0)]], 60)
        # another hour: a block of its own, pruned apart (a chunk of the same hour would
        # have been appended to a, b's small block)
        add_predictions(db, [prediction("c", 3700)], 60)
        add_labels(db, [("a", "1"), ("zz", "0")], received_at=100.0, window_s=60)
        add_labels(db, [("yy", "0")], received_at=950.0, window_s=60)
    counts = label_counts(db.conn, now=1000.0, label_delay_s=500.0)
    assert counts.matched == 1
    assert counts.unmatched == 1 and counts.pending == 1  # zz is late past the wait; yy not
    assert counts.awaiting == 1 and counts.unlabeled == 1  # c can still get one; b will not
    with db.conn:  # a, b's block (and a's label) before 500; zz a lone label received before
        assert prune(db, before=500.0) == (2, 2)
    after = label_counts(db.conn, now=1000.0, label_delay_s=500.0)
    assert after == LabelCounts(matched=0, unmatched=0, pending=1, awaiting=1, unlabeled=0)


def test_a_window_changed_while_evaluated_stays_dirty(tmp_path: Path) -> None:
    db = open_db(tmp_path / "m.db")
    with db.conn:
        add_predictions(db, [prediction("a", 10.0), prediction("b", 20.0)], WINDOW)
        add_labels(db, [("a", "1")], received_at=30.0, window_s=WINDOW)
    seen = dirty_windows(db.conn)
    assert seen == [DirtyWindow(0, 1)]
    with db.conn:  # a late label lands while the window is being evaluated
        add_labels(db, [("b", "0")], received_at=40.0, window_s=WINDOW)
    with db.conn:
        assert mark_evaluated(db, seen) == 0  # the newer change keeps the mark
    assert dirty_windows(db.conn) == [DirtyWindow(0, 2)]
    assert len(window_pairs(db.conn, 0, WINDOW)) == 2


INGEST = textwrap.dedent(
    """
    import sys
    from sqlite_utils import Database
    from analyzer.store.model_quality import add_labels, add_predictions, create_tables
    db = Database(sys.argv[1])
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # as the store runs it
    create_tables(db)
    # the batches done commit with the batch (as a capture file's offset does in the service)
    db.execute("CREATE TABLE IF NOT EXISTS done (batch INTEGER)")
    first = db.execute("SELECT coalesce(max(batch), -1) + 1 FROM done").fetchone()[0]
    for batch in range(40):
        keys = [f"k{batch}-{i}" for i in range(500)]
        with db.conn:
            if batch >= first:
                add_predictions(db, [(k, k, None, batch, "1", None, None) for k in keys], 3600)
                db.execute("INSERT INTO done VALUES (?)", [batch])
            add_labels(db, [(k, "1") for k in keys], 0.0, 3600)  # posted again on a rerun
            add_labels(db, [(k, "0") for k in keys[:10]], 0.0, 3600)  # a repeat post
        if batch == 10:
            print("committed", flush=True)
            sys.stdin.readline()  # parked mid-ingest until killed
    """
)


def test_kill_9_during_ingest_then_rerun_counts_exactly(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.Popen(
        [sys.executable, "-c", INGEST, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"committed\n"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
    db = Database(path)
    assert label_counts(db.conn, now=0.0, label_delay_s=0.0).matched == 11 * 500
    rerun = subprocess.run(
        [sys.executable, "-c", INGEST.replace("batch == 10", "batch == -1"), str(path)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert rerun.returncode == 0
    counts = label_counts(Database(path).conn, now=0.0, label_delay_s=0.0)
    assert counts.matched == 40 * 500 and counts.unmatched == 0 and counts.pending == 0
    assert counts.awaiting == 0 and counts.unlabeled == 0
    pairs = window_pairs(Database(path).conn, 0, 3600)
    assert len(pairs) == 20_000 and set(pairs.labels) == {"1"}  # the repeats never applied


def _first_rows(db: Database) -> tuple[list[PredictionRow], set[int]]:
    """Every stored prediction, and the positions of each key's first (the one a label
    joins)."""
    rows = stored_predictions(db.conn)
    seen: set[str] = set()
    first = set()
    for i, row in enumerate(rows):
        if row[0] not in seen:
            seen.add(row[0])
            first.add(i)
    return rows, first


def brute_counts(db: Database, now: float, delay: float) -> LabelCounts:
    """The same counts from every stored row (what the kept totals spare): a label is joined
    iff its key was stored, to the key's first stored prediction."""
    cutoff = now - delay
    rows, first = _first_rows(db)
    labels = dict(db.execute("SELECT key, received_at FROM mq_labels").fetchall())
    stored = {row[0] for row in rows}
    joined = {i for i in first if rows[i][0] in labels}
    lone = [t for key, t in labels.items() if key not in stored]
    alone = [row[3] for i, row in enumerate(rows) if i not in joined]
    return LabelCounts(
        matched=sum(key in stored for key in labels),
        unmatched=sum(t < cutoff for t in lone),
        pending=sum(t >= cutoff for t in lone),
        awaiting=sum(t >= cutoff for t in alone),
        unlabeled=sum(t < cutoff for t in alone),
    )


def _joined(db: Database) -> dict[str, float]:
    rows, first = _first_rows(db)
    labels = {key for (key,) in db.execute("SELECT key FROM mq_labels").fetchall()}
    return {rows[i][0]: rows[i][3] for i in first if rows[i][0] in labels}


def _stored(db: Database) -> tuple[list[str], frozenset[str]]:
    predictions = sorted(row[0] for row in stored_predictions(db.conn))
    labels = db.execute("SELECT key FROM mq_labels").fetchall()
    return predictions, frozenset(k for (k,) in labels)


@pytest.mark.parametrize("insert_rows", [multi_row.INSERT_ROWS, 3])
def test_kept_counts_equal_a_join_of_the_tables_after_random_traffic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, insert_rows: int
) -> None:
    """Totals, window marks and the change count against the tables themselves (also with
    a batch's rows split over many INSERT statements, repeats across the splits)."""
    monkeypatch.setattr(multi_row, "INSERT_ROWS", insert_rows)
    db = open_db(tmp_path / "m.db")
    rng = random.Random(7)
    keys = [f"k{i}" for i in range(400)]
    for step in range(60):
        now = step * 100.0
        joined, stored, changes = _joined(db), _stored(db), join_changes(db.conn)
        with db.conn:
            action = rng.random()
            picked = rng.sample(keys, rng.randint(1, 40)) * rng.choice([1, 1, 2])  # repeats too
            if action < 0.45:
                add_predictions(db, [prediction(k, now - rng.random() * 500) for k in picked], 300)
            elif action < 0.9:
                add_labels(db, [(k, rng.choice("01")) for k in picked], now, 300)
            else:
                prune(db, before=now - 1500)
        for delay in (0.0, 250.0, 10_000.0):
            assert label_counts(db.conn, now, delay) == brute_counts(db, now, delay), step
        new = [t for key, t in _joined(db).items() if key not in joined]
        assert take_dirty_windows(db) == sorted({math.floor(t / 300) * 300 for t in new}), step
        assert (join_changes(db.conn) != changes) == (_stored(db) != stored), step


def test_a_database_filled_before_the_totals_were_kept_is_counted_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")  # every migration, m004 included
    store.start()
    try:

        def fill(db: Database) -> None:
            add_predictions(db, [prediction("a", 10.0), prediction("b", 20.0)], WINDOW)
            add_labels(db, [("a", "1"), ("lone", "0")], received_at=30.0, window_s=WINDOW)
            db.execute("DELETE FROM mq_totals")  # as m003 left it: rows, no totals

        store.write(fill)
        assert store.read(lambda c: label_counts(c, 40.0, 0.0)).matched == 0  # wrong now
        store.write(recount_totals)
        counts = store.read(lambda c: label_counts(c, 40.0, 0.0))
    finally:
        store.close()
    assert counts == LabelCounts(matched=1, unmatched=1, pending=0, awaiting=0, unlabeled=1)


def test_a_chunk_keeps_the_first_row_of_a_key(tmp_path: Path) -> None:
    """A key repeated in a chunk keeps its first row (time, prediction, input row byte for
    byte, a missing id, probability or row as None, an empty or "0" id as itself), which
    gives the window a waiting label joins in and the time a lone prediction counts at."""
    db = open_db(tmp_path / "m.db")
    blob = '{"a":1.5e+300,"b":"x\\"y\\u00e9é","c":null,"d":-0.0,"e":""}'.encode()
    rows: list[PredictionRow] = [
        ("w", "w", None, 10.0, "1", 0.9, blob),
        ("x", "x", "x", 20.0, "0", None, None),
        ("y", "y", "", 30.0, "1", 0.7, b"{}"),  # an empty inferenceId stays ''
        ("z", "z", "0", 40.0, "1", 0.6, b'{"0":0}'),
        ("w", "w", None, 7300.0, "0", 0.1, b'{"late":1}'),  # repeats, next statement
        ("x", "x", None, 7400.0, "1", 0.2, None),
    ]
    with db.conn:
        add_labels(db, [("w", "1")], received_at=1.0, window_s=WINDOW)
        assert add_predictions(db, rows, WINDOW) == 4
    assert stored_predictions(db.conn) == [rows[0], rows[1], rows[2], rows[3]]
    assert take_dirty_windows(db) == [0]  # w joined at its first row's time
    assert label_counts(db.conn, 50.0, 0.0) == LabelCounts(
        matched=1, unmatched=0, pending=0, awaiting=0, unlabeled=3
    )
    assert label_counts(db.conn, 50.0, 25.0) == LabelCounts(  # y, z within the wait
        matched=1, unmatched=0, pending=0, awaiting=2, unlabeled=1
    )


def test_the_counts_are_read_in_one_snapshot(tmp_path: Path) -> None:
    """Labels committed by another connection between two of the counts' reads (injected
    with SQLite's statement trace) are seen by none of them: no negative count. The
    snapshot is :meth:`Store.read`'s read transaction, around everything a read does."""
    store = Store(tmp_path / "m.db")
    store.start()
    try:
        store.write(lambda db: add_labels(db, [("old", "1")], 0.0, WINDOW))
        injected: list[str] = []

        def between(sql: str) -> None:
            if "FROM mq_label_batches WHERE received_at >=" in sql and not injected:
                injected.append(sql)
                store.write(
                    lambda db: add_labels(db, [(f"new{i}", "1") for i in range(5)], 100.0, WINDOW)
                )

        def traced_counts(conn: sqlite3.Connection) -> LabelCounts:
            conn.set_trace_callback(between)
            try:
                return label_counts(conn, now=100.0, label_delay_s=50.0)
            finally:
                conn.set_trace_callback(None)

        seen = store.read(traced_counts)
        assert injected  # the write went in between two reads
        assert seen == LabelCounts(matched=0, unmatched=1, pending=0, awaiting=0, unlabeled=0)
        after = store.read(lambda conn: label_counts(conn, now=100.0, label_delay_s=50.0))
        assert after == LabelCounts(matched=0, unmatched=1, pending=5, awaiting=0, unlabeled=0)
    finally:
        store.close()
