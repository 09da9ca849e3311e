"""Capture under hostile bodies, through both engines: gzip bombs both ways, huge CSV bodies,
an upstream that answers before the upload ended, and the capture filters."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from analyzer.decoding.codecs import PayloadDecoder
from modelmon.capture_record import decode_side, parse_record_line
from modelmon.config import PayloadConfig
from tests.capture_proxy.conftest import StartProxy, start_app
from tests.capture_proxy.test_app import ALL_TRAFFIC

LIMIT = 64 * 1024
BOMB_PLAIN = 64 * 1024 * 1024  # what one bomb inflates to: 1,000x LIMIT
BOMB = gzip.compress(bytes(BOMB_PLAIN), compresslevel=9)  # about 64 kB on the wire
# A capture line holds at most 2x a side in JSON text (4/3 in BASE64), plus metadata.
LINE_BOUND = 4 * LIMIT + 4096


class Model:
    """A model server stand-in with the routes these tests need; ``uploads`` holds the bodies
    ``/invocations`` received."""

    def __init__(self) -> None:
        self.url = ""
        self.uploads: list[bytes] = []

    def app(self) -> web.Application:
        async def invocations(request: web.Request) -> web.Response:
            body = await request.read()
            self.uploads.append(body)
            return web.Response(body=body, content_type="text/csv")

        async def bomb(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(
                body=BOMB,
                headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            )

        async def early(request: web.Request) -> web.Response:
            # Answers at once, without reading the body the client is still sending.
            return web.json_response({"score": 0.5})

        async def not_found(request: web.Request) -> web.Response:
            return web.json_response({"error": "no"}, status=404)

        async def ok(request: web.Request) -> web.Response:
            return web.json_response({"ready": True})

        # auto_decompress off: the model sees (and echoes) the bytes as sent.
        app = web.Application(
            client_max_size=256 * 1024 * 1024, handler_args={"auto_decompress": False}
        )
        app.router.add_post("/invocations", invocations)
        app.router.add_post("/v2/models/iris/infer", invocations)
        app.router.add_post("/bomb", bomb)
        app.router.add_post("/early", early)
        app.router.add_get("/favicon.ico", not_found)
        app.router.add_get("/v2/health/ready", ok)
        app.router.add_post("/v2/repository/models/iris/load", ok)
        app.router.add_post("/missing", not_found)
        return app


@pytest.fixture
async def model() -> AsyncIterator[Model]:
    state = Model()
    runner, state.url = await start_app(state.app())
    yield state
    await runner.cleanup()


def _capture(**extra: Any) -> dict[str, Any]:
    # flush_interval_s: the writer runs only when a test flushes (or at close).
    return {"enabled": True, "sampling_percentage": 100, "flush_interval_s": 3600, **extra}


async def _records(proxy: Any) -> list[tuple[bytes, dict[str, Any]]]:
    await proxy.stop()
    return _read_records(Path(proxy.config.capture.dir))


def _read_records(root: Path) -> list[tuple[bytes, dict[str, Any]]]:
    lines = [line for p in sorted(root.rglob("*.jsonl")) for line in p.read_bytes().splitlines()]
    return [(line, parse_record_line(line)) for line in lines]


async def _peak_while_flushing(proxy: Any) -> int:
    """Peak traced memory (bytes) while the writer encodes what is queued."""
    sink = proxy.proxy.sink
    assert sink is not None
    tracemalloc.start()
    try:
        await sink.flush()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_gzip_bomb_request_is_inflated_only_to_the_limit(
    start_proxy: StartProxy, model: Model, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(
        proxy={"upstream": model.url}, capture=_capture(max_capture_bytes=LIMIT)
    )
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    async with client.post(f"{proxy.url}/invocations", data=BOMB, headers=headers) as resp:
        assert resp.status == 200
        assert await resp.read() == BOMB  # the client gets the exact bytes back
    assert model.uploads == [BOMB]  # and the model got them unchanged
    assert await _peak_while_flushing(proxy) < 16 * 1024 * 1024  # not 64 MB
    [(line, record)] = await _records(proxy)
    assert len(line) <= LINE_BOUND
    assert record["modelmon"]["truncated"] == ["input"]
    side = record["captureData"]["endpointInput"]
    assert side["encoding"] == "BASE64" and decode_side(side) == bytes(LIMIT)
    assert proxy.metrics.truncated._value.get() == 1


async def test_gzip_bomb_with_redaction_is_cut_masked_and_counted(
    start_proxy: StartProxy, model: Model, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(
        proxy={"upstream": model.url},
        capture=_capture(max_capture_bytes=LIMIT, redact={"json_paths": ["ssn"]}),
    )
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    async with client.post(f"{proxy.url}/invocations", data=BOMB, headers=headers) as resp:
        assert await resp.read() == BOMB
    assert await _peak_while_flushing(proxy) < 16 * 1024 * 1024
    [(line, record)] = await _records(proxy)
    assert len(line) <= LINE_BOUND
    assert "input" in record["modelmon"]["truncated"]
    assert decode_side(record["captureData"]["endpointInput"]) == b"***"
    assert proxy.metrics.truncated._value.get() == 1
    assert proxy.metrics.redact_unredactable._value.get() >= 1


async def test_gzip_bomb_response_is_inflated_only_to_the_limit(
    start_proxy: StartProxy, model: Model, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(
        proxy={"upstream": model.url}, capture=_capture(max_capture_bytes=LIMIT)
    )
    async with client.post(f"{proxy.url}/bomb", data=b'{"x": 1}') as resp:
        assert resp.status == 200
        assert resp.headers["Content-Encoding"] == "gzip"
        assert await resp.read() == BOMB
    assert await _peak_while_flushing(proxy) < 16 * 1024 * 1024
    [(line, record)] = await _records(proxy)
    assert len(line) <= LINE_BOUND
    assert record["modelmon"]["truncated"] == ["output"]
    assert decode_side(record["captureData"]["endpointOutput"]) == bytes(LIMIT)
    assert decode_side(record["captureData"]["endpointInput"]) == b'{"x": 1}'


def _csv(rows: int) -> bytes:
    return b"".join(b"%d,%d.5,CA,%d\n" % (i, i * 3, i % 7) for i in range(rows))


@pytest.mark.parametrize("compressed", [False, True])
async def test_huge_csv_is_stored_cut_marked_and_not_ingested(
    start_proxy: StartProxy, model: Model, client: aiohttp.ClientSession, compressed: bool
) -> None:
    """A 73 MB-class CSV (here 2 MB against a 64 KiB limit) is stored cut with the mark, and the
    analyzer counts it as truncated instead of reading half a row."""
    proxy = await start_proxy(
        proxy={"upstream": model.url}, capture=_capture(max_capture_bytes=LIMIT)
    )
    plain = _csv(120_000)
    assert len(plain) > 30 * LIMIT
    body = gzip.compress(plain) if compressed else plain
    headers = {"Content-Type": "text/csv"}
    if compressed:
        headers["Content-Encoding"] = "gzip"
    async with client.post(
        f"{proxy.url}/invocations", data=io.BytesIO(body), headers=headers
    ) as resp:
        assert resp.status == 200
        assert hashlib.sha256(await resp.read()).digest() == hashlib.sha256(body).digest()
    [(line, record)] = await _records(proxy)
    assert len(line) <= LINE_BOUND
    assert record["modelmon"]["truncated"] == ["input", "output"]  # the echo is as big
    batch = PayloadDecoder(PayloadConfig()).decode_lines([line])
    assert batch.n_records == 0 and batch.bad["truncated_input"] == 1


async def _raw_early_exchange(url: str, sent: bytes, announced: int) -> bytes:
    """Send a head announcing ``announced`` body bytes and only ``sent`` of them, read the
    whole answer, hang up. Returns the answer's body."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
            b"Content-Length: %d\r\n\r\n" % announced + sent
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return await reader.readexactly(length)
    finally:
        writer.close()


async def test_early_answer_during_an_upload_marks_the_request_partial(
    start_proxy: StartProxy, model: Model
) -> None:
    proxy = await start_proxy(proxy={"upstream": model.url}, capture=_capture(filters=ALL_TRAFFIC))
    sent = b"1,2,3\n" * 50_000  # 300 kB: more than is read whole, so it streams
    body = await _raw_early_exchange(proxy.url, sent, announced=10 * len(sent))
    assert body == b'{"score": 0.5}'
    [(_line, record)] = await _records(proxy)
    assert record["modelmon"]["partial"] == ["input"]
    assert "input" in record["modelmon"]["truncated"]
    assert decode_side(record["captureData"]["endpointOutput"]) == body


async def test_complete_upload_is_not_marked_partial(
    start_proxy: StartProxy, model: Model, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(proxy={"upstream": model.url}, capture=_capture())
    body = b"1,2,3\n" * 100_000  # streamed too
    async with client.post(f"{proxy.url}/invocations", data=io.BytesIO(body)) as resp:
        assert resp.status == 200
        assert await resp.read() == body
    [(_line, record)] = await _records(proxy)
    assert "partial" not in record.get("modelmon", {})
    assert decode_side(record["captureData"]["endpointInput"]) == body


async def test_default_filters_capture_inference_only(
    start_proxy: StartProxy, model: Model, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(proxy={"upstream": model.url}, capture=_capture())
    async with client.get(f"{proxy.url}/favicon.ico") as resp:
        assert resp.status == 404
        assert "X-Modelmon-Event-Id" not in resp.headers
    async with client.get(f"{proxy.url}/v2/health/ready") as resp:
        assert resp.status == 200
    async with client.post(f"{proxy.url}/v2/repository/models/iris/load") as resp:
        assert resp.status == 200
    async with client.post(f"{proxy.url}/missing", data=b"1,2") as resp:
        assert resp.status == 404  # an inference-like POST, but not a 2xx: not captured
    async with client.post(f"{proxy.url}/invocations", data=b"1,2") as resp:
        assert resp.status == 200
        assert "X-Modelmon-Event-Id" in resp.headers
        assert await resp.read() == b"1,2"
    async with client.post(f"{proxy.url}/v2/models/iris/infer", data=b"3,4") as resp:
        assert await resp.read() == b"3,4"
    async with client.get(f"{proxy.url}/monitor/proxy/metrics") as resp:
        text = await resp.text()
    assert 'modelmon_capture_filtered_total{reason="method"} 2.0' in text
    assert 'modelmon_capture_filtered_total{reason="path"} 1.0' in text
    assert 'modelmon_capture_filtered_total{reason="status"} 1.0' in text
    records = await _records(proxy)
    assert sorted(decode_side(r["captureData"]["endpointInput"]) for _, r in records) == [
        b"1,2",
        b"3,4",
    ]


async def test_new_capture_counters_are_exported(
    start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(capture=_capture())
    async with client.get(f"{proxy.url}/monitor/proxy/metrics") as resp:
        text = await resp.text()
    for name in (
        'modelmon_capture_dropped_total{reason="queue_bytes"}',
        "modelmon_capture_queue_bytes",
        "modelmon_capture_write_errors_total",
        'modelmon_capture_filtered_total{reason="status"}',
        "modelmon_capture_truncated_total",
    ):
        assert name in text, name
