"""The database stays flat under hostile traffic (issue 9): old buckets become one row per hour,
old window runs become summaries, rows of files gone from disk are forgotten, free pages go
back to the file system (analyzer.store.retention)."""

from __future__ import annotations

import random
import sqlite3
import string
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlite_utils import Database

from analyzer.ingest.ingestor import Ingestor
from analyzer.monitors.data_quality.profile import DatasetProfile
from analyzer.service.app import create_app, monitor_of
from analyzer.store.database import Store, read_counters
from analyzer.store.hourly import hour_dir
from analyzer.store.model_quality_history import read_model_quality_history
from analyzer.store.retention import (
    BATCH,
    HOUR_S,
    give_back_pages,
    summarize_runs,
)
from modelmon.capture_record import CaptureSide, build_record
from modelmon.config import ModelmonConfig
from tests.analyzer.service_helpers import (
    ENDPOINT,
    FEATURES,
    T0,
    VARIANT,
    Clock,
    make_config,
    read_rows,
    write_baseline,
    write_capture_file,
    write_traffic,
)

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
CAP = 50


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_baseline(tmp_path_factory.mktemp("baseline"))


def _hostile_config(tmp: Path, baseline: tuple[Path, Path], **more: Any) -> ModelmonConfig:
    return make_config(
        tmp,
        baseline,
        bucket_s=60,
        window_s=600,
        run_detail_s=300,
        max_features=CAP,
        payload={
            "input": {"format": "json", "columns": []},
            "output": {"format": "csv", "columns": ["score"]},
        },
        **more,
    )


def _write_minute(config: ModelmonConfig, minute: int, rng: random.Random, n: int = 20) -> None:
    """``n`` records in minute ``minute`` after T0, each with 5 client-chosen keys."""
    rows, scores = read_rows("current_nodrift.csv")
    start = T0 + timedelta(minutes=minute)
    lines = []
    for i in range(n):
        doc: dict[str, Any] = dict(zip(FEATURES, rows[(minute * n + i) % len(rows)], strict=True))
        doc.update(
            {"".join(rng.choices(string.ascii_lowercase, k=10)): rng.random() for _ in range(5)}
        )
        lines.append(
            build_record(
                event_id=f"m{minute}-{i}",
                inference_time=start + timedelta(seconds=2 * i),
                request=CaptureSide("application/json", orjson.dumps(doc).decode(), "JSON"),
                response=CaptureSide("text/csv", scores[i % len(scores)], "CSV"),
            )
        )
    write_capture_file(config.capture.dir, lines, start)


def _query(config: ModelmonConfig, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(config.analyzer.db) as conn:
        return conn.execute(sql).fetchall()


async def test_hostile_hours_keep_the_database_flat(
    aiohttp_client: Client, tmp_path: Path, baseline: tuple[Path, Path]
) -> None:
    """Three hours of random keys, a run every two minutes: the buckets kept are the window's
    and the detailed runs' plus one row per hour; the file stops growing; every hour's report
    and a late file's re-report still count every record."""
    config = _hostile_config(tmp_path, baseline)
    clock = Clock(T0)
    app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
    client = await aiohttp_client(app)
    monitor = monitor_of(app)
    rng = random.Random(5)
    pages: dict[int, int] = {}
    counted: dict[int, int] = {}
    for minute in range(0, 180, 2):
        _write_minute(config, minute, rng)
        _write_minute(config, minute + 1, rng)
        clock.set(T0 + timedelta(minutes=minute + 2, seconds=1))
        await monitor.tick()
        newest = (await (await client.get("/monitor/runs?kind=window&limit=1")).json())["runs"]
        counted[newest[0]["id"]] = newest[0]["violations"]
        pages[minute + 2] = _query(config, "PRAGMA page_count")[0][0]
        minute_rows = _query(config, f"SELECT count(*) FROM buckets WHERE width < {HOUR_S}")
        # the window's buckets (10) and those behind the detailed runs (5), and the one forming
        assert minute_rows[0][0] <= (600 + 300) // 60 + 1
    hours = _query(config, f"SELECT start, records FROM buckets WHERE width = {HOUR_S}")
    assert [start for start, _ in hours] == [T0.timestamp() + h * HOUR_S for h in range(3)]
    assert hours[0][1] == hours[1][1] == 60 * 20
    # flat: the last hour added no more than a few pages (its hour row and hourly run)
    # hour rows keep only the baseline's features (the client-chosen ones as a tally)
    rows = _query(config, f"SELECT profile FROM buckets WHERE width = {HOUR_S}")
    kept = DatasetProfile.from_bytes(rows[0][0])
    assert set(kept.features) == set(FEATURES) and kept.item_count == 1200
    assert kept.untracked.values == 1200 * 5
    # flat but for what each hour adds for good: its hour row (baseline features only), its
    # hourly run and reports, the summaries of its 30 window runs (its buckets were ~60 rows)
    grown = (pages[180] - pages[120]) * 4096
    assert grown <= len(rows[0][0]) + 30 * 4096 + 128 * 1024, (pages[60], pages[120], pages[180])
    assert abs((pages[180] - pages[120]) - (pages[120] - pages[60])) <= 16
    for hour, name in ((0, "07"), (1, "08")):
        stats = orjson.loads(
            (hour_dir(config, int(T0.timestamp()) + hour * HOUR_S) / "statistics.json").read_bytes()
        )
        assert stats["dataset"]["item_count"] == 1200, name
        tracked = {f["name"] for f in stats["features"]}
        assert len(tracked - set(FEATURES)) <= CAP

    # a late file for 07:30 re-opens the compacted hour 07: its report counts every record
    _write_minute(config, 30, rng, n=7)
    clock.now += 60
    await monitor.tick()
    stats = orjson.loads((hour_dir(config, int(T0.timestamp())) / "statistics.json").read_bytes())
    assert stats["dataset"]["item_count"] == 1207

    # runs older than run_detail_s are summaries that still count their violations
    runs = (await (await client.get("/monitor/runs?kind=window&limit=1000")).json())["runs"]
    assert {run["id"]: run["violations"] for run in runs if run["id"] in counted} == counted
    assert max(counted.values()) > 20
    detail = dict(_query(config, "SELECT id, detail FROM runs WHERE kind = 'window'"))
    newest = max(detail)
    assert detail[newest] == 2 and min(detail.values()) == 1
    old = min(detail)
    found = await (await client.get(f"/monitor/runs/{old}")).json()
    assert all(
        "description" not in v for v in found["reports"]["constraint_violations.json"]["violations"]
    )
    assert set(next(iter(found["features"].values()))) == {"state", "distance", "threshold"}
    # a detailed run still recomputes its window's statistics from the buckets kept
    found = await (await client.get(f"/monitor/runs/{newest}")).json()
    assert found["reports"]["statistics.json"]["dataset"]["item_count"] == found["samples"]
    assert any(
        "description" in v for v in found["reports"]["constraint_violations.json"]["violations"]
    )


def _run_row(db: Database, kind: str, at: float) -> None:
    violations = [
        {
            "feature_name": f"f{i}",
            "constraint_check_type": "data_type_check",
            "description": "x" * 300,
        }
        for i in range(4)
    ]
    features = {"age": {"state": "ok", "distance": 0.1, "threshold": 0.2, "psi": 0.3, "data": {}}}
    db.execute(
        "INSERT INTO runs(kind, time, time_epoch, state, samples, features, violations) "
        "VALUES (?, 't', ?, 'ok', 1, ?, ?)",
        [kind, at, orjson.dumps(features).decode(), orjson.dumps(violations).decode()],
    )


def test_summaries_keep_counts_and_the_history_fields_in_bounded_steps(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    store.start()
    try:
        now = 10 * 86_400.0

        def fill(db: Database) -> None:
            for i in range(BATCH + 10):
                _run_row(db, "window", i)  # older than a day
            _run_row(db, "hourly", 0)
            _run_row(db, "window", now - 600)  # summary, not bare
            _run_row(db, "window", now - 10)  # full

        store.write(fill)
        assert store.write(lambda db: summarize_runs(db, now - 300, now - 86_400)) == 2 * BATCH
        store.write(lambda db: summarize_runs(db, now - 300, now - 86_400))
        store.write(lambda db: summarize_runs(db, now - 300, now - 86_400))

        def rows(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(
                "SELECT kind, time_epoch, detail, features, violations FROM runs ORDER BY id"
            ).fetchall()

        found = store.read(rows)
    finally:
        store.close()
    by_detail = {(kind, detail) for kind, _, detail, _, _ in found}
    assert by_detail == {("window", 0), ("window", 1), ("window", 2), ("hourly", 2)}
    for kind, at, detail, features, violations in found:
        kept = orjson.loads(violations)
        assert len(kept) == 4
        if (kind, detail) == ("window", 0):
            assert orjson.loads(features) == {}
            assert kept[0] == {"feature_name": "f0", "constraint_check_type": "data_type_check"}
        elif (kind, detail) == ("window", 1):
            assert at == now - 600
            assert orjson.loads(features) == {
                "age": {"state": "ok", "distance": 0.1, "threshold": 0.2}
            }
        else:
            assert "description" in kept[0] and "psi" in orjson.loads(features)["age"]


def test_a_new_database_gives_free_pages_back(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = Store(path)
    store.start()
    try:
        assert store.read(lambda c: c.execute("PRAGMA auto_vacuum").fetchone()[0]) == 2
        blob = random.Random(1).randbytes(4 << 20)
        store.write(
            lambda db: db.execute(
                "INSERT INTO quarantine(kind, key, blob, error, at) VALUES ('t', 1, ?, '', 0)",
                [blob],
            )
        )
        full = store.read(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
        store.write(lambda db: db.execute("DELETE FROM quarantine"))
        assert store.write(give_back_pages) > 0
        after = store.read(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
        assert store.write(give_back_pages) == 0  # little is free now: nothing to do
    finally:
        store.close()
    assert after < full // 4, (full, after)


def test_rows_of_files_gone_from_disk_are_forgotten_after_retention(tmp_path: Path) -> None:
    config = make_config(tmp_path, None, retention_days=1)
    store = Store(config.analyzer.db)
    store.start()
    try:
        for hour in range(4):  # a file an hour, 07:00 to 10:00
            write_traffic(config.capture.dir, "current_nodrift.csv", 20, T0 + timedelta(hours=hour))
        clock = Clock(T0 + timedelta(hours=4))
        ingestor = Ingestor(store, config, clock=clock)
        assert ingestor.run_once().records == 80

        def paths() -> list[str]:
            rows = store.read(lambda c: c.execute("SELECT path FROM files").fetchall())
            return sorted(path.split("/")[5] for (path,) in rows)

        assert paths() == ["07", "08", "09", "10"]
        for gone in ("07", "08"):  # what capture retention does
            folder = config.capture.dir / ENDPOINT / VARIANT / T0.strftime(f"%Y/%m/%d/{gone}")
            for path in folder.iterdir():
                path.unlink()
        assert ingestor.run_once().records == 0
        assert paths() == ["07", "08", "09", "10"]  # within retention_days: kept
        clock.set(T0 + timedelta(days=1, hours=10))  # 07:00-09:59 are past retention now
        assert ingestor.run_once().records == 0
        assert paths() == ["09", "10"]  # 09 is still on disk: kept, never read twice
        assert store.read(read_counters)["records"] == 80
    finally:
        store.close()


def test_model_quality_runs_keep_the_charts_numbers_for_the_retention(tmp_path: Path) -> None:
    """Summarized model-quality runs keep value, standard deviation, threshold and state per
    metric and value, low, high per estimate, past the day after which the per-feature part of
    other runs goes: the report's chart spans the retention (issue 11's run history)."""
    metric = {"value": 0.7, "standard_deviation": 0.01, "threshold": 0.6, "state": "ok",
              "margin": 0.02, "comparison_operator": "LessThanThreshold"}  # fmt: skip
    estimate = {"value": 0.71, "low": 0.68, "high": 0.74, "agrees_with_realized": True}
    detail = {"metrics": {"auc": metric}, "estimated": {"auc": estimate},
              "confusion_matrix": {"0": {"0": 5}}, "labels": {"matched": 9}}  # fmt: skip
    day = 86_400.0
    now = 10 * day
    store = Store(tmp_path / "m.db")
    store.start()
    try:

        def fill(db: Database) -> None:
            for age_days in (3, 2, 1.5, 0):
                db.execute(
                    "INSERT INTO runs(kind, time, time_epoch, state, samples, features, "
                    "violations) VALUES ('model_quality', 't', ?, 'ok', 9, ?, '[]')",
                    [now - age_days * day, orjson.dumps(detail).decode()],
                )
            _run_row(db, "window", now - 2 * day)

        store.write(fill)
        store.write(lambda db: summarize_runs(db, now - 300, now - day))
        store.write(lambda db: summarize_runs(db, now - 300, now - day))

        def rows(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute("SELECT kind, detail, features FROM runs ORDER BY id").fetchall()

        found = store.read(rows)
        history = store.read(lambda conn: read_model_quality_history(conn, span_s=4 * day))
        one_day = store.read(read_model_quality_history)
    finally:
        store.close()
    kept = {"metrics": {"auc": {k: metric[k] for k in ("value", "standard_deviation",
            "threshold", "state")}}, "estimated": {"auc": {k: estimate[k] for k in
            ("value", "low", "high")}}}  # fmt: skip
    assert [(kind, level) for kind, level, _ in found] == [("model_quality", 1)] * 3 + [
        ("model_quality", 2),
        ("window", 0),  # a data-quality run older than a day: bare
    ]
    assert [orjson.loads(features) for _, _, features in found[:3]] == [kept] * 3
    assert len(history) == 4 and all(run["metrics"] == kept["metrics"] for run in history)
    assert history[0]["estimated"] == kept["estimated"]
    assert len(one_day) == 1  # the default span: the last day only
