"""Ground-truth intake under hostile bodies, on a real server: bounded answers, bounded bodies,
long lines skipped, and health answering while a body is being parsed."""

from __future__ import annotations

import asyncio
import gzip
import logging
import threading
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator

from analyzer.ingest.ground_truth import GroundTruthIntake, parse_ground_truth
from analyzer.service.app import create_app, monitor_of
from analyzer.store.database import read_counters
from analyzer.web.routes import OPENAPI_PATH
from tests.analyzer.service_helpers import T0, Clock, make_config

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
MAX_BODY = 64 * 1024
MAX_LINE = 1024


def record(event_id: str) -> bytes:
    return orjson.dumps(
        {
            "groundTruthData": {"data": "1", "encoding": "CSV"},
            "eventMetadata": {"eventId": event_id},
            "eventVersion": "0",
        }
    )


@pytest.fixture
async def client(aiohttp_client: Client, tmp_path: Path) -> TestClient[Any, Any]:
    limits = {"max_body_bytes": MAX_BODY, "max_line_bytes": MAX_LINE, "max_bad_lines_shown": 100}
    config = make_config(tmp_path, None, ground_truth=limits)
    return await aiohttp_client(create_app(config, clock=Clock(T0), run_loop=False))


def stored(client: TestClient[Any, Any]) -> list[str]:
    rows = monitor_of(client.app).store.read(
        lambda c: c.execute("SELECT event_id FROM ground_truth ORDER BY id").fetchall()
    )
    return [row[0] for row in rows]


def counters(client: TestClient[Any, Any]) -> dict[str, int]:
    return monitor_of(client.app).store.read(read_counters)


async def test_a_body_of_bad_lines_gets_a_bounded_answer_with_the_count(
    client: TestClient[Any, Any],
) -> None:
    body = b"x\n" * 30_000 + record("kept") + b"\n"  # 60 KB: 30,000 bad lines and one record
    response = await client.post("/monitor/ground-truth", data=body)
    assert response.status == 200
    answer = await response.read()
    assert len(answer) < 10_000  # 100 lines echoed, not 30,000
    doc = orjson.loads(answer)
    assert doc["bad_line_count"] == 30_000 and doc["lines"] == 30_001 and doc["stored"] == 1
    assert [b["line"] for b in doc["bad_lines"]] == list(range(1, 101))
    openapi = orjson.loads(OPENAPI_PATH.read_bytes())
    schema = {"$ref": "#/components/schemas/GroundTruthResult", **openapi}
    Draft202012Validator(schema).validate(doc)
    assert stored(client) == ["kept"]
    assert counters(client)["ground_truth:bad_lines"] == 30_000


async def test_a_body_at_the_limit_is_taken_and_one_byte_more_is_refused(
    client: TestClient[Any, Any],
) -> None:
    line = record("at-limit") + b"\n"
    at_limit = line + b" " * (MAX_BODY - len(line) - 1) + b"\n"
    assert len(at_limit) == MAX_BODY
    response = await client.post("/monitor/ground-truth", data=at_limit)
    assert response.status == 200 and (await response.json())["stored"] == 1

    over = at_limit + b"\n"
    response = await client.post("/monitor/ground-truth", data=over)  # with Content-Length
    body = await response.json()
    assert response.status == 413 and "max_body_bytes" in body["error"]

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: caught while streaming
        yield record("too-late") + b"\n"
        yield b" " * MAX_BODY

    response = await client.post("/monitor/ground-truth", data=chunked())
    assert response.status == 413 and "nothing was stored" in (await response.json())["error"]
    assert stored(client) == ["at-limit"]
    assert counters(client)["ground_truth:too_large"] == 2
    metrics = await (await client.get("/monitor/metrics")).text()
    assert "modelmon_ground_truth_too_large_total 2.0" in metrics
    assert "modelmon_ground_truth_stored_total 1.0" in metrics


async def test_a_long_line_is_reported_by_number_and_the_rest_stored(
    client: TestClient[Any, Any],
) -> None:
    long_line = b'{"groundTruthData": {"data": "' + b"9" * (MAX_LINE * 3) + b'"}}'

    async def pieces() -> AsyncIterator[bytes]:  # the long line arrives in small pieces
        yield record("a") + b"\n" + long_line[:100]
        for start in range(100, len(long_line), 500):
            yield long_line[start : start + 500]
        yield b"\n" + record("b") + b"\nnot json\n" + record("c")

    response = await client.post("/monitor/ground-truth", data=pieces())
    doc = await response.json()
    assert response.status == 200, doc
    assert doc["stored"] == 3 and doc["bad_line_count"] == 2 and doc["lines"] == 5
    assert [b["line"] for b in doc["bad_lines"]] == [2, 4]
    assert "max_line_bytes" in doc["bad_lines"][0]["error"]
    assert stored(client) == ["a", "b", "c"]
    assert counters(client)["ground_truth:long_lines"] == 1


async def test_health_answers_while_a_body_is_being_parsed(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    parsing, release = threading.Event(), threading.Event()
    released_in_time: list[bool] = []
    threads: set[str] = set()
    feed = GroundTruthIntake.feed

    def held_feed(self: GroundTruthIntake, chunk: bytes) -> None:
        threads.add(threading.current_thread().name)
        if chunk and not parsing.is_set():
            parsing.set()  # parsing has begun; it stays in progress until health answered
            released_in_time.append(release.wait(timeout=20))
        feed(self, chunk)

    monkeypatch.setattr(GroundTruthIntake, "feed", held_feed)
    body = b"".join(record(f"e-{i}") + b"\n" for i in range(500))
    post = asyncio.ensure_future(client.post("/monitor/ground-truth", data=body))
    assert await asyncio.to_thread(parsing.wait, 20)
    health = await client.get("/monitor/health")  # would wait for the parse if it held the loop
    assert health.status == 200
    release.set()
    response = await post
    assert response.status == 200 and (await response.json())["stored"] == 500
    assert released_in_time == [True]
    assert {name.split("_")[0] for name in threads} == {"modelmon-ground-truth"}  # its own


def test_the_intake_matches_the_whole_body_parse_for_any_split() -> None:
    body = b"".join(
        [record("a"), b"\r\n\n  \nnope\n", record("b"), b"\n{\n", b"y" * 300, b"\n", record("c")]
    )
    rows, bad = parse_ground_truth(body, received_at=0.0, max_line_bytes=256)
    assert [r[0] for r in rows] == ["a", "b", "c"]
    assert [b["line"] for b in bad] == [4, 6, 7]
    for size in (1, 2, 3, 7, 64, 255, 256, 257, len(body)):
        intake = GroundTruthIntake(max_line_bytes=256, max_bad_lines_shown=10, received_at=0.0)
        for start in range(0, len(body), size):
            intake.feed(body[start : start + size])
        intake.finish()
        assert (intake.rows, intake.bad_lines) == (rows, bad), size


async def test_a_compressed_body_is_bounded_decompressed_and_one_that_does_not_decode_is_400(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """gzip and deflate bodies are taken; a bomb (50 KB that inflates to 50 MB) is refused
    at max_body_bytes of decompressed bytes, as it streams; a body that does not decompress
    is a 400 saying so, counted (before: a 500 "the analyzer failed" and a traceback)."""
    body = b"".join(record(f"z-{i}") + b"\n" for i in range(100))
    for encoding, packed in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        response = await client.post(
            "/monitor/ground-truth", data=packed, headers={"Content-Encoding": encoding}
        )
        assert response.status == 200 and (await response.json())["stored"] == 100
    bomb = gzip.compress(b"\n" * (50 * 1024 * 1024))
    assert len(bomb) < MAX_BODY
    response = await client.post(
        "/monitor/ground-truth", data=bomb, headers={"Content-Encoding": "gzip"}
    )
    assert response.status == 413 and "max_body_bytes" in (await response.json())["error"]
    garbage = gzip.compress(record("cut") + b"\n")[:12] + b"not deflate data at all"

    async def slowly() -> AsyncIterator[bytes]:  # the rest arrives after the error
        yield garbage
        for _ in range(20):
            yield b"x" * 1000

    for data in (garbage, slowly()):
        response = await client.post(
            "/monitor/ground-truth", data=data, headers={"Content-Encoding": "gzip"}
        )
        error = (await response.json())["error"]
        assert response.status == 400 and "Content-Encoding: gzip" in error, error
        assert "nothing was stored" in error
    assert len(stored(client)) == 200
    found = counters(client)
    assert found["ground_truth:bad_body"] == 2 and found["ground_truth:too_large"] == 1
    metrics = await (await client.get("/monitor/metrics")).text()  # the service goes on
    assert "modelmon_ground_truth_bad_body_total 2.0" in metrics
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_body_that_pauses_past_the_idle_limit_is_408_and_nothing_is_stored(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    """A client that sends part of a body and then nothing (a slow-loris POST straight to
    the analyzer, which has no proxy in front of it to time it out): before, the handler
    waited forever on it; now a 408 after body_idle_timeout_s, the connection closed. A body
    sent one byte at a time within the limit is taken."""
    config = make_config(tmp_path, None, ground_truth={"body_idle_timeout_s": 1.0})
    client = await aiohttp_client(create_app(config, clock=Clock(T0), run_loop=False))
    assert client.server.host is not None and client.server.port is not None
    host, port = client.server.host, client.server.port
    body = record("slow") + b"\n"
    head = b"POST /monitor/ground-truth HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"

    reader, writer = await asyncio.open_connection(host, port)
    writer.write(head % len(body) + body[:10])  # and then nothing
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 20)  # until the server closes
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert b"body_idle_timeout_s" in answer and b"nothing was stored" in answer

    reader, writer = await asyncio.open_connection(host, port)
    writer.write(head % len(body))
    for byte in body:  # each byte well within the limit
        writer.write(bytes([byte]))
        await writer.drain()
    answer = await asyncio.wait_for(reader.readuntil(b"}"), 20)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200") and b'"stored":1' in answer, answer
    assert stored(client) == ["slow"]
    assert counters(client)["ground_truth:slow_body"] == 1
    metrics = await (await client.get("/monitor/metrics")).text()
    assert "modelmon_ground_truth_slow_body_total 1.0" in metrics
