"""The small-message fast paths, byte for byte on raw sockets, against both engines.

A complete small request goes to the upstream as one head + body; a complete small response
goes to the client the same way; the fields are filtered by names noted while parsing; the
upstream header timeout is a deadline on one timer kept per pooled connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from capture_proxy.engine import RouteCache
from capture_proxy.proxy_common import route
from tests.capture_proxy.conftest import StartProxy
from tests.capture_proxy.test_forward_framing import Raw

# What the upstream says, with fields a proxy must not pass on (hop-by-hop, Connection-named).
_ANSWER_FIELDS = (
    b"Content-Type: text/plain; charset=x-test\r\n"
    b"Connection: keep-alive, X-Up-Private\r\n"
    b"X-Up-Private: secret\r\n"
    b"Keep-Alive: timeout=30\r\n"
    b"X-Up-Public: shown\r\n"
)

Answer = Callable[[int, bytes], bytes | None]


class Recorder:
    """A bare upstream that keeps each request as received (head, body) and answers with
    ``answer(index, body)``; None means: never answer that one."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.delays: dict[int, float] = {}  # request index -> seconds before its answer
        self.requests: list[tuple[bytes, bytes]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                index = len(self.requests) - 1
                if index in self.delays:
                    await _after(self.delays[index])
                reply = self.answer(index, body)
                if reply is None:
                    await reader.read()  # hold the exchange open until the proxy gives up
                    break
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the proxy closed its end: this connection is done
        finally:
            writer.close()


@pytest.fixture
async def recorder() -> AsyncIterator[Callable[[Answer], Awaitable[tuple[Recorder, str]]]]:
    started: list[Recorder] = []

    async def start(answer: Answer) -> tuple[Recorder, str]:
        rec = Recorder(answer)
        started.append(rec)
        return rec, await rec.start()

    yield start
    for rec in started:
        assert rec.server is not None
        rec.server.close()
        await rec.server.wait_closed()


async def _after(seconds: float) -> None:
    """Wait on a loop-clock deadline."""
    done = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, done.set)
    await done.wait()


def _echo(_: int, body: bytes) -> bytes:
    answer = body[::-1]
    return b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s" % (
        _ANSWER_FIELDS,
        len(answer),
        answer,
    )


def _fields(head: bytes) -> list[tuple[str, str]]:
    fields = []
    for line in head.decode("latin-1").split("\r\n")[1:]:
        if line:
            name, _, value = line.partition(":")
            fields.append((name.strip().lower(), value.strip()))
    return fields


async def test_small_request_and_answer_pass_intact_and_filtered(
    start_proxy: StartProxy, recorder: Callable[[Answer], Awaitable[tuple[Recorder, str]]]
) -> None:
    rec, url = await recorder(_echo)
    proxy = await start_proxy(proxy={"upstream": url})
    body = b'{"instances": [[0.5, 1.25, "CA"]]}'
    raw = await Raw.open(proxy.url)
    try:
        await raw.send(
            b"POST /invocations?a=1 HTTP/1.1\r\nHost: model.test\r\n"
            b"Content-Type: application/json\r\nConnection: keep-alive, X-Private\r\n"
            b"X-Private: 1\r\nTE: trailers\r\nX-Forwarded-For: 10.0.0.9\r\n"
            b"X-Custom: a\r\nX-Custom: b\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        status, headers, answer = await raw.response()
    finally:
        await raw.close()
    assert len(rec.requests) == 1
    head, got = rec.requests[0]
    assert got == body
    assert head.split(b"\r\n")[0] == b"POST /invocations?a=1 HTTP/1.1"
    fields = _fields(head)
    names = [name for name, _ in fields]
    assert not {"x-private", "te", "transfer-encoding", "keep-alive"} & set(names)
    assert [v for n, v in fields if n == "connection"] in ([], ["keep-alive"])
    assert ("host", "model.test") in fields
    assert ("content-type", "application/json") in fields
    assert [v for n, v in fields if n == "x-custom"] == ["a", "b"]  # repeated, in order
    assert [v for n, v in fields if n == "content-length"] == [str(len(body))]
    assert [v for n, v in fields if n == "x-forwarded-for"] == ["10.0.0.9, 127.0.0.1"]
    assert (status, answer) == (200, body[::-1])
    assert headers["content-type"] == "text/plain; charset=x-test"
    assert headers["content-length"] == str(len(body))
    assert headers["x-up-public"] == "shown"
    assert "x-up-private" not in headers and "keep-alive" not in headers


async def test_pipelined_small_requests_stay_whole_and_in_order(
    start_proxy: StartProxy, recorder: Callable[[Answer], Awaitable[tuple[Recorder, str]]]
) -> None:
    rec, url = await recorder(_echo)
    proxy = await start_proxy(proxy={"upstream": url})
    bodies = [b"first-body", b"", b"third" * 40]
    raw = await Raw.open(proxy.url)
    try:
        await raw.send(
            b"".join(
                b"POST /p/%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                % (i, len(body), body)
                for i, body in enumerate(bodies)
            )
        )  # one segment: the next request's bytes arrive with the previous body
        answers = [await raw.response() for _ in bodies]
    finally:
        await raw.close()
    assert [(s, b) for s, _, b in answers] == [(200, body[::-1]) for body in bodies]
    assert [body for _, body in rec.requests] == bodies
    assert [head.split(b" ")[1] for head, _ in rec.requests] == [b"/p/0", b"/p/1", b"/p/2"]


async def test_header_timeout_is_per_exchange_on_a_reused_connection(
    start_proxy: StartProxy, recorder: Callable[[Answer], Awaitable[tuple[Recorder, str]]]
) -> None:
    """The header timeout of one exchange must not leak into the next one on the same pooled
    connection, either way: an answer later than the previous exchange's deadline but within
    its own passes, a silent upstream is still a 504."""
    rec, url = await recorder(lambda i, body: None if i == 2 else _echo(i, body))
    rec.delays[1] = 0.35
    proxy = await start_proxy(proxy={"upstream": url, "upstream_timeout_s": 0.6})
    raw = await Raw.open(proxy.url)
    answers = []
    try:
        for i in range(3):
            if i == 1:
                await _after(0.4)  # the first exchange's deadline falls inside the second
            await raw.send(b"POST /t HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n%d" % i)
            answers.append(await raw.response())
    finally:
        await raw.close()
    assert [(s, b) for s, _, b in answers[:2]] == [(200, b"0"), (200, b"1")]
    assert answers[2][0] == 504
    assert b"upstream timeout" in answers[2][2]
    assert len(rec.requests) == 3


def test_the_route_cache_routes_as_route_does_and_stops_growing_when_full() -> None:
    targets = [
        b"/invocations",
        b"/invocations?x=1",
        b"/monitor/proxy/health",
        b"/monitor/status",
        b"/x/../monitor/proxy/metrics",
        b"//monitor/status",
        b"http://host/monitor/proxy/health",
        b"/%6Donitor/status",
        b"/monitorx",
    ]
    routes = RouteCache(size=4)
    for _ in range(2):  # first the long way, then (the first four) from the cache
        assert [routes(t) for t in targets] == [route(t) for t in targets]
    assert len(routes) == 4
