"""The analyzer service in-process (real aiohttp server, ticks driven by hand with an injected
clock): status ok on quiet traffic, alert on drift, hourly reports, late data, no baseline."""

from __future__ import annotations

import asyncio
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient

from analyzer.service.app import create_app, monitor_of
from analyzer.store.hourly import hour_dir
from modelmon.config import ModelmonConfig
from tests.analyzer.service_helpers import (
    ENDPOINT,
    FEATURES,
    T0,
    VARIANT,
    Clock,
    make_config,
    write_baseline,
    write_capture_file,
    write_traffic,
)

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
    write_capture_file(config.capture.dir, [b"{oops\n", b"[]\n", b"{oops\n"], T0)
    await monitor_of(app).tick()
    doc = await _status(client)
    assert doc["state"] == "no_baseline"
    assert "modelmon baseline" in doc["monitors"]["data_quality"]["baseline"]["error"]
    assert doc["ingest"]["records"] == 300 and doc["ingest"]["files"] == 4
    assert doc["ingest"]["bad_records"] == 3
    assert doc["ingest"]["bad_by_reason"]["not_json"] == 2
    assert sum(doc["ingest"]["bad_by_reason"].values()) == 3
    assert (await client.get("/monitor/health")).status == 200


async def _wait_ready(proc: asyncio.subprocess.Process, lines: list[str]) -> None:
    """Read the service's log until it says where it listens."""
    assert proc.stderr is not None
    while True:
        line = (await proc.stderr.readline()).decode()
        assert line, f"the analyzer exited early:\n{''.join(lines)}"
        lines.append(line)
        if "analyzer on http://" in line:
            return


async def _drain(proc: asyncio.subprocess.Process, lines: list[str]) -> None:
    assert proc.stderr is not None
    async for line in proc.stderr:
        lines.append(line.decode())


async def _records(http: httpx.AsyncClient, url: str) -> dict[str, Any] | None:
    try:
        response = await http.get(url)
    except httpx.TransportError:
        return None  # not listening yet
    ingest: dict[str, Any] = response.json()["ingest"]
    return ingest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _db_sums(db: Path) -> tuple[int, int, int]:
    with sqlite3.connect(db) as conn:
        counted = conn.execute("SELECT value FROM counters WHERE name = 'records'").fetchone()
        in_buckets = conn.execute("SELECT COALESCE(SUM(records), 0) FROM buckets").fetchone()[0]
        in_files = conn.execute("SELECT COALESCE(SUM(records), 0) FROM files").fetchone()[0]
    return (counted[0] if counted else 0), int(in_buckets), int(in_files)


async def test_kill_9_mid_ingest_then_restart_counts_exactly(tmp_path: Path) -> None:
    port = _free_port()
    section = {
        "listen": f"127.0.0.1:{port}",
        "db": "m.db",
        "schedule_interval_s": 3600,
        "payload": {"input": {"format": "csv", "columns": FEATURES}},
        "baseline": {"statistics": "none.json", "constraints": "none.json"},
    }
    config_path = tmp_path / "modelmon.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "endpoint": {"name": ENDPOINT, "variant": VARIANT},
                "proxy": {"upstream": "http://127.0.0.1:9"},
                "capture": {"dir": "capture"},
                "analyzer": section,
            }
        )
    )
    files = 600
    total = write_traffic(tmp_path / "capture", "current_nodrift.csv", files * 20, T0, per_file=20)
    url = f"http://127.0.0.1:{port}/monitor/status"
    command = [sys.executable, "-m", "modelmon", "analyzer", "--config", str(config_path)]
    lines: list[str] = []
    seen_mid = None
    async with httpx.AsyncClient(timeout=5.0) as http:
        proc = await asyncio.create_subprocess_exec(*command, stderr=asyncio.subprocess.PIPE)
        async with asyncio.TaskGroup() as group:
            await asyncio.wait_for(_wait_ready(proc, lines), 30)
            group.create_task(_drain(proc, lines), name="drain-first-analyzer")
            deadline = asyncio.get_running_loop().time() + 30
            while asyncio.get_running_loop().time() < deadline:
                ingest = await _records(http, url)
                if ingest is not None and ingest["records"] > 0:
                    seen_mid = ingest["records"]
                    proc.send_signal(signal.SIGKILL)
                    break
            await asyncio.wait_for(proc.wait(), 30)
        assert proc.returncode == -signal.SIGKILL, "".join(lines)
        assert seen_mid is not None and seen_mid < total, "ingest finished before the kill"
        counted, in_buckets, in_files = _db_sums(tmp_path / "m.db")
        assert 0 < counted < total  # killed mid-ingest, and what was committed is consistent
        assert counted == in_buckets == in_files

        lines.clear()
        proc = await asyncio.create_subprocess_exec(*command, stderr=asyncio.subprocess.PIPE)
        async with asyncio.TaskGroup() as group:
            await asyncio.wait_for(_wait_ready(proc, lines), 30)
            group.create_task(_drain(proc, lines), name="drain-second-analyzer")
            deadline = asyncio.get_running_loop().time() + 40
            final = None
            while asyncio.get_running_loop().time() < deadline:
                final = await _records(http, url)
                if final is not None and final["files"] == files:
                    break
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
    assert final is not None and final["files"] == files, "".join(lines)
    assert final["records"] == total and final["bad_records"] == 0
    assert _db_sums(tmp_path / "m.db") == (total, total, total)
    assert proc.returncode == 0, "".join(lines)


async def test_a_drift_sends_exactly_one_alert_to_the_webhook(
    aiohttp_client: Client, aiohttp_server: Any, tmp_path: Path, baseline: tuple[Path, Path]
) -> None:
    received: list[dict[str, Any]] = []
    arrived = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        arrived.set()
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    server = await aiohttp_server(receiver)
    config = make_config(
        tmp_path,
        baseline,
        alerts={"webhooks": [{"url": str(server.make_url("/hook"))}], "cooldown_s": 0},
    )
    clock = Clock(T0 + timedelta(minutes=30))
    client, app = await _start(aiohttp_client, config, clock)
    write_traffic(config.capture.dir, "current_nodrift.csv", 1000, T0 + timedelta(minutes=5))
    await monitor_of(app).tick()  # first evaluation ok: nothing is sent
    clock.set(T0 + timedelta(hours=1, minutes=40))
    write_traffic(
        config.capture.dir, "current_covariate.csv", 1500, T0 + timedelta(hours=1, minutes=2)
    )
    await monitor_of(app).tick()
    await asyncio.wait_for(arrived.wait(), 10)
    clock.set(T0 + timedelta(hours=1, minutes=41))
    await monitor_of(app).tick()  # still alert: no change, nothing enqueued
    deadline = asyncio.get_running_loop().time() + 10
    alerts = (await _status(client))["alerts"]
    while alerts["sent"] + alerts["failed"] < 1 and asyncio.get_running_loop().time() < deadline:
        alerts = (await _status(client))["alerts"]  # the delivery's answer is being read
    assert alerts["sent"] == 1 and alerts["pending"] == 0 and alerts["failed"] == 0
    assert len(received) == 1
    assert received[0]["previous_state"] == "ok" and received[0]["state"] == "alert"
    assert "income" in received[0]["features"]


def test_a_busy_port_stops_the_command_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config_path = tmp_path / "modelmon.yaml"
        config_path.write_text(
            yaml.safe_dump(
                {
                    "proxy": {"upstream": "http://127.0.0.1:9"},
                    "analyzer": {"listen": f"127.0.0.1:{port}", "db": "m.db"},
                }
            )
        )
        done = subprocess.run(
            [sys.executable, "-m", "modelmon", "analyzer", "--config", str(config_path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 1, done.stderr
    assert "change analyzer.listen" in done.stderr
