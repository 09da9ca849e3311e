"""Resource limits on both engines: pool exhaustion, slow and idle clients, the connection cap.

Every timeout here is short (0.2 s) and every test waits on the socket (an answer, a close),
never on a clock of its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource

import aiohttp
import pytest

from capture_proxy.proxy_common import ANALYZER_POOL, REFUSAL_SLOTS, client_cap
from tests.capture_proxy.conftest import StartProxy, Upstream

SHORT = 0.2
_WAIT = 10  # an upper bound on waiting for the proxy, never an assertion on time


class Conn:
    """One raw client connection to the proxy."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, url: str) -> Conn:
        host, port = url.removeprefix("http://").split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def until_closed(self) -> bytes:
        """Everything the proxy sends until it closes the connection."""
        try:
            return await asyncio.wait_for(self.reader.read(), _WAIT)
        except ConnectionResetError:
            return b""

    async def answer(self) -> tuple[int, dict[str, str], bytes]:
        """One response with a Content-Length."""
        async with asyncio.timeout(_WAIT):
            head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            lines = head.split("\r\n")
            headers = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await self.reader.readexactly(int(headers["content-length"]))
        return int(lines[0].split(" ")[1]), headers, body

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass  # the proxy closed first: nothing left to flush


def _status(raw: bytes) -> int:
    return int(raw.split(b"\r\n", 1)[0].split(b" ")[1])


def _count(counter: object) -> float:
    return counter._value.get()  # type: ignore[attr-defined, no-any-return]


async def test_waiting_for_a_pooled_connection_is_a_504_after_connect_timeout(
    start_proxy: StartProxy, upstream: Upstream, client: aiohttp.ClientSession
) -> None:
    """max_connections 1 held by a stream: the next request gets 504, counted pool_exhausted."""
    proxy = await start_proxy(proxy={"max_connections": 1, "connect_timeout_s": SHORT})
    async with client.get(f"{proxy.url}/sse") as stream:
        assert await stream.content.readuntil(b"\n\n") == b"data: first\n\n"
        async with client.get(f"{proxy.url}/status/200") as resp:
            assert resp.status == 504
            body = await resp.json()
        assert body["error"] == "upstream timeout"
        assert body["detail"] == (
            f"no free connection to the upstream within {SHORT:g}s (all 1 in use)"
        )
        upstream.gate.set()
        assert (await stream.read()).count(b"data: token-") == 3
    errors = proxy.metrics.upstream_errors
    assert _count(errors.labels(kind="pool_exhausted")) == 1
    assert _count(errors.labels(kind="timeout")) == 0
    async with client.get(f"{proxy.url}/status/200") as resp:  # the pool recovered
        assert resp.status == 200


async def test_a_head_sent_too_slowly_is_a_408_and_closed(
    start_proxy: StartProxy, upstream: Upstream, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(proxy={"header_timeout_s": SHORT})
    slow = await Conn.open(proxy.url)
    await slow.send(b"GET /status/200 HTTP/1.1\r\n")  # one line, then silence
    async with client.get(f"{proxy.url}/status/201") as resp:  # others are served meanwhile
        assert resp.status == 201
    raw = await slow.until_closed()
    assert _status(raw) == 408
    assert b"connection: close" in raw.lower()
    assert json.loads(raw.split(b"\r\n\r\n", 1)[1])["error"] == "request timeout"
    await slow.close()
    assert _count(proxy.metrics.timeouts["head"]) == 1
    assert upstream.seen == []


async def test_a_stalled_body_is_a_408_and_frees_the_upstream_connection(
    start_proxy: StartProxy, upstream: Upstream, client: aiohttp.ClientSession
) -> None:
    """The only pooled connection is back for the next client once the stalled upload ends."""
    proxy = await start_proxy(
        proxy={"body_idle_timeout_s": SHORT, "max_connections": 1, "connect_timeout_s": 30}
    )
    slow = await Conn.open(proxy.url)
    size = 1_000_000  # streamed by both engines (above the whole-body size)
    await slow.send(
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size + b"x" * 1000
    )
    raw = await slow.until_closed()
    assert _status(raw) == 408
    await slow.close()
    async with client.post(f"{proxy.url}/upload", data=b"abc") as resp:
        assert resp.status == 200
        assert (await resp.json())["len"] == 3
    assert _count(proxy.metrics.timeouts["body"]) == 1
    assert _count(proxy.metrics.upstream_errors.labels(kind="unreachable")) == 0
    assert _count(proxy.metrics.upstream_errors.labels(kind="timeout")) == 0


async def test_a_stalled_chunked_body_is_a_408(
    start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(proxy={"body_idle_timeout_s": SHORT, "max_connections": 1})
    slow = await Conn.open(proxy.url)
    await slow.send(
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    )
    raw = await slow.until_closed()
    assert _status(raw) == 408
    await slow.close()
    async with client.post(f"{proxy.url}/upload", data=b"abc") as resp:
        assert resp.status == 200
    assert _count(proxy.metrics.timeouts["body"]) == 1
    assert _count(proxy.metrics.upstream_errors.labels(kind="unreachable")) == 0


async def test_idle_connections_are_closed_after_the_keepalive_timeout(
    start_proxy: StartProxy,
) -> None:
    proxy = await start_proxy(proxy={"keepalive_timeout_s": SHORT})
    silent = await Conn.open(proxy.url)  # never sends a byte
    used = await Conn.open(proxy.url)  # one request, then nothing
    await used.send(b"GET /status/200 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await used.answer())[0] == 200
    assert await silent.until_closed() == b""
    assert await used.until_closed() == b""
    await silent.close()
    await used.close()
    assert _count(proxy.metrics.timeouts["idle"]) == 2
    metrics = await Conn.open(proxy.url)
    await metrics.send(b"GET /monitor/proxy/metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    _, _, text = await metrics.answer()
    await metrics.close()
    assert b'modelmon_proxy_client_timeouts_total{phase="idle"} 2.0' in text


async def test_over_the_connection_cap_new_clients_get_503_and_health_still_answers(
    start_proxy: StartProxy, upstream: Upstream
) -> None:
    proxy = await start_proxy(proxy={"max_client_connections": 2})
    held = [await Conn.open(proxy.url) for _ in range(2)]
    for conn in held:  # both busy (a stream in progress) before the next one arrives
        await conn.send(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(_WAIT):
            await conn.reader.readuntil(b"data: first\n\n")
    over = await Conn.open(proxy.url)
    await over.send(b"GET /status/200 HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = await over.answer()
    assert (status, headers["connection"], headers["retry-after"]) == (503, "close", "1")
    assert json.loads(body)["error"] == "too many connections"
    assert await over.until_closed() == b""
    await over.close()
    health = await Conn.open(proxy.url)
    await health.send(b"GET /monitor/proxy/health HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = await health.answer()
    assert (status, json.loads(body)["status"]) == (200, "ok")
    await health.close()
    upstream.gate.set()  # the streams within the cap finish untouched
    for conn in held:
        async with asyncio.timeout(_WAIT):
            assert b"data: token-2" in await conn.reader.readuntil(b"0\r\n\r\n")
        await conn.close()
    assert _count(proxy.metrics.refused["503"]) == 1


async def test_at_the_cap_an_idle_connection_makes_room_for_a_new_client(
    start_proxy: StartProxy,
) -> None:
    proxy = await start_proxy(proxy={"max_client_connections": 2})
    idle = [await Conn.open(proxy.url) for _ in range(2)]
    for conn in idle:  # one request each, then nothing: idle keep-alive connections
        await conn.send(b"GET /status/200 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await conn.answer())[0] == 200
    new = await Conn.open(proxy.url)
    await new.send(b"GET /status/201 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await new.answer())[0] == 201
    assert await idle[0].until_closed() == b""  # the oldest idle one made room
    await idle[1].send(b"GET /status/202 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await idle[1].answer())[0] == 202
    for conn in [*idle, new]:
        await conn.close()
    assert _count(proxy.metrics.timeouts["idle"]) == 1
    assert _count(proxy.metrics.refused["503"]) == 0


async def test_a_flood_of_silent_connections_cannot_keep_health_out(
    start_proxy: StartProxy,
) -> None:
    """With the refusal slots full of silent connections, the oldest makes room."""
    proxy = await start_proxy(proxy={"max_client_connections": 1, "header_timeout_s": 30})
    first = await Conn.open(proxy.url)  # the cap: one connection, busy with a stream
    await first.send(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(_WAIT):
        await first.reader.readuntil(b"data: first\n\n")
    # Accepted in order: the slots fill, then each newcomer closes the oldest silent one.
    waiting = [await Conn.open(proxy.url) for _ in range(REFUSAL_SLOTS)]
    extra = [await Conn.open(proxy.url) for _ in range(3)]
    for conn in waiting[:3]:
        assert await conn.until_closed() == b""
    health = await Conn.open(proxy.url)
    await health.send(b"GET /monitor/proxy/health HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, _ = await health.answer()
    assert (status, headers["connection"]) == (200, "close")
    assert _count(proxy.metrics.refused["closed"]) == 4  # three for extra, one for health
    for conn in [first, health, *waiting, *extra]:
        await conn.close()


async def test_a_slow_small_upload_holds_no_upstream_connection(
    start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    """A small body is read whole before the pool is asked: others pass a trickling upload."""
    proxy = await start_proxy(proxy={"max_connections": 1, "connect_timeout_s": SHORT})
    slow = await Conn.open(proxy.url)
    await slow.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
    async with client.get(f"{proxy.url}/status/200") as resp:  # would be a 504 (pool held)
        assert resp.status == 200
    await slow.send(b"def")
    status, _, body = await slow.answer()
    assert (status, json.loads(body)["len"]) == (200, 6)
    await slow.close()
    assert _count(proxy.metrics.upstream_errors.labels(kind="pool_exhausted")) == 0


def test_the_cap_is_lowered_to_fit_the_descriptor_limit(caplog: pytest.LogCaptureFixture) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = 1024
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(low, hard), hard))
    try:
        with caplog.at_level(logging.WARNING, logger="modelmon.proxy"):
            cap = client_cap(4096, 256)
        assert client_cap(100, 256) == 100
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert cap == min(low, hard) - 256 - ANALYZER_POOL - REFUSAL_SLOTS - 64
    assert "lowered to" in caplog.text
