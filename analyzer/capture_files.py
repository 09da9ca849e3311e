"""Finding and reading sealed capture files (ours and SageMaker's), gzip transparently.

Layout: ``{root}/{endpoint}/{variant}/yyyy/mm/dd/hh/*.jsonl`` (or ``.jsonl.gz``). Only sealed
files are listed: never ``*.part`` (being written), hidden files or other temporary names.

A ``.jsonl.gz`` cut short (a copy or a disk that failed mid-way) keeps what decompresses: every
complete line before the cut is read, then :class:`TruncatedCapture` is raised (an
``EOFError``) for the caller to count the rest.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = [
    "SEALED_SUFFIXES",
    "TruncatedCapture",
    "block_lines",
    "hour_of",
    "is_sealed",
    "read_blocks",
    "read_line_batches",
    "read_lines",
    "sealed_files",
]

SEALED_SUFFIXES = (".jsonl", ".jsonl.gz")
_READ_BYTES = 1 << 20
_GZIP_WBITS = 47  # a gzip header, detected
_HOUR = timedelta(hours=1)


def is_sealed(path: Path) -> bool:
    """A finished capture file: ``*.jsonl`` or ``*.jsonl.gz``, not hidden, not temporary."""
    name = path.name
    return not name.startswith((".", "~")) and name.endswith(SEALED_SUFFIXES)


def hour_of(folder: Path) -> datetime | None:
    """The UTC hour of a ``yyyy/mm/dd/hh`` folder, or None when it is not one."""
    parts = folder.parts[-4:]
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        return None
    try:
        year, month, day, hour = (int(p) for p in parts)
        return datetime(year, month, day, hour, tzinfo=UTC)
    except ValueError:
        return None


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _digit_dirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.name.isdigit() and p.is_dir())
    except OSError:
        return []


def sealed_files(
    capture_root: Path,
    endpoint: str,
    variant: str,
    start: datetime | None,
    end: datetime | None,
) -> list[Path]:
    """Sealed files of hour folders overlapping ``[start, end)`` (None: unbounded), in order.

    A file's hour folder is the UTC hour of its records' invocations, so a file is listed when
    its hour ``[h, h+1)`` overlaps the window; records outside the window are the reader's to
    drop.
    """
    base = Path(capture_root) / endpoint / variant
    start, end = _utc(start), _utc(end)
    found: list[Path] = []
    for year in _digit_dirs(base):
        for month in _digit_dirs(year):
            for day in _digit_dirs(month):
                for hour_dir in _digit_dirs(day):
                    hour = hour_of(hour_dir)
                    if hour is None:
                        continue
                    if start is not None and hour + _HOUR <= start:
                        continue
                    if end is not None and hour >= end:
                        continue
                    try:
                        names = sorted(hour_dir.iterdir())
                    except OSError:
                        continue
                    found.extend(p for p in names if is_sealed(p) and p.is_file())
    return found


class TruncatedCapture(EOFError):
    """A compressed capture file ends before its end marker; ``dropped`` bytes of a partial
    last line were not returned."""

    def __init__(self, path: Path, dropped: int) -> None:
        super().__init__(f"{path}: compressed file ends early ({dropped} bytes of a cut line)")
        self.dropped = dropped


def _gunzipped(path: Path) -> Iterator[bytes]:
    """The decompressed content in pieces of at most ``_READ_BYTES`` (gzip members one after
    another); raises :class:`TruncatedCapture` (``dropped=0``) when the stream is cut."""
    with open(path, "rb") as raw:
        decoder = zlib.decompressobj(wbits=_GZIP_WBITS)
        started = False
        while True:
            data = raw.read(_READ_BYTES)
            if not data:
                break
            while data:
                started = True
                out = decoder.decompress(data, _READ_BYTES)
                if out:
                    yield out
                if decoder.eof:
                    data = decoder.unused_data
                    decoder = zlib.decompressobj(wbits=_GZIP_WBITS)
                    started = False
                else:
                    data = decoder.unconsumed_tail
        if started:
            tail = decoder.flush()
            if tail:
                yield tail
            raise TruncatedCapture(path, 0)


def _plain(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while block := handle.read(_READ_BYTES):
            yield block


def read_blocks(path: Path, offset: int = 0) -> Iterator[bytes]:
    """The content from byte ``offset`` in blocks of about 1 MiB of whole lines.

    Every block but the last ends with ``\n``; the last may hold a line without one (not so
    for a compressed file cut short: its partial last line is dropped, see
    :class:`TruncatedCapture`).
    """
    path = Path(path)
    pieces = _gunzipped(path) if path.name.endswith(".gz") else _plain(path)
    skip = offset
    rest = b""
    try:
        for piece in pieces:
            if skip:
                if len(piece) <= skip:
                    skip -= len(piece)
                    continue
                piece, skip = piece[skip:], 0
            block = rest + piece if rest else piece
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                rest = block
                continue
            rest = block[cut:]
            yield block[:cut]
    except TruncatedCapture as exc:
        raise TruncatedCapture(path, len(rest)) from exc
    if rest:
        yield rest


def block_lines(block: bytes) -> list[bytes]:
    """The lines of a block from :func:`read_blocks` (a last line without ``\\n`` is one)."""
    return block.splitlines(keepends=True) if block.endswith(b"\n") else [block]


def read_line_batches(path: Path, offset: int = 0) -> Iterator[list[bytes]]:
    """Lines (each with its ``\\n``; the last may lack it) in batches of about 1 MiB.

    ``offset`` counts bytes of the (uncompressed) content; the lengths of the lines yielded add
    up to the bytes read, so ``offset + sum(len(line))`` is where to resume.
    """
    for block in read_blocks(path, offset):
        yield block_lines(block)


def read_lines(path: Path, offset: int = 0) -> Iterator[bytes]:
    """The lines of a capture file from byte ``offset`` (see :func:`read_line_batches`)."""
    for batch in read_line_batches(path, offset):
        yield from batch
