"""The capture sink end to end on real files: write, flush, seal at close, drops, modes."""

from __future__ import annotations

import asyncio
import stat
import time
from pathlib import Path

from capture_proxy.sink import CaptureSink

from .sink_support import (
    HOUR_START,
    FakeClock,
    event_ids,
    exchange,
    make_sink,
    part_files,
    read_lines,
    root_of,
    sealed_files,
)


async def test_flush_writes_to_part_and_close_seals(tmp_path: Path) -> None:
    clock = FakeClock()
    sink, metrics = make_sink(tmp_path, clock)
    await sink.start()
    sent = [exchange(clock.now + i / 1000) for i in range(50)]
    assert all(sink.submit(e) for e in sent)
    await sink.flush()
    parts = part_files(tmp_path)
    assert len(parts) == 1 and not sealed_files(tmp_path)
    assert len(read_lines(parts[0])) == 50
    assert parts[0].parent == root_of(tmp_path) / "2026" / "03" / "04" / "05"
    await sink.close()
    await sink.close()  # idempotent
    assert not part_files(tmp_path)
    files = sealed_files(tmp_path)
    assert len(files) == 1
    assert files[0].name.endswith(".jsonl") and files[0].name.startswith("01-00-000-")
    assert event_ids(files) == {e.event_id: 1 for e in sent}
    assert metrics.captured._value.get() == 50
    assert metrics.files_sealed._value.get() == 1
    assert metrics.bytes_written._value.get() == files[0].stat().st_size
    assert sum(metrics.drop_counts.values()) == 0


async def test_file_and_directory_modes(tmp_path: Path) -> None:
    sink, _ = make_sink(tmp_path / "capture")
    await sink.start()
    sink.submit(exchange(HOUR_START + 5))
    await sink.close()
    (path,) = sealed_files(tmp_path / "capture")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    directory = path.parent
    while directory != tmp_path:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
        directory = directory.parent


async def test_queue_full_drops_and_counts(tmp_path: Path) -> None:
    sink, metrics = make_sink(tmp_path, queue_max_records=8)
    await sink.start()
    # No await between submits: the writer cannot run, so exactly 8 fit and 12 are dropped.
    verdicts = [sink.submit(exchange(HOUR_START + 1)) for _ in range(20)]
    assert verdicts == [True] * 8 + [False] * 12
    assert sink.queue_depth == 8
    assert metrics.drop_counts["queue_full"] == 12
    # the gauge reads the queue at scrape time
    assert metrics.registry.get_sample_value("modelmon_capture_queue_depth") == 8
    await sink.close()
    assert sum(len(read_lines(p)) for p in sealed_files(tmp_path)) == 8
    assert sink.queue_depth == 0


async def test_submit_after_close_is_dropped(tmp_path: Path) -> None:
    sink, metrics = make_sink(tmp_path)
    await sink.start()
    await sink.close()
    assert not sink.submit(exchange(HOUR_START + 1))
    assert metrics.drop_counts["shutdown"] == 1


async def test_writer_wakes_without_flush_when_a_batch_is_full(tmp_path: Path) -> None:
    sink, _ = make_sink(tmp_path, queue_max_records=16, flush_interval_s=3600)
    await sink.start()
    for _ in range(16):  # 16 // 8 = 2 records wake the writer
        sink.submit(exchange(HOUR_START + 1))

    async def drained() -> None:
        while sink.queue_depth:  # each thread round trip lets the loop run the writer
            await asyncio.to_thread(time.monotonic)

    await asyncio.wait_for(drained(), 10)
    await sink.close()


async def test_close_before_start_is_harmless(tmp_path: Path) -> None:
    sink, metrics = make_sink(tmp_path)
    assert sink.submit(exchange(HOUR_START + 1))
    await sink.close()
    assert metrics.drop_counts["shutdown"] == 1
    assert isinstance(sink, CaptureSink)


async def test_a_lone_record_reaches_its_part_file_within_flush_interval(tmp_path: Path) -> None:
    # One record is far below the batch that wakes the writer: only the flush timer writes it.
    sink, _ = make_sink(tmp_path, flush_interval_s=0.05)
    await sink.start()
    sink.submit(exchange(HOUR_START + 1))

    def lines_on_disk() -> int:
        return sum(len(read_lines(p)) for p in part_files(tmp_path))

    async def written() -> None:
        while not await asyncio.to_thread(lines_on_disk):
            pass

    await asyncio.wait_for(written(), 10)
    await sink.close()
