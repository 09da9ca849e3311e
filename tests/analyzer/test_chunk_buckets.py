"""A chunk over two buckets split by the times its lines show (decoded once), checked against
the decoded times, and the ways back to the split by the decoded times."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

import analyzer.ingest.chunk_decode as chunk_decode_module
from analyzer.ingest.chunk_buckets import lines_by_time
from analyzer.ingest.ingestor import Ingestor, bucket_records
from analyzer.store.buckets import merge_buckets
from analyzer.store.database import Store, read_counters
from analyzer.store.model_quality_blocks import stored_predictions
from modelmon.capture_record import CaptureSide, build_record
from tests.analyzer.service_helpers import (
    T0,
    make_config,
    read_rows,
    record_line,
    write_capture_file,
)

START = int(T0.timestamp())


def _lines(n: int, step_s: float, first_s: float = 0.0) -> list[bytes]:
    rows, scores = read_rows("current_nodrift.csv")
    return [
        record_line(rows[i], scores[i], T0 + timedelta(seconds=first_s + step_s * i))
        for i in range(n)
    ]


def test_lines_are_grouped_by_the_time_they_show_only_when_the_ends_differ() -> None:
    lines = _lines(100, 6)  # 600 s: two buckets of 300
    groups = lines_by_time([b"\n", *lines, b"  \n"], 300)  # blank lines are left out
    assert groups is not None and list(groups) == [START, START + 300]
    assert groups[START] == lines[:50] and groups[START + 300] == lines[50:]
    assert lines_by_time(_lines(40, 6), 300) is None  # one bucket: decoded whole
    assert lines_by_time(lines[:1], 300) is None
    # the ends in one bucket, a line between in another: left to the decoded times
    assert lines_by_time([lines[0], lines[60], lines[1]], 300) is None
    assert lines_by_time([*lines[:3], b"{not json\n", *lines[60:]], 300) is None  # no time
    bad_time = lines[70].replace(b'"inferenceTime":"', b'"inferenceTime":"x')
    assert lines_by_time([*lines[:3], bad_time, *lines[60:]], 300) is None


def _ingest(tmp_path: Path, lines: list[bytes], decoded: list[int]) -> tuple[Any, ...]:
    """Ingest one file of ``lines``; ``decoded`` gets the number of lines of each decode."""
    config = make_config(tmp_path, None)
    write_capture_file(config.capture.dir, lines, T0)
    store = Store(config.analyzer.db)
    store.start()
    try:
        ingestor = Ingestor(store, config)
        decode = ingestor._chunk_decoder.decoder.decode_lines

        def counted(group: list[bytes]) -> Any:  # a spy: the decoder itself runs
            decoded.append(len(group))
            return decode(group)

        ingestor._chunk_decoder.decoder.decode_lines = counted  # type: ignore[method-assign]
        stats = ingestor.run_once()
        buckets = store.read(lambda c: c.execute("SELECT start, records FROM buckets").fetchall())
        profile = store.read(lambda c: merge_buckets(c, 0, 2**40))
        counters = store.read(read_counters)
    finally:
        store.close()
    return stats, dict(buckets), profile, counters


def test_a_chunk_over_two_buckets_is_decoded_once(tmp_path: Path) -> None:
    decoded: list[int] = []
    stats, buckets, profile, _ = _ingest(tmp_path, _lines(100, 6), decoded)
    assert buckets == {START: 50, START + 300: 50}
    assert decoded == [50, 50]  # each line decoded once (before: 100, then 50 and 50)
    assert stats.records == 100 and not stats.bad
    assert profile is not None and profile.features["age"].count == 100


@pytest.mark.parametrize(("at", "order"), [(0, [51, 49]), (10, [49, 51])])
def test_a_line_whose_json_gives_another_time_than_its_text_shows(
    tmp_path: Path, at: int, order: list[int]
) -> None:
    """A repeated ``inferenceTime`` key: the text's first, the JSON's last (later, in the
    second bucket). The guess is checked against the decoded times: its first group does
    not fit, and the chunk is split by the decoded times, as before."""
    lines = _lines(100, 6)
    late = (T0 + timedelta(seconds=420)).strftime("%Y-%m-%dT%H:%M:%S.000Z").encode()
    lines[at] = re.sub(
        rb'("inferenceTime":"[^"]*")}', rb'\1,"inferenceTime":"%b"}' % late, lines[at]
    )
    assert orjson.loads(lines[at])["eventMetadata"]["inferenceTime"] == late.decode()
    decoded: list[int] = []
    stats, buckets, profile, counters = _ingest(tmp_path, lines, decoded)
    assert buckets == {START: 49, START + 300: 51}  # that record in the later bucket
    assert decoded == [50, 50, 100, *order]  # the guess's groups, the chunk, its buckets
    assert stats.records == 100 and counters["records"] == 100
    assert profile is not None and profile.features["age"].count == 100


def test_a_bad_record_over_two_buckets_goes_to_the_records_without_a_whole_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record refused for its input (cut by the proxy), its time readable: the groups hold
    a bad record and good ones in two buckets, so the chunk goes straight to
    ``bucket_records``, as the whole chunk's decode would have sent it."""
    rows, scores = read_rows("current_nodrift.csv")
    lines = _lines(100, 6)
    cut = CaptureSide("text/csv", ",".join(rows[0])[:5], "CSV", truncated=True)
    lines[70] = build_record(
        event_id="cut",
        inference_time=T0 + timedelta(seconds=420),
        request=cut,
        response=CaptureSide("text/csv", scores[0], "CSV"),
    )
    grouped: list[int] = []

    def counted(chunk: list[bytes], bucket_s: int) -> Any:  # a spy: the function runs
        grouped.append(len(chunk))
        return bucket_records(chunk, bucket_s)

    monkeypatch.setattr(chunk_decode_module, "bucket_records", counted)
    decoded: list[int] = []
    stats, buckets, profile, counters = _ingest(tmp_path, lines, decoded)
    assert decoded == [50, 50]  # the groups only: no decode of the whole chunk
    assert grouped == [100]  # then the records' way, as the whole chunk's decode would go
    assert buckets == {START: 50, START + 300: 49}
    assert stats.records == 99 and sum(stats.bad.values()) == 1 == counters["bad_records"]
    assert profile is not None and profile.features["age"].count == 99


def _keyed(key: str, score: str, seconds: float) -> bytes:
    rows, _ = read_rows("current_nodrift.csv")
    return build_record(
        event_id=key,
        inference_time=T0 + timedelta(seconds=seconds),
        request=CaptureSide("text/csv", ",".join(rows[0]), "CSV"),
        response=CaptureSide("text/csv", score, "CSV"),
    )


def test_a_key_in_two_buckets_keeps_the_prediction_of_the_bucket_seen_first(
    tmp_path: Path,
) -> None:
    """The chunk's buckets are stored in the order their first line comes (as the split by
    the decoded times did): the first prediction of a key stands across them."""
    quality = {"problem_type": "BinaryClassification", "probability_attribute": "0"}
    config = make_config(tmp_path, None, model_quality=quality)
    later = _lines(40, 6, first_s=300)  # the second bucket
    earlier = _lines(40, 6)  # the first
    # first a line of the later bucket, last one of the earlier: the split by shown times
    lines = [later[0], _keyed("k", "0.9", 310), *later[1:], *earlier, _keyed("k", "0.1", 10)]
    write_capture_file(config.capture.dir, lines, T0)
    store = Store(config.analyzer.db)
    store.start()
    try:
        stats = Ingestor(store, config).run_once()
        stored = store.read(stored_predictions)
    finally:
        store.close()
    assert stats.records == 82
    (kept,) = [row for row in stored if row[0] == "k"]
    assert kept[4] == "1" and kept[3] == START + 310  # the later bucket's, seen first
    assert [row[3] >= START + 300 for row in stored[:41]] == [True] * 41
    assert lines_by_time(lines, 300) is not None  # (the split by shown times was tried)
