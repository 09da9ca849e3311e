"""Capture lines longer than ``analyzer.max_line_bytes`` (issue 9, finding 3, analyzer half):
counted as ``too_large`` and skipped while they stream past, never read whole; at the limit
exactly, a line is read."""

from __future__ import annotations

import gzip
import os
import tracemalloc
from pathlib import Path

import pytest

from analyzer.ingest.capture_files import TooLarge, read_pieces
from analyzer.ingest.ingestor import Ingestor
from analyzer.ingest.parallel import profile_file
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
)

LIMIT = 4096


def _record(length: int, i: int = 0) -> bytes:
    """A valid capture record line of exactly ``length`` bytes before its ``\\n``."""
    rows, scores = read_rows("current_nodrift.csv")
    line = record_line(rows[i], scores[i], T0)
    body = line.rstrip(b"\n")
    assert body.endswith(b"}") and len(body) < length
    return body[:-1] + b" " * (length - len(body)) + b"}\n"


def _write(folder: Path, name: str, content: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if name.endswith(".gz"):
        with gzip.open(path, "wb") as handle:
            handle.write(content)
    else:
        path.write_bytes(content)
    return path


@pytest.fixture
def config(tmp_path: Path) -> ModelmonConfig:
    return make_config(tmp_path, None, max_line_bytes=LIMIT)


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_lines_at_the_limit_are_read_and_longer_ones_counted(
    config: ModelmonConfig, store: Store, suffix: str
) -> None:
    lines = [
        _record(600, 0),
        _record(LIMIT, 1),  # exactly the limit: read
        _record(LIMIT + 1, 2),  # one byte more: too_large
        _record(700, 3),
        b"x" * (5 * LIMIT + 17) + b"\n",  # spans several reads
        _record(LIMIT, 4),
        b"y" * (LIMIT + 1),  # the last line, without its newline
    ]
    content = b"".join(lines)
    folder = config.capture.dir / ENDPOINT / VARIANT / T0.strftime("%Y/%m/%d/%H")
    _write(folder, "a" + suffix, content)

    pieces = list(read_pieces(folder / ("a" + suffix), 0, LIMIT))
    assert sum(p.size if isinstance(p, TooLarge) else len(p) for p in pieces) == len(content)
    assert [p.size for p in pieces if isinstance(p, TooLarge)] == [
        LIMIT + 2,
        5 * LIMIT + 18,
        LIMIT + 1,
    ]
    kept = b"".join(p for p in pieces if isinstance(p, bytes))
    assert kept == lines[0] + lines[1] + lines[3] + lines[5]

    stats = Ingestor(store, config).run_once()
    assert stats.records == 4 and stats.bad == {"too_large": 3}
    counters = store.read(read_counters)
    assert counters["records"] == 4 and counters["bad:too_large"] == 3
    row = store.read(lambda c: c.execute("SELECT offset, lines, done FROM files").fetchone())
    assert row == (len(content), len(lines), 1)
    profile = store.read(lambda c: merge_buckets(c, 0, 2**40))
    assert profile is not None and profile.item_count == 4

    batch = profile_file(folder / ("a" + suffix), config.analyzer.payload, 2048, LIMIT)
    assert batch.records == 4 and batch.bad["too_large"] == 3


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_a_huge_line_is_never_held_whole(tmp_path: Path, suffix: str) -> None:
    """An 8 MiB line under a 64 KiB limit: reading it allocates a few limits at most."""
    limit = 64 << 10
    line = os.urandom(4 << 20).hex().encode()  # 8 MiB of text, no newline inside
    path = _write(tmp_path, "big" + suffix, b'{"a": 1}\n' + line + b'\n{"b": 2}\n')
    del line
    tracemalloc.start()
    try:
        pieces = [p if isinstance(p, TooLarge) else len(p) for p in read_pieces(path, 0, limit)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pieces == [9, TooLarge((8 << 20) + 1), 9]
    assert peak < 6 * limit, peak
