"""``POST /monitor/ground-truth``: a body streamed in, parsed off the event loop, stored at once.

The body is read in pieces as it arrives and handed in batches of at most
``PARSE_BATCH_BYTES`` to one parsing thread of its own
(:class:`analyzer.ingest.ground_truth.GroundTruthIntake`), so neither the body nor its parsing ever
holds the loop, and however many bodies arrive at once they take one core at most and never
the threads that read SQLite: health and status answer during any intake. Limits
(``analyzer.ground_truth``): a body over ``max_body_bytes`` is refused with 413 and nothing
of it is stored (a ``Content-Length`` over the limit is refused before a byte is read); a
line over ``max_line_bytes`` is skipped as a bad line; only the first
``max_bad_lines_shown`` bad lines are echoed, all are counted. A compressed body
(``Content-Encoding: gzip``, ``deflate``: aiohttp decompresses it as it streams, so the
limit is on the decompressed bytes) that does not decompress is refused with 400 and nothing
of it is stored. The rows are stored in one transaction, so a body is stored whole or not at
all. Counters: ``ground_truth:stored``, ``ground_truth:bad_lines``,
``ground_truth:long_lines``, ``ground_truth:too_large``, ``ground_truth:bad_body``,
``ground_truth:slow_body`` (a body that paused over ``body_idle_timeout_s``: 408).

With ``analyzer.model_quality`` on, the same transaction adds each row's label (read with
``ground_truth_attribute``, checked against the problem type:
:func:`analyzer.ingest.ground_truth.read_labels`) to the model-quality join
(:func:`analyzer.store.model_quality_labels.store_labels`, which counts them); a record whose
label is refused is a bad line like any other (numbered, counted, not stored).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from aiohttp import web

from analyzer.ingest.ground_truth import GroundTruthIntake, merge_bad_lines, read_labels
from analyzer.monitors.model_quality.labels import label_reader
from analyzer.store.database import add_counters
from analyzer.store.queries import store_ground_truth_body
from analyzer.web.auth import need_bearer
from analyzer.web.routes import STATE_KEY, ApiError, json_error, json_ok

__all__ = ["PARSER_KEY", "PARSE_BATCH_BYTES", "ground_truth", "setup_intake_routes"]

PARSE_BATCH_BYTES = 1024 * 1024
_READ_BYTES = 64 * 1024
PARSER_KEY = web.AppKey("modelmon_ground_truth_parser", ThreadPoolExecutor)


async def _too_large(request: web.Request, limit: int) -> ApiError:
    await request.app[STATE_KEY].monitor.store.awrite(
        lambda db: add_counters(db, {"ground_truth:too_large": 1})
    )
    return ApiError(
        413,
        f"the body is over {limit} bytes (analyzer.ground_truth.max_body_bytes); nothing was "
        "stored: send the records in smaller parts",
    )


async def _refused(request: web.Request, status: int, counter: str, message: str) -> web.Response:
    """Count and answer a body whose rest cannot be read; the connection closes after the
    answer, and aiohttp does not linger reading the rest (it would log that read's error as
    unhandled, or wait on a client that sends nothing)."""
    await request.app[STATE_KEY].monitor.store.awrite(
        lambda db: add_counters(db, {f"ground_truth:{counter}": 1})
    )
    request.content.feed_eof()
    response = json_error(status, message)
    response.force_close()
    return response


def _undecodable(request: web.Request, exc: web.RequestPayloadError) -> str:
    encoding = request.headers.get("Content-Encoding", "identity")[:40]
    cause = " ".join(str(exc).split())[:200]
    return f"the body cannot be read (Content-Encoding: {encoding}): {cause}; nothing was stored"


def _slow(idle_s: float) -> str:
    return (
        f"the body paused for more than {idle_s:g} s (analyzer.ground_truth.body_idle_timeout_s);"
        " nothing was stored: send it without pauses"
    )


async def ground_truth(request: web.Request) -> web.Response:
    """Store the good lines of a SageMaker ground-truth JSON Lines body; report the bad ones."""
    need_bearer(request)
    monitor = request.app[STATE_KEY].monitor
    limits = monitor.config.analyzer.ground_truth
    if request.content_length is not None and request.content_length > limits.max_body_bytes:
        raise await _too_large(request, limits.max_body_bytes)
    intake = GroundTruthIntake(
        max_line_bytes=limits.max_line_bytes,
        max_bad_lines_shown=limits.max_bad_lines_shown,
        received_at=monitor.clock(),
    )
    loop = asyncio.get_running_loop()
    parser = request.app[PARSER_KEY]
    received = 0
    batch = bytearray()
    chunks = aiter(request.content.iter_chunked(_READ_BYTES))
    try:
        while True:
            try:
                async with asyncio.timeout(limits.body_idle_timeout_s):
                    chunk = await anext(chunks, b"")
            except TimeoutError:
                return await _refused(request, 408, "slow_body", _slow(limits.body_idle_timeout_s))
            if not chunk:
                break
            received += len(chunk)
            if received > limits.max_body_bytes:
                raise await _too_large(request, limits.max_body_bytes)
            batch += chunk
            if len(batch) >= PARSE_BATCH_BYTES:
                await loop.run_in_executor(parser, intake.feed, bytes(batch))
                batch.clear()
    except web.RequestPayloadError as exc:  # e.g. a gzip body that does not decompress
        return await _refused(request, 400, "bad_body", _undecodable(request, exc))
    await loop.run_in_executor(parser, intake.feed, bytes(batch))
    intake.finish()
    if not intake.rows and not intake.bad_count:
        raise ApiError(
            400, "the body is empty: send SageMaker ground-truth records, one JSON per line"
        )
    rows, bad_count, bad_lines = intake.rows, intake.bad_count, intake.bad_lines
    quality = monitor.config.analyzer.model_quality
    labels = None
    if quality is not None:  # CPU per row: on the parsing thread, not the loop
        reader = label_reader(quality.ground_truth_attribute, quality.problem_type)
        shown = limits.max_bad_lines_shown
        read = await loop.run_in_executor(
            parser, read_labels, intake.rows, intake.row_lines, reader, shown
        )
        if read.refused:  # a record whose label is refused is a bad line, not stored
            rows = [rows[i] for i in read.kept]
            bad_count += read.refused
            first = ((b["line"], b["error"]) for b in bad_lines)
            merged = merge_bad_lines(first, read.bad_lines, shown=shown)
            bad_lines = [{"line": n, "error": error} for n, error in merged]
        labels = (read.labels, read.skipped)
    counts = {
        "ground_truth:stored": len(rows),
        "ground_truth:bad_lines": bad_count,
        "ground_truth:long_lines": intake.long_lines,
    }
    await monitor.store.awrite(
        partial(
            store_ground_truth_body,
            rows=rows,
            counts=counts,
            labels=labels,
            received_at=intake.received_at,
            window_s=quality.window_s if quality is not None else 0,
        )
    )
    body: dict[str, Any] = {
        "stored": len(rows),
        "lines": intake.lines,
        "bad_line_count": bad_count,
        "bad_lines": bad_lines,
    }
    return json_ok(body)


async def _parser(app: web.Application) -> AsyncIterator[None]:
    app[PARSER_KEY] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelmon-ground-truth")
    try:
        yield
    finally:  # a batch being parsed finishes (it is at most PARSE_BATCH_BYTES)
        await asyncio.to_thread(app[PARSER_KEY].shutdown, wait=True, cancel_futures=True)


def setup_intake_routes(app: web.Application) -> None:
    """Mount the ground-truth intake and its parsing thread."""
    app.cleanup_ctx.append(_parser)
    app.router.add_post("/monitor/ground-truth", ground_truth)
