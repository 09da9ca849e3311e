"""``sources`` in the status: how many proxy instances write into the capture tree, and when
each last wrote (replicas of one endpoint into one tree)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from analyzer.ingest.capture_files import MAX_SOURCES, capture_sources
from analyzer.service.app import create_app, monitor_of
from modelmon.capture_names import capture_stem
from tests.analyzer.service_helpers import (
    ENDPOINT,
    T0,
    VARIANT,
    Clock,
    make_config,
    record_line,
    write_capture_file,
)
from tests.analyzer.test_openapi import _validator

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


def _named(root: Path, instance: str, second: int, written: float) -> Path:
    """A sealed capture file written by proxy ``instance`` (its name carries it)."""
    folder = root / ENDPOINT / VARIANT / T0.strftime("%Y/%m/%d/%H")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (capture_stem(0, second, 0, instance, str(uuid.uuid4())) + ".jsonl")
    path.write_bytes(record_line(["1"] * 11, "0.5", T0 + timedelta(seconds=second)))
    os.utime(path, (written, written))
    return path


async def test_the_status_names_each_writer_and_when_it_last_wrote(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    config = make_config(tmp_path, None)
    clock = Clock(T0 + timedelta(minutes=10))
    app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
    client = await aiohttp_client(app)
    base = T0.timestamp()
    _named(config.capture.dir, "replica-a", 1, base + 60)
    _named(config.capture.dir, "replica-a", 2, base + 120)
    _named(config.capture.dir, "replica-b", 3, base + 90)
    write_capture_file(config.capture.dir, [record_line(["1"] * 11, "0.5", T0)], T0)  # no instance
    await monitor_of(app).tick()
    status = await (await client.get("/monitor/status")).json()
    sources = status["sources"]
    assert sources["count"] == 3
    assert sources["instances"]["replica-a"] == {"files": 2, "last_write": "2026-11-27T07:02:00Z"}
    assert sources["instances"]["replica-b"] == {"files": 1, "last_write": "2026-11-27T07:01:30Z"}
    assert sources["instances"]["(unnamed)"]["files"] == 1
    named = [name for name in sources["instances"] if name.startswith("replica")]
    assert named == ["replica-a", "replica-b"]  # the most recent writer first
    document = await (await client.get("/monitor/openapi.json")).json()
    _validator(document, "Status").validate(status)


def test_sources_are_bounded_in_number(tmp_path: Path) -> None:
    paths = [_named(tmp_path, f"r{i}", i % 60, 1_000.0 + i) for i in range(MAX_SOURCES + 5)]
    found = capture_sources(paths)
    assert found["count"] == MAX_SOURCES + 5
    assert len(found["instances"]) == MAX_SOURCES + 1
    assert found["instances"]["(more)"]["files"] == 5
    assert "r0" not in found["instances"]  # the oldest writers are the ones counted together
    gone = tmp_path / "gone.jsonl"
    assert capture_sources([gone]) == {"count": 0, "instances": {}}  # removed since listed
