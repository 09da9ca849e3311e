"""The fast engine's HTTP/1.1 helpers, on plain data."""

from __future__ import annotations

import asyncio

import pytest

from capture_proxy.http1 import HIGH_WATER, BodyStream, filter_headers, routing_path


class Valve:
    def __init__(self) -> None:
        self.paused = False
        self.pauses = 0

    def pause(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume(self) -> None:
        self.paused = False


def test_a_body_completed_while_paused_resumes_when_taken() -> None:
    valve = Valve()
    body = BodyStream(valve.pause, valve.resume)
    body.feed(b"a" * HIGH_WATER)
    body.feed(b"b" * 1000)
    assert valve.paused
    body.finish()
    assert body.take_all() == b"a" * HIGH_WATER + b"b" * 1000
    assert not valve.paused


async def test_a_streamed_body_pauses_above_and_resumes_below_the_marks() -> None:
    valve = Valve()
    body = BodyStream(valve.pause, valve.resume)
    for _ in range(10):
        body.feed(b"x" * 65536)
    assert valve.paused and valve.pauses == 1
    body.finish()
    got = b""
    while chunk := await body.read():
        got += chunk
    assert len(got) == 10 * 65536
    assert not valve.paused


async def test_a_failed_producer_raises_in_the_reader() -> None:
    body = BodyStream()
    reader = asyncio.ensure_future(body.read())
    body.fail(ConnectionResetError("gone"))
    with pytest.raises(ConnectionResetError):
        await reader


def test_filter_headers_drops_hop_by_hop_named_and_framing() -> None:
    headers = [
        (b"Host", b"x"),
        (b"Connection", b"keep-alive, X-Secret"),
        (b"X-Secret", b"1"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Content-Length", b"3"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Expect", b"100-continue"),
        (b"X-Kept", b"a"),
        (b"X-Kept", b"b"),
    ]
    kept, length = filter_headers(headers)
    assert kept == [(b"Host", b"x"), (b"X-Kept", b"a"), (b"X-Kept", b"b")]
    assert length == b"3"
    kept, _ = filter_headers(headers, keep_length=True)
    assert (b"Content-Length", b"3") in kept


@pytest.mark.parametrize(
    ("target", "path"),
    [
        (b"/invocations?x=1", "/invocations"),
        (b"/monitor/status", "/monitor/status"),
        (b"/x/../monitor/status", "/monitor/status"),
        (b"/%6Donitor/status", "/monitor/status"),
        (b"//monitor//proxy/health", "/monitor/proxy/health"),
        (b"/monitor/proxy/", "/monitor/proxy/"),
    ],
)
def test_routing_path_normalizes_like_a_server_would(target: bytes, path: str) -> None:
    assert routing_path(target) == path
