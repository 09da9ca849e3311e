"""Rotation by size, by age and at the hour boundary, driven by an injected clock; and no record
lost or duplicated across rotations under concurrent load."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

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

PADDING = b'{"x": "' + b"p" * 200 + b'"}'


async def test_rotation_by_size(tmp_path: Path) -> None:
    clock = FakeClock()
    sink, metrics = make_sink(tmp_path, clock, max_file_bytes=2048)
    await sink.start()
    sent = [exchange(clock.now, body=PADDING) for _ in range(40)]
    for e in sent[:25]:
        sink.submit(e)
    await sink.flush()
    for e in sent[25:]:
        sink.submit(e)
    await sink.flush()
    sealed = sealed_files(tmp_path)
    assert len(sealed) >= 4
    line_size = len(read_lines(sealed[0])[0]) + 1
    for path in sealed:
        size = path.stat().st_size
        assert 2048 - line_size < size <= 2048, size  # full, but never over the limit
    assert len(part_files(tmp_path)) == 1
    await sink.close()
    assert event_ids(sealed_files(tmp_path)) == {e.event_id: 1 for e in sent}
    assert metrics.files_sealed._value.get() == len(sealed_files(tmp_path))


async def test_a_line_larger_than_the_limit_gets_a_file_of_its_own(tmp_path: Path) -> None:
    sink, _ = make_sink(tmp_path, max_file_bytes=1024)
    await sink.start()
    small, big = exchange(HOUR_START + 1), exchange(HOUR_START + 1, body=b'"' + b"b" * 3000 + b'"')
    sink.submit(small)
    sink.submit(big)
    sink.submit(exchange(HOUR_START + 1))
    await sink.close()
    sizes = sorted(len(read_lines(p)) for p in sealed_files(tmp_path))
    assert sizes == [1, 1, 1]


async def test_rotation_by_interval_with_injected_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    sink, _ = make_sink(tmp_path, clock, rotate_interval_s=30)
    await sink.start()
    first = [exchange(clock.now) for _ in range(5)]
    for e in first:
        sink.submit(e)
    await sink.flush()
    assert len(part_files(tmp_path)) == 1 and not sealed_files(tmp_path)
    clock.advance(29.9)
    await sink.flush()
    assert len(part_files(tmp_path)) == 1 and not sealed_files(tmp_path)
    clock.advance(0.1)
    await sink.flush()
    assert not part_files(tmp_path)
    assert event_ids(sealed_files(tmp_path)) == {e.event_id: 1 for e in first}
    second = exchange(clock.now)
    sink.submit(second)
    await sink.flush()
    assert len(part_files(tmp_path)) == 1  # a new file: the sealed one is never reopened
    await sink.close()
    assert len(sealed_files(tmp_path)) == 2
    assert event_ids(sealed_files(tmp_path))[second.event_id] == 1


async def test_rotation_at_the_hour_boundary(tmp_path: Path) -> None:
    clock = FakeClock(HOUR_START + 3590)
    sink, _ = make_sink(tmp_path, clock, rotate_interval_s=3600)
    await sink.start()
    before = exchange(HOUR_START + 3595)
    sink.submit(before)
    await sink.flush()
    (part,) = part_files(tmp_path)
    assert part.parent == root_of(tmp_path) / "2026" / "03" / "04" / "05"
    assert part.name.startswith("59-55-000-")
    clock.now = HOUR_START + 3600.5
    after = exchange(clock.now)
    late = exchange(HOUR_START + 3599.9)  # started before the hour, finished after it
    sink.submit(after)
    sink.submit(late)
    await sink.flush()
    (part,) = part_files(tmp_path)  # only the new hour's file is still open
    assert part.parent == root_of(tmp_path) / "2026" / "03" / "04" / "06"
    await sink.close()
    by_dir: dict[str, set[str]] = {}
    for path in sealed_files(tmp_path):
        by_dir.setdefault(path.parent.name, set()).update(event_ids([path]))
    assert by_dir == {"05": {before.event_id, late.event_id}, "06": {after.event_id}}


async def test_one_batch_of_mixed_hours_goes_to_one_file_per_hour(tmp_path: Path) -> None:
    clock = FakeClock(HOUR_START + 7200 + 10)
    sink, _ = make_sink(tmp_path, clock)
    await sink.start()
    times = [HOUR_START + 3599, HOUR_START + 3600, HOUR_START + 7199, HOUR_START + 7200]
    sent = [exchange(t) for t in times]
    for e in sent:
        sink.submit(e)
    await sink.close()
    hours = {p.parent.name: len(read_lines(p)) for p in sealed_files(tmp_path)}
    assert hours == {"05": 1, "06": 2, "07": 1}


async def test_no_record_lost_or_duplicated_across_rotations_under_load(tmp_path: Path) -> None:
    clock = FakeClock(HOUR_START + 3000)
    sink, metrics = make_sink(
        tmp_path, clock, max_file_bytes=4096, rotate_interval_s=20, queue_max_records=100_000
    )
    await sink.start()
    accepted: list[str] = []
    rng = random.Random(42)

    async def producer(worker: int) -> None:
        for i in range(600):
            e = exchange(clock.now, body=PADDING if rng.random() < 0.3 else b"[1, 2]")
            if sink.submit(e):
                accepted.append(e.event_id)
            if i % 37 == worker:
                await sink.flush()

    async def rotator() -> None:
        for _ in range(40):
            clock.advance(rng.choice([1.0, 7.0, 25.0, 90.0]))  # crosses hours and intervals
            await sink.flush()

    async with asyncio.TaskGroup() as group:
        for worker in range(6):
            group.create_task(producer(worker))
        group.create_task(rotator())
    await sink.close()
    assert not part_files(tmp_path)
    files = sealed_files(tmp_path)
    assert len(files) > 10
    assert len(accepted) == 3600 and sum(metrics.drop_counts.values()) == 0
    written = event_ids(files)
    assert written == {event_id: 1 for event_id in accepted}
    assert len({p.parent for p in files}) >= 2  # the load crossed an hour
