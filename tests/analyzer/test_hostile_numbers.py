"""One large number must never stop monitoring (issue 9, finding 1).

Through the real service (aiohttp app, SQLite, ticks driven with an injected clock): a value
whose square overflows, each special value, a stored profile that cannot be read (written by
an older version: ``m2`` saved as JSON ``null``) and a restart on that database.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from analyzer.monitors.data_quality.feature_profile import FeatureProfile, ProfileError
from analyzer.monitors.data_quality.profile import DatasetProfile, profile_rows
from analyzer.monitors.data_quality.statistics_format import parse_statistics, statistics_json
from analyzer.service.app import create_app, monitor_of
from modelmon.config import ModelmonConfig
from tests.analyzer.service_helpers import (
    FEATURES,
    T0,
    Clock,
    make_config,
    read_rows,
    record_line,
    write_baseline,
    write_capture_file,
    write_traffic,
)

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
INCOME = FEATURES.index("income")
FLOAT_MAX = 1.7976931348623157e308


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_baseline(tmp_path_factory.mktemp("baseline"))


async def _start(
    aiohttp_client: Client, config: ModelmonConfig, clock: Clock
) -> tuple[TestClient[Any, Any], web.Application]:
    app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
    return await aiohttp_client(app), app


async def _get(client: TestClient[Any, Any], path: str, status: int = 200) -> Any:
    response = await client.get(path)
    assert response.status == status, await response.text()
    return await response.json()


def _hostile_file(root: Path, value: str, minute: int) -> None:
    """A capture file with 20 normal rows and one whose income is ``value``."""
    rows, scores = read_rows("current_nodrift.csv")
    moment = T0 + timedelta(minutes=minute)
    lines = [record_line(rows[i], scores[i], moment + timedelta(seconds=i)) for i in range(20)]
    row = list(rows[0])
    row[INCOME] = value
    lines.append(record_line(row, scores[0], moment + timedelta(seconds=30)))
    write_capture_file(root, lines, moment)


async def test_a_square_that_overflows_does_not_stop_monitoring(
    aiohttp_client: Client, tmp_path: Path, baseline: tuple[Path, Path]
) -> None:
    """The issue's reproduction: ``30,1e200,CA`` once, then ordinary traffic, across ticks
    that merge the bucket holding it, the window, the hourly report and the run page."""
    config = make_config(tmp_path, baseline)
    clock = Clock(T0 + timedelta(minutes=20))
    client, app = await _start(aiohttp_client, config, clock)
    monitor = monitor_of(app)
    write_traffic(config.capture.dir, "current_nodrift.csv", 500, T0 + timedelta(minutes=1))
    _hostile_file(config.capture.dir, "1e200", 2)
    await monitor.tick()
    for minute in (3, 4, 7, 12):  # more data into the same buckets and new ones
        clock.set(T0 + timedelta(minutes=20 + minute))
        _hostile_file(config.capture.dir, "1e200", minute)
        write_traffic(
            config.capture.dir, "current_nodrift.csv", 100, T0 + timedelta(minutes=minute)
        )
        doc = await monitor.tick()
        assert doc["last_run_epoch"] == clock.now
    status = await _get(client, "/monitor/status")
    assert status["last_run_epoch"] == clock.now and status["analyzer"]["last_error"] is None
    income = status["monitors"]["data_quality"]["features"]["income"]
    assert income["data"]["max"] == 1e200
    assert income["data"]["count"] == status["monitors"]["data_quality"]["samples"]
    assert 1e200 / income["data"]["count"] < income["data"]["mean"] < 1e200
    health = await _get(client, "/monitor/health")
    assert health["ok"] and health["quarantined_profiles"] == 0
    # The closed hour's report and the run pages answer.
    clock.set(T0 + timedelta(hours=1, minutes=5))
    await monitor.tick()
    runs = await _get(client, "/monitor/runs?kind=hourly")
    assert runs["runs"], runs
    run = await _get(client, f"/monitor/runs/{runs['runs'][0]['id']}")
    stats = run["reports"]["statistics.json"]
    income_stats = next(f for f in stats["features"] if f["name"] == "income")
    numbers = income_stats["numerical_statistics"]
    assert numbers["max"] == 1e200 and math.isfinite(numbers["std_dev"])
    parse_statistics(stats)  # the report reads back as a baseline
    latest = (await _get(client, "/monitor/runs?kind=window"))["runs"][0]
    await _get(client, f"/monitor/runs/{latest['id']}")


SPECIAL = ["1e308", "-1e308", "1.7976931348623157e308", "5e-324", "1e400", "-1e400"]
STRINGY = ["inf", "-inf", "Infinity", "nan", "NaN"]


@pytest.mark.parametrize("value", SPECIAL + STRINGY)
async def test_each_special_value_has_its_treatment(
    aiohttp_client: Client, tmp_path: Path, baseline: tuple[Path, Path], value: str
) -> None:
    """Finite numbers are numbers (moments exact or saturated, never inf); ``inf``, ``nan``
    and literals beyond the float range are String values (as Deequ's patterns say): counted
    in the type counts, never in the moments or the KLL sketch."""
    config = make_config(tmp_path, baseline)
    clock = Clock(T0 + timedelta(minutes=20))
    client, app = await _start(aiohttp_client, config, clock)
    write_traffic(config.capture.dir, "current_nodrift.csv", 300, T0 + timedelta(minutes=1))
    for minute in (2, 3):
        _hostile_file(config.capture.dir, value, minute)
        _hostile_file(config.capture.dir, value, minute + 5)
        await monitor_of(app).tick()
    profile = monitor_of(app).window_profile(clock.now)
    assert profile is not None
    income = profile.features["income"]
    assert all(math.isfinite(x) for x in (income.sum, income.m2, income.mean or 0, income.std or 0))
    if value in STRINGY or "e400" in value:
        assert income.type_counts["String"] == 4
        assert income.count == income.num_present - 4
        assert income.max is not None and income.max < 1e9
    else:
        assert income.type_counts["String"] == 0 and income.count == income.num_present
        assert float(value) in (income.min, income.max)
    status = await _get(client, "/monitor/status")
    assert status["analyzer"]["last_error"] is None
    assert (await _get(client, "/monitor/health"))["ok"]
    again = DatasetProfile.from_bytes(profile.to_bytes())
    assert statistics_json(again) == statistics_json(profile)


@pytest.mark.parametrize(
    "values",
    [
        [1e308, 1e308, 1e308],
        [-1e308, 1e308],
        [FLOAT_MAX, -FLOAT_MAX, FLOAT_MAX],
        [1e200, 1.0, 2.0],
        [5e-324, 1e308],
    ],
)
def test_moments_at_the_float_limits_stay_finite_and_right(values: list[float]) -> None:
    one = profile_rows({"x": np.array(values)}).features["x"]
    # merged one value at a time, too
    merged = profile_rows({"x": np.array(values[:1])}).features["x"]
    for v in values[1:]:
        merged.merge(profile_rows({"x": np.array([v])}).features["x"])
    total = sum(map(Fraction, values))
    mean = total / len(values)
    variance = sum((Fraction(v) - mean) ** 2 for v in values) / len(values)
    exact_mean = float(mean)
    exact_std = math.sqrt(float(variance / Fraction(FLOAT_MAX) ** 2)) * FLOAT_MAX
    for f in (one, merged):
        assert all(math.isfinite(x) for x in (f.sum, f.m2, f.mean or 0, f.std or 0))
        assert f.mean == pytest.approx(exact_mean, rel=1e-12)
        assert f.std == pytest.approx(exact_std, rel=1e-9)
        if abs(total) <= FLOAT_MAX:
            assert f.sum == pytest.approx(float(total), rel=1e-12)
        else:
            assert f.sum == (FLOAT_MAX if total > 0 else -FLOAT_MAX)
        again = FeatureProfile.from_bytes(f.to_bytes())
        assert (again.sum, again.std, again.mean) == (f.sum, f.std, f.mean)


def _broken_blob() -> bytes:
    """A bucket profile as an older version stored it after ``1e200``: ``m2`` is ``null``."""
    profile = profile_rows({name: ["1"] * 5 for name in FEATURES})
    profile.features["income"]._m2 = math.inf
    blob = profile.to_bytes()
    assert b'"m2":null' in blob
    return blob


def test_a_profile_with_a_null_moment_is_refused() -> None:
    with pytest.raises(ProfileError, match="not a finite number"):
        DatasetProfile.from_bytes(_broken_blob())
    with pytest.raises(ProfileError):
        DatasetProfile.from_bytes(_broken_blob()[:-3])


async def test_a_stored_profile_that_cannot_be_read_is_quarantined(
    aiohttp_client: Client, tmp_path: Path, baseline: tuple[Path, Path]
) -> None:
    """A database that already holds broken profiles recovers: the window merge and the
    ingest merge move them aside, count them, and the monitor goes on; so after a restart."""
    config = make_config(tmp_path, baseline)
    clock = Clock(T0 + timedelta(minutes=20))
    client, app = await _start(aiohttp_client, config, clock)
    start = int(T0.timestamp())
    await monitor_of(app).tick()  # creates the database
    with sqlite3.connect(config.analyzer.db) as conn:
        for offset, blob in ((0, _broken_blob()), (300, b"MMD1garbage"), (600, _broken_blob())):
            conn.execute(
                "INSERT INTO buckets(start, width, profile, records, updated_at) "
                "VALUES (?, 300, ?, 5, 0)",
                [start + offset, blob],
            )
    # new data into the broken bucket at 600 (the ingest merge) and into a fresh one
    write_traffic(config.capture.dir, "current_nodrift.csv", 200, T0 + timedelta(minutes=10))
    write_traffic(config.capture.dir, "current_nodrift.csv", 200, T0 + timedelta(minutes=16))
    doc = await monitor_of(app).tick()
    assert doc["monitors"]["data_quality"]["samples"] == 400
    status = await _get(client, "/monitor/status")
    assert status["ingest"]["quarantined_profiles"] == 3
    assert status["analyzer"]["last_error"] is None
    health = await _get(client, "/monitor/health")
    assert health["ok"] and health["quarantined_profiles"] == 3
    with sqlite3.connect(config.analyzer.db) as conn:
        moved = conn.execute("SELECT key, error FROM quarantine ORDER BY key").fetchall()
    assert [k for k, _ in moved] == [start, start + 300, start + 600]
    assert "not a finite number" in moved[0][1]
    await client.close()

    # A restart on the same database: the counters hold, ticks go on.
    client, app = await _start(aiohttp_client, config, clock)
    clock.set(T0 + timedelta(minutes=25))
    write_traffic(config.capture.dir, "current_nodrift.csv", 100, T0 + timedelta(minutes=21))
    doc = await monitor_of(app).tick()
    assert doc["monitors"]["data_quality"]["samples"] == 500
    status = await _get(client, "/monitor/status")
    assert status["ingest"]["quarantined_profiles"] == 3
    assert (await _get(client, "/monitor/health"))["ok"]
