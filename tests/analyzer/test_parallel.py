"""Profiling files on a process pool gives the exact parts of profiling them in-process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from analyzer.ingest.parallel import profile_capture_files
from modelmon.capture_record import CaptureSide, build_record
from modelmon.config import PayloadConfig


def write_files(root: Path) -> list[Path]:
    start = datetime(2024, 6, 1, 12, tzinfo=UTC)
    files = []
    for f in range(3):
        lines = [
            build_record(
                event_id=f"e{f}-{i}",
                inference_time=start + timedelta(minutes=f * 10 + i),
                request=CaptureSide("text/csv", f"{i * (f + 1)},{'ab'[i % 2]}", "CSV"),
                response=CaptureSide("text/csv", f"0.{i}", "CSV"),
            )
            for i in range(40)
        ]
        path = root / f"{f:02d}.jsonl"
        path.write_bytes(b"".join(lines) + b"{broken\n")
        files.append(path)
    return files


def test_pool_and_in_process_agree(tmp_path: Path) -> None:
    files = write_files(tmp_path)
    payload = PayloadConfig.model_validate({"input": {"columns": ["n", "s"]}})
    alone = profile_capture_files(files, payload, 2048, workers=1)
    pooled = profile_capture_files(files, payload, 2048, workers=2)
    for result in (alone, pooled):
        assert (result.records, result.files, result.profile.item_count) == (120, 3, 120)
        assert result.bad == {"not_json": 3}
        assert result.first_time == datetime(2024, 6, 1, 12, tzinfo=UTC)
        assert result.last_time == datetime(2024, 6, 1, 12, 59, tzinfo=UTC)
    a, b = alone.profile.features["n"], pooled.profile.features["n"]
    assert (a.count, a.min, a.max, a.type_counts) == (b.count, b.min, b.max, b.type_counts)
    assert a.sum == pytest.approx(b.sum) and a.std == pytest.approx(b.std)
    assert alone.profile.features["s"].category_counts() == {"a": 60.0, "b": 60.0}
    assert pooled.profile.features["s"].category_counts() == {"a": 60.0, "b": 60.0}
    assert pooled.profile.predictions["prediction"].count == 120


def test_progress_is_reported_per_file(tmp_path: Path) -> None:
    seen: list[int] = []
    profile_capture_files(
        write_files(tmp_path),
        PayloadConfig(),
        2048,
        workers=2,
        on_file=lambda t: seen.append(t.files),
    )
    assert seen == [1, 2, 3]
