"""``modelmon baseline`` reads training tables with a line limit (issue 9, finding 3): a line
longer than ``analyzer.max_line_bytes`` is skipped unread and counted as ``too_large``, and the
rest is read; a line of exactly the limit is read."""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from analyzer.decoding.codecs import PayloadDecoder
from analyzer.ingest.table_readers import (
    TOO_LARGE,
    capture_batches,
    csv_chunks,
    infer_format,
    jsonl_chunks,
)
from modelmon.capture_record import CaptureSide, build_record
from modelmon.config import PayloadConfig

LIMIT = 1024


def _csv_line(size: int, tag: str) -> bytes:
    """``tag,xxx…`` of exactly ``size`` bytes (without its ``\\n``)."""
    head = f"{tag},".encode()
    return head + b"x" * (size - len(head))


def _jsonl_line(size: int, tag: str) -> bytes:
    """``{"tag": "…", "pad": "xxx…"}`` of exactly ``size`` bytes."""
    empty = orjson.dumps({"tag": tag, "pad": ""})
    return orjson.dumps({"tag": tag, "pad": "x" * (size - len(empty))})


@pytest.mark.parametrize("packed", [False, True])
def test_csv_lines_at_the_limit(tmp_path: Path, packed: bool) -> None:
    rows = [b"tag,pad", b"a,1"]
    rows += [_csv_line(LIMIT - 1, "under"), _csv_line(LIMIT, "at"), _csv_line(LIMIT + 1, "over")]
    rows += [b"b,2"]
    body = b"\n".join(rows) + b"\n"
    path = tmp_path / ("t.csv.gz" if packed else "t.csv")
    path.write_bytes(gzip.compress(body) if packed else body)
    skipped: Counter[str] = Counter()
    chunks = list(csv_chunks(path, True, max_line_bytes=LIMIT, skipped=skipped))
    tags = [tag for columns, _, _ in chunks for tag in columns["tag"]]
    assert tags == ["a", "under", "at", "b"]
    assert skipped == Counter({TOO_LARGE: 1})


def test_jsonl_lines_at_the_limit_keep_their_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    lines = [_jsonl_line(n, tag) for n, tag in ((LIMIT - 1, "under"), (LIMIT, "at"))]
    lines += [_jsonl_line(LIMIT + 1, "over"), b'{"tag": "last"}', b"[1, 2"]
    assert [len(line) for line in lines[:3]] == [LIMIT - 1, LIMIT, LIMIT + 1]
    path.write_bytes(b"\n".join(lines[:4]) + b"\n")
    skipped: Counter[str] = Counter()
    chunks = list(jsonl_chunks(path, max_line_bytes=LIMIT, skipped=skipped))
    assert [tag for columns, _, _ in chunks for tag in columns["tag"]] == ["under", "at", "last"]
    assert skipped == Counter({TOO_LARGE: 1})
    path.write_bytes(b"\n".join(lines) + b"\n")  # a bad line after the long one: line 5
    with pytest.raises(Exception, match="line 5: not valid JSON"):
        list(jsonl_chunks(path, max_line_bytes=LIMIT))


def test_a_gigantic_first_line_does_not_decide_the_format(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"x" * (LIMIT * 8) + b"\n" + _jsonl_line(100, "a") + b"\n")
    assert infer_format(path, LIMIT) == "jsonl"


def test_capture_lines_over_the_limit_are_counted(tmp_path: Path) -> None:
    def record(body: str, i: int) -> bytes:
        return build_record(
            event_id=f"e{i}",
            inference_time=datetime(2026, 11, 27, 7, 0, i, tzinfo=UTC),
            request=CaptureSide("text/csv", body, "CSV"),
            response=CaptureSide("text/csv", "0.5", "CSV"),
        ).rstrip(b"\n")

    small = record("1,2", 0)
    pad = LIMIT - len(small)  # bodies that make lines of LIMIT - 1, LIMIT, LIMIT + 1 bytes
    lines = [record("1,2" + "0" * (pad + d), i + 1) for i, d in enumerate((-1, 0, 1))]
    assert [len(line) for line in lines] == [LIMIT - 1, LIMIT, LIMIT + 1]
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"\n".join([small, *lines]) + b"\n")
    skipped: Counter[str] = Counter()
    decoder = PayloadDecoder(PayloadConfig())
    batches = list(capture_batches(path, decoder, max_line_bytes=LIMIT, skipped=skipped))
    assert sum(b.n_records for b in batches) == 3
    assert skipped == Counter({TOO_LARGE: 1})


def test_the_command_skips_a_gigantic_line_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "modelmon.yaml").write_text(
        "proxy: {upstream: 'http://127.0.0.1:9'}\n"
        "analyzer:\n"
        "  max_line_bytes: 65536\n"
        "  baseline: {statistics: base/stats.json, constraints: base/cons.json}\n"
    )
    table = tmp_path / "train.csv"
    with table.open("wb") as out:
        out.write(b"age,state\n")
        for i in range(100):
            out.write(f"{20 + i % 50},CA\n".encode())
        out.write(b"30," + b"N" * (8 << 20) + b"\n")  # 8 MiB: 128 times the limit
        out.write(b"40,NY\n")
    command = ["baseline", "--config", "modelmon.yaml", "--data", str(table)]
    done = subprocess.run(
        [sys.executable, "-m", "modelmon", *command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "101 rows" in done.stdout
    assert "skipped 1 records that did not decode (too_large: 1)" in done.stdout
    stats = orjson.loads((tmp_path / "base" / "stats.json").read_bytes())
    assert stats["dataset"]["item_count"] == 101
