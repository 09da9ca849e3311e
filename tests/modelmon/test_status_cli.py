"""``modelmon status`` against a real aiohttp server serving a status document."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from capture_proxy.health import health_document
from capture_proxy.metrics import ProxyMetrics
from modelmon.cli.status import default_url, render_status, summary_line
from modelmon.config import parse_config

DOCUMENT: dict[str, Any] = {
    "state": "alert",
    "monitors": {
        "data_quality": {
            "state": "alert",
            "window": {"start": "2026-11-27T06:00:00Z", "end": "2026-11-27T07:00:00Z"},
            "samples": 1500,
            "violations": [
                {
                    "feature_name": "income",
                    "constraint_check_type": "baseline_drift_check",
                    "description": "distance 0.23 exceeds threshold 0.1",
                }
            ],
            "features": {
                "age": {"state": "ok", "distance": 0.01, "threshold": 0.1},
                "income": {"state": "alert", "distance": 0.23, "threshold": 0.1, "margin": 0.0},
                "state": {"state": "warning", "distance": 0.1445, "threshold": 0.1, "margin": 0.05},
            },
        }
    },
    "ingest": {"records": 60000, "bad_records": 7, "files": 60, "bad_by_reason": {"json": 7}},
    "alerts": {"webhooks": 1, "sent": 2, "failed": 1, "pending": 0, "last_error": "refused"},
    "last_run": "2026-11-27T07:00:05Z",
    "stale_s": 3,
}


class StatusServer:
    """A real server answering ``/monitor/status``; remembers the Authorization it saw."""

    def __init__(self) -> None:
        self.authorization: str | None = None
        self.required_token: str | None = None
        self.url = ""
        self.upstream: str | None = None  # set: also answer the proxy's own health

    async def proxy_health(self, request: web.Request) -> web.Response:
        if self.upstream is None:
            raise web.HTTPNotFound()
        document = await health_document(  # the proxy's own code, probing for real
            upstream=self.upstream,
            connect_timeout_s=2.0,
            metrics=ProxyMetrics(),
            capture_enabled=True,
            queue_depth=0,
            worker_id=0,
        )
        return web.json_response(document)

    async def status(self, request: web.Request) -> web.Response:
        self.authorization = request.headers.get("Authorization")
        if self.required_token and self.authorization != f"Bearer {self.required_token}":
            return web.json_response({"error": "a bearer token is required"}, status=401)
        return web.json_response(DOCUMENT)


@pytest.fixture
async def server() -> AsyncIterator[StatusServer]:
    state = StatusServer()
    app = web.Application()
    app.router.add_get("/monitor/status", state.status)
    app.router.add_get("/monitor/proxy/health", state.proxy_health)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield state
    await runner.cleanup()


async def _status(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``modelmon status`` as a subprocess (the server keeps answering meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "modelmon",
        "status",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_prints_state_features_violations_and_ingest(server: StatusServer) -> None:
    code, out, err = await _status("--url", server.url)
    assert code == 0, err
    assert out.startswith("state: ALERT")
    assert "samples 1500" in out and "2026-11-27T06:00:00Z → 2026-11-27T07:00:00Z" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("  ") and "0.1000" in line]
    assert [row[0] for row in rows] == ["income", "state", "age"]  # drifting first
    assert rows[0][1:] == ["ALERT", "0.2300", "0.1000", "0.0000"]
    assert rows[1][1:] == ["WARNING", "0.1445", "0.1000", "0.0500"]  # under threshold + margin
    assert rows[2][1:] == ["ok", "0.0100", "0.1000", "-"]
    assert "distance − margin > threshold" in out
    assert "income: baseline_drift_check: distance 0.23 exceeds threshold 0.1" in out
    assert "60000 records, 7 bad, 60 files, bad_by_reason: json=7" in out
    assert "last run: 2026-11-27T07:00:05Z" in out and "stale_s: 3" in out
    assert "alerts: 2 sent, 1 failed, 0 pending to 1 webhook(s); last error: refused" in out
    assert "\x1b[" not in out  # no colour codes when stdout is not a terminal


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_says_whether_the_proxy_reaches_the_upstream(server: StatusServer) -> None:
    code, out, _ = await _status("--url", server.url)
    assert code == 0 and "upstream:" not in out  # not a proxy: nothing said
    server.upstream = server.url + "/model"  # a port that listens
    code, out, _ = await _status("--url", server.url)
    assert code == 0
    assert out.splitlines()[1].startswith(f"upstream: {server.url}/model reachable (")
    dead = _closed_port_url()
    server.upstream = dead.replace("http://", "http://user:pw@")
    code, out, _ = await _status("--url", server.url)
    assert code == 0
    line = out.splitlines()[1]
    assert line == f"upstream: {dead} NOT REACHABLE from the proxy (requests get 502)"


async def test_json_prints_the_raw_document(server: StatusServer) -> None:
    code, out, _ = await _status("--url", server.url + "/", "--json")
    assert code == 0
    assert json.loads(out) == DOCUMENT


async def test_token_from_the_environment(server: StatusServer) -> None:
    server.required_token = "s3cret"
    code, _, err = await _status("--url", server.url, env={"MODELMON_TOKEN": ""})
    assert code == 1
    assert "answered 401 (set MODELMON_TOKEN)" in err
    code, out, _ = await _status("--url", server.url, env={"MODELMON_TOKEN": "s3cret"})
    assert code == 0 and server.authorization == "Bearer s3cret"
    assert out.startswith("state: ALERT")


async def test_url_comes_from_the_config(server: StatusServer, tmp_path: Path) -> None:
    port = server.url.rsplit(":", 1)[1]
    config = tmp_path / "m.yaml"
    config.write_text(
        yaml.safe_dump({"proxy": {"listen": f"0.0.0.0:{port}", "upstream": "http://x:1"}})
    )
    code, out, err = await _status("--config", str(config))
    assert code == 0, err
    assert f"(http://127.0.0.1:{port})" in out


async def test_a_down_service_is_one_clear_line_and_exit_1() -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        code, out, err = await _status("--url", url)
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"modelmon status: cannot reach {url}/monitor/status")


async def test_a_closed_pipe_is_not_an_error(server: StatusServer) -> None:
    proc = await asyncio.create_subprocess_shell(
        f"set -o pipefail; {sys.executable} -m modelmon status --url {server.url} | true",
        executable="/bin/bash",
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err


def test_default_url_from_listen() -> None:
    assert default_url(None) == "http://127.0.0.1:8080"
    config = parse_config({"proxy": {"listen": "[::1]:9000", "upstream": "http://x:1"}})
    assert default_url(config) == "http://[::1]:9000"


def test_render_tolerates_an_empty_or_partial_document() -> None:
    assert render_status({}).splitlines()[0] == "state: unknown"
    partial = {"state": "not_enough_data", "monitors": {"data_quality": {"samples": 12}}}
    text = render_status(partial)
    assert "data_quality: unknown" in text  # the monitor's own state is missing
    assert "samples 12" in text
    no_baseline = {
        "state": "no_baseline",
        "monitors": {
            "data_quality": {
                "state": "no_baseline",
                "baseline": {"error": "no baseline statistics at /x: run `modelmon baseline`"},
            }
        },
    }
    assert "  baseline: no baseline statistics at /x" in render_status(no_baseline)
    assert summary_line(DOCUMENT) == "state alert  samples 1500  drifting: income 0.230/0.10"


def test_render_says_where_the_chunks_were_decoded() -> None:
    """``analyzer.decode_process``: a line with its counts; given up, said so; none: no line."""
    process = {"chunks": 67, "here": 33, "fallbacks": 2, "restarts": 1, "given_up": False}
    text = render_status({"analyzer": {"decode_process": process}})
    assert (
        "decoding process: 67 chunks, 33 on the ingest thread beside it, 2 fallbacks, "
        "worker deaths 1" in text
    )
    assert "given up" not in text
    given_up = {**process, "restarts": 3, "given_up": True}
    shown = render_status({"analyzer": {"decode_process": given_up}})
    assert "worker deaths 3 (given up: every chunk on the ingest thread)" in shown
    assert "decoding process" not in render_status({"analyzer": {"decode_process": None}})
