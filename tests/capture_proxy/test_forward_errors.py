"""Failures: 502 and 504 with JSON bodies, client hang-ups, broken upstreams, bad framing."""

from __future__ import annotations

import asyncio
import logging
import socket

import aiohttp
import pytest

from tests.capture_proxy.conftest import StartProxy, Upstream


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def _raw_exchange(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_upstream_refused_is_a_502_naming_it(
    start_proxy: StartProxy, client: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    dead = _closed_port_url()
    proxy = await start_proxy(proxy={"upstream": dead})
    with caplog.at_level(logging.WARNING):
        async with client.post(f"{proxy.url}/invocations", data=b"{}") as resp:
            assert resp.status == 502
            body = await resp.json()
    assert body["error"] == "upstream unreachable"
    assert body["upstream"] == dead
    logged = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert logged and logged[0].startswith(f"upstream unreachable ({dead}): ")
    assert proxy.metrics.upstream_errors.labels(kind="unreachable")._value.get() == 1


async def test_upstream_without_headers_in_time_is_a_504(
    start_proxy: StartProxy, upstream: Upstream, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(proxy={"upstream_timeout_s": 0.2})
    async with client.post(f"{proxy.url}/hang", data=b"{}") as resp:
        assert resp.status == 504
        body = await resp.json()
    assert body["error"] == "upstream timeout"
    assert body["upstream"] == upstream.url
    # The abandoned upstream request is cancelled, not left running.
    await asyncio.wait_for(upstream.cancelled.wait(), 10)


async def test_upstream_timeout_counts_from_the_end_of_the_upload(
    start_proxy: StartProxy, upstream: Upstream, client: aiohttp.ClientSession
) -> None:
    """A long upload is not a slow upstream: the body streams past the header timeout."""
    proxy = await start_proxy(proxy={"upstream_timeout_s": 0.3})
    chunks = 0

    async def body():  # type: ignore[no-untyped-def]
        nonlocal chunks
        for _ in range(8):
            # Each chunk waits for a loop-clock deadline past half the header timeout, so the
            # whole upload lasts longer than upstream_timeout_s.
            done = asyncio.Event()
            asyncio.get_running_loop().call_later(0.1, done.set)
            await done.wait()
            chunks += 1
            yield b"x" * 1000

    async with client.post(f"{proxy.url}/upload", data=body()) as resp:
        assert resp.status == 200
        assert (await resp.json())["len"] == 8000


async def test_client_hangup_cancels_the_upstream_request(
    start_proxy: StartProxy, upstream: Upstream
) -> None:
    proxy = await start_proxy()
    host, port = proxy.url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /hang HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
    await writer.drain()
    await asyncio.wait_for(upstream.entered.wait(), 10)
    writer.close()
    await writer.wait_closed()
    await asyncio.wait_for(upstream.cancelled.wait(), 10)
    assert proxy.metrics.upstream_errors.labels(kind="timeout")._value.get() == 0


async def test_client_hangup_mid_stream_closes_the_upstream(
    start_proxy: StartProxy, upstream: Upstream
) -> None:
    proxy = await start_proxy()
    host, port = proxy.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /download?size=1000000&gated=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    assert b" 200 " in await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)
    await asyncio.wait_for(reader.read(1), 10)  # the first chunk is flowing
    writer.close()
    await writer.wait_closed()
    await asyncio.wait_for(upstream.cancelled.wait(), 10)


async def test_upstream_breaking_mid_body_cuts_the_client(
    start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy()
    async with client.get(f"{proxy.url}/broken") as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    # The proxy keeps serving afterwards.
    async with client.get(f"{proxy.url}/status/200") as resp:
        assert resp.status == 200


@pytest.mark.parametrize(
    "head",
    [
        # Content-Length and Transfer-Encoding together: the classic smuggling vector.
        b"POST /inspect HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        # Two different Content-Lengths.
        b"POST /inspect HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        # A Transfer-Encoding that is not chunked-last.
        b"POST /inspect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    ],
)
async def test_ambiguous_framing_is_rejected_and_never_forwarded(
    head: bytes, start_proxy: StartProxy, upstream: Upstream
) -> None:
    proxy = await start_proxy()
    answer = await _raw_exchange(proxy.url, head)
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == b"400", answer[:80]
    assert upstream.seen == []


async def test_chunked_request_is_reframed_for_the_upstream(
    start_proxy: StartProxy, upstream: Upstream
) -> None:
    proxy = await start_proxy()
    request = (
        b"POST /inspect HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    answer = await _raw_exchange(proxy.url, request)
    assert answer.startswith(b"HTTP/1.1 200")
    assert upstream.seen[0]["body_len"] == 5
