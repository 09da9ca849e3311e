"""Ingestion of sealed capture files: exactly once, in chunks, per time bucket, bad lines
counted by reason."""

from __future__ import annotations

import gzip
from datetime import timedelta
from pathlib import Path

import pytest

from analyzer.ingest.ingestor import Ingestor, bucket_records
from analyzer.store.buckets import merge_buckets
from analyzer.store.database import Store, read_counters
from modelmon.config import ModelmonConfig
from tests.analyzer.service_helpers import (
    ENDPOINT,
    T0,
    VARIANT,
    make_config,
    read_rows,
    record_line,
    write_capture_file,
    write_traffic,
)


@pytest.fixture
def config(tmp_path: Path) -> ModelmonConfig:
    return make_config(tmp_path, None)


def _bucket_rows(store: Store) -> dict[int, int]:
    return dict(store.read(lambda c: c.execute("SELECT start, records FROM buckets").fetchall()))


def test_each_record_is_ingested_exactly_once(config: ModelmonConfig, store: Store) -> None:
    root = config.capture.dir
    n = write_traffic(root, "current_nodrift.csv", 730, T0, per_file=100)
    (root / ENDPOINT / VARIANT / T0.strftime("%Y/%m/%d/%H") / "x.jsonl.part").write_bytes(
        record_line(read_rows("current_nodrift.csv")[0][0], "0.1", T0)
    )
    ingestor = Ingestor(store, config)
    first = ingestor.run_once()
    assert first.records == n and first.files == 8
    second = ingestor.run_once()
    assert second.records == 0 and second.files == 0
    counters = store.read(read_counters)
    assert counters["records"] == n and counters["files"] == 8
    assert sum(_bucket_rows(store).values()) == n  # the .part file was not read


def test_chunks_give_the_same_totals_and_profiles(tmp_path: Path) -> None:
    totals = []
    for chunk_lines in (7, 10_000):
        folder = tmp_path / str(chunk_lines)
        config = make_config(folder, None)
        write_traffic(config.capture.dir, "current_nodrift.csv", 400, T0, per_file=400)
        store = Store(config.analyzer.db)
        store.start()
        stats = Ingestor(store, config, chunk_lines=chunk_lines).run_once()
        profile = store.read(lambda c: merge_buckets(c, 0, 2**40))
        lines = store.read(lambda c: c.execute("SELECT lines, offset, done FROM files").fetchall())
        store.close()
        assert profile is not None
        totals.append((profile.item_count, profile.features["age"].count, lines))
        assert stats.chunks == (58 if chunk_lines == 7 else 1)
    assert totals[0] == totals[1]
    assert totals[0][2][0][0] == 400 and totals[0][2][0][2] == 1


def test_records_land_in_the_bucket_of_their_inference_time(
    config: ModelmonConfig, store: Store
) -> None:
    # 100 records 6 s apart span 600 s: two 300 s buckets of 50 each, in ONE file.
    write_traffic(
        config.capture.dir,
        "current_nodrift.csv",
        100,
        T0,
        per_file=100,
        spacing=timedelta(seconds=6),
    )
    Ingestor(store, config).run_once()
    start = int(T0.timestamp())
    assert _bucket_rows(store) == {start: 50, start + 300: 50}
    hours = store.read(lambda c: c.execute("SELECT hour, version FROM hours").fetchall())
    assert hours == [(start, 1)]


def test_bad_lines_are_counted_by_reason_and_not_fatal(
    config: ModelmonConfig, store: Store
) -> None:
    rows, scores = read_rows("current_nodrift.csv")
    good = [record_line(rows[i], scores[i], T0 + timedelta(seconds=i)) for i in range(20)]
    lines = [
        *good[:10],
        b"{not json\n",
        b'{"eventMetadata": {}}\n',
        b"\n",
        b'{"captureData": {}, "eventMetadata": {"eventId": "e", '
        b'"inferenceTime": "2026-11-27T07:00:00Z"}}\n',
        *good[10:],
    ]
    write_capture_file(config.capture.dir, lines, T0)
    stats = Ingestor(store, config).run_once()
    counters = store.read(read_counters)
    assert stats.records == 20 and counters["records"] == 20
    assert counters["bad_records"] == 3 == sum(stats.bad.values())
    assert counters["bad:not_json"] == 1
    assert {k for k in counters if k.startswith("bad:")} == {f"bad:{r}" for r in stats.bad}
    assert len(stats.bad) == 3


def test_a_second_ingester_cannot_double_count(config: ModelmonConfig, store: Store) -> None:
    path_count = write_traffic(config.capture.dir, "current_nodrift.csv", 50, T0, per_file=50)
    stale = Ingestor(store, config)
    stale_known = stale._known()  # what a racing ingester saw before the first one committed
    Ingestor(store, config).run_once()
    stale._known = lambda first="": stale_known  # type: ignore[method-assign]
    again = stale.run_once()
    assert again.records == 0
    assert store.read(read_counters)["records"] == path_count


def test_bucket_records_groups_and_flags_unreadable_times() -> None:
    rows, scores = read_rows("current_nodrift.csv")
    lines = [
        record_line(rows[0], scores[0], T0),
        record_line(rows[1], scores[1], T0 + timedelta(seconds=301)),
        b'{"captureData": {}, "eventMetadata": {"inferenceTime": "yesterday"}}',
        b"[1, 2",
    ]
    groups, bad = bucket_records(lines, 300)
    start = int(T0.timestamp())
    assert {k: len(v) for k, v in groups.items()} == {start: 1, start + 300: 1, None: 1}
    assert bad == {"not_json": 1}


def test_gzip_files_are_read_in_chunks_from_their_offsets(
    config: ModelmonConfig, store: Store
) -> None:
    rows, scores = read_rows("current_nodrift.csv")
    lines = [record_line(rows[i], scores[i], T0 + timedelta(seconds=i)) for i in range(50)]
    plain = write_capture_file(config.capture.dir, lines, T0)
    packed = plain.with_name(plain.name + ".gz")
    packed.write_bytes(gzip.compress(b"".join(lines)))
    stats = Ingestor(store, config, chunk_lines=7).run_once()
    assert stats.records == 100 and stats.files == 2
    offsets = dict(store.read(lambda c: c.execute("SELECT path, offset FROM files").fetchall()))
    assert set(offsets.values()) == {len(b"".join(lines))}  # uncompressed bytes, both files


def test_files_removed_by_retention_do_not_disturb_the_rest(
    config: ModelmonConfig, store: Store
) -> None:
    write_traffic(config.capture.dir, "current_nodrift.csv", 100, T0, per_file=100)
    later = T0 + timedelta(hours=2)
    write_traffic(config.capture.dir, "current_nodrift.csv", 100, later, per_file=100)
    ingestor = Ingestor(store, config)
    assert ingestor.run_once().records == 200
    old_hour = config.capture.dir / ENDPOINT / VARIANT / T0.strftime("%Y/%m/%d/%H")
    for path in old_hour.iterdir():
        path.unlink()  # what retention does
    write_traffic(config.capture.dir, "current_nodrift.csv", 30, later, per_file=30)
    assert ingestor.run_once().records == 30
    assert store.read(read_counters)["records"] == 230


def test_truncated_gzip_keeps_its_complete_leading_records(
    config: ModelmonConfig, store: Store
) -> None:
    """A ``.jsonl.gz`` cut short (~1,000 records, cut near the end) keeps every record that
    decompresses whole and counts the rest as ``truncated_file``."""
    rows, scores = read_rows("current_nodrift.csv")
    lines = [
        record_line(rows[i % len(rows)], scores[i % len(rows)], T0 + timedelta(seconds=i))
        for i in range(1000)
    ]
    plain = write_capture_file(config.capture.dir, lines, T0)
    packed = gzip.compress(b"".join(lines))
    cut = plain.with_name(plain.name + ".gz")
    cut.write_bytes(packed[: len(packed) - 200])  # the end marker and a tail are gone
    plain.unlink()
    stats = Ingestor(store, config, chunk_lines=64).run_once()
    assert 900 < stats.records < 1000  # the leading records, not 0
    assert stats.bad["truncated_file"] == 1
    counters = store.read(read_counters)
    assert counters["records"] == stats.records and counters["bad:truncated_file"] == 1
    assert Ingestor(store, config).run_once().records == 0  # done: not read again


def test_the_local_retention_keeps_rows_of_files_read_from_a_url(tmp_path: Path) -> None:
    """Rows of a URL's objects (a backfill ``--from s3://…``, an earlier ``capture_url``) share
    the ``files`` table; the local tree's retention deletes only its own rows, even when a URL
    sorts before ``endpoint/variant/…`` (``gs://…`` before ``xgb/…``)."""
    base = make_config(tmp_path, None)
    config = base.model_copy(update={"endpoint": base.endpoint.model_copy(update={"name": "xgb"})})
    url = f"gs://bucket/capture/xgb/{VARIANT}/{T0:%Y/%m/%d/%H}/a.jsonl"
    write_traffic(config.capture.dir, "current_nodrift.csv", 10, T0, per_file=10, endpoint="xgb")
    store = Store(config.analyzer.db)
    store.start()
    try:
        store.write(
            lambda db: db.execute(
                "INSERT INTO files(path, offset, lines, records, bad, done, size) "
                "VALUES (?, 1, 1, 1, 0, 1, 1)",
                [url],
            )
        )
        assert Ingestor(store, config).run_once().records == 10
        paths = store.read(lambda c: [r[0] for r in c.execute("SELECT path FROM files")])
        assert url in paths
    finally:
        store.close()


def test_a_file_unreadable_midway_keeps_its_committed_chunks_and_is_counted_once(
    config: ModelmonConfig, store: Store
) -> None:
    """A gzip file followed by bytes that are no gzip member (zlib's error, not an OSError):
    the pass does not fail, the chunks committed before the break stay (the first 7 of 20
    lines; the chunk being read when it broke is not kept), the file is done and counted as
    one ``unreadable_file``, and the next pass reads nothing again."""
    row = read_rows("current_nodrift.csv")[0][0]
    good = b"".join(record_line(row, "0.1", T0) for _ in range(20))
    plain = write_capture_file(config.capture.dir, [], T0)
    plain.with_name(plain.name + ".gz").write_bytes(gzip.compress(good) + b"no gzip member")
    plain.unlink()
    ingestor = Ingestor(store, config, chunk_lines=7)
    first = ingestor.run_once()
    assert (first.records, first.files, first.bad["unreadable_file"]) == (7, 0, 1)
    second = ingestor.run_once()
    assert second.records == 0 and not second.bad
    counters = store.read(read_counters)  # what status and /metrics show, by reason
    assert (counters["records"], counters["bad:unreadable_file"]) == (7, 1)
