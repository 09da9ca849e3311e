"""The service's ingest pipeline: chunk N+1 decoded while the writer commits chunk N (depth 1,
across files), still exactly once."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import analyzer.ingest.chunk_decode as chunk_decode_module
from analyzer.ingest.ingestor import Ingestor, IngestStats, bucket_records
from analyzer.store.buckets import merge_buckets
from analyzer.store.database import Store, read_counters
from modelmon.config import ModelmonConfig
from tests.analyzer.service_helpers import (
    T0,
    make_config,
    read_rows,
    record_line,
    write_capture_file,
    write_traffic,
)

WAIT_S = 60  # an upper bound for a thread to get somewhere, never a measured time


@pytest.fixture
def config(tmp_path: Path) -> ModelmonConfig:
    return make_config(tmp_path, None)


class _Watched(Ingestor):
    """An ingester that says when it decodes its second chunk, and holds there until told."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.decoded = 0
        self.submitted = 0
        self.second_decoding = threading.Event()
        self.go_on = threading.Event()

    def _chunk_profiles(self, rel: str, chunk: Any) -> Any:
        self.decoded += 1
        if self.decoded == 2:
            self.second_decoding.set()
            assert self.go_on.wait(WAIT_S)
        return super()._chunk_profiles(rel, chunk)

    def _submit(self, *args: Any) -> Future[bool]:
        self.submitted += 1
        return super()._submit(*args)


def test_the_next_chunk_is_decoded_while_the_writer_commits(
    config: ModelmonConfig, store: Store
) -> None:
    n = write_traffic(config.capture.dir, "current_nodrift.csv", 30, T0, per_file=15)
    writer_free = threading.Event()
    store.submit(lambda db: writer_free.wait(WAIT_S))  # the writer is busy until told
    ingestor = _Watched(store, config, chunk_lines=10)
    result: list[IngestStats] = []
    thread = threading.Thread(target=lambda: result.append(ingestor.run_once()))
    thread.start()
    try:
        # chunk 2 is being decoded though chunk 1's commit cannot have run (the writer is held)
        assert ingestor.second_decoding.wait(WAIT_S)
        assert ingestor.submitted == 1  # depth 1: chunk 2 is queued only after chunk 1 is in
        assert store.read(read_counters).get("records", 0) == 0
    finally:
        writer_free.set()
        ingestor.go_on.set()
        thread.join(WAIT_S)
    (stats,) = result
    assert stats.records == n and stats.files == 2 and stats.chunks == 4
    assert store.read(read_counters)["records"] == n
    assert ingestor.run_once().records == 0


def test_a_commit_that_finds_its_offset_moved_drops_the_rest_of_its_file(
    config: ModelmonConfig, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A racing ingester read the first file meanwhile: this one's first commit of it fails
    its offset check, its next chunk of that file is not committed, the next file still is."""
    root = config.capture.dir
    first = write_traffic(root, "current_nodrift.csv", 40, T0, per_file=40)
    Ingestor(store, config, chunk_lines=10).run_once()
    stale = Ingestor(store, config, chunk_lines=10)
    stale._known = lambda first="": {}  # type: ignore[method-assign]  # saw nothing read
    later = T0.replace(hour=(T0.hour + 1) % 24)
    second = write_traffic(root, "current_nodrift.csv", 25, later, per_file=25)
    with caplog.at_level(logging.WARNING, logger="modelmon.analyzer.ingest"):
        stats = stale.run_once()
    assert stats.records == second and stats.chunks == 3 and stats.files == 1
    moved = [r for r in caplog.records if "offset moved" in r.getMessage()]
    assert len(moved) == 1  # the file's first commit; its other 3 chunks were never queued
    counters = store.read(read_counters)
    assert counters["records"] == first + second and counters["files"] == 2


def test_a_file_of_whole_chunks_ends_with_its_last_chunk(
    config: ModelmonConfig, store: Store
) -> None:
    """No empty commit after a full last chunk: that chunk marks the file read."""
    n = write_traffic(config.capture.dir, "current_nodrift.csv", 20, T0, per_file=20)
    stats = Ingestor(store, config, chunk_lines=10).run_once()
    assert stats.records == n and stats.chunks == 2 and stats.files == 1
    rows = store.read(lambda c: c.execute("SELECT lines, done FROM files").fetchall())
    assert rows == [(20, 1)]


@pytest.mark.parametrize("bad_line", [False, True])
def test_a_chunk_over_two_buckets_is_split_by_its_decoded_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad_line: bool
) -> None:
    """Every line gave a record: the lines are split by their times (as their text shows
    them, checked against the decoded ones: test_chunk_buckets.py), never parsed a second
    time (``bucket_records``); a bad line sends the chunk the old way. Same buckets."""
    config = make_config(tmp_path, None)
    grouped: list[int] = []

    def counted(lines: list[bytes], bucket_s: int) -> Any:
        grouped.append(len(lines))
        return bucket_records(lines, bucket_s)

    monkeypatch.setattr(chunk_decode_module, "bucket_records", counted)
    rows, scores = read_rows("current_nodrift.csv")
    lines = [record_line(rows[i], scores[i], T0 + timedelta(seconds=6 * i)) for i in range(100)]
    if bad_line:
        lines.insert(50, b"{not json\n")
    write_capture_file(config.capture.dir, lines, T0)
    store = Store(config.analyzer.db)
    store.start()
    try:
        stats = Ingestor(store, config).run_once()
        buckets = store.read(lambda c: c.execute("SELECT start, records FROM buckets").fetchall())
        profile = store.read(lambda c: merge_buckets(c, 0, 2**40))
    finally:
        store.close()
    start = int(T0.timestamp())
    assert dict(buckets) == {start: 50, start + 300: 50}
    assert stats.records == 100 and sum(stats.bad.values()) == int(bad_line)
    assert grouped == ([101] if bad_line else [])
    assert profile is not None and profile.features["age"].count == 100
