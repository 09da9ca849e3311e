"""What the end-to-end tests share: the model and webhook app on 127.0.0.1:0, ``modelmon up``
as a real subprocess (stopped with SIGTERM, exit code checked), and polling its status."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from aiohttp import web


class ModelAndHook(Protocol):
    """A test's model (``POST /invocations``) and webhook receiver (``POST /hook``)."""

    async def invocations(self, request: web.Request) -> web.Response: ...

    async def hook(self, request: web.Request) -> web.Response: ...


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serving(state: ModelAndHook) -> AsyncIterator[int]:
    """``state``'s two routes on one aiohttp app at 127.0.0.1:0; yields the port."""
    app = web.Application()
    app.router.add_post("/invocations", state.invocations)
    app.router.add_post("/hook", state.hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def modelmon_up(config: Path, log_path: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """``modelmon up --config config`` (output to ``log_path``); on leaving, SIGTERM and the
    exit code must be 0 (the log's end in the message if not)."""
    log = log_path.open("wb")
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
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        finally:
            log.close()
    assert code == 0, _tail(log_path)


def _tail(path: Path) -> str:
    return path.read_text()[-3000:]


async def pause(seconds: float) -> None:
    """A bounded wait on an event nobody sets: the pacing between polls of a live service."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.Event().wait(), seconds)


async def status_until(
    session: aiohttp.ClientSession,
    url: str,
    done: Callable[[dict[str, Any]], bool],
    proc: asyncio.subprocess.Process,
    within_s: float,
    traffic: Callable[[], Awaitable[Any]] | None = None,
) -> dict[str, Any]:
    """Poll ``/monitor/status`` (sending ``traffic`` first each time) until ``done``."""
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
        await pause(0.2)
    raise AssertionError(f"status never reached the expected state; last: {last}")


def monitor(status: dict[str, Any], name: str) -> dict[str, Any]:
    """``monitors.{name}`` of a status document (empty when it is not there yet)."""
    found: dict[str, Any] = status.get("monitors", {}).get(name, {})
    return found
