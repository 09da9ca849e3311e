"""Shared helpers of the capture sink tests: configs, exchanges, a settable clock, readers."""

from __future__ import annotations

import gzip
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from capture_proxy.exchange import Exchange
from capture_proxy.metrics import ProxyMetrics
from capture_proxy.sink import CaptureSink
from modelmon.capture_record import parse_record_line
from modelmon.config import ModelmonConfig, parse_config

# 2026-03-04 05:00:00 UTC: an hour start, so tests can place records around the boundary.
HOUR_START = 1_772_600_400.0


class FakeClock:
    """A clock the test moves by hand (epoch seconds)."""

    def __init__(self, now: float = HOUR_START + 60.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_config(capture_dir: Path, **capture: Any) -> ModelmonConfig:
    return parse_config(
        {
            "endpoint": {"name": "ep", "variant": "v1"},
            "proxy": {"upstream": "http://127.0.0.1:9"},
            "capture": {"dir": str(capture_dir), **capture},
        }
    )


def make_sink(
    capture_dir: Path, clock: FakeClock | None = None, **capture: Any
) -> tuple[CaptureSink, ProxyMetrics]:
    metrics = ProxyMetrics()
    sink = CaptureSink(
        make_config(capture_dir, **capture), metrics, clock=clock if clock else FakeClock()
    )
    return sink, metrics


def exchange(
    inference_time: float,
    body: bytes = b'{"x": 1}',
    content_type: str = "application/json",
    event_id: str | None = None,
) -> Exchange:
    return Exchange(
        event_id=event_id or str(uuid.uuid4()),
        inference_time=inference_time,
        inference_id=None,
        custom_attributes=None,
        request_body=body,
        request_content_type=content_type,
        request_truncated=False,
        response_body=b"0.5",
        response_content_type="text/csv",
        response_truncated=False,
        status=200,
        latency_ms=2.5,
    )


def root_of(capture_dir: Path) -> Path:
    return capture_dir / "ep" / "v1"


def sealed_files(capture_dir: Path) -> list[Path]:
    root = root_of(capture_dir)
    return sorted(p for p in root.rglob("*") if p.name.endswith((".jsonl", ".jsonl.gz")))


def part_files(capture_dir: Path) -> list[Path]:
    return sorted(root_of(capture_dir).rglob("*.part"))


def read_lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    assert not data or data.endswith(b"\n"), f"{path} ends in a partial line"
    return data.splitlines()


def records(paths: list[Path]) -> list[dict[str, Any]]:
    return [parse_record_line(line) for path in paths for line in read_lines(path)]


def event_ids(paths: list[Path]) -> Counter[str]:
    return Counter(record["eventMetadata"]["eventId"] for record in records(paths))
