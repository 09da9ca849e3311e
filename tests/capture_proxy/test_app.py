"""The app end to end: local /monitor/proxy/* endpoints, the analyzer route, capture wiring."""

from __future__ import annotations

import asyncio
import gzip
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from modelmon.capture_record import decode_side, parse_record_line
from tests.capture_proxy.conftest import StartProxy, Upstream, pattern, start_app

# Every exchange eligible (no method, path or status filter), all of them sampled.
ALL_TRAFFIC = {"methods": [], "exclude_paths": [], "status_classes": []}
FULL = {"enabled": True, "sampling_percentage": 100, "filters": ALL_TRAFFIC}


def sealed_records(capture_dir: Path) -> list[dict[str, Any]]:
    assert not list(capture_dir.rglob("*.part")), "a .part file survived shutdown"
    records = []
    for path in sorted(capture_dir.rglob("*.jsonl")):
        records += [parse_record_line(line) for line in path.read_bytes().splitlines()]
    return records


@pytest.fixture
async def analyzer() -> AsyncIterator[tuple[str, list[str]]]:
    """A real aiohttp app standing in for the analyzer; returns its URL and the paths it saw."""
    seen: list[str] = []

    async def any_path(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        body = await request.read()
        return web.json_response({"state": "ok", "path": request.raw_path, "len": len(body)})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", any_path)
    runner, url = await start_app(app)
    yield url, seen
    await runner.cleanup()


async def test_health_is_answered_locally(
    start_proxy: StartProxy, upstream: Upstream, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(capture=FULL)
    async with client.get(f"{proxy.url}/monitor/proxy/health") as resp:
        assert resp.status == 200
        health = await resp.json()
    assert health["upstream"] == {
        "url": upstream.url,
        "reachable": True,
        "connect_ms": health["upstream"]["connect_ms"],
    }
    assert health["capture"]["enabled"] is True
    assert health["capture"]["queue_depth"] == 0
    assert upstream.seen == []


async def test_health_reports_an_unreachable_upstream(
    start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(proxy={"upstream": "http://127.0.0.1:9"})
    async with client.get(f"{proxy.url}/monitor/proxy/health") as resp:
        assert resp.status == 200
        health = await resp.json()
    assert health["upstream"]["reachable"] is False


async def test_metrics_count_requests_and_captures(
    start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(capture=FULL)
    for _ in range(3):
        async with client.post(f"{proxy.url}/echo", data=b"{}") as resp:
            assert resp.status == 200
    async with client.get(f"{proxy.url}/status/503") as resp:
        assert resp.status == 503
    assert proxy.proxy.sink is not None
    await proxy.proxy.sink.flush()  # records are counted once written
    async with client.get(f"{proxy.url}/monitor/proxy/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    assert 'modelmon_proxy_requests_total{status="200"} 3.0' in text
    assert 'modelmon_proxy_requests_total{status="503"} 1.0' in text
    assert "modelmon_capture_records_total 4.0" in text
    assert "modelmon_proxy_upstream_latency_seconds_count 4.0" in text


async def test_unknown_proxy_path_is_a_local_404(
    start_proxy: StartProxy, upstream: Upstream, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy()
    async with client.get(f"{proxy.url}/monitor/proxy/nope") as resp:
        assert resp.status == 404
        assert "health" in (await resp.json())["detail"]
    assert upstream.seen == []


async def test_monitor_paths_go_to_the_analyzer_and_are_never_captured(
    start_proxy: StartProxy,
    upstream: Upstream,
    analyzer: tuple[str, list[str]],
    client: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    url, seen = analyzer
    proxy = await start_proxy(capture=FULL, proxy={"analyzer_url": url})
    async with client.get(f"{proxy.url}/monitor/status?x=1") as resp:
        assert resp.status == 200
        assert (await resp.json())["path"] == "/monitor/status?x=1"
        assert "X-Modelmon-Event-Id" not in resp.headers
    async with client.post(f"{proxy.url}/monitor/ground-truth", data=b'{"a":1}\n') as resp:
        assert (await resp.json())["len"] == 8
    assert seen == ["/monitor/status?x=1", "/monitor/ground-truth"]
    assert upstream.seen == []
    await proxy.stop()
    assert sealed_records(tmp_path / "capture") == []
    assert proxy.metrics.captured._value.get() == 0
    assert proxy.metrics.sampled_out._value.get() == 0


async def test_analyzer_down_is_a_502_naming_the_analyzer(
    start_proxy: StartProxy, client: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(proxy={"analyzer_url": "http://127.0.0.1:9"})
    async with client.get(f"{proxy.url}/monitor/status") as resp:
        assert resp.status == 502
        body = await resp.json()
    assert body["upstream"] == "http://127.0.0.1:9"
    assert body["error"] == "upstream unreachable"


async def test_sampled_exchange_becomes_one_sealed_record(
    start_proxy: StartProxy, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    proxy = await start_proxy(capture=FULL)
    body = b'{"instances": [[1, 2.5, "x"]]}'
    headers = {
        "Content-Type": "application/json",
        "X-Amzn-SageMaker-Inference-Id": "inf-42",
        "X-Amzn-SageMaker-Custom-Attributes": "c000~a=1, b=2",
    }
    async with client.post(f"{proxy.url}/echo/invocations", data=body, headers=headers) as resp:
        assert resp.status == 200
        assert await resp.read() == body
        event_id = resp.headers["X-Modelmon-Event-Id"]
    assert uuid.UUID(event_id).version == 4
    await proxy.stop()
    [record] = sealed_records(tmp_path / "capture" / "test-model" / "AllTraffic")
    meta = record["eventMetadata"]
    assert meta["eventId"] == event_id
    assert meta["inferenceId"] == "inf-42"
    assert meta["customAttributes"] == ["c000~a=1", "b=2"]
    for side in ("endpointInput", "endpointOutput"):
        assert record["captureData"][side]["encoding"] == "JSON"
        assert record["captureData"][side]["observedContentType"] == "application/json"
        assert decode_side(record["captureData"][side]) == body
    assert record["modelmon"]["status"] == 200


async def test_each_sampled_request_gets_its_own_event_id(
    start_proxy: StartProxy, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    proxy = await start_proxy(capture=FULL)
    ids = []
    for i in range(5):
        async with client.post(f"{proxy.url}/echo", data=f"{i},1\n", headers={}) as resp:
            ids.append(resp.headers["X-Modelmon-Event-Id"])
    await proxy.stop()
    records = sealed_records(tmp_path / "capture")
    assert len(set(ids)) == 5
    assert sorted(r["eventMetadata"]["eventId"] for r in records) == sorted(ids)


async def test_compressed_response_is_captured_decoded(
    start_proxy: StartProxy, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    proxy = await start_proxy(capture=FULL)
    async with client.get(f"{proxy.url}/gzip") as resp:
        raw = await resp.read()
    await proxy.stop()
    [record] = sealed_records(tmp_path / "capture")
    output = record["captureData"]["endpointOutput"]
    assert output["encoding"] == "JSON"
    assert decode_side(output) == gzip.decompress(raw)


async def test_big_bodies_are_captured_cut_and_flagged(
    start_proxy: StartProxy, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    limit = 1000
    proxy = await start_proxy(capture={**FULL, "max_capture_bytes": limit})
    size = 3 * 1024 * 1024
    async with client.get(f"{proxy.url}/download?size={size}") as resp:
        assert len(await resp.read()) == size
    await proxy.stop()
    [record] = sealed_records(tmp_path / "capture")
    output = record["captureData"]["endpointOutput"]
    assert decode_side(output) == pattern(size)[:limit]
    assert record["modelmon"]["truncated"] == ["output"]
    assert proxy.metrics.truncated._value.get() == 1


async def test_capture_mode_input_only_keeps_no_output(
    start_proxy: StartProxy, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    proxy = await start_proxy(capture={**FULL, "mode": ["input"]})
    async with client.post(f"{proxy.url}/echo", data=b"1,2\n") as resp:
        await resp.read()
    await proxy.stop()
    [record] = sealed_records(tmp_path / "capture")
    assert set(record["captureData"]) == {"endpointInput"}


async def test_zero_sampling_captures_nothing_and_counts_it(
    start_proxy: StartProxy, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    proxy = await start_proxy(capture={"enabled": True, "sampling_percentage": 0})
    for _ in range(4):
        async with client.post(f"{proxy.url}/echo", data=b"1") as resp:
            assert resp.status == 200
    await proxy.stop()
    assert sealed_records(tmp_path / "capture") == []
    assert proxy.metrics.sampled_out._value.get() == 4


async def test_unwritable_capture_dir_never_changes_the_response(
    start_proxy: StartProxy, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """The capture dir sits under a regular file, so nothing can be created there (even as
    root, where permission bits would not stop the writer)."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    proxy = await start_proxy(capture={**FULL, "dir": str(blocker / "capture")})
    body = json.dumps({"x": list(range(100))}).encode()
    for _ in range(5):
        async with client.post(
            f"{proxy.url}/echo", data=body, headers={"Content-Type": "application/json"}
        ) as resp:
            assert resp.status == 200
            assert await resp.read() == body
    sink = proxy.proxy.sink
    assert sink is not None
    await sink.flush()
    assert proxy.metrics.drop_counts["write_error"] + proxy.metrics.drop_counts["disk_full"] == 5


async def test_shutdown_lets_an_in_flight_stream_finish_and_seals_it(
    start_proxy: StartProxy, upstream: Upstream, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """What SIGTERM does: stop accepting, finish the open stream, then seal its record."""
    proxy = await start_proxy(capture=FULL)
    async with client.get(f"{proxy.url}/sse") as resp:
        first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 10)
        async with asyncio.TaskGroup() as group:
            stopping = group.create_task(proxy.stop())
            await _until_refused(proxy.url)  # shutdown has begun: no new connections
            assert not stopping.done()  # ... and it waits for the open stream
            upstream.gate.set()
            rest = await resp.read()
        assert stopping.done()
    assert first + rest == b"data: first\n\n" + b"".join(
        f"data: token-{i}\n\n".encode() for i in range(3)
    )
    [record] = sealed_records(tmp_path / "capture")
    assert decode_side(record["captureData"]["endpointOutput"]) == first + rest


async def _until_refused(url: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    for _ in range(10_000):  # each attempt yields to the loop, so the shutdown progresses
        try:
            _, writer = await asyncio.open_connection(host, int(port))
        except OSError:
            return
        writer.close()
        await writer.wait_closed()
    raise AssertionError("the proxy kept accepting connections after shutdown began")


async def test_concurrent_exchanges_never_cross(
    start_proxy: StartProxy, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Many clients at once over a small upstream pool: every answer and every record pairs
    the request with its own response."""
    proxy = await start_proxy(capture=FULL, proxy={"max_connections": 3})
    count = 120

    async def one(i: int) -> str:
        body = json.dumps({"i": i, "pad": "x" * (i * 37 % 5000)}).encode()
        headers = {"Content-Type": "application/json", "X-Inference-Id": f"req-{i}"}
        async with client.post(f"{proxy.url}/echo/{i}", data=body, headers=headers) as resp:
            assert resp.headers["X-Echo-Path"] == f"/echo/{i}"
            assert await resp.read() == body
            return resp.headers["X-Modelmon-Event-Id"]

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(i)) for i in range(count)]
    await proxy.stop()
    records = sealed_records(tmp_path / "capture")
    assert sorted(r["eventMetadata"]["eventId"] for r in records) == sorted(
        t.result() for t in tasks
    )
    for record in records:
        sent = decode_side(record["captureData"]["endpointInput"])
        assert decode_side(record["captureData"]["endpointOutput"]) == sent
        assert record["eventMetadata"]["inferenceId"] == f"req-{json.loads(sent)['i']}"
