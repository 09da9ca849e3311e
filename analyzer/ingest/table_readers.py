"""Reading training data for ``modelmon baseline`` in bounded chunks: CSV, JSON Lines, capture.

Each reader yields ``(columns, n_rows, field_counts)`` chunks (or decoded capture batches) of at
most ``chunk_rows`` rows, so memory does not grow with the file. Problems that stop the run raise
:class:`InputError` with a message naming the file (and the line for JSON Lines).
"""

from __future__ import annotations

import csv
import gzip
import io
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from analyzer.decoding.codecs import PayloadDecoder
from analyzer.decoding.columns import ColumnBuilder, input_name
from analyzer.decoding.contract import DecodedBatch
from analyzer.decoding.payload_rows import Rows
from analyzer.ingest.capture_files import is_sealed, read_line_batches

__all__ = ["Chunk", "InputError", "capture_batches", "csv_chunks", "infer_format", "jsonl_chunks"]

Chunk = tuple[dict[str, list[Any]], int, Counter[int]]
CHUNK_ROWS = 16_384


class InputError(Exception):
    """Training data that cannot be read; the message names the file."""


def _text(path: Path) -> IO[str]:
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.GzipFile(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _is_capture_file(path: Path) -> bool:
    try:
        for batch in read_line_batches(path):
            for line in batch:
                if line.strip():
                    record = orjson.loads(line)
                    return isinstance(record, dict) and "captureData" in record
    except (OSError, EOFError, orjson.JSONDecodeError):
        return False
    return False


def infer_format(path: Path) -> str:
    """``capture`` for a folder (or a file of capture records), else by the file's extension."""
    if path.is_dir():
        return "capture"
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".csv", ".txt")):
        return "csv"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "capture" if _is_capture_file(path) else "jsonl"
    raise InputError(
        f"{path}: cannot tell the format from the extension; pass --format csv|jsonl|capture"
    )


def _unique(names: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for j, raw in enumerate(names):
        name = raw.strip() or input_name(j)
        if name in seen:
            name = f"{name}_{j}"
        seen.add(name)
        out.append(name)
    return out


def _columns(builder: ColumnBuilder, rows: list[Any], kind: str) -> Chunk:
    builder.columns, builder.n, builder.field_counts = {}, 0, Counter()
    if rows:
        builder.add(Rows(kind, rows, len(rows)))  # type: ignore[arg-type]
    return builder.finish(), builder.n, builder.field_counts


def _csv_chunk(builder: ColumnBuilder, lines: list[str], quotes: int) -> Chunk:
    """Lines without quotes split at C speed in one call; others through the csv module."""
    if quotes == 0:
        plain = [line.rstrip("\r\n") for line in lines]
        return _columns(builder, [line for line in plain if line], "csv")
    return _columns(builder, [row for row in csv.reader(lines) if row], "pos")


def csv_chunks(path: Path, header: bool, names: Sequence[str] = ()) -> Iterator[Chunk]:
    """CSV with a header row, or headerless (columns ``names``, then ``_c{i}``).

    A chunk ends only where the count of ``"`` so far is even, so a quoted field that spans
    lines is never cut (RFC 4180 doubles quotes inside quoted fields).
    """
    total = 0
    try:
        with _text(path) as handle:
            if header:
                first = next(csv.reader(handle), None)
                if first is None:
                    raise InputError(f"{path}: the file is empty (expected a header row)")
                names = _unique(first)
            builder = ColumnBuilder(names, input_name, track_fields=True)
            lines: list[str] = []
            quotes = 0
            for line in handle:
                lines.append(line)
                quotes += line.count('"')
                if len(lines) >= CHUNK_ROWS and quotes % 2 == 0:
                    columns, n, fields = _csv_chunk(builder, lines, quotes)
                    total += n
                    if n:
                        yield columns, n, fields
                    lines, quotes = [], 0
            if lines:
                columns, n, fields = _csv_chunk(builder, lines, quotes)
                total += n
                if n:
                    yield columns, n, fields
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except csv.Error as exc:
        raise InputError(f"{path}: malformed CSV: {exc}") from exc
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc
    if total == 0:
        raise InputError(f"{path}: no data rows" + (" after the header" if header else ""))


def jsonl_chunks(path: Path, names: Sequence[str] = ()) -> Iterator[Chunk]:
    """JSON Lines: one object per line (a list is a positional row); a bad line stops the run."""
    builder = ColumnBuilder(names, input_name, track_fields=True)
    pending: list[Any] = []
    kind = ""
    total = 0
    number = 0
    try:
        for batch in read_line_batches(path):
            for line in batch:
                number += 1
                if not line.strip():
                    continue
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise InputError(f"{path}: line {number}: not valid JSON ({exc})") from exc
                row_kind = (
                    "obj" if isinstance(row, dict) else "pos" if isinstance(row, list) else ""
                )
                if not row_kind:
                    raise InputError(
                        f"{path}: line {number}: expected a JSON object, got {type(row).__name__}"
                    )
                if (row_kind != kind and pending) or len(pending) >= CHUNK_ROWS:
                    total += len(pending)
                    yield _columns(builder, pending, kind)
                    pending = []
                kind = row_kind
                pending.append(row)
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc
    if pending:
        total += len(pending)
        yield _columns(builder, pending, kind)
    if total == 0:
        raise InputError(f"{path}: no data rows (the file is empty)")


def capture_files_under(path: Path) -> list[Path]:
    """Sealed capture files in a folder (any depth) or the one file given."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and is_sealed(p))


def capture_batches(path: Path, decoder: PayloadDecoder) -> Iterator[DecodedBatch]:
    """Decoded batches of every sealed capture file under ``path``."""
    files = capture_files_under(path)
    if not files:
        raise InputError(f"{path}: no capture files (*.jsonl, *.jsonl.gz) found")
    for file in files:
        try:
            for lines in read_line_batches(file):
                yield decoder.decode_lines(lines)
        except (OSError, EOFError) as exc:
            raise InputError(f"{file}: cannot read: {exc}") from exc
