"""One behaviour for both engines where they used to differ (docs/proxy.md, "One behaviour")."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from tests.capture_proxy.conftest import StartProxy, Upstream, start_app
from tests.capture_proxy.test_client_limits import Conn


def _count(counter: object) -> float:
    return counter._value.get()  # type: ignore[attr-defined, no-any-return]


def _status(raw: bytes) -> int:
    return int(raw.split(b"\r\n", 1)[0].split(b" ")[1])


def _upstream_errors(proxy_metrics: object) -> float:
    errors = proxy_metrics.upstream_errors  # type: ignore[attr-defined]
    return sum(_count(errors.labels(kind=k)) for k in ("unreachable", "timeout", "pool_exhausted"))


@pytest.fixture
async def analyzer() -> AsyncIterator[tuple[str, list[str]]]:
    """A stand-in analyzer that records the paths it saw."""
    seen: list[str] = []

    async def any_path(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.json_response({"analyzer": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", any_path)
    runner, url = await start_app(app)
    yield url, seen
    await runner.cleanup()


RawUpstream = Callable[[bytes], Awaitable[str]]


@pytest.fixture
async def raw_upstream() -> AsyncIterator[RawUpstream]:
    """A bare upstream answering every request head with the given bytes."""
    servers: list[asyncio.Server] = []

    async def start(answer: bytes) -> str:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    await reader.readuntil(b"\r\n\r\n")
                    writer.write(answer)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass  # the proxy closed its end
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def _exchange(url: str, request: bytes) -> bytes:
    conn = await Conn.open(url)
    try:
        await conn.send(request)
        return await conn.until_closed()
    finally:
        await conn.close()


async def test_a_bad_chunk_size_mid_upload_is_a_400_not_an_upstream_error(
    start_proxy: StartProxy, upstream: Upstream
) -> None:
    proxy = await start_proxy()
    conn = await Conn.open(proxy.url)
    await conn.send(
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    )
    await asyncio.wait_for(upstream.first_chunk_read.wait(), 10)  # the upload is in flight
    await conn.send(b"zz\r\nnot a chunk\r\n")
    raw = await conn.until_closed()
    await conn.close()
    assert _status(raw) == 400, raw[:100]
    assert _upstream_errors(proxy.metrics) == 0


@pytest.mark.parametrize("chunks", [b"zz\r\nab\r\n", b"2\r\nok\r\nzz\r\nab\r\n"])
async def test_a_bad_chunk_size_in_one_piece_is_a_400_never_forwarded(
    chunks: bytes, start_proxy: StartProxy, upstream: Upstream
) -> None:
    proxy = await start_proxy()
    raw = await _exchange(
        proxy.url,
        b"POST /inspect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks,
    )
    assert _status(raw) == 400
    assert upstream.seen == []
    assert _upstream_errors(proxy.metrics) == 0


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /inspect\r\n\r\n",  # HTTP/0.9
        b"GET /inspect HTTP/1.1\r\nX-No-Host: 1\r\n\r\n",  # HTTP/1.1 requires Host
    ],
)
async def test_http09_and_http11_without_host_are_400(
    request_bytes: bytes, start_proxy: StartProxy, upstream: Upstream
) -> None:
    proxy = await start_proxy()
    raw = await _exchange(proxy.url, request_bytes)
    assert _status(raw) == 400, raw[:100]
    assert upstream.seen == []


async def test_an_http09_request_gets_the_json_400(start_proxy: StartProxy) -> None:
    proxy = await start_proxy()
    raw = await _exchange(proxy.url, b"GET /inspect\r\n\r\n")
    assert json.loads(raw.split(b"\r\n\r\n", 1)[1]) == {
        "error": "bad request",
        "detail": "unsupported HTTP version 0.9",
    }


async def test_http10_without_host_is_forwarded_with_the_upstreams(
    start_proxy: StartProxy, upstream: Upstream
) -> None:
    proxy = await start_proxy()
    raw = await _exchange(proxy.url, b"GET /inspect HTTP/1.0\r\n\r\n")
    assert _status(raw) == 200
    host = [v for k, v in upstream.seen[0]["headers"] if k.lower() == "host"]
    assert host == [upstream.url.removeprefix("http://")]


@pytest.mark.parametrize(
    "target",
    [
        b"http://model.example/monitor/status",  # absolute form: routed on its path
        b"/x/../monitor/status",
        b"//monitor/status",
        b"/%6Donitor/status",
    ],
)
async def test_monitor_paths_in_any_spelling_go_to_the_analyzer(
    target: bytes,
    start_proxy: StartProxy,
    upstream: Upstream,
    analyzer: tuple[str, list[str]],
) -> None:
    url, seen = analyzer
    proxy = await start_proxy(proxy={"analyzer_url": url})
    raw = await _exchange(
        proxy.url, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert _status(raw) == 200
    assert json.loads(raw.split(b"\r\n\r\n", 1)[1]) == {"analyzer": True}
    assert len(seen) == 1
    assert upstream.seen == []


async def test_health_in_absolute_form_is_answered_by_the_proxy(
    start_proxy: StartProxy, upstream: Upstream
) -> None:
    proxy = await start_proxy()
    raw = await _exchange(
        proxy.url,
        b"GET http://x/monitor/proxy/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert _status(raw) == 200
    assert json.loads(raw.split(b"\r\n\r\n", 1)[1])["status"] == "ok"
    assert upstream.seen == []


async def test_no_server_field_of_the_proxys_own(
    start_proxy: StartProxy, raw_upstream: RawUpstream
) -> None:
    bare = await raw_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    named = await raw_upstream(b"HTTP/1.1 200 OK\r\nServer: model/1\r\nContent-Length: 2\r\n\r\nok")
    request = b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    for upstream_url, expected in ((bare, []), (named, [b"server: model/1"])):
        proxy = await start_proxy(proxy={"upstream": upstream_url})
        raw = await _exchange(proxy.url, request)
        head = raw.split(b"\r\n\r\n", 1)[0].lower().split(b"\r\n")
        assert [line for line in head if line.startswith(b"server:")] == expected
        health = await _exchange(proxy.url, request.replace(b"/x", b"/monitor/proxy/health"))
        assert b"\r\nserver:" not in health.split(b"\r\n\r\n", 1)[0].lower()


async def test_x_forwarded_for_keeps_every_value_and_appends_the_client(
    start_proxy: StartProxy, upstream: Upstream
) -> None:
    proxy = await start_proxy()
    raw = await _exchange(
        proxy.url,
        b"GET /inspect HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.1.1.1\r\n"
        b"X-Forwarded-For: 2.2.2.2, 3.3.3.3\r\nConnection: close\r\n\r\n",
    )
    assert _status(raw) == 200
    xff = [v for k, v in upstream.seen[0]["headers"] if k.lower() == "x-forwarded-for"]
    assert xff == ["1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1"]
