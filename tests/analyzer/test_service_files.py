"""The analyzer's own files: private modes, reports kept inside reports_dir, and a database
deleted under the running service detected (health 503, logged), never silently recreated."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import stat
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient

from analyzer.service.app import create_app, monitor_of
from analyzer.store.report_files import report_dir, write_json_atomic
from modelmon.config import ConfigError
from tests.analyzer.service_helpers import T0, Clock, make_config, write_baseline, write_traffic

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_database_reports_and_folders_are_private(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    old_umask = os.umask(0o022)  # the usual umask, which left them 0644/0755
    try:
        config = make_config(tmp_path, write_baseline(tmp_path / "baseline"), db="state/deep/m.db")
        clock = Clock(T0 + timedelta(minutes=59))
        app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
        await aiohttp_client(app)
        write_traffic(config.capture.dir, "current_nodrift.csv", 300, T0 + timedelta(minutes=5))
        await monitor_of(app).tick()
        clock.set(T0 + timedelta(hours=1, minutes=1))
        await monitor_of(app).tick()
    finally:
        os.umask(old_umask)
    db = config.analyzer.db
    assert mode(db) == 0o600 and mode(db.with_name("m.db-wal")) == 0o600
    assert mode(db.parent) == mode(db.parent.parent) == 0o700
    reports = sorted(p for p in config.analyzer.reports_dir.rglob("*") if p.is_file())
    assert {p.name for p in reports} >= {"statistics.json", "constraints.json"}
    assert all(mode(p) == 0o600 for p in reports)
    folders = [p for p in config.analyzer.reports_dir.rglob("*") if p.is_dir()]
    assert folders and all(mode(p) == 0o700 for p in folders)
    assert mode(tmp_path / "baseline" / "statistics.json") != 0o600  # test data, not ours
    written = tmp_path / "out" / "constraints.json"  # as `modelmon baseline` writes
    write_json_atomic(written, {"version": 0})
    assert mode(written) == 0o600 and mode(written.parent) == 0o700


@pytest.mark.parametrize("name", ["../../../x", "a/b", "..", ".hidden", "", "x" * 64, "a\\b"])
def test_a_schedule_name_that_is_not_one_folder_name_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="schedule_name"):
        make_config(tmp_path, None, schedule_name=name)


def test_a_report_folder_outside_reports_dir_is_refused(tmp_path: Path) -> None:
    config = make_config(tmp_path, None, schedule_name="daily.v2")
    inside = report_dir(config, T0)
    assert inside.is_relative_to(config.analyzer.reports_dir)
    forced = config.analyzer.model_copy(update={"schedule_name": "../../../x"})
    with pytest.raises(ValueError, match=r"outside analyzer\.reports_dir"):
        report_dir(config.model_copy(update={"analyzer": forced}), T0)


async def test_a_database_deleted_under_the_running_service_is_reported(
    aiohttp_client: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(tmp_path, None)
    client = await aiohttp_client(create_app(config, clock=Clock(T0), run_loop=False))
    assert (await client.get("/monitor/health")).status == 200
    config.analyzer.db.unlink()
    with caplog.at_level(logging.ERROR, logger="modelmon.analyzer.store"):
        for _ in range(2):
            response = await client.get("/monitor/health")
            body = await response.json()
            assert response.status == 503
            assert any("was deleted while the analyzer runs" in p for p in body["problems"])
    assert [r.message for r in caplog.records].count(body["problems"][0]) == 1  # logged once
    assert not config.analyzer.db.exists()  # not silently recreated


async def test_the_running_command_logs_a_deleted_database_by_itself(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = {
        "proxy": {"upstream": "http://127.0.0.1:9"},
        "capture": {"dir": "capture"},
        "analyzer": {"listen": f"127.0.0.1:{port}", "db": "m.db", "schedule_interval_s": 0.2},
    }
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(config))
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "modelmon", "analyzer", "--config", str(tmp_path / "m.yaml")),
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    seen: list[str] = []

    async def until(words: str) -> None:
        while words not in (line := (await proc.stderr.readline()).decode()):  # type: ignore[union-attr]
            assert line, "".join(seen)
            seen.append(line)

    health = f"http://127.0.0.1:{port}/monitor/health"
    try:
        await asyncio.wait_for(until("analyzer on http://"), 30)
        async with httpx.AsyncClient(timeout=10) as http:
            deadline = asyncio.get_running_loop().time() + 30
            while asyncio.get_running_loop().time() < deadline:  # the app starts after that line
                try:
                    if (await http.get(health)).status_code == 200:
                        break
                except httpx.TransportError:
                    continue  # not listening yet
            (tmp_path / "m.db").unlink()  # under the running service; nobody asks for health
            await asyncio.wait_for(until("was deleted while the analyzer runs"), 30)
            response = await http.get(health)
        assert response.status_code == 503 and "deleted" in response.json()["problems"][0]
        assert not (tmp_path / "m.db").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)
