"""Helpers for the analyzer service tests: a baseline from the reference data, sealed capture
files written with the real record builder, configs, and an injected clock."""

from __future__ import annotations

import csv
import os
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from analyzer.monitors.data_quality.profile import profile_rows
from analyzer.monitors.data_quality.statistics_format import statistics_json, suggest_constraints
from modelmon.capture_record import CaptureSide, build_record
from modelmon.config import ModelmonConfig, parse_config
from tests.shared_data import DATA as SHARED_DATA
from tests.shared_data import REQUEST_COLUMNS

DATA = SHARED_DATA
FEATURES = REQUEST_COLUMNS
ENDPOINT, VARIANT = "churn", "AllTraffic"
# 2026-11-27 07:00:00 UTC: a whole hour, so tests can place records inside one hour.
T0 = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)


class Clock:
    """An injected wall clock (epoch seconds) that tests move by hand."""

    def __init__(self, moment: datetime) -> None:
        self.now = moment.timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, moment: datetime) -> None:
        self.now = moment.timestamp()


@cache
def read_rows(name: str) -> tuple[tuple[list[str], ...], tuple[str, ...]]:
    """(feature rows as strings, scores) of a reference CSV."""
    with open(DATA / name, newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [([r[f] for f in FEATURES], r["score"]) for r in reader]
    return tuple(r for r, _ in rows), tuple(s for _, s in rows)


def write_baseline(folder: Path) -> tuple[Path, Path]:
    """statistics.json and constraints.json built by the analyzer's own code from baseline.csv."""
    rows, _ = read_rows("baseline.csv")
    columns = {name: [row[i] for row in rows] for i, name in enumerate(FEATURES)}
    profile = profile_rows(columns)
    folder.mkdir(parents=True, exist_ok=True)
    stats, cons = folder / "statistics.json", folder / "constraints.json"
    stats.write_bytes(orjson.dumps(statistics_json(profile)))
    cons.write_bytes(orjson.dumps(suggest_constraints(profile)))
    return stats, cons


def make_config(tmp: Path, baseline: tuple[Path, Path] | None, **analyzer: Any) -> ModelmonConfig:
    """A config rooted in ``tmp`` (capture in tmp/capture, db in tmp/m.db)."""
    section: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "db": "m.db",
        "reports_dir": "reports",
        "bucket_s": 300,
        "window_s": 3600,
        "min_samples": 100,
        "payload": {
            "input": {"format": "csv", "columns": FEATURES},
            "output": {"format": "csv", "columns": ["score"]},
        },
    }
    if baseline is not None:
        section["baseline"] = {"statistics": str(baseline[0]), "constraints": str(baseline[1])}
    else:
        section["baseline"] = {"statistics": "none/statistics.json", "constraints": "none/c.json"}
    section.update(analyzer)
    data = {
        "endpoint": {"name": ENDPOINT, "variant": VARIANT},
        "proxy": {"upstream": "http://127.0.0.1:9"},
        "capture": {"dir": "capture"},
        "analyzer": section,
    }
    return parse_config(data, base=tmp)


def record_line(row: Sequence[str], score: str, moment: datetime) -> bytes:
    return build_record(
        event_id=str(uuid.uuid4()),
        inference_time=moment,
        request=CaptureSide("text/csv", ",".join(row), "CSV"),
        response=CaptureSide("text/csv", score, "CSV"),
    )


def write_capture_file(
    root: Path,
    lines: Sequence[bytes],
    moment: datetime,
    *,
    endpoint: str = ENDPOINT,
    variant: str = VARIANT,
) -> Path:
    """A sealed capture file in the hour folder of ``moment`` (written as .part, renamed)."""
    folder = root / endpoint / variant / moment.strftime("%Y/%m/%d/%H")
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{moment.strftime('%M-%S')}-{moment.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
    part = folder / (name + ".part")
    part.write_bytes(b"".join(lines))
    os.replace(part, folder / name)
    return folder / name


def write_traffic(
    root: Path,
    source: str,
    n: int,
    start: datetime,
    *,
    per_file: int = 100,
    spacing: timedelta = timedelta(milliseconds=100),
    offset: int = 0,
    endpoint: str = ENDPOINT,
    variant: str = VARIANT,
) -> int:
    """``n`` records from a reference CSV, one every ``spacing`` from ``start``; returns n."""
    rows, scores = read_rows(source)
    lines: list[bytes] = []
    first = start
    for i in range(n):
        moment = start + i * spacing
        j = (offset + i) % len(rows)
        lines.append(record_line(rows[j], scores[j], moment))
        if len(lines) == per_file:
            write_capture_file(root, lines, first, endpoint=endpoint, variant=variant)
            lines, first = [], moment + spacing
    if lines:
        write_capture_file(root, lines, first, endpoint=endpoint, variant=variant)
    return n
