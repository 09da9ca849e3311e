"""Retention: sealed files older than retention_max_age_h go, then the oldest beyond
retention_max_bytes; .part files are never touched."""

from __future__ import annotations

import os
from pathlib import Path

from capture_proxy.retention import enforce_retention

from .sink_support import FakeClock, exchange, make_sink, part_files, root_of, sealed_files

HOUR = 3600.0


def _sealed(capture_dir: Path, hour_dir: str, name: str, size: int, mtime: float) -> Path:
    directory = root_of(capture_dir) / hour_dir
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(b"x" * (size - 1) + b"\n")
    os.utime(path, (mtime, mtime))
    return path


async def test_files_older_than_max_age_are_removed(tmp_path: Path) -> None:
    clock = FakeClock()
    now = clock.now
    old = _sealed(tmp_path, "2026/02/01/00", "00-00-000-old.jsonl", 100, now - 169 * HOUR)
    old_gz = _sealed(tmp_path, "2026/02/01/00", "00-00-001-old.jsonl.gz", 100, now - 200 * HOUR)
    young = _sealed(tmp_path, "2026/03/04/04", "00-00-000-young.jsonl", 100, now - 167 * HOUR)
    stale_part = _sealed(tmp_path, "2026/03/04/04", "00-00-000-p.jsonl.part", 100, now)
    sink, metrics = make_sink(tmp_path, clock, retention_max_age_h=168)
    await sink.start()  # recovery seals the .part (nobody holds it); retention runs at start
    assert not old.exists() and not old_gz.exists() and young.exists()
    assert not (root_of(tmp_path) / "2026" / "02").exists()  # emptied old hour dirs pruned
    assert not stale_part.exists() and stale_part.with_suffix("").exists()
    assert metrics.files_removed._value.get() == 2
    clock.advance(2 * HOUR)  # now `young` is 169 h old
    await sink.tick()
    assert not young.exists()
    assert metrics.files_removed._value.get() == 3
    await sink.close()


async def test_oldest_files_beyond_max_bytes_are_removed(tmp_path: Path) -> None:
    clock = FakeClock()
    sink, metrics = make_sink(tmp_path, clock, retention_max_bytes=2500)
    await sink.start()
    files = [
        _sealed(tmp_path, "2026/03/04/05", f"00-0{i}-000-f.jsonl", 1000, clock.now - 600 + i)
        for i in range(5)
    ]
    await sink.tick()
    assert [p.exists() for p in files] == [False, False, False, True, True]
    assert metrics.files_removed._value.get() == 3
    await sink.close()


async def test_retention_never_touches_open_part_files(tmp_path: Path) -> None:
    clock = FakeClock()
    sink, _ = make_sink(tmp_path, clock, retention_max_bytes=1, retention_max_age_h=0.001)
    await sink.start()
    sink.submit(exchange(clock.now))
    await sink.flush()
    (part,) = part_files(tmp_path)
    os.utime(part, (clock.now - 10 * HOUR, clock.now - 10 * HOUR))
    await sink.tick()
    assert part.exists()
    await sink.close()  # sealed now, and the next retention run may take it
    assert len(sealed_files(tmp_path)) == 1


def test_enforce_retention_reports_what_it_removed(tmp_path: Path) -> None:
    now = 1_772_600_400.0
    a = _sealed(tmp_path, "2026/03/04/01", "a.jsonl", 10, now - 5 * HOUR)
    b = _sealed(tmp_path, "2026/03/04/02", "b.jsonl", 10, now - 1 * HOUR)
    removed = enforce_retention(root_of(tmp_path), now, max_age_s=2 * HOUR, max_bytes=10**9)
    assert removed == [a] and b.exists()
    assert not a.parent.exists() and b.parent.exists()
