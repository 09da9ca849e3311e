"""The whole path with real processes: client → ``modelmon up`` (proxy + analyzer) → model.

The model and the webhook receiver are real aiohttp servers in this test; ``modelmon baseline``
and ``modelmon up`` are real subprocesses. Same-distribution traffic must leave the status
``ok``; drifted traffic must turn it to ``alert`` naming the drifted features, and the webhook
receiver must get exactly one alert for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from tests.shared_data import DATA, REQUEST_COLUMNS

FEATURES = REQUEST_COLUMNS
ROWS_PER_REQUEST = 10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _feature_rows(name: str) -> list[str]:
    with (DATA / name).open(newline="") as handle:
        return [",".join(row[f] for f in FEATURES) for row in csv.DictReader(handle)]


class Servers:
    """The model (scores each CSV line) and a webhook receiver, on one aiohttp app."""

    def __init__(self) -> None:
        self.hooks: list[dict[str, Any]] = []
        self.hook_arrived = asyncio.Event()

    async def invocations(self, request: web.Request) -> web.Response:
        lines = (await request.text()).splitlines()
        return web.Response(text="\n".join("0.25" for _ in lines), content_type="text/csv")

    async def hook(self, request: web.Request) -> web.Response:
        self.hooks.append(await request.json())
        self.hook_arrived.set()
        return web.json_response({"ok": True})


@pytest.fixture
async def servers() -> AsyncIterator[tuple[Servers, int]]:
    state = Servers()
    app = web.Application()
    app.router.add_post("/invocations", state.invocations)
    app.router.add_post("/hook", state.hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield state, port
    await runner.cleanup()


def _write_config(tmp: Path, model_port: int) -> tuple[Path, str]:
    proxy_port, analyzer_port = _free_port(), _free_port()
    config = {
        "endpoint": {"name": "e2e"},
        "proxy": {
            "listen": f"127.0.0.1:{proxy_port}",
            "upstream": f"http://127.0.0.1:{model_port}",
        },
        "capture": {
            "dir": "capture",
            "sampling_percentage": 100,
            "rotate_interval_s": 1,
            "flush_interval_s": 0.2,
        },
        "analyzer": {
            "listen": f"127.0.0.1:{analyzer_port}",
            "db": "modelmon.db",
            "reports_dir": "reports",
            "schedule_interval_s": 1,
            "bucket_s": 5,
            "window_s": 20,
            "min_samples": 300,
            "false_alarm_rate": 0.001,  # per window, and this test judges one every second
            "baseline": {
                "statistics": "baseline/statistics.json",
                "constraints": "baseline/constraints.json",
            },
            "payload": {"input": {"format": "csv", "columns": FEATURES}, "output": {}},
            "alerts": {"webhooks": [{"url": f"http://127.0.0.1:{model_port}/hook"}]},
        },
    }
    path = tmp / "modelmon.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, f"http://127.0.0.1:{proxy_port}"


def _write_baseline(tmp: Path, config: Path) -> None:
    table = tmp / "train.csv"
    table.write_text(",".join(FEATURES) + "\n" + "\n".join(_feature_rows("baseline.csv")) + "\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelmon",
            "baseline",
            "--config",
            str(config),
            "--data",
            str(table),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp / "baseline" / "statistics.json").exists()


async def _pause(seconds: float) -> None:
    """A bounded wait on an event nobody sets: the pacing between polls of a live service."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.Event().wait(), seconds)


async def _send(session: aiohttp.ClientSession, url: str, rows: list[str]) -> None:
    for start in range(0, len(rows), ROWS_PER_REQUEST):
        body = "\n".join(rows[start : start + ROWS_PER_REQUEST])
        async with session.post(
            f"{url}/invocations", data=body, headers={"Content-Type": "text/csv"}
        ) as response:
            assert response.status == 200
            assert response.headers["X-Modelmon-Event-Id"]
            await response.read()


async def _status_until(
    session: aiohttp.ClientSession,
    url: str,
    done: Callable[[dict[str, Any]], bool],
    proc: asyncio.subprocess.Process,
    within_s: float,
    traffic: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within_s
    last: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        assert proc.returncode is None, "modelmon up exited early"
        if traffic is not None:
            await traffic()
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(f"{url}/monitor/status") as response:
                if response.status == 200:
                    last = await response.json()
                    if done(last):
                        return last
        await _pause(0.2)
    raise AssertionError(f"status never reached the expected state; last: {last}")


def _dq(status: dict[str, Any]) -> dict[str, Any]:
    monitor: dict[str, Any] = status.get("monitors", {}).get("data_quality", {})
    return monitor


async def test_drift_through_the_proxy_alerts_once(
    tmp_path: Path, servers: tuple[Servers, int]
) -> None:
    state, model_port = servers
    config, url = _write_config(tmp_path, model_port)
    _write_baseline(tmp_path, config)
    log = (tmp_path / "up.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "modelmon",
        "up",
        "--config",
        str(config),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        async with aiohttp.ClientSession() as session:
            normal = _feature_rows("current_nodrift.csv")
            drifted = _feature_rows("current_covariate.csv")
            cursor = {"normal": 0, "drifted": 0}

            async def more(kind: str, rows: list[str]) -> None:
                start = cursor[kind] % len(rows)
                cursor[kind] += 200
                await _send(session, url, rows[start : start + 200])

            # The proxy answers before the analyzer's first run: traffic can start at once.
            await _status_until(session, url, lambda s: "state" in s, proc, 30)
            ok = await _status_until(
                session,
                url,
                lambda s: _dq(s).get("state") == "ok",
                proc,
                40,
                traffic=lambda: more("normal", normal),
            )
            assert not _dq(ok)["violations"]
            assert not state.hooks

            alert = await _status_until(
                session,
                url,
                lambda s: (
                    _dq(s).get("state") == "alert"
                    and {"income", "state"} <= {v["feature_name"] for v in _dq(s)["violations"]}
                ),
                proc,
                60,
                traffic=lambda: more("drifted", drifted),
            )
            features = _dq(alert)["features"]
            assert features["income"]["state"] == "alert"
            assert features["income"]["distance"] > features["income"]["threshold"]
            untouched = ("age", "tenure_months", "num_products", "channel")
            assert all(features[name]["state"] != "alert" for name in untouched)

            await asyncio.wait_for(state.hook_arrived.wait(), 20)
            # Two more runs in alert must not send the alert again.
            seen = alert["last_run"]
            for _ in range(2):
                later = await _status_until(
                    session,
                    url,
                    lambda s, seen=seen: s.get("last_run") != seen,
                    proc,
                    20,
                    traffic=lambda: more("drifted", drifted),
                )
                seen = later["last_run"]
            alerts = [h for h in state.hooks if h.get("state") == "alert"]
            assert len(alerts) == 1, state.hooks
            assert alerts[0]["monitor"] == "data_quality"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        log.close()
    assert code == 0, (tmp_path / "up.log").read_text()[-3000:]
    sealed = list((tmp_path / "capture" / "e2e").rglob("*.jsonl"))
    assert sealed and not list((tmp_path / "capture").rglob("*.part"))
