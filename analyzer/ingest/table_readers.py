"""Reading training data for ``modelmon baseline`` in bounded chunks: CSV, JSON Lines, capture.

Each reader yields ``(columns, n_rows, field_counts)`` chunks (or decoded capture batches) of at
most ``chunk_rows`` rows, so memory does not grow with the file. Problems that stop the run raise
:class:`InputError` with a message naming the file (and the line for JSON Lines).

Lines are read in bounded pieces (:func:`analyzer.ingest.capture_files.read_pieces`): a line
longer than ``max_line_bytes`` (``analyzer.max_line_bytes``; not counting its ``\n``) is never
held whole; it is skipped as it streams past and counted under ``too_large`` in the
``skipped`` counter the caller passes, and reading goes on. So memory stays below about twice
the limit plus 1 MiB whatever a line holds. (CSV: a skipped line's quotes are not counted, so
a quoted field that spans it is not rejoined.)

The input may be behind a storage URL: a :class:`~analyzer.ingest.remote_files.RemoteFile`
(read through fsspec, the same bytes as a local copy) or a
:class:`~analyzer.ingest.remote_files.RemoteFolder` of capture files.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from analyzer.decoding.codecs import PayloadDecoder
from analyzer.decoding.columns import ColumnBuilder, input_name
from analyzer.decoding.contract import DecodedBatch
from analyzer.decoding.payload_rows import Rows
from analyzer.ingest.capture_files import (
    DEFAULT_MAX_LINE_BYTES,
    TooLarge,
    block_lines,
    is_sealed,
    read_blocks,
    read_pieces,
)
from analyzer.ingest.remote_files import CaptureFile, RemoteFolder, opener_of

__all__ = [
    "TOO_LARGE",
    "Chunk",
    "InputError",
    "capture_batches",
    "csv_chunks",
    "csv_read_errors",
    "infer_format",
    "jsonl_chunks",
]

Chunk = tuple[dict[str, list[Any]], int, Counter[int]]
CHUNK_ROWS = 16_384
TOO_LARGE = "too_large"  # the reason counted for a line over max_line_bytes


class InputError(Exception):
    """Training data that cannot be read; the message names the file."""


@contextmanager
def csv_read_errors(path: CaptureFile) -> Iterator[None]:
    """Reading a CSV file's text: what can go wrong, as :class:`InputError` naming it."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except csv.Error as exc:
        raise InputError(f"{path}: malformed CSV: {exc}") from exc
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc


def _lines(
    path: CaptureFile, max_line_bytes: int, skipped: Counter[str] | None
) -> Iterator[bytes | None]:
    """The lines of a (gzipped) file as bytes, each with its line end; ``None`` in place of a
    line over the limit (counted in ``skipped``)."""
    name, opener = opener_of(path)
    for piece in read_pieces(name, 0, max_line_bytes, opener):
        if isinstance(piece, TooLarge):
            if skipped is not None:
                skipped[TOO_LARGE] += 1
            yield None
            continue
        yield from block_lines(piece)


def _is_capture_file(path: CaptureFile, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> bool:
    try:
        for line in _lines(path, max_line_bytes, None):
            if line is not None and line.strip():
                record = orjson.loads(line)
                return isinstance(record, dict) and "captureData" in record
    except (OSError, EOFError, orjson.JSONDecodeError):
        return False
    return False


def infer_format(
    path: CaptureFile | RemoteFolder, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> str:
    """``capture`` for a folder (or a file of capture records), else by the file's extension."""
    if isinstance(path, RemoteFolder) or (isinstance(path, Path) and path.is_dir()):
        return "capture"
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".csv", ".txt")):
        return "csv"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "capture" if _is_capture_file(path, max_line_bytes) else "jsonl"
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


def _text_lines(
    path: CaptureFile, max_line_bytes: int, skipped: Counter[str] | None
) -> Iterator[str]:
    """UTF-8 text lines (with their line ends) of the lines within the limit."""
    for line in _lines(path, max_line_bytes, skipped):
        if line is not None:
            yield line.decode("utf-8")


def csv_chunks(
    path: CaptureFile,
    header: bool,
    names: Sequence[str] = (),
    *,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    skipped: Counter[str] | None = None,
) -> Iterator[Chunk]:
    """CSV with a header row, or headerless (columns ``names``, then ``_c{i}``).

    A chunk ends only where the count of ``"`` so far is even, so a quoted field that spans
    lines is never cut (RFC 4180 doubles quotes inside quoted fields). Lines over
    ``max_line_bytes`` are skipped and counted in ``skipped``.
    """
    total = 0
    with csv_read_errors(path):
        handle = _text_lines(path, max_line_bytes, skipped)
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
    if total == 0:
        raise InputError(f"{path}: no data rows" + (" after the header" if header else ""))


def jsonl_chunks(
    path: CaptureFile,
    names: Sequence[str] = (),
    *,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    skipped: Counter[str] | None = None,
) -> Iterator[Chunk]:
    """JSON Lines: one object per line (a list is a positional row); a bad line stops the run,
    a line over ``max_line_bytes`` is skipped and counted in ``skipped``."""
    builder = ColumnBuilder(names, input_name, track_fields=True)
    pending: list[Any] = []
    kind = ""
    total = 0
    number = 0
    try:
        for line in _lines(path, max_line_bytes, skipped):
            number += 1
            if line is None or not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise InputError(f"{path}: line {number}: not valid JSON ({exc})") from exc
            row_kind = "obj" if isinstance(row, dict) else "pos" if isinstance(row, list) else ""
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


def capture_files_under(path: CaptureFile | RemoteFolder) -> list[CaptureFile]:
    """Sealed capture files in a folder (any depth) or the one file given."""
    if isinstance(path, RemoteFolder):
        return list(path.files)
    if not isinstance(path, Path) or path.is_file():
        return [path]
    files: list[CaptureFile] = [p for p in sorted(path.rglob("*")) if p.is_file() and is_sealed(p)]
    return files


def capture_batches(
    path: Path,
    decoder: PayloadDecoder,
    *,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    skipped: Counter[str] | None = None,
) -> Iterator[DecodedBatch]:
    """Decoded batches of every sealed capture file under ``path``; lines over
    ``max_line_bytes`` are skipped and counted in ``skipped``."""

    def too_large(line: TooLarge) -> None:
        if skipped is not None:
            skipped[TOO_LARGE] += 1

    files = capture_files_under(path)
    if not files:
        raise InputError(f"{path}: no capture files (*.jsonl, *.jsonl.gz) found")
    for file in files:
        name, opener = opener_of(file)
        try:
            for block in read_blocks(name, 0, max_line_bytes, too_large, opener):
                yield decoder.decode_lines(block_lines(block))
        except (OSError, EOFError) as exc:
            raise InputError(f"{file}: cannot read: {exc}") from exc
