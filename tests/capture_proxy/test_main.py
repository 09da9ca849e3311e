"""``modelmon proxy`` as a real subprocess: start, forward, capture, SIGTERM, exit 0, sealed."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import psutil
import yaml

from capture_proxy.main import SWITCH_INTERVAL_S, bind_socket, tune_interpreter
from modelmon.capture_record import parse_record_line
from tests.capture_proxy.conftest import Upstream

LISTENING = re.compile(rb"worker (\d+) listening on (http://[0-9.]+:\d+)")


def _write_config(tmp_path: Path, upstream: str, workers: int) -> Path:
    config = {
        "endpoint": {"name": "cli-model", "variant": "v1"},
        "proxy": {"listen": "127.0.0.1:0", "upstream": upstream, "workers": workers},
        "capture": {"enabled": True, "sampling_percentage": 100, "dir": "capture"},
    }
    path = tmp_path / "modelmon.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def _start(config: Path, workers: int) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "modelmon",
        "proxy",
        "--config",
        str(config),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        start_new_session=True,  # its own process group: cleanup reaches the workers too
    )
    assert proc.stderr is not None
    ready: dict[int, str] = {}
    try:
        async with asyncio.timeout(30):
            while len(ready) < workers:
                line = await proc.stderr.readline()
                assert line, f"proxy exited before listening (status {await proc.wait()})"
                match = LISTENING.search(line)
                if match:
                    ready[int(match.group(1))] = match.group(2).decode()
    except BaseException:
        await _kill_if_running(proc)
        raise
    assert len(set(ready.values())) == 1, ready  # every worker on the same port
    return proc, ready[0]


async def _stop(proc: asyncio.subprocess.Process) -> tuple[int, bytes]:
    assert proc.stderr is not None
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(30):
        rest = await proc.stderr.read()
        return await proc.wait(), rest


async def _kill_if_running(proc: asyncio.subprocess.Process) -> None:
    """A failed test must not leave a proxy (or its workers) behind."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the group outlives a dead supervisor
    except ProcessLookupError:
        pass  # nothing of it is left
    async with asyncio.timeout(10):
        await proc.wait()


def _records(root: Path) -> list[dict[str, object]]:
    assert not list(root.rglob("*.part"))
    files = sorted(root.rglob("*.jsonl"))
    return [parse_record_line(line) for f in files for line in f.read_bytes().splitlines()]


async def _traffic(url: str, count: int) -> tuple[list[str], set[int]]:
    ids = []
    workers = set()
    # force_close: one connection per request, so SO_REUSEPORT can spread them over workers.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        for i in range(count):
            async with session.post(
                f"{url}/echo", data=f"{i},2\n", headers={"Content-Type": "text/csv"}
            ) as resp:
                assert resp.status == 200
                assert await resp.text() == f"{i},2\n"
                ids.append(resp.headers["X-Modelmon-Event-Id"])
            async with session.get(f"{url}/monitor/proxy/health") as resp:
                health = await resp.json()
                assert health["upstream"]["reachable"] is True
                workers.add(health["worker_id"])
    return ids, workers


async def test_cli_proxy_forwards_captures_and_seals_on_sigterm(
    tmp_path: Path, upstream: Upstream
) -> None:
    proc, url = await _start(_write_config(tmp_path, upstream.url, workers=1), 1)
    ids, workers = await _traffic(url, 10)
    assert workers == {0}
    status, log = await _stop(proc)
    assert status == 0, log.decode()
    records = _records(tmp_path / "capture" / "cli-model" / "v1")
    assert sorted(r["eventMetadata"]["eventId"] for r in records) == sorted(ids)  # type: ignore[index]


async def test_cli_workers_share_the_port_and_each_writes_its_own_files(
    tmp_path: Path, upstream: Upstream
) -> None:
    proc, url = await _start(_write_config(tmp_path, upstream.url, workers=2), 2)
    ids, workers = await _traffic(url, 40)
    assert workers == {0, 1}  # 40 fresh connections all hashed to one worker: p = 2**-39
    status, log = await _stop(proc)
    assert status == 0, log.decode()
    records = _records(tmp_path / "capture")
    assert sorted(r["eventMetadata"]["eventId"] for r in records) == sorted(ids)  # type: ignore[index]
    assert b"worker 0 stopped" in log and b"worker 1 stopped" in log


async def test_cli_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("proxy: {upstream: 'http://127.0.0.1:1', workerz: 2}\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "modelmon",
        "proxy",
        "--config",
        str(path),
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        _, err = await proc.communicate()
    assert proc.returncode == 2
    assert b"proxy.workerz" in err


async def test_workers_drain_and_exit_when_the_supervisor_is_killed(
    tmp_path: Path, upstream: Upstream
) -> None:
    proc, url = await _start(_write_config(tmp_path, upstream.url, workers=2), 2)
    try:
        ids, _ = await _traffic(url, 6)
        workers = psutil.Process(proc.pid).children()
        assert len(workers) == 2
        proc.send_signal(signal.SIGKILL)
        _, alive = await asyncio.to_thread(psutil.wait_procs, workers, 20)
        assert alive == []
    finally:
        await _kill_if_running(proc)
    records = _records(tmp_path / "capture")  # SIGTERM from the kernel: drained and sealed
    assert sorted(r["eventMetadata"]["eventId"] for r in records) == sorted(ids)  # type: ignore[index]


def test_cli_busy_port_exits_1_saying_what_to_change(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = tmp_path / "busy.yaml"
        config.write_text(
            f"proxy: {{listen: '127.0.0.1:{port}', upstream: 'http://127.0.0.1:1'}}\n"
            f"capture: {{dir: '{tmp_path / 'capture'}'}}\n"
        )
        done = subprocess.run(
            [sys.executable, "-m", "modelmon", "proxy", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "change proxy.listen" in done.stderr
    assert "Traceback" not in done.stderr


async def test_accepted_connections_send_small_writes_at_once() -> None:
    """TCP_NODELAY on every accepted socket (asyncio sets it only when the listening socket
    names IPPROTO_TCP): otherwise a second small answer on a connection, a pipelined one or
    an event of a stream, waits for the client's delayed ACK (40 ms on Linux)."""
    loop = asyncio.get_running_loop()
    sock = bind_socket("127.0.0.1", 0, reuse_port=False)
    accepted: asyncio.Future[asyncio.BaseTransport] = loop.create_future()

    class Accept(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted.set_result(transport)

    server = await loop.create_server(Accept, sock=sock)
    try:
        _, writer = await asyncio.open_connection(*sock.getsockname())
        transport = await asyncio.wait_for(accepted, 10)
        nodelay = transport.get_extra_info("socket").getsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY
        )
        transport.close()
        writer.close()
        await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
    assert nodelay


def test_a_worker_shortens_the_gil_switch_interval() -> None:
    # The capture writer thread must not keep the event loop out of the GIL for Python's
    # default 5 ms (docs/benchmarks-proxy.md); a worker runs with SWITCH_INTERVAL_S.
    previous = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        tune_interpreter()
        assert sys.getswitchinterval() == SWITCH_INTERVAL_S < 0.001
    finally:
        sys.setswitchinterval(previous)
