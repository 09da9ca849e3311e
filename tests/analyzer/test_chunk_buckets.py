"""A chunk over two buckets split by the times its lines show (decoded once), checked against
the decoded times, and the ways back to the split by the decoded times."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from analyzer.ingest.chunk_buckets import lines_by_time
from analyzer.ingest.ingestor import Ingestor
from analyzer.store.buckets import merge_buckets
from analyzer.store.database import Store, read_counters
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
        decode = ingestor._decoder.decode_lines

        def counted(group: list[bytes]) -> Any:  # a spy: the decoder itself runs
            decoded.append(len(group))
            return decode(group)

        ingestor._decoder.decode_lines = counted  # type: ignore[method-assign]
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
    second bucket). The guess is checked against the decoded times: its first group fails,
    and the chunk is split by the decoded times, as before."""
    lines = _lines(100, 6)
    late = (T0 + timedelta(seconds=420)).strftime("%Y-%m-%dT%H:%M:%S.000Z").encode()
    lines[at] = re.sub(
        rb'("inferenceTime":"[^"]*")}', rb'\1,"inferenceTime":"%b"}' % late, lines[at]
    )
    assert orjson.loads(lines[at])["eventMetadata"]["inferenceTime"] == late.decode()
    decoded: list[int] = []
    stats, buckets, profile, counters = _ingest(tmp_path, lines, decoded)
    assert buckets == {START: 49, START + 300: 51}  # that record in the later bucket
    assert decoded == [50, 100, *order]  # the guess's first group, the chunk, its buckets
    assert stats.records == 100 and counters["records"] == 100
    assert profile is not None and profile.features["age"].count == 100
