"""HTTP/1.1 framing corners, on raw sockets, against both engines."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from capture_proxy.tee import EventIds, Tee
from tests.capture_proxy.conftest import StartProxy, Upstream, pattern


class Raw:
    """One raw client connection to the proxy."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, url: str) -> Raw:
        host, port = url.removeprefix("http://").split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        """Read one response framed by Content-Length or chunked (or until close)."""
        async with asyncio.timeout(10):
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            headers = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            return status, headers, await self._body(status, headers)

    async def _body(self, status: int, headers: dict[str, str]) -> bytes:
        if status in (204, 304) or headers.get("x-no-body") == "1":
            return b""
        if "content-length" in headers:
            return await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                body += await self.reader.readexactly(size + 2)
                if size == 0:
                    return body[:-2]
                body = body[:-2]
        return await self.reader.read()

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@pytest.fixture
async def raw_upstream() -> AsyncIterator[Callable[[bytes], Any]]:
    """A bare TCP upstream that answers every request with the given bytes, then maybe closes."""
    servers: list[asyncio.Server] = []

    async def start(answer: bytes, close_after: bool = False, hang_up: bool = False) -> str:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    if hang_up:  # read the head, answer nothing, close mid-upload
                        break
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                    await reader.readexactly(length)
                    writer.write(answer)
                    await writer.drain()
                    if close_after:
                        break
            except (asyncio.IncompleteReadError, ConnectionError):
                pass  # the proxy closed its end: this connection is done
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_head_keeps_length_sends_no_body_and_keeps_the_connection(
    start_proxy: StartProxy,
) -> None:
    proxy = await start_proxy()
    raw = await Raw.open(proxy.url)
    try:
        await raw.send(b"HEAD /download?size=5000&length=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), 10)
        assert b" 200 " in head.split(b"\r\n")[0]
        assert b"content-length: 5000" in head.lower()
        await raw.send(b"GET /status/201 HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = await raw.response()  # no stray body bytes in between
        assert (status, body) == (201, b'{"status": 201}')
    finally:
        await raw.close()


async def test_pipelined_requests_are_answered_in_order(start_proxy: StartProxy) -> None:
    proxy = await start_proxy()
    raw = await Raw.open(proxy.url)
    try:
        await raw.send(
            b"POST /echo/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none"
            b"GET /status/404 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /echo/3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nthree\r\n0\r\n\r\n"
        )
        answers = [await raw.response() for _ in range(3)]
    finally:
        await raw.close()
    assert [(s, b) for s, _, b in answers] == [
        (200, b"one"),
        (404, b'{"status": 404}'),
        (200, b"three"),
    ]


async def test_http10_client_gets_a_close_delimited_body(start_proxy: StartProxy) -> None:
    size = 100_000
    proxy = await start_proxy()
    raw = await Raw.open(proxy.url)
    try:
        await raw.send(b"GET /download?size=%d HTTP/1.0\r\n\r\n" % size)
        status, headers, body = await raw.response()
    finally:
        await raw.close()
    assert status == 200
    assert "chunked" not in headers.get("transfer-encoding", "")
    assert body == pattern(size)


async def test_expect_100_continue_is_answered_before_the_body(start_proxy: StartProxy) -> None:
    proxy = await start_proxy()
    raw = await Raw.open(proxy.url)
    try:
        await raw.send(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), 10)
        assert interim.startswith(b"HTTP/1.1 100")
        await raw.send(b"body")
        status, _, body = await raw.response()
    finally:
        await raw.close()
    assert (status, body) == (200, b"body")


async def test_oversized_head_is_refused_and_not_forwarded(
    start_proxy: StartProxy, upstream: Upstream
) -> None:
    proxy = await start_proxy()
    raw = await Raw.open(proxy.url)
    try:
        await raw.send(
            b"GET /inspect HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"
        )
        head = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), 10)
    finally:
        await raw.close()
    assert int(head.split(b" ")[1]) in (400, 431)
    assert upstream.seen == []


@pytest.mark.parametrize("where", ["url", "one endless header"])
async def test_oversized_head_in_pieces_is_refused(
    where: str, start_proxy: StartProxy, upstream: Upstream
) -> None:
    proxy = await start_proxy()
    raw = await Raw.open(proxy.url)
    try:
        if where == "url":
            await raw.send(b"GET /inspect?" + b"q" * 20_000)
        else:
            await raw.send(b"GET /inspect HTTP/1.1\r\nHost: x\r\nX-Big: ")
        status = b""
        for _ in range(40):  # 40 x 10 kB without a line end, unless the proxy refuses first
            try:
                await raw.send(b"a" * 10_000)
            except ConnectionError:
                break
        head = await asyncio.wait_for(raw.reader.readuntil(b"\r\n"), 10)
        status = head.split(b" ")[1]
    finally:
        await raw.close()
    assert int(status) in (400, 414, 431)
    assert upstream.seen == []


async def test_upgrade_is_never_passed_on(start_proxy: StartProxy, upstream: Upstream) -> None:
    proxy = await start_proxy()
    raw = await Raw.open(proxy.url)
    try:
        await raw.send(
            b"GET /inspect HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
        )
        status, _, _ = await raw.response()
    finally:
        await raw.close()
    assert status != 101
    for seen in upstream.seen:
        assert "upgrade" not in {name.lower() for name, _ in seen["headers"]}


async def test_absolute_form_target_reaches_the_upstream_as_a_path(
    start_proxy: StartProxy, upstream: Upstream
) -> None:
    proxy = await start_proxy()
    raw = await Raw.open(proxy.url)
    try:
        await raw.send(
            b"GET http://model.local/inspect/a?b=1 HTTP/1.1\r\nHost: model.local\r\n\r\n"
        )
        status, _, _ = await raw.response()
    finally:
        await raw.close()
    assert status == 200
    assert upstream.seen[0]["raw_path"] == "/inspect/a?b=1"


async def test_close_delimited_upstream_body_passes_whole(
    start_proxy: StartProxy, raw_upstream: Callable[..., Any]
) -> None:
    body = pattern(70_000)
    url = await raw_upstream(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body, True)
    proxy = await start_proxy(proxy={"upstream": url})
    raw = await Raw.open(proxy.url)
    try:
        await raw.send(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, got = await raw.response()
    finally:
        await raw.close()
    assert status == 200
    assert headers["transfer-encoding"] == "chunked"
    assert got == body


async def test_interim_1xx_from_upstream_is_not_passed_as_the_answer(
    start_proxy: StartProxy, raw_upstream: Callable[..., Any]
) -> None:
    answer = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    proxy = await start_proxy(proxy={"upstream": await raw_upstream(answer)})
    raw = await Raw.open(proxy.url)
    try:
        await raw.send(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = await raw.response()
        if status == 103:  # passing 1xx through is allowed; the final answer must follow
            status, _, body = await raw.response()
    finally:
        await raw.close()
    assert (status, body) == (200, b"ok")


async def test_upstream_closing_idle_keepalive_connections_costs_no_request(
    start_proxy: StartProxy, raw_upstream: Callable[..., Any]
) -> None:
    """The upstream closes after every answer without saying so: the proxy's next request on
    that pooled connection finds it dead and must go again on a fresh one (an idempotent
    request: a POST is never sent twice, see test_wire_hazards)."""
    url = await raw_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", True)
    proxy = await start_proxy(proxy={"upstream": url, "engine": "fast"})
    raw = await Raw.open(proxy.url)
    try:
        for _ in range(20):
            await raw.send(b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz")
            status, _, body = await raw.response()
            assert (status, body) == (200, b"ok")
    finally:
        await raw.close()


def test_event_ids_are_unique_version_4_uuids() -> None:
    ids = EventIds()
    values = [ids.next() for _ in range(2000)]  # crosses several random batches
    assert len(set(values)) == len(values)
    for value in values:
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == value


def test_tee_keeps_the_first_bytes_and_flags_the_rest() -> None:
    tee = Tee(10)
    for part in (b"abcd", b"efgh", b"ijkl", b"mn"):
        tee.add(part)
    assert (tee.body(), tee.truncated) == (b"abcdefghij", True)
    exact = Tee(4)
    exact.add(b"abcd")
    exact.add(b"")
    assert (exact.body(), exact.truncated) == (b"abcd", False)


async def test_upstream_hanging_up_mid_upload_is_a_502(
    start_proxy: StartProxy, raw_upstream: Callable[..., Any]
) -> None:
    proxy = await start_proxy(proxy={"upstream": await raw_upstream(b"", hang_up=True)})
    raw = await Raw.open(proxy.url)
    try:
        size = 4 * 1024 * 1024  # over the small-body limit: streamed, not read first
        await raw.send(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        await raw.send(b"a" * 300_000)
        status, headers, body = await raw.response()
    finally:
        await raw.close()
    assert status == 502
    if proxy.config.proxy.engine == "fast":  # aiohttp drains the rest of the body instead
        assert headers.get("connection") == "close"  # the rest of the upload is never read
    assert b"upstream unreachable" in body
