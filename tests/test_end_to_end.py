"""The whole path with real processes: client → ``modelmon up`` (proxy + analyzer) → model.

The model and the webhook receiver are real aiohttp servers in this test; ``modelmon baseline``
and ``modelmon up`` are real subprocesses. Same-distribution traffic must leave the status
``ok``; drifted traffic must turn it to ``alert`` naming the drifted features, and the webhook
receiver must get exactly one alert for it.
"""

from __future__ import annotations

import asyncio
import csv
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from tests.e2e_helpers import free_port, modelmon_up, monitor, serving, status_until
from tests.shared_data import DATA, REQUEST_COLUMNS

FEATURES = REQUEST_COLUMNS
ROWS_PER_REQUEST = 10


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
    async with serving(state) as port:
        yield state, port


def _write_config(tmp: Path, model_port: int) -> tuple[Path, str]:
    proxy_port, analyzer_port = free_port(), free_port()
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


async def _send(session: aiohttp.ClientSession, url: str, rows: list[str]) -> None:
    for start in range(0, len(rows), ROWS_PER_REQUEST):
        body = "\n".join(rows[start : start + ROWS_PER_REQUEST])
        async with session.post(
            f"{url}/invocations", data=body, headers={"Content-Type": "text/csv"}
        ) as response:
            assert response.status == 200
            assert response.headers["X-Modelmon-Event-Id"]
            await response.read()


def _dq(status: dict[str, Any]) -> dict[str, Any]:
    return monitor(status, "data_quality")


async def test_drift_through_the_proxy_alerts_once(
    tmp_path: Path, servers: tuple[Servers, int]
) -> None:
    state, model_port = servers
    config, url = _write_config(tmp_path, model_port)
    _write_baseline(tmp_path, config)
    async with modelmon_up(config, tmp_path / "up.log") as proc, aiohttp.ClientSession() as session:
        normal = _feature_rows("current_nodrift.csv")
        drifted = _feature_rows("current_covariate.csv")
        cursor = {"normal": 0, "drifted": 0}

        async def more(kind: str, rows: list[str]) -> None:
            start = cursor[kind] % len(rows)
            cursor[kind] += 200
            await _send(session, url, rows[start : start + 200])

        # The proxy answers before the analyzer's first run: traffic can start at once.
        await status_until(session, url, lambda s: "state" in s, proc, 30)
        ok = await status_until(
            session,
            url,
            lambda s: _dq(s).get("state") == "ok",
            proc,
            40,
            traffic=lambda: more("normal", normal),
        )
        assert not _dq(ok)["violations"]
        assert not state.hooks

        alert = await status_until(
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
            later = await status_until(
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
    sealed = list((tmp_path / "capture" / "e2e").rglob("*.jsonl"))
    assert sealed and not list((tmp_path / "capture").rglob("*.part"))
