"""``modelmon backfill`` as a real subprocess on real SQLite: a capture tree spanning several
hours fills the service's database (buckets, runs, hourly reports) with the rows the service's
own ingest writes; a second run double-counts nothing; the running service does not re-read."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient

from analyzer.ingest.remote_ingest import RemoteIngestor
from analyzer.service.app import create_app, monitor_of
from analyzer.service.monitor import Monitor
from analyzer.store.buckets import HOUR_S, merge_buckets
from analyzer.store.database import Store, read_counters
from modelmon.config import ModelmonConfig, load_config
from tests.analyzer.service_helpers import (
    ENDPOINT,
    FEATURES,
    VARIANT,
    record_line,
    write_baseline,
    write_capture_file,
    write_traffic,
)
from tests.analyzer.test_remote_ingest import BUCKET, URL
from tests.s3_support import S3Server

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
NOW = time.time()
BASE = datetime.fromtimestamp(NOW // HOUR_S * HOUR_S, UTC) - timedelta(hours=6)
HOURS = (0, 1, 3)  # hours after BASE that get traffic


def write_tree(root: Path) -> int:
    """Traffic in three hours (one gap), a broken line and a gzipped copy; returns records."""
    total = 0
    for k, h in enumerate(HOURS):
        start = BASE + timedelta(hours=h, minutes=5)
        total += write_traffic(root, "baseline.csv", 250, start, per_file=100, offset=k * 250)
    line = record_line(["1"] * len(FEATURES), "0.5", BASE + timedelta(hours=1, minutes=30))
    write_capture_file(root, [b"{broken\n", line], BASE + timedelta(hours=1, minutes=30))
    return total + 1


def config_file(tmp: Path, name: str, capture: Path, **analyzer: Any) -> Path:
    base = write_baseline(tmp / "baseline")
    section: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "db": str(tmp / f"{name}.db"),
        "reports_dir": str(tmp / name / "reports"),
        "bucket_s": 300,
        "window_s": 3600,
        "min_samples": 100,
        "baseline": {"statistics": str(base[0]), "constraints": str(base[1])},
        "payload": {
            "input": {"format": "csv", "columns": FEATURES},
            "output": {"format": "csv", "columns": ["score"]},
        },
        **analyzer,
    }
    doc = {
        "endpoint": {"name": ENDPOINT, "variant": VARIANT},
        "proxy": {"upstream": "http://127.0.0.1:9"},
        "capture": {"dir": str(capture)},
        "analyzer": section,
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def backfill(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelmon", "backfill", *args],
        capture_output=True,
        text=True,
        timeout=240,
    )


def rows(db: Path, query: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def exact_parts(db: Path) -> dict[int, Any]:
    """Per hour: the merged profile's figures that are not a quantile sketch's."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    out: dict[int, Any] = {}
    try:
        for h in HOURS:
            hour = int(BASE.timestamp()) + h * HOUR_S
            profile = merge_buckets(conn, hour, hour + HOUR_S)
            assert profile is not None
            features = {**profile.features, **profile.predictions}
            out[hour] = (
                profile.item_count,
                {
                    name: (f.count, f.sum, f.min, f.max, f.num_missing, dict(f.type_counts))
                    for name, f in features.items()
                },
            )
    finally:
        conn.close()
    return out


def service_ingest(config: ModelmonConfig) -> None:
    """The service's own ingest of the same files (the monitor's ingestor, its limit)."""
    store = Store(config.analyzer.db)
    store.start()
    try:
        Monitor(config, store).ingestor.run_once()
    finally:
        store.close()


FILE_ROWS = "SELECT path, offset, lines, records, bad, done FROM files ORDER BY path"
COUNTERS = "SELECT name, value FROM counters WHERE name IN ('records','bad_records','files') "
COUNTERS += "OR name LIKE 'bad:%' ORDER BY name"


@pytest.mark.timeout(300)
async def test_backfill_fills_the_past_and_the_service_reads_nothing_twice(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    capture = tmp_path / "capture"
    total = write_tree(capture)
    path = config_file(tmp_path, "m", capture)
    proc = backfill("--config", str(path), "--from", str(capture))
    assert proc.returncode == 0, proc.stderr
    assert "backfilled 10 files (751 records, 1 bad)" in proc.stdout
    assert "into 3 hours; skipped 0 files" in proc.stdout
    assert "backfilling 10 of 10 capture files" in proc.stderr
    db = tmp_path / "m.db"
    hourly = rows(db, "SELECT hour FROM runs WHERE kind = 'hourly' ORDER BY hour")
    expected = [(BASE + timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ") for h in HOURS]
    assert [h for (h,) in hourly] == expected
    windows = rows(db, "SELECT window_end, samples FROM runs WHERE kind = 'window' ORDER BY id")
    ends = [(BASE + timedelta(hours=h + 1)).strftime("%Y-%m-%dT%H:%M:%SZ") for h in HOURS]
    assert [end for end, _ in windows] == ends
    assert [n for _, n in windows] == [250, 251, 250]

    # the same rows as the service's own ingest of the same files
    other = load_config(config_file(tmp_path, "service", capture))
    service_ingest(other)
    assert rows(db, FILE_ROWS) == rows(other.analyzer.db, FILE_ROWS)
    assert rows(db, COUNTERS) == rows(other.analyzer.db, COUNTERS)
    assert exact_parts(db) == exact_parts(other.analyzer.db)

    # twice: nothing double-counted, and it says what it skipped
    again = backfill("--config", str(path), "--from", str(capture))
    assert again.returncode == 0, again.stderr
    assert "backfilled 0 files (0 records, 0 bad)" in again.stdout
    assert "skipped 10 files already read" in again.stdout
    assert rows(db, COUNTERS) == rows(other.analyzer.db, COUNTERS)
    assert len(rows(db, "SELECT id FROM runs")) == 6

    # the service on that database: the past in its runs, nothing read again
    app = create_app(load_config(path), run_loop=False)
    client = await aiohttp_client(app)
    await monitor_of(app).tick()
    status = await (await client.get("/monitor/status")).json()
    assert status["ingest"]["records"] == total and status["ingest"]["files"] == 10
    listed = await (await client.get("/monitor/runs?kind=hourly")).json()
    assert sorted(run["hour"] for run in listed["runs"]) == expected


@pytest.mark.timeout(300)
def test_backfill_on_dask_writes_the_same_rows(tmp_path: Path) -> None:
    capture = tmp_path / "capture"
    write_tree(capture)
    local = config_file(tmp_path, "local", capture)
    dask = config_file(tmp_path, "dask", capture)
    for path, extra in ((local, ()), (dask, ("--dask-workers", "2"))):
        proc = backfill("--config", str(path), "--from", str(capture), *extra)
        assert proc.returncode == 0, proc.stderr
    assert "dask LocalCluster (2)" in proc.stderr
    a, b = tmp_path / "local.db", tmp_path / "dask.db"
    assert rows(a, FILE_ROWS) == rows(b, FILE_ROWS)
    assert rows(a, COUNTERS) == rows(b, COUNTERS)
    assert exact_parts(a) == exact_parts(b)


@pytest.mark.timeout(300)
def test_backfill_from_s3_then_the_service_reading_that_url_reads_nothing_again(
    tmp_path: Path, s3: S3Server
) -> None:
    local = tmp_path / "tree"
    total = write_tree(local)
    s3.make_bucket(BUCKET)
    for file in sorted(local.rglob("*.jsonl")):
        s3.put(f"{BUCKET}/datacapture/{file.relative_to(local).as_posix()}", file.read_bytes())
    path = config_file(tmp_path, "m", tmp_path / "unused", capture_url=URL)
    proc = backfill("--config", str(path), "--from", URL)
    assert proc.returncode == 0, proc.stderr
    assert f"backfilled 10 files ({total} records, 1 bad) from {URL}" in proc.stdout
    config = load_config(path)
    keys = [url for (url,) in rows(config.analyzer.db, "SELECT path FROM files")]
    assert len(keys) == 10 and all(k.startswith(f"{URL}/{ENDPOINT}/{VARIANT}/") for k in keys)
    store = Store(config.analyzer.db)
    store.start()
    try:
        ingestor = RemoteIngestor(store, config, URL)
        assert ingestor.run_once().records == 0
        assert store.read(read_counters)["records"] == total
    finally:
        store.close()


def test_clear_one_line_errors(tmp_path: Path) -> None:
    capture = tmp_path / "capture"
    capture.mkdir()
    path = config_file(tmp_path, "m", capture)
    empty = backfill("--config", str(path), "--from", str(tmp_path / "nowhere"))
    assert empty.returncode == 2
    assert empty.stderr.strip().splitlines() == [
        f"modelmon backfill: --from {tmp_path / 'nowhere'}: no {ENDPOINT}/{VARIANT}/ capture "
        "tree there"
    ]
    (capture / ENDPOINT / VARIANT).mkdir(parents=True)
    nothing = backfill("--config", str(path), "--from", str(capture))
    assert nothing.returncode == 4 and "no sealed capture files" in nothing.stderr
    bad_url = backfill("--config", str(path), "--from", "ftp://host/x")
    assert bad_url.returncode == 2 and "expected an s3://, gs:// or file:/// URL" in bad_url.stderr
    bad_time = backfill("--config", str(path), "--from", str(capture), "--start", "soon")
    assert bad_time.returncode == 2
    assert "--start: not an ISO-8601 time" in bad_time.stderr
    no_config = backfill("--from", str(capture))
    assert no_config.returncode == 2 and "--config" in no_config.stderr


@pytest.mark.timeout(120)
def test_a_database_locked_past_the_busy_timeout_is_one_line(tmp_path: Path) -> None:
    capture = tmp_path / "capture"
    write_tree(capture)
    path = config_file(tmp_path, "m", capture)
    holder = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer that does not let go
        locked = backfill("--config", str(path), "--from", str(capture))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert locked.returncode == 2, locked.stderr
    assert locked.stderr.strip().splitlines() == [
        f"modelmon backfill: analyzer.db: cannot open analyzer.db {tmp_path / 'm.db'}: "
        "database is locked"
    ]
