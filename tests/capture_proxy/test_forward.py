"""Forwarding: bytes, methods, paths, headers and streams pass through unchanged."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.capture_proxy.conftest import CHUNK, StartProxy, Upstream, pattern

BODIES = {
    "json": (b'{"instances": [[1.5, 2, "a"]], "unicode": "\xc3\xa9"}', "application/json"),
    "csv": (b"1.5,2,a\n3,4,b\n", "text/csv"),
    "binary": (bytes(range(256)) * 16, "application/octet-stream"),
    "empty": (b"", "application/json"),
    "multi-megabyte": (pattern(5 * 1024 * 1024 + 7), "application/octet-stream"),
}


@pytest.mark.parametrize("kind", sorted(BODIES))
async def test_round_trip_is_byte_exact(
    kind: str, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    body, content_type = BODIES[kind]
    proxy = await start_proxy()
    async with client.post(
        f"{proxy.url}/echo/invocations",
        data=io.BytesIO(body),  # aiohttp warns about multi-megabyte raw bytes
        headers={"Content-Type": content_type},
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == content_type
        assert await resp.read() == body


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"])
async def test_every_method_path_and_query_pass(
    method: str, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy()
    path = "/echo/a%2Fb/c?x=1&x=2&q=%20sp%C3%A9&empty="
    async with client.request(method, proxy.url + path, data=b"" if method == "GET" else b"z") as r:
        assert r.status == 200
        assert r.headers["X-Echo-Method"] == method
        assert r.headers["X-Echo-Path"] == path
        body = await r.read()
    expected = b"" if method in ("GET", "HEAD") else b"z"
    assert body == expected


async def test_headers_pass_less_hop_by_hop_plus_forwarded(
    start_proxy: StartProxy, upstream: Upstream, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy()
    headers = {
        "X-Custom": "one",
        "X-Amzn-SageMaker-Custom-Attributes": "c000~sp=1",
        "Authorization": "Bearer t",
        "Connection": "keep-alive, X-Hop-Named",
        "X-Hop-Named": "must go",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic x",
        "Upgrade": "websocket",
        "X-Forwarded-For": "10.0.0.9",
    }
    async with client.post(f"{proxy.url}/inspect", data=b"abc", headers=headers) as resp:
        assert resp.status == 200
        seen = await resp.json()
        assert resp.headers["X-Upstream-Custom"] == "kept"
        assert resp.headers["Set-Cookie"] == "a=b"
    got = {k.lower(): v for k, v in seen["headers"]}
    assert got["x-custom"] == "one"
    assert got["x-amzn-sagemaker-custom-attributes"] == "c000~sp=1"
    assert got["authorization"] == "Bearer t"
    for hop in ("x-hop-named", "keep-alive", "te", "proxy-authorization", "upgrade"):
        assert hop not in got, hop
    assert got.get("connection", "keep-alive").lower() == "keep-alive"
    assert got["x-forwarded-for"] == "10.0.0.9, 127.0.0.1"
    assert got["x-forwarded-proto"] == "http"
    assert got["host"] == proxy.url.removeprefix("http://")
    assert seen["body_sha256"] == hashlib.sha256(b"abc").hexdigest()


async def test_repeated_headers_keep_their_order(
    start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy()
    headers = [("X-Multi", "1"), ("X-Multi", "2"), ("X-Multi", "3")]
    async with client.get(f"{proxy.url}/inspect", headers=headers) as resp:
        seen = await resp.json()
    assert [v for k, v in seen["headers"] if k.lower() == "x-multi"] == ["1", "2", "3"]


async def test_status_codes_and_reason_pass(
    start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy()
    for code in (201, 204, 301, 404, 418, 500, 503):
        async with client.get(f"{proxy.url}/status/{code}", allow_redirects=False) as resp:
            assert resp.status == code
            body = await resp.read()
            assert body == (b"" if code == 204 else json.dumps({"status": code}).encode())


async def test_gzip_response_passes_compressed(
    start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy()
    async with client.get(f"{proxy.url}/gzip", headers={"Accept-Encoding": "gzip"}) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        raw = await resp.read()
    assert json.loads(gzip.decompress(raw))["score"] == 0.25


async def test_big_download_streams_before_the_upstream_finishes(
    start_proxy: StartProxy, upstream: Upstream, client: aiohttp.ClientSession
) -> None:
    """The upstream holds all but its first chunk until the client has read bytes."""
    size = 32 * 1024 * 1024 + 5
    proxy = await start_proxy()
    digest = hashlib.sha256()
    received = 0
    async with client.get(f"{proxy.url}/download?size={size}&gated=1&length=1") as resp:
        assert resp.status == 200
        assert resp.content_length == size
        first = await resp.content.readany()
        assert first and not upstream.gate.is_set()
        digest.update(first)
        received += len(first)
        upstream.gate.set()
        async for chunk in resp.content.iter_any():
            digest.update(chunk)
            received += len(chunk)
    assert received == size
    assert digest.hexdigest() == hashlib.sha256(pattern(size)).hexdigest()


async def test_big_upload_streams_before_the_client_finishes(
    start_proxy: StartProxy, upstream: Upstream, client: aiohttp.ClientSession
) -> None:
    """The client sends the rest only after the upstream has read the first chunk."""
    size = 32 * 1024 * 1024 + 3
    data = pattern(size, seed=2)
    proxy = await start_proxy()

    async def body() -> AsyncIterator[bytes]:
        yield data[:CHUNK]
        await asyncio.wait_for(upstream.first_chunk_read.wait(), 10)
        for offset in range(CHUNK, size, CHUNK):
            yield data[offset : offset + CHUNK]

    for length in (True, False):  # with Content-Length, and chunked
        upstream.first_chunk_read.clear()
        headers = {"Content-Length": str(size)} if length else {}
        async with client.post(f"{proxy.url}/upload", data=body(), headers=headers) as resp:
            assert resp.status == 200
            assert await resp.json() == {"sha256": hashlib.sha256(data).hexdigest(), "len": size}


async def test_server_sent_events_arrive_one_by_one(
    start_proxy: StartProxy, upstream: Upstream, client: aiohttp.ClientSession
) -> None:
    """The first event reaches the client while the upstream still holds the rest."""
    proxy = await start_proxy()
    async with client.get(f"{proxy.url}/sse") as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert resp.headers.get("Transfer-Encoding") == "chunked"
        first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 10)
        assert first == b"data: first\n\n"
        assert not upstream.gate.is_set()
        upstream.gate.set()
        rest = await resp.read()
    assert rest == b"".join(f"data: token-{i}\n\n".encode() for i in range(3))


async def test_chunked_download_without_length_streams(
    start_proxy: StartProxy, upstream: Upstream, client: aiohttp.ClientSession
) -> None:
    size = 3 * CHUNK + 11
    proxy = await start_proxy()
    async with client.get(f"{proxy.url}/download?size={size}&gated=1") as resp:
        assert resp.headers.get("Transfer-Encoding") == "chunked"
        first = await resp.content.readany()
        assert not upstream.gate.is_set()
        upstream.gate.set()
        rest = await resp.read()
    assert first + rest == pattern(size)


async def test_keep_alive_reuses_upstream_connections(
    start_proxy: StartProxy, upstream: Upstream, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy()
    for _ in range(20):
        async with client.get(f"{proxy.url}/inspect") as resp:
            assert resp.status == 200
            await resp.read()
    # Sequential requests ride one pooled upstream connection instead of opening twenty.
    assert len({seen["peer_port"] for seen in upstream.seen}) == 1


@pytest.mark.parametrize("size", [200_000, 300_000, 600_000])
async def test_bodies_around_the_buffer_limits_keep_connections_usable(
    size: int, start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    """Bodies that fill the flow-control window in a read or two, back to back on the same
    client and upstream connections: none may leave a connection paused."""
    proxy = await start_proxy()
    data = pattern(size, seed=3)
    for _ in range(6):
        async with client.get(f"{proxy.url}/download?size={size}&seed=3&length=1") as resp:
            assert await resp.read() == data
        async with client.post(f"{proxy.url}/echo", data=io.BytesIO(data)) as resp:
            assert await resp.read() == data
