"""Traffic the happy-path tests do not make, on raw sockets, against both engines.

Heads that arrive in pieces before a big body, an upstream that sends more than one response,
upgrade requests, a POST on a connection the upstream drops without answering, and a client
that pipelines many requests and reads no answers (its memory stays bounded).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import psutil
import pytest

from tests.capture_proxy.conftest import StartProxy, Upstream
from tests.capture_proxy.wire_support import Settle, read_answer, send_in_pieces

# (connection number, request number on it, request head) -> the bytes to answer (a list: in
# pieces, each read by the proxy before the next is written), or None to close that
# connection without answering.
Script = Callable[[int, int, bytes], bytes | list[bytes] | None]


@dataclass
class Scripted:
    """A bare upstream that answers as ``script`` says and records what it was sent."""

    script: Script
    requests: list[bytes] = field(default_factory=list)  # request lines, in arrival order
    connections: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    server: asyncio.Server | None = None
    settle: Settle = field(default_factory=Settle)

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        try:
            for number in range(1_000_000):
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.requests.append(head.split(b"\r\n", 1)[0])
                self.arrived.set()
                answer = self.script(conn, number, head)
                if answer is None:
                    break
                pieces = answer if isinstance(answer, list) else [answer]
                await send_in_pieces(writer, pieces, self.settle)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the proxy closed its end: this connection is done
        finally:
            writer.close()


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[Script], Awaitable[tuple[Scripted, str]]]]:
    started: list[Scripted] = []

    async def start(script: Script) -> tuple[Scripted, str]:
        upstream = Scripted(script)
        started.append(upstream)
        return upstream, await upstream.start()

    yield start
    for upstream in started:
        assert upstream.server is not None
        upstream.server.close()
        await upstream.server.wait_closed()
        upstream.settle.close()


@pytest.fixture
def settle() -> AsyncIterator[Settle]:  # type: ignore[misc]
    ping = Settle()
    yield ping
    ping.close()


async def _open(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()


_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def test_a_head_in_pieces_before_a_big_body_is_not_too_large(
    start_proxy: StartProxy, upstream: Upstream, settle: Settle
) -> None:
    """The read that ends a head also carries body bytes: they are not head bytes."""
    body = b"z" * 200_000
    head = b"POST /upload HTTP/1.1\r\nHost: m\r\nContent-Length: %d\r\n\r\n" % len(body)
    proxy = await start_proxy()
    reader, writer = await _open(proxy.url)
    try:
        for offset in range(1, len(head), 5):
            await send_in_pieces(writer, [head[:offset], head[offset:] + body], settle)
            status, _, answer = await read_answer(reader)
            assert (status, b'"len": 200000' in answer) == (200, True), offset
    finally:
        await _close(writer)


async def test_a_head_near_the_limit_in_small_pieces_passes(
    start_proxy: StartProxy, upstream: Upstream, settle: Settle
) -> None:
    fields = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 6000) for i in range(10))  # ~60 kB
    request = b"GET /inspect HTTP/1.1\r\nHost: m\r\n" + fields + b"\r\n"
    proxy = await start_proxy()
    reader, writer = await _open(proxy.url)
    try:
        pieces = [request[i : i + 1000] for i in range(0, len(request), 1000)]
        await send_in_pieces(writer, pieces, settle)
        status, _, _ = await read_answer(reader)
    finally:
        await _close(writer)
    assert status == 200
    assert len(upstream.seen) == 1


@pytest.mark.parametrize("same_segment", [True, False])
async def test_bytes_after_a_complete_response_are_never_relayed(
    same_segment: bool,
    request: pytest.FixtureRequest,
    start_proxy: StartProxy,
    scripted: Callable[[Script], Awaitable[tuple[Scripted, str]]],
) -> None:
    """A second response (or any byte) after the first is a protocol error: the first passes
    whole, that connection is dropped, the next request goes on a fresh one."""
    evil = b"HTTP/1.1 200 OK\r\nX-Evil: 1\r\nContent-Length: 4\r\n\r\nevil"

    def script(conn: int, number: int, head: bytes) -> bytes | list[bytes] | None:
        if conn == 1 and number == 0:
            return _OK + evil if same_segment else [_OK, evil]
        return b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nclean"

    upstream, url = await scripted(script)
    proxy = await start_proxy(proxy={"upstream": url})
    if proxy.config.proxy.engine == "aiohttp" and not same_segment:
        # aiohttp's pool parses what arrives on an idle connection and answers the next
        # request with it (aio-libs/aiohttp#13656, in aiohttp 3.14.5): known, not ours to fix.
        request.applymarker(pytest.mark.xfail(reason="aio-libs/aiohttp#13656", strict=True))
    reader, writer = await _open(proxy.url)
    try:
        writer.write(b"GET /a HTTP/1.1\r\nHost: m\r\n\r\n")
        first = await read_answer(reader)
        writer.write(b"GET /b HTTP/1.1\r\nHost: m\r\n\r\n")
        second = await read_answer(reader)
    finally:
        await _close(writer)
    assert (first[0], first[2]) == (200, b"ok")
    assert b"x-evil" not in dict(first[1])
    assert (second[0], second[2]) == (200, b"clean")
    assert upstream.connections == 2


@pytest.mark.parametrize("where", ["reason phrase", "header value"])
async def test_an_endless_response_head_is_a_502_not_a_buffer(
    where: str,
    start_proxy: StartProxy,
    scripted: Callable[[Script], Awaitable[tuple[Scripted, str]]],
) -> None:
    """No line end in sight: the proxy stops at its head limit (64 KiB and a read)."""
    start = b"HTTP/1.1 200 " if where == "reason phrase" else b"HTTP/1.1 200 OK\r\nX-Big: "

    def script(conn: int, number: int, head: bytes) -> bytes | list[bytes] | None:
        return [start, *[b"a" * 10_000] * 40]  # 400 kB, read piece by piece

    _, url = await scripted(script)
    proxy = await start_proxy(proxy={"upstream": url, "upstream_timeout_s": 30})
    reader, writer = await _open(proxy.url)
    try:
        writer.write(b"GET /x HTTP/1.1\r\nHost: m\r\n\r\n")
        status, _, body = await read_answer(reader)
    finally:
        await _close(writer)
    assert status == 502 and b"upstream unreachable" in body


@pytest.mark.parametrize(
    "request_head",
    [
        b"GET /inspect HTTP/1.1\r\nHost: m\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"GET /inspect HTTP/1.1\r\nHost: m\r\nConnection: close, Upgrade\r\nUpgrade: h2c\r\n\r\n",
        b"CONNECT m:443 HTTP/1.1\r\nHost: m:443\r\n\r\n",
    ],
)
async def test_upgrades_are_refused_never_forwarded_and_close(
    request_head: bytes, start_proxy: StartProxy, upstream: Upstream
) -> None:
    proxy = await start_proxy()
    reader, writer = await _open(proxy.url)
    try:  # a request pipelined behind it is another protocol's bytes: never answered
        writer.write(request_head + b"GET /inspect HTTP/1.1\r\nHost: m\r\n\r\n")
        status, fields, body = await read_answer(reader)
        rest = await asyncio.wait_for(reader.read(), 10)
    finally:
        await _close(writer)
    assert status == 501
    assert json.loads(body)["error"] == "not implemented"
    assert dict(fields).get(b"connection") == b"close"
    assert rest == b""
    assert upstream.seen == []


@pytest.mark.parametrize(
    ("method", "resent"), [(b"POST", False), (b"PATCH", False), (b"PUT", True)]
)
async def test_a_request_the_upstream_drops_unanswered_is_resent_only_if_idempotent(
    method: bytes,
    resent: bool,
    start_proxy: StartProxy,
    scripted: Callable[[Script], Awaitable[tuple[Scripted, str]]],
) -> None:
    """RFC 9110 §9.2.2: the upstream may have acted on a POST it read and never answered."""

    def script(conn: int, number: int, head: bytes) -> bytes | list[bytes] | None:
        return _OK if number == 0 or conn > 1 else None  # reads, then drops the reused one

    upstream, url = await scripted(script)
    proxy = await start_proxy(proxy={"upstream": url})
    reader, writer = await _open(proxy.url)
    try:
        writer.write(b"GET /warm HTTP/1.1\r\nHost: m\r\n\r\n")
        assert (await read_answer(reader))[0] == 200  # the pooled connection is now reused
        writer.write(method + b" /act HTTP/1.1\r\nHost: m\r\nContent-Length: 1\r\n\r\nz")
        status, _, body = await read_answer(reader)
    finally:
        await _close(writer)
    sent = upstream.requests.count(method + b" /act HTTP/1.1")
    if resent:
        assert (status, body, sent) == (200, b"ok", 2)
    else:
        assert status == 502 and b"upstream unreachable" in body
        assert sent == 1


async def test_a_client_that_reads_nothing_costs_bounded_memory_then_gets_every_answer(
    start_proxy: StartProxy,
    scripted: Callable[[Script], Awaitable[tuple[Scripted, str]]],
) -> None:
    """1,000 pipelined requests for 20 kB answers (20 MB) and no reads: the proxy stops
    reading and forwarding while its client transport is above the high-water mark, so its
    memory grows by far less than the answers (bound: 8 MB); then every answer arrives, in
    order."""
    count, size, bound = 1000, 20_000, 8 * 1024 * 1024

    def script(conn: int, number: int, head: bytes) -> bytes | list[bytes] | None:
        index = int(head.split(b" ", 2)[1].strip(b"/"))
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (
            size,
            (b"%08d" % index) * (size // 8),
        )

    upstream, url = await scripted(script)
    proxy = await start_proxy(proxy={"upstream": url})
    reader, writer = await _open(proxy.url)
    me = psutil.Process()
    try:
        writer.write(b"GET /0 HTTP/1.1\r\nHost: m\r\n\r\n")
        await read_answer(reader)  # warm: pools and buffers exist before the baseline
        before = me.memory_info().rss
        writer.write(b"".join(b"GET /%d HTTP/1.1\r\nHost: m\r\n\r\n" % i for i in range(count)))
        # Wait until the proxy stops forwarding (a quiet half second of loop time), bounded.
        for _ in range(count + 1):
            upstream.arrived.clear()
            try:
                await asyncio.wait_for(upstream.arrived.wait(), 0.5)
            except TimeoutError:
                break
        grown = me.memory_info().rss - before
        forwarded = len(upstream.requests) - 1
        answers = [await read_answer(reader) for _ in range(count)]
    finally:
        await _close(writer)
    assert forwarded < count, "the proxy forwarded everything to a client that reads nothing"
    assert grown < bound, f"{grown / 1e6:.1f} MB for one connection"
    for index, (status, _, body) in enumerate(answers):
        assert (status, body[:8]) == (200, b"%08d" % index)


async def test_request_trailers_never_become_fields(
    start_proxy: StartProxy, upstream: Upstream
) -> None:
    proxy = await start_proxy()
    reader, writer = await _open(proxy.url)
    try:
        writer.write(
            b"POST /inspect HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\nX-Injected: 1\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n"
        )
        status, _, _ = await read_answer(reader)
    finally:
        await _close(writer)
    assert status == 200
    [seen] = upstream.seen
    names = {name.lower(): value for name, value in seen["headers"]}
    assert "x-injected" not in names
    assert "6.6.6.6" not in names["x-forwarded-for"]
    assert seen["body_len"] == 3
