"""Listing sealed capture files by hour window, and reading them (gzip too) from an offset."""

from __future__ import annotations

import gzip
import random
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from analyzer.ingest.capture_files import (
    TooLarge,
    TruncatedCapture,
    block_lines,
    read_line_batches,
    read_lines,
    read_pieces,
    sealed_files,
)


def hour_dir(root: Path, hour: datetime) -> Path:
    path = root / "ep" / "AllTraffic" / f"{hour:%Y/%m/%d/%H}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_only_sealed_files_in_the_window_in_order(tmp_path: Path) -> None:
    h3 = hour_dir(tmp_path, datetime(2024, 1, 2, 3, tzinfo=UTC))
    h4 = hour_dir(tmp_path, datetime(2024, 1, 2, 4, tzinfo=UTC))
    (h3 / "10-00-000-b.jsonl").write_bytes(b"{}\n")
    (h3 / "05-00-000-a.jsonl.gz").write_bytes(gzip.compress(b"{}\n"))
    (h3 / "20-00-000-c.jsonl.part").write_bytes(b"{}\n")
    (h3 / ".hidden.jsonl").write_bytes(b"{}\n")
    (h3 / "notes.txt").write_bytes(b"x")
    (h4 / "00-00-000-d.jsonl").write_bytes(b"{}\n")
    (tmp_path / "ep" / "AllTraffic" / "2024" / "01" / "02" / "xx").mkdir()
    everything = sealed_files(tmp_path, "ep", "AllTraffic", None, None)
    assert [p.name for p in everything] == [
        "05-00-000-a.jsonl.gz",
        "10-00-000-b.jsonl",
        "00-00-000-d.jsonl",
    ]
    start = datetime(2024, 1, 2, 3, 59, tzinfo=UTC)
    end = datetime(2024, 1, 2, 4, 0, tzinfo=UTC)
    assert [p.name for p in sealed_files(tmp_path, "ep", "AllTraffic", start, end)] == [
        "05-00-000-a.jsonl.gz",
        "10-00-000-b.jsonl",
    ]
    later = datetime(2024, 1, 2, 4, 30)  # naive means UTC
    assert [p.name for p in sealed_files(tmp_path, "ep", "AllTraffic", later, None)] == [
        "00-00-000-d.jsonl"
    ]
    assert sealed_files(tmp_path, "other", "AllTraffic", None, None) == []


def test_lines_keep_their_newlines_so_offsets_add_up(tmp_path: Path) -> None:
    content = b'{"a": 1}\n\n{"b": 2}\r\n{"c": 3}'
    plain = tmp_path / "x.jsonl"
    plain.write_bytes(content)
    packed = tmp_path / "x.jsonl.gz"
    packed.write_bytes(gzip.compress(content))
    for path in (plain, packed):
        lines = list(read_lines(path))
        assert b"".join(lines) == content
        offset = len(lines[0]) + len(lines[1])
        assert list(read_lines(path, offset)) == lines[2:]


def test_large_files_come_in_batches_of_whole_lines(tmp_path: Path) -> None:
    line = b'{"v": "' + b"x" * 1000 + b'"}\n'
    path = tmp_path / "big.jsonl"
    path.write_bytes(line * 3000)  # about 3 MB: several read blocks
    batches = list(read_line_batches(path))
    assert len(batches) > 1
    assert all(item == line for batch in batches for item in batch)
    assert sum(len(batch) for batch in batches) == 3000


def test_a_cut_gzip_yields_its_whole_lines_then_says_so(tmp_path: Path) -> None:
    lines = [b'{"n": %d}\n' % i for i in range(5000)]
    packed = gzip.compress(b"".join(lines))
    path = tmp_path / "x.jsonl.gz"
    path.write_bytes(packed[: len(packed) * 3 // 4])
    got: list[bytes] = []
    with pytest.raises(TruncatedCapture) as caught:
        got.extend(read_lines(path))
    assert got and got == lines[: len(got)] and len(got) < len(lines)
    assert 0 < caught.value.dropped < 20  # the partial last line, not returned
    # multi-member gzip (two appended files) is read whole
    path.write_bytes(gzip.compress(b"".join(lines[:10])) + gzip.compress(b"".join(lines[10:20])))
    assert list(read_lines(path)) == lines[:20]
    assert list(read_lines(path, offset=len(lines[0]) * 3)) == lines[3:20]


def test_a_cut_gzip_keeps_the_line_limit_before_the_cut(tmp_path: Path) -> None:
    """Both bounds at once: long lines before the cut are TooLarge pieces (offsets exact),
    whole lines are kept, then the cut is signalled with the bytes of the cut line."""
    limit = 64
    lines = [b'{"n": %d}\n' % i if i % 7 else b"x" * (limit + i) + b"\n" for i in range(3000)]
    packed = gzip.compress(b"".join(lines))
    path = tmp_path / "x.jsonl.gz"
    path.write_bytes(packed[: len(packed) // 2])
    pieces: list[bytes | TooLarge] = []
    with pytest.raises(TruncatedCapture) as caught:
        pieces.extend(read_pieces(path, 0, limit))
    got: list[bytes | TooLarge] = []
    for piece in pieces:
        got.extend([piece] if isinstance(piece, TooLarge) else block_lines(piece))
    want = [TooLarge(len(line)) if len(line) > limit + 1 else line for line in lines]
    assert got == want[: len(got)] and 100 < len(got) < len(lines)
    assert 0 < caught.value.dropped < len(lines[len(got)])  # a part of the next line, cut
    # cut inside a line over the limit: it is the cut line, its skipped bytes are dropped
    long_line = random.Random(3).randbytes(10_000).replace(b"\n", b" ") + b"\n"
    packed = gzip.compress(lines[1] + long_line + lines[2])[:5_000]  # incompressible: cut inside
    content_cut = zlib.decompressobj(wbits=31).decompress(packed)
    assert len(lines[1]) + limit < len(content_cut) < len(lines[1]) + len(long_line)
    path.write_bytes(packed)
    pieces = []
    with pytest.raises(TruncatedCapture) as caught:
        pieces.extend(read_pieces(path, 0, limit))
    assert pieces == [lines[1]]
    assert caught.value.dropped == len(content_cut) - len(lines[1])
