"""Client-chosen feature names are capped (issue 9, finding 2): ``analyzer.max_features`` per
batch, bucket and window, the baseline's features always tracked, the rest tallied under one
``extra_column_check``; what a run and the status document store stays bounded."""

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

from analyzer.decoding.codecs import PayloadDecoder
from analyzer.monitors.data_quality.cardinality import SAMPLE_NAMES, FeatureLimit
from analyzer.monitors.data_quality.checks import MAX_NAMED_EXTRA, MORE_EXTRA, CheckResult
from analyzer.monitors.data_quality.evaluate import MAX_VIOLATIONS, verdict
from analyzer.monitors.data_quality.feature_profile import MAX_VALUE_CHARS
from analyzer.monitors.data_quality.profile import DatasetProfile
from analyzer.service.app import create_app, monitor_of
from modelmon.capture_record import CaptureSide, build_record
from modelmon.config import ModelmonConfig, PayloadConfig
from tests.analyzer.service_helpers import (
    FEATURES,
    T0,
    Clock,
    make_config,
    read_rows,
    write_baseline,
    write_capture_file,
    write_traffic,
)

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
CAP = 200


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_baseline(tmp_path_factory.mktemp("baseline"))


def _random_key(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_lowercase + string.digits, k=12))


def _json_line(doc: dict[str, Any], i: int) -> bytes:
    moment = T0 + timedelta(minutes=1, milliseconds=40 * i)
    return build_record(
        event_id=f"e{i}",
        inference_time=moment,
        request=CaptureSide("application/json", orjson.dumps(doc).decode(), "JSON"),
        response=CaptureSide("text/csv", "0.5", "CSV"),
    )


def _tracked(profile: DatasetProfile) -> set[str]:
    return set(profile.features)


async def _run(
    aiohttp_client: Client, config: ModelmonConfig, clock: Clock
) -> tuple[TestClient[Any, Any], dict[str, Any]]:
    app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
    client = await aiohttp_client(app)
    await monitor_of(app).tick()
    clock.now += 3600  # the hour closes: its report is written too
    await monitor_of(app).tick()
    clock.now -= 3600 - 60
    await monitor_of(app).tick()
    response = await client.get("/monitor/status")
    assert response.status == 200
    body = await response.read()
    assert len(body) < 64_000, len(body)  # the status document stays small
    with sqlite3.connect(config.analyzer.db) as conn:
        rows = conn.execute(
            "SELECT kind, length(features) + length(violations) FROM runs"
        ).fetchall()
        reports = conn.execute("SELECT max(length(body)) FROM run_reports").fetchone()[0]
    assert rows and all(size < 40_000 for _, size in rows), rows
    assert reports is not None and reports < 1_000_000
    profile = monitor_of(app).window_profile(clock.now)
    assert profile is not None
    tracked = _tracked(profile)
    assert len(tracked - set(FEATURES)) <= CAP
    return client, orjson.loads(body)


def _untracked_violation(status: dict[str, Any]) -> dict[str, str]:
    violations = status["monitors"]["data_quality"]["violations"]
    extra = [v for v in violations if v["constraint_check_type"] == "extra_column_check"]
    assert len(extra) == MAX_NAMED_EXTRA + 1, len(extra)
    assert extra[-1]["feature_name"] == MORE_EXTRA
    return extra[-1]


async def test_random_json_keys_are_capped(
    aiohttp_client: Client, tmp_path: Path, baseline: tuple[Path, Path]
) -> None:
    """4,000 requests with 5 random keys each (and the baseline's features)."""
    config = make_config(
        tmp_path,
        baseline,
        max_features=CAP,
        payload={
            "input": {"format": "json", "columns": []},
            "output": {"format": "csv", "columns": ["score"]},
        },
    )
    rng = random.Random(9)
    rows, _ = read_rows("current_nodrift.csv")
    lines = []
    for i in range(4000):
        doc: dict[str, Any] = dict(zip(FEATURES, rows[i % len(rows)], strict=True))
        doc.update({_random_key(rng): rng.random() for _ in range(5)})
        lines.append(_json_line(doc, i))
    for start in range(0, 4000, 500):
        write_capture_file(
            config.capture.dir, lines[start : start + 500], T0 + timedelta(minutes=1)
        )
    clock = Clock(T0 + timedelta(minutes=30))
    _, status = await _run(aiohttp_client, config, clock)
    more = _untracked_violation(status)
    # 20,000 names: CAP profiled (20 named, CAP - 20 counted), the rest tallied (HLL: ~2%)
    assert f"{CAP - MAX_NAMED_EXTRA} more profiled extra columns" in more["description"]
    assert "not profiled (beyond analyzer.max_features), holding 19" in more["description"]
    names = int(more["description"].split("about ")[1].split(" ")[0])
    assert 19_000 < names < 21_000
    assert status["monitors"]["data_quality"]["samples"] == 4000
    assert set(FEATURES) <= set(status["monitors"]["data_quality"]["features"])


async def test_one_ten_thousand_column_row_is_capped(
    aiohttp_client: Client, tmp_path: Path, baseline: tuple[Path, Path]
) -> None:
    config = make_config(tmp_path, baseline, max_features=CAP)
    write_traffic(config.capture.dir, "current_nodrift.csv", 300, T0 + timedelta(minutes=1))
    rows, _ = read_rows("current_nodrift.csv")
    wide = ",".join([*rows[0], *(str(i) for i in range(10_000 - len(FEATURES)))])
    line = build_record(
        event_id="wide",
        inference_time=T0 + timedelta(minutes=2),
        request=CaptureSide("text/csv", wide, "CSV"),
        response=CaptureSide("text/csv", "0.5", "CSV"),
    )
    write_capture_file(config.capture.dir, [line], T0 + timedelta(minutes=2))
    clock = Clock(T0 + timedelta(minutes=30))
    _, status = await _run(aiohttp_client, config, clock)
    more = _untracked_violation(status)
    assert "_c11" in {v["feature_name"] for v in status["monitors"]["data_quality"]["violations"]}
    # 9,989 extra columns: 200 profiled (20 named), 9,789 tallied (HLL: within ~2%)
    assert "holding 9789 values" in more["description"]
    names = int(more["description"].split("about ")[1].split(" ")[0])
    assert 9_500 < names < 10_100


def test_the_limit_holds_per_batch_bucket_and_window() -> None:
    """The decoder, a bucket's profile and a window merge each keep to the limit; the names
    in ``keep`` are tracked whatever came first."""
    payload = PayloadConfig.model_validate({"input": {"format": "json"}})
    limit = FeatureLimit(3, frozenset({"keep_me"}))
    decoder = PayloadDecoder(payload, limit)
    buckets = []
    for part in range(3):
        docs = [{f"k{part}_{j}": j, "keep_me": 1} for j in range(10)]
        lines = [_json_line(doc, i) for i, doc in enumerate(docs)]
        batch = decoder.decode_lines(lines)
        assert len(batch.columns) == 4 and "keep_me" in batch.columns
        assert sum(batch.untracked.values()) == 7
        profile = DatasetProfile(limit=limit)
        profile.update(batch)
        assert profile.untracked.names == 7 and profile.untracked.values == 7
        buckets.append(DatasetProfile.from_bytes(profile.to_bytes()))
    window = buckets[0]
    window.set_limit(limit)
    for bucket in buckets[1:]:
        window.merge(bucket)
    assert set(window.features) == {"keep_me", "k0_0", "k0_1", "k0_2"}
    assert window.untracked.names == 30 - 3 and window.untracked.values == 27
    assert len(window.untracked.sample) == SAMPLE_NAMES
    # a bucket stored before the limit existed is cut down when read with it
    unlimited = DatasetProfile()
    unlimited.update(PayloadDecoder(payload).decode_lines([_json_line(docs[0], 0)] * 2))
    wide = PayloadDecoder(payload).decode_lines([_json_line({f"w{j}": j for j in range(50)}, 1)])
    unlimited.update(wide)
    unlimited.set_limit(limit)
    assert len(unlimited.features) == 4 and unlimited.untracked.names == 48


def test_long_string_values_are_cut_so_a_profile_stays_small() -> None:
    """3,000 distinct 2,000-character values: each is profiled as its first 255 characters."""
    values = [f"{i:05d}" + "x" * 2000 for i in range(3000)]
    profile = DatasetProfile()
    profile.update_columns({"note": values}, len(values), None)
    counts = profile.features["note"].category_counts()
    assert len(counts) == 3000
    assert {len(value) for value in counts} == {MAX_VALUE_CHARS}
    assert all(value.endswith("x…") for value in counts)
    assert len(profile.to_bytes()) < 3000 * (MAX_VALUE_CHARS * 3 + 64)


async def test_retention_prunes_runs_reports_and_buckets(
    aiohttp_client: Client, tmp_path: Path, baseline: tuple[Path, Path]
) -> None:
    """``analyzer.retention_days``: what is older goes at the next run; the window stays."""
    config = make_config(tmp_path, baseline, retention_days=1)
    clock = Clock(T0 + timedelta(minutes=30))
    app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
    await aiohttp_client(app)
    monitor = monitor_of(app)
    write_traffic(config.capture.dir, "current_nodrift.csv", 300, T0 + timedelta(minutes=1))
    await monitor.tick()
    clock.set(T0 + timedelta(hours=2))
    await monitor.tick()  # the hour 07:00 is reported (an hourly run with its reports)

    def counts() -> tuple[int, int, int, int]:
        with sqlite3.connect(config.analyzer.db) as conn:
            return tuple(  # type: ignore[return-value]
                conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("runs", "run_reports", "buckets", "hours")
            )

    runs, reports, buckets, hours = counts()
    assert runs == 3 and reports == 3 and buckets >= 1 and hours == 1
    later = T0 + timedelta(days=2)
    write_traffic(config.capture.dir, "current_nodrift.csv", 200, later)
    clock.set(later + timedelta(minutes=10))
    doc = await monitor.tick()
    assert doc["monitors"]["data_quality"]["samples"] == 200  # the current window is kept
    runs, reports, buckets, hours = counts()
    assert (runs, reports, hours) == (1, 0, 1)  # only this run and the new hour remain
    with sqlite3.connect(config.analyzer.db) as conn:
        oldest = conn.execute("SELECT min(start) FROM buckets").fetchone()[0]
    assert oldest >= later.timestamp() - 300


def test_a_run_stores_at_most_max_violations_and_says_how_many() -> None:
    result = CheckResult(
        violations=[
            {
                "feature_name": f"f{i}",
                "constraint_check_type": "extra_column_check",
                "description": "x",
            }
            for i in range(MAX_VIOLATIONS + 500)
        ]
    )
    window = verdict(result, 1000, 100)
    assert len(window.violations) == MAX_VIOLATIONS
    assert window.violations_total == MAX_VIOLATIONS + 500
    assert window.state == "alert"


async def test_a_baseline_read_later_is_tracked_whatever_the_limit(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    """The features of a baseline that appears while the service runs are always profiled,
    as those of one read at start are; extra client keys stay capped."""
    folder = tmp_path / "bl"
    config = make_config(
        tmp_path,
        (folder / "statistics.json", folder / "constraints.json"),
        max_features=1,
        payload={
            "input": {"format": "json", "columns": []},
            "output": {"format": "csv", "columns": ["score"]},
        },
    )
    clock = Clock(T0 + timedelta(minutes=30))
    app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
    await aiohttp_client(app)
    monitor = monitor_of(app)
    await monitor.tick()  # no baseline yet: only max_features names would be profiled
    write_baseline(folder)
    await monitor.tick()  # the baseline is picked up
    rows, _ = read_rows("current_nodrift.csv")
    docs = [{**dict(zip(FEATURES, row, strict=True)), "zz1": 1, "zz2": 2} for row in rows[:200]]
    lines = [_json_line(doc, i) for i, doc in enumerate(docs)]
    write_capture_file(config.capture.dir, lines, T0 + timedelta(minutes=1))
    await monitor.tick()
    profile = monitor.window_profile(clock())
    assert profile is not None and profile.item_count == 200
    assert set(profile.features) == {*FEATURES, "zz1"}  # one extra key: max_features
    assert profile.untracked.names == 1 and profile.untracked.sample == ["zz2"]


async def test_headerless_fields_matched_by_position_are_tracked_whatever_the_limit(
    aiohttp_client: Client, tmp_path: Path, baseline: tuple[Path, Path]
) -> None:
    """Headerless CSV fields are ``_c0 …``: as many as the baseline has features are always
    profiled (then named after them), so a small max_features cannot cut them."""
    config = make_config(
        tmp_path,
        baseline,
        max_features=1,
        payload={
            "input": {"format": "csv", "columns": []},
            "output": {"format": "csv", "columns": ["score"]},
        },
    )
    clock = Clock(T0 + timedelta(minutes=30))
    app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
    client = await aiohttp_client(app)
    write_traffic(config.capture.dir, "current_nodrift.csv", 300, T0 + timedelta(minutes=5))
    await monitor_of(app).tick()
    quality = (await (await client.get("/monitor/status")).json())["monitors"]["data_quality"]
    assert quality["column_mapping"] == "by_position"
    assert set(quality["features"]) >= set(FEATURES)
    assert not [
        v for v in quality["violations"] if v["constraint_check_type"].endswith("column_check")
    ]
