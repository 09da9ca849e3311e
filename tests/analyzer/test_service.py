"""The analyzer service in-process (real aiohttp server, ticks driven by hand with an injected
clock): status ok on quiet traffic, alert on drift, hourly reports, late data, no baseline."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from analyzer.hourly import hour_dir
from analyzer.service import check_service_config, create_app, monitor_of
from modelmon.config import ConfigError, ModelmonConfig
from tests.analyzer.service_helpers import T0, Clock, make_config, write_baseline, write_traffic

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


@pytest.fixture(scope="session")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_baseline(tmp_path_factory.mktemp("baseline"))


async def _start(
    aiohttp_client: Client, config: ModelmonConfig, clock: Clock
) -> tuple[TestClient[Any, Any], web.Application]:
    app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
    client = await aiohttp_client(app)
    return client, app


async def _status(client: TestClient[Any, Any]) -> dict[str, Any]:
    response = await client.get("/monitor/status")
    assert response.status == 200
    doc: dict[str, Any] = await response.json()
    return doc


async def test_quiet_traffic_is_ok_and_drift_alerts_naming_features(
    aiohttp_client: Client, tmp_path: Path, baseline: tuple[Path, Path]
) -> None:
    config = make_config(tmp_path, baseline)
    clock = Clock(T0 + timedelta(minutes=30))
    client, app = await _start(aiohttp_client, config, clock)
    before = await _status(client)
    assert before["state"] == "no_data" and before["last_run"] is None

    n = write_traffic(config.capture.dir, "current_nodrift.csv", 1500, T0 + timedelta(minutes=5))
    await monitor_of(app).tick()
    doc = await _status(client)
    quality = doc["monitors"]["data_quality"]
    assert doc["ingest"]["records"] == n and doc["ingest"]["bad_records"] == 0
    assert quality["samples"] == n
    assert doc["state"] == quality["state"] == "ok", quality["violations"]
    assert set(quality["features"]) >= {"age", "income", "state"}
    assert all(f["state"] == "ok" for f in quality["features"].values())
    assert doc["stale_s"] == 0

    # An hour later, only drifted traffic is in the window.
    clock.set(T0 + timedelta(hours=1, minutes=40))
    write_traffic(
        config.capture.dir, "current_covariate.csv", 2000, T0 + timedelta(hours=1, minutes=2)
    )
    await monitor_of(app).tick()
    doc = await _status(client)
    quality = doc["monitors"]["data_quality"]
    assert doc["state"] == "alert"
    drifted = {
        v["feature_name"]
        for v in quality["violations"]
        if v["constraint_check_type"] == "baseline_drift_check"
    }
    assert {"income", "state"} <= drifted
    assert quality["features"]["income"]["state"] == "alert"
    assert quality["features"]["income"]["distance"] > quality["features"]["income"]["threshold"]
    assert quality["features"]["age"]["state"] in ("ok", "warning")


async def test_closed_hours_get_reports_and_late_files_reopen_them(
    aiohttp_client: Client, tmp_path: Path, baseline: tuple[Path, Path]
) -> None:
    config = make_config(tmp_path, baseline)
    clock = Clock(T0 + timedelta(minutes=50))
    client, app = await _start(aiohttp_client, config, clock)
    write_traffic(config.capture.dir, "current_nodrift.csv", 600, T0 + timedelta(minutes=1))
    await monitor_of(app).tick()
    folder = hour_dir(config, int(T0.timestamp()))
    assert not folder.exists()  # the hour is still open

    clock.set(T0 + timedelta(hours=1, minutes=1))
    await monitor_of(app).tick()
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["constraint_violations.json", "constraints.json", "statistics.json"]
    stats = orjson.loads((folder / "statistics.json").read_bytes())
    assert stats["dataset"]["item_count"] == 600
    runs = (await (await client.get("/monitor/runs?kind=hourly")).json())["runs"]
    assert len(runs) == 1 and runs[0]["hour"] == "2026-11-27T07:00:00Z"

    await monitor_of(app).tick()  # nothing new: not re-written
    assert len((await (await client.get("/monitor/runs?kind=hourly")).json())["runs"]) == 1

    # A late file for 07:xx arrives at 08:10.
    clock.set(T0 + timedelta(hours=1, minutes=10))
    write_traffic(config.capture.dir, "current_nodrift.csv", 150, T0 + timedelta(minutes=40))
    await monitor_of(app).tick()
    stats = orjson.loads((folder / "statistics.json").read_bytes())
    assert stats["dataset"]["item_count"] == 750
    runs = (await (await client.get("/monitor/runs?kind=hourly")).json())["runs"]
    assert [r["samples"] for r in runs] == [750, 600]


async def test_small_windows_say_not_enough_data(
    aiohttp_client: Client, tmp_path: Path, baseline: tuple[Path, Path]
) -> None:
    config = make_config(tmp_path, baseline, min_samples=500)
    clock = Clock(T0 + timedelta(minutes=30))
    client, app = await _start(aiohttp_client, config, clock)
    write_traffic(config.capture.dir, "current_covariate.csv", 200, T0 + timedelta(minutes=5))
    await monitor_of(app).tick()
    quality = (await _status(client))["monitors"]["data_quality"]
    assert quality["state"] == "not_enough_data"
    assert quality["samples"] == 200 and quality["violations"] == []


async def test_missing_baseline_keeps_the_service_up(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    config = make_config(tmp_path, None)
    clock = Clock(T0 + timedelta(minutes=30))
    client, app = await _start(aiohttp_client, config, clock)
    write_traffic(config.capture.dir, "current_nodrift.csv", 300, T0 + timedelta(minutes=5))
    await monitor_of(app).tick()
    doc = await _status(client)
    assert doc["state"] == "no_baseline"
    assert "modelmon baseline" in doc["monitors"]["data_quality"]["baseline"]["error"]
    assert doc["ingest"]["records"] == 300
    assert (await client.get("/monitor/health")).status == 200


def test_config_the_service_cannot_honour_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"bucket_s: must divide 3600"):
        check_service_config(make_config(tmp_path, None, bucket_s=7))
    with pytest.raises(ConfigError, match=r"schedule_cron: .*5 fields"):
        check_service_config(make_config(tmp_path, None, schedule_cron="@hourly"))
    with pytest.raises(ConfigError, match=r"never fires"):
        check_service_config(make_config(tmp_path, None, schedule_cron="0 0 31 2 *"))
    cron = check_service_config(make_config(tmp_path, None, schedule_cron="*/5 * * * *"))
    assert cron is not None and cron.seconds_until_next(T0.timestamp()) == 300
