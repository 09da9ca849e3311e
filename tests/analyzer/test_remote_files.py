"""analyzer.ingest.remote_files against a real S3 API (moto's server on 127.0.0.1) and file://."""

from __future__ import annotations

import gzip
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from analyzer.ingest.capture_files import TooLarge, TruncatedCapture, read_pieces
from analyzer.ingest.remote_files import RemoteCaptureTree
from tests.s3_support import S3Server

PREFIX = "s3://captures/datacapture"
BASE = "captures/datacapture/ep/AllTraffic"


def _line(i: int) -> bytes:
    return b'{"i": %d}\n' % i


def _sagemaker_name(minute: int) -> str:
    return f"{minute:02d}-10-462-{uuid.uuid4()}.jsonl"


def _tree(s3: S3Server) -> dict[str, bytes]:
    """Files of three hours: SageMaker's names, ours with an instance, a .gz, and names a
    reader must skip (.part, hidden, a non-hour folder)."""
    s3.make_bucket("captures")
    ours = f"05-09-042-web-1-{uuid.uuid4()}.jsonl.gz"
    files = {
        f"2024/03/01/10/{_sagemaker_name(1)}": b"".join(_line(i) for i in range(3)),
        f"2024/03/01/11/{_sagemaker_name(2)}": b"".join(_line(i) for i in range(5)),
        f"2024/03/01/11/{ours}": gzip.compress(b"".join(_line(i) for i in range(7))),
        f"2024/03/01/12/{_sagemaker_name(3)}": _line(1),
    }
    for key, data in files.items():
        s3.put(f"{BASE}/{key}", data)
    s3.put(f"{BASE}/2024/03/01/11/00-00-000-{uuid.uuid4()}.jsonl.part", _line(99))
    s3.put(f"{BASE}/2024/03/01/11/.hidden.jsonl", _line(99))
    s3.put(f"{BASE}/2024/03/01/11/.x.jsonl.uploaded", b"")
    s3.put(f"{BASE}/2024/03/notaday/11/a.jsonl", _line(99))
    s3.put("captures/datacapture/other/AllTraffic/2024/03/01/11/a.jsonl", _line(99))
    return files


def test_lists_sealed_files_in_sagemakers_layout_by_hour_window(s3: S3Server) -> None:
    files = _tree(s3)
    tree = RemoteCaptureTree(PREFIX, "ep", "AllTraffic")
    listing = tree.sealed_files()
    assert not listing.cut
    assert [f.path for f in listing.files] == [f"{BASE}/{key}" for key in sorted(files)]
    assert [f.size for f in listing.files] == [len(files[key]) for key in sorted(files)]
    assert listing.files[0].url == f"s3://{BASE}/{sorted(files)[0]}"
    assert [f.instance for f in listing.files] == [None, None, "web-1", None]

    window = tree.sealed_files(
        datetime(2024, 3, 1, 11, 30, tzinfo=UTC), datetime(2024, 3, 1, 12, tzinfo=UTC)
    )
    assert {f.hour for f in window.files} == {datetime(2024, 3, 1, 11, tzinfo=UTC)}
    assert len(window.files) == 2


def test_a_new_file_is_seen_by_the_next_listing(s3: S3Server) -> None:
    _tree(s3)
    tree = RemoteCaptureTree(PREFIX, "ep", "AllTraffic")
    before = len(tree.sealed_files().files)
    s3.put(f"{BASE}/2024/03/01/12/{_sagemaker_name(9)}", _line(2))
    assert len(tree.sealed_files().files) == before + 1


def test_listing_stops_at_max_files_and_says_so(s3: S3Server) -> None:
    _tree(s3)
    tree = RemoteCaptureTree(PREFIX, "ep", "AllTraffic")
    listing = tree.sealed_files(max_files=2)
    assert listing.cut and len(listing.files) == 2
    exact = tree.sealed_files(max_files=4)
    assert not exact.cut and len(exact.files) == 4


def test_reads_plain_and_gzip_files_with_the_local_line_limit(s3: S3Server) -> None:
    _tree(s3)
    tree = RemoteCaptureTree(PREFIX, "ep", "AllTraffic")
    plain, gz = tree.sealed_files(
        datetime(2024, 3, 1, 11, tzinfo=UTC), datetime(2024, 3, 1, 12, tzinfo=UTC)
    ).files
    assert list(tree.read_lines(plain)) == [_line(i) for i in range(5)]
    assert list(tree.read_lines(gz)) == [_line(i) for i in range(7)]
    # from an offset, as a resumed read
    offset = len(_line(0)) + len(_line(1))
    assert list(tree.read_lines(plain, offset)) == [_line(i) for i in range(2, 5)]

    long_line = b'{"x": "' + b"a" * 5000 + b'"}\n'
    s3.put(f"{BASE}/2024/03/01/13/{_sagemaker_name(0)}", _line(1) + long_line + _line(2))
    [big] = tree.sealed_files(datetime(2024, 3, 1, 13, tzinfo=UTC)).files
    pieces = list(tree.read_pieces(big, max_line_bytes=1024))
    assert TooLarge(len(long_line)) in pieces
    assert list(tree.read_lines(big, max_line_bytes=1024)) == [_line(1), _line(2)]
    assert list(tree.read_lines(big, max_line_bytes=None)) == [_line(1), long_line, _line(2)]


def test_a_gzip_cut_short_gives_its_whole_lines_then_raises(s3: S3Server) -> None:
    s3.make_bucket("captures")
    whole = gzip.compress(b"".join(_line(i) for i in range(2000)))
    s3.put(f"{BASE}/2024/03/01/10/{_sagemaker_name(0)}.gz", whole[: len(whole) // 2])
    tree = RemoteCaptureTree(PREFIX, "ep", "AllTraffic")
    [cut] = tree.sealed_files().files
    lines: list[bytes] = []
    with pytest.raises(TruncatedCapture):
        lines.extend(tree.read_lines(cut))
    assert lines and lines == [_line(i) for i in range(len(lines))]


def test_file_urls_read_like_the_local_reader(tmp_path: Path) -> None:
    hour = tmp_path / "ep" / "AllTraffic" / "2024" / "03" / "01" / "10"
    hour.mkdir(parents=True)
    name = hour / _sagemaker_name(4)
    name.write_bytes(b"".join(_line(i) for i in range(4)))
    tree = RemoteCaptureTree(f"file://{tmp_path}", "ep", "AllTraffic")
    [found] = tree.sealed_files().files
    assert found.url == f"file://{name}"
    assert list(tree.read_pieces(found)) == list(read_pieces(name))


def test_a_missing_tree_lists_nothing(s3: S3Server) -> None:
    s3.make_bucket("captures")
    assert RemoteCaptureTree(PREFIX, "nobody", "AllTraffic").sealed_files().files == []
