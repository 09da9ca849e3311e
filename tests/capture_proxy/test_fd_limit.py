"""Descriptor exhaustion: ``modelmon proxy`` under ``ulimit -n 256`` and 400 idle connections.

A proxy that let idle connections take every descriptor would refuse everyone, health
checks included. The cap (fitted to the limit at start) and the eviction of idle connections
at the cap keep new clients and health served. A real subprocess, on both engines.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest
import yaml

from tests.capture_proxy.conftest import Upstream
from tests.capture_proxy.test_client_limits import Conn

LISTENING = re.compile(rb"worker 0 listening on (http://[0-9.]+:\d+)")
NOFILE = 256
IDLE_CONNECTIONS = 400
# ulimit -n first, then exactly what `python -m modelmon proxy --config X` runs.
LAUNCH = (
    "import resource, runpy, sys;"
    f"resource.setrlimit(resource.RLIMIT_NOFILE, ({NOFILE}, {NOFILE}));"
    "sys.argv = ['modelmon', *sys.argv[1:]];"
    "runpy.run_module('modelmon', run_name='__main__', alter_sys=True)"
)


@pytest.mark.parametrize("engine", ["fast", "aiohttp"])
async def test_idle_connections_beyond_the_descriptor_limit_keep_nobody_out(
    engine: str, tmp_path: Path, upstream: Upstream
) -> None:
    config = {
        "proxy": {
            "listen": "127.0.0.1:0",
            "upstream": upstream.url,
            "engine": engine,
            "max_connections": 8,
        },
        "capture": {"enabled": False, "dir": "capture"},
    }
    path = tmp_path / "modelmon.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LAUNCH,
        "proxy",
        "--config",
        str(path),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    assert proc.stderr is not None
    conns: list[Conn] = []
    try:
        log = b""
        async with asyncio.timeout(30):
            while not (match := LISTENING.search(log)):
                line = await proc.stderr.readline()
                assert line, f"proxy exited before listening (status {await proc.wait()})"
                log += line
        url = match.group(1).decode()
        assert b"lowered to" in log  # the cap was fitted to the descriptor limit
        conns = [await Conn.open(url) for _ in range(IDLE_CONNECTIONS)]
        health = await Conn.open(url)
        await health.send(b"GET /monitor/proxy/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await health.answer())[0] == 200
        client = await Conn.open(url)
        await client.send(b"GET /status/201 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await client.answer())[0] == 201
        conns += [health, client]
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await proc.stderr.read()
            assert await proc.wait() == 0
    finally:
        for conn in conns:
            await conn.close()
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
