"""The sink's byte budget, its housekeeping thread, exact accounting and quiet failure logs."""

from __future__ import annotations

import asyncio
import gzip
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from capture_proxy.metrics import ProxyMetrics
from capture_proxy.retention import free_disk_fraction
from capture_proxy.rotation import CaptureFiles
from capture_proxy.sampling import Sampler
from capture_proxy.tee import sampling_key

from .sink_support import HOUR_START, FakeClock, event_ids, exchange, make_sink, sealed_files

BODY = b"x" * 4000  # + 3 bytes of answer: 4003 bytes per exchange


async def test_queue_is_bounded_by_bytes_and_drops_are_counted_apart(tmp_path: Path) -> None:
    sink, metrics = make_sink(tmp_path, queue_max_bytes=10_000)
    accepted = [sink.submit(exchange(HOUR_START + i, body=BODY)) for i in range(5)]
    assert accepted == [True, True, False, False, False]
    assert metrics.drop_counts["queue_bytes"] == 3 and metrics.drop_counts["queue_full"] == 0
    assert sink.held_bytes == 2 * 4003
    await sink.start()
    await sink.flush()
    assert sink.held_bytes == 0
    assert sink.submit(exchange(HOUR_START + 9, body=BODY))  # room again once written
    await sink.close()
    assert metrics.captured._value.get() == 3


async def test_records_in_the_writers_hands_still_count_against_the_budget(
    tmp_path: Path,
) -> None:
    """The writer takes a slice out of the queue, but its bytes stay counted until written: the
    queue and the writer together never hold more than ``queue_max_bytes``."""
    sink, metrics = make_sink(tmp_path, queue_max_bytes=10_000)
    entered, release = threading.Event(), threading.Event()
    cycle = sink._cycle_lines  # small records: encoded on the loop, written in the thread

    def held_cycle(*args: object) -> None:  # the writer thread stops inside its cycle
        entered.set()
        release.wait(30)
        cycle(*args)  # type: ignore[arg-type]

    sink._cycle_lines = held_cycle  # type: ignore[method-assign]
    await sink.start()
    assert sink.submit(exchange(HOUR_START + 1, body=BODY))
    assert sink.submit(exchange(HOUR_START + 2, body=BODY))
    flushed = asyncio.ensure_future(sink.flush())
    await asyncio.to_thread(entered.wait, 30)
    assert sink.queue_depth == 0 and sink.held_bytes == 2 * 4003  # in the writer's hands
    assert not sink.submit(exchange(HOUR_START + 3, body=BODY))
    assert metrics.drop_counts["queue_bytes"] == 1
    release.set()
    await flushed
    sink._cycle_lines = cycle  # type: ignore[method-assign]
    await sink.close()
    assert metrics.captured._value.get() == 2 and sink.held_bytes == 0


async def test_disk_full_is_counted_once_and_records_plus_drops_equal_submitted(
    tmp_path: Path,
) -> None:
    free = free_disk_fraction(tmp_path)
    if free > 0.9999:
        pytest.skip("the test filesystem is almost empty: no threshold above its free space")
    sink, metrics = make_sink(tmp_path, min_free_disk_fraction=min(0.9999, (free + 1) / 2))
    assert sink.submit(exchange(HOUR_START + 1))  # queued before the first disk check
    await sink.start()  # the check finds the disk full
    await sink.flush()  # the writer drops what was queued: once, under disk_full
    assert not sink.submit(exchange(HOUR_START + 2))  # refused at submit: once, too
    await sink.close()
    assert metrics.drop_counts["disk_full"] == 2
    assert metrics.captured._value.get() + sum(metrics.drop_counts.values()) == 2


def test_a_compressing_seal_runs_outside_the_writers_call(tmp_path: Path) -> None:
    """``write`` returns while the gzip of the file it sealed waits for the housekeeping
    thread (held busy here); the file appears, whole, once that thread runs."""
    housekeeping = ThreadPoolExecutor(max_workers=1)
    busy = threading.Event()
    housekeeping.submit(busy.wait, 30)
    files = CaptureFiles(
        tmp_path,
        max_file_bytes=1024,
        rotate_interval_s=3600,
        compress=True,
        metrics=ProxyMetrics(),
        defer=housekeeping.submit,
    )
    lines = [b'{"n": %d, "pad": "%s"}\n' % (i, b"p" * 300) for i in range(8)]
    hour = int(HOUR_START // 3600)
    assert files.write(hour, [HOUR_START] * 8, lines, HOUR_START) == 8  # seals by size
    assert not list(tmp_path.rglob("*.jsonl.gz"))  # the gzip has not run yet
    busy.set()
    files.close_all()
    housekeeping.shutdown(wait=True)
    sealed = sorted(tmp_path.rglob("*.jsonl.gz"))
    assert len(sealed) >= 2 and not list(tmp_path.rglob("*.part"))
    written = [ln for p in sealed for ln in gzip.decompress(p.read_bytes()).splitlines(True)]
    assert sorted(written) == sorted(lines)


async def test_flush_and_close_wait_for_the_housekeeping_thread(tmp_path: Path) -> None:
    clock = FakeClock()
    sink, _ = make_sink(tmp_path, clock, compress=True, rotate_interval_s=10)
    await sink.start()
    sent = [exchange(clock.now + i) for i in range(3)]
    for e in sent:
        sink.submit(e)
    await sink.flush()
    clock.advance(11)
    await sink.flush()  # sealed by age, gzipped in the housekeeping thread before this returns
    (path,) = sealed_files(tmp_path)
    assert path.name.endswith(".jsonl.gz")
    assert event_ids([path]) == {e.event_id: 1 for e in sent}
    await sink.close()


def test_write_errors_are_logged_at_most_once_a_minute(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a regular file: nothing can be created under it")
    metrics = ProxyMetrics()
    files = CaptureFiles(
        blocker / "capture",
        max_file_bytes=1 << 20,
        rotate_interval_s=60,
        compress=False,
        metrics=metrics,
    )
    hour = int(HOUR_START // 3600)
    with caplog.at_level(logging.WARNING, logger="modelmon.capture.files"):
        for _ in range(50):
            assert files.write(hour, [HOUR_START], [b"{}\n"], HOUR_START) == 0
    assert len(caplog.records) == 1
    assert metrics.write_errors._value.get() == 50


def test_keyed_sampling_follows_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [f"order-{i}" for i in range(400)]
    plain = [Sampler(50.0).sample(i) for i in ids]
    monkeypatch.setenv("MODELMON_TEST_SAMPLING_KEY", "s3cret")
    key = sampling_key("MODELMON_TEST_SAMPLING_KEY")
    assert key == b"s3cret"
    keyed = [Sampler(50.0, key=key).sample(i) for i in ids]
    assert keyed == [Sampler(50.0, key=b"s3cret").sample(i) for i in ids]  # same secret: alike
    assert keyed != plain  # a client that knows the plain verdicts cannot pick its ids
    other = [Sampler(50.0, key=b"other").sample(i) for i in ids]
    assert other != keyed
    assert 150 < sum(keyed) < 250
    monkeypatch.delenv("MODELMON_TEST_SAMPLING_KEY")
    assert sampling_key("MODELMON_TEST_SAMPLING_KEY") is None  # unset: unkeyed, with a warning
