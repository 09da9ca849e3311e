"""The backfill's reduce on real SQLite, in this process: a batch is all or nothing against a
file someone else started reading, and predictions are stored as the service stores them."""

from __future__ import annotations

import io
import sqlite3
from collections import Counter
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from analyzer.ingest.backfill_map import FileTask, Profiling, read_file
from analyzer.ingest.executor import InProcess
from analyzer.ingest.ingestor import feature_limit
from analyzer.service.backfill import run_backfill
from analyzer.service.monitor import Monitor
from analyzer.store.buckets import commit_chunk
from analyzer.store.database import Store, read_counters
from analyzer.store.file_sources import commit_files
from analyzer.store.model_quality_blocks import stored_predictions
from analyzer.store.queries import read_history
from modelmon.config import ModelmonConfig
from tests.analyzer.service_helpers import T0, make_config, write_traffic

BINARY = "BinaryClassification"


def _tasks(root: Path) -> list[FileTask]:
    paths = sorted(p for p in root.rglob("*.jsonl"))
    return [FileTask(p.relative_to(root).as_posix(), path=str(p)) for p in paths]


def test_a_batch_with_a_file_the_service_started_writes_nothing(tmp_path: Path) -> None:
    config = make_config(tmp_path, None)
    write_traffic(config.capture.dir, "baseline.csv", 300, T0, per_file=100)
    tasks = _tasks(config.capture.dir)
    limit = feature_limit(config)
    reads = [read_file(Profiling(config, limit), task) for task in tasks]
    assert [r.records for r in reads] == [100, 100, 100]
    store = Store(config.analyzer.db)
    store.start()
    try:
        # the running service has read the first chunk of the second file meanwhile
        store.write(
            lambda db: commit_chunk(
                db, tasks[1].key, 0, 10, 1, False, {}, 0, Counter(), None,
                bucket_s=300, limit=limit, clock=lambda: 0.0,
            )
        )  # fmt: skip
        write = partial(commit_files, bucket_s=300, limit=limit)
        assert store.write(partial(write, files=reads)) == {tasks[1].key}
        assert store.read(lambda c: c.execute("SELECT count(*) FROM buckets").fetchone()) == (0,)
        assert store.write(partial(write, files=[reads[0], reads[2]])) == set()
        assert store.read(read_counters)["records"] == 200
        assert store.write(partial(write, files=[reads[2]])) == {tasks[2].key}  # never twice
    finally:
        store.close()


def _quality_config(tmp: Path) -> ModelmonConfig:
    section = {"problem_type": BINARY, "probability_attribute": "0", "window_s": 3600}
    return make_config(tmp, None, model_quality=section)


def _predictions(db: Path) -> list[tuple[Any, ...]]:
    """key, inference time, prediction, probability of every stored prediction, by key."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return sorted((r[0], r[3], r[4], r[5]) for r in stored_predictions(conn))
    finally:
        conn.close()


def _table(db: Path, query: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def test_backfill_stores_the_predictions_the_service_ingest_stores(tmp_path: Path) -> None:
    ours = _quality_config(tmp_path)
    other = ours.analyzer.model_copy(update={"db": tmp_path / "service.db"})
    theirs = ours.model_copy(update={"analyzer": other})  # the same files, another database
    write_traffic(ours.capture.dir, "baseline.csv", 250, T0, per_file=100)
    progress = io.StringIO()
    now = (T0 + timedelta(hours=3)).timestamp()
    result = run_backfill(
        ours, str(ours.capture.dir), executor=InProcess(), out=progress, clock=now
    )
    assert (result.files, result.records, result.window_runs) == (3, 250, 1)
    assert "backfilling 3 of 3 capture files" in progress.getvalue()
    store = Store(theirs.analyzer.db)
    store.start()
    try:
        Monitor(theirs, store).ingestor.run_once()
    finally:
        store.close()
    predictions = _predictions(ours.analyzer.db)
    assert len(predictions) == 250
    assert predictions == _predictions(theirs.analyzer.db)
    counters = "SELECT name, value FROM counters WHERE name LIKE 'model_quality:%' ORDER BY name"
    assert _table(ours.analyzer.db, counters) == _table(theirs.analyzer.db, counters)


def test_the_reports_history_puts_backfilled_runs_in_time_order(tmp_path: Path) -> None:
    config = make_config(tmp_path, None)
    write_traffic(config.capture.dir, "baseline.csv", 100, T0 + timedelta(hours=3))
    archive = tmp_path / "archive"  # an older tree, backfilled after the service ran
    write_traffic(archive, "baseline.csv", 100, T0)
    store = Store(config.analyzer.db)
    store.start()
    try:
        monitor = Monitor(config, store, clock=lambda: (T0 + timedelta(hours=4)).timestamp())
        monitor.ingestor.run_once()
        monitor.evaluate_at((T0 + timedelta(hours=4)).timestamp())
    finally:
        store.close()
    now = (T0 + timedelta(hours=5)).timestamp()
    run_backfill(config, str(archive), executor=InProcess(), out=io.StringIO(), clock=now)
    conn = sqlite3.connect(f"file:{config.analyzer.db}?mode=ro", uri=True)
    try:
        times = [point["time"] for point in read_history(conn)]
    finally:
        conn.close()
    assert times == ["2026-11-27T08:00:00Z", "2026-11-27T11:00:00Z"]
