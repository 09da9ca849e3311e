"""Real servers for the proxy tests: a model-server stand-in, the proxy app, a test client.

Everything listens on 127.0.0.1 port 0. The stand-in upstream exposes the behaviours the tests
drive (echo, gated streams, hangs, broken responses) and the events that let a test wait for
what the upstream saw instead of sleeping.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from capture_proxy.aio_guard import ProxySite
from capture_proxy.app import PROXY_KEY, Proxy, build_app
from capture_proxy.engine import FastProxy
from capture_proxy.fast_server import FastServer
from capture_proxy.main import bind_socket, make_runner
from capture_proxy.metrics import ProxyMetrics
from modelmon.config import ModelmonConfig, parse_config

CHUNK = 64 * 1024


def pattern(size: int, seed: int = 1) -> bytes:
    """Deterministic incompressible bytes, so a test can recompute what it expects."""
    return random.Random(seed).randbytes(size)


@dataclass
class Upstream:
    """The stand-in model server and what it saw."""

    url: str = ""
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    first_chunk_read: asyncio.Event = field(default_factory=asyncio.Event)
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    release_hang: asyncio.Event = field(default_factory=asyncio.Event)
    seen: list[dict[str, Any]] = field(default_factory=list)


def _upstream_app(state: Upstream) -> web.Application:
    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {"X-Echo-Method": request.method, "X-Echo-Path": request.raw_path}
        if "Content-Type" in request.headers:
            headers["Content-Type"] = request.headers["Content-Type"]
        return web.Response(body=body, headers=headers)

    async def inspect(request: web.Request) -> web.Response:
        body = await request.read()
        seen = {
            "method": request.method,
            "raw_path": request.raw_path,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body_len": len(body),
            "peer_port": request.transport.get_extra_info("peername")[1]
            if request.transport
            else None,
        }
        state.seen.append(seen)
        return web.json_response(seen, headers={"X-Upstream-Custom": "kept", "Set-Cookie": "a=b"})

    async def download(request: web.Request) -> web.StreamResponse:
        size = int(request.query["size"])
        data = pattern(size, int(request.query.get("seed", "1")))
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        if request.query.get("length") == "1":
            response.content_length = size
        await response.prepare(request)
        if request.method == "HEAD":  # aiohttp would send a streamed body even for HEAD
            return response
        gated = request.query.get("gated") == "1"
        for offset in range(0, size, CHUNK):
            await response.write(data[offset : offset + CHUNK])
            if gated and offset == 0:
                try:
                    await state.gate.wait()
                except asyncio.CancelledError:
                    state.cancelled.set()
                    raise
        await response.write_eof()
        return response

    async def upload(request: web.Request) -> web.Response:
        digest = hashlib.sha256()
        total = 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            total += len(chunk)
            state.first_chunk_read.set()
        return web.json_response({"sha256": digest.hexdigest(), "len": total})

    async def sse(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: first\n\n")
        await state.gate.wait()
        for i in range(3):
            await response.write(f"data: token-{i}\n\n".encode())
        await response.write_eof()
        return response

    async def hang(request: web.Request) -> web.Response:
        state.entered.set()
        try:
            await state.release_hang.wait()
        except asyncio.CancelledError:
            state.cancelled.set()
            raise
        return web.Response(text="late")

    async def gzipped(request: web.Request) -> web.Response:
        body = gzip.compress(json.dumps({"score": 0.25, "pad": "x" * 500}).encode())
        return web.Response(
            body=body,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.json_response({"status": code}, status=code)

    async def broken(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "100000"})
        await response.prepare(request)
        await response.write(b"x" * 1000)
        assert request.transport is not None
        request.transport.abort()
        return response

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/echo{tail:.*}", echo)
    app.router.add_route("*", "/inspect{tail:.*}", inspect)
    app.router.add_get("/download", download)
    app.router.add_post("/upload", upload)
    app.router.add_get("/sse", sse)
    app.router.add_route("*", "/hang", hang)
    app.router.add_get("/gzip", gzipped)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/broken", broken)
    return app


async def start_app(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on 127.0.0.1:0 with the proxy's runner options; return its URL."""
    runner = make_runner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    state = Upstream()
    runner, state.url = await start_app(_upstream_app(state))
    yield state
    state.gate.set()
    state.release_hang.set()
    await runner.cleanup()


@dataclass
class RunningProxy:
    url: str
    config: ModelmonConfig
    metrics: ProxyMetrics
    proxy: Proxy | FastProxy
    stop_fn: Callable[[], Awaitable[None]]
    stopped: bool = False

    async def stop(self) -> None:
        """Shut down as SIGTERM would: drain requests, close the sink (seal files)."""
        if not self.stopped:
            self.stopped = True
            await self.stop_fn()


def make_config(tmp_path: Path, upstream_url: str, **sections: dict[str, Any]) -> ModelmonConfig:
    data: dict[str, Any] = {
        "endpoint": {"name": "test-model", "variant": "AllTraffic"},
        "proxy": {"listen": "127.0.0.1:0", "upstream": upstream_url},
        "capture": {"enabled": False, "dir": str(tmp_path / "capture")},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_config(data, base=tmp_path)


StartProxy = Callable[..., Awaitable[RunningProxy]]


@pytest.fixture(params=["fast", "aiohttp"])
async def start_proxy(
    request: pytest.FixtureRequest, tmp_path: Path, upstream: Upstream
) -> AsyncIterator[StartProxy]:
    """``await start_proxy(capture={...}, proxy={...})`` serves a proxy in front of ``upstream``,
    once per engine (the same black-box tests hold for both)."""
    engine: str = request.param
    running: list[RunningProxy] = []

    async def start(**sections: dict[str, Any]) -> RunningProxy:
        sections.setdefault("proxy", {})["engine"] = engine
        config = make_config(tmp_path, upstream.url, **sections)
        metrics = ProxyMetrics()
        handle: RunningProxy
        if engine == "aiohttp":
            app = build_app(config, metrics=metrics)
            runner = make_runner(app)
            await runner.setup()
            sock = bind_socket("127.0.0.1", 0, reuse_port=False)
            await ProxySite(runner, sock, app[PROXY_KEY].guards).start()
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            handle = RunningProxy(url, config, metrics, app[PROXY_KEY], runner.cleanup)
        else:
            fast = FastProxy(config, metrics)
            await fast.start()
            server = FastServer(fast.handle, limits=fast.limits, metrics=metrics)
            sock = bind_socket("127.0.0.1", 0, reuse_port=False)
            await server.start(sock)
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"

            async def stop() -> None:
                try:
                    await server.shutdown(5.0)
                finally:
                    await fast.close()

            handle = RunningProxy(url, config, metrics, fast, stop)
        running.append(handle)
        return handle

    yield start
    for handle in running:
        await handle.stop()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """A client that shows the bytes as they came (no decompression, no cookie jar)."""
    async with aiohttp.ClientSession(
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=30),
    ) as session:
        yield session
