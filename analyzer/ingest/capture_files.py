"""Finding and reading sealed capture files (ours and SageMaker's), gzip transparently.

Layout: ``{root}/{endpoint}/{variant}/yyyy/mm/dd/hh/*.jsonl`` (or ``.jsonl.gz``). Only sealed
files are listed: never ``*.part`` (being written), hidden files or other temporary names.

Reading is streamed in bounded reads, so memory stays bounded whatever a file holds: a line
longer than ``max_line_bytes`` (not counting its ``\n``) is never held whole; it is skipped as
it streams past and reported as a :class:`TooLarge` piece with its length, so that offsets stay
exact and the caller can count it.

A ``.jsonl.gz`` cut short (a copy or a disk that failed mid-way) keeps what decompresses: every
complete line before the cut is read, then :class:`TruncatedCapture` is raised (an
``EOFError``) for the caller to count the rest.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from modelmon.capture_names import instance_of

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "SEALED_SUFFIXES",
    "Opener",
    "TooLarge",
    "TruncatedCapture",
    "block_lines",
    "capture_sources",
    "count_sources",
    "hour_of",
    "instance_of",
    "is_sealed",
    "read_blocks",
    "read_line_batches",
    "read_lines",
    "read_pieces",
    "sealed_files",
]

SEALED_SUFFIXES = (".jsonl", ".jsonl.gz")
_READ_BYTES = 1 << 20
_GZIP_WBITS = 47  # a gzip header, detected
DEFAULT_MAX_LINE_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class TooLarge:
    """A line longer than the limit, skipped unread: ``size`` bytes (with its ``\\n``)."""

    size: int


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


Opener = Callable[[], BinaryIO]


def _gunzipped(path: Path, size: int, opener: Opener) -> Iterator[bytes]:
    """The decompressed content in pieces of at most ``size`` bytes (gzip members one after
    another); raises :class:`TruncatedCapture` (``dropped=0``) when the stream is cut.

    Compressed reads are a quarter of ``size``: with what zlib holds, memory stays near
    ``size`` (the line limit's bound holds for ``.gz`` too), and pieces of ordinary captures
    (which compress more than 4:1) still come out ``size`` long.
    """
    with opener() as raw:
        decoder = zlib.decompressobj(wbits=_GZIP_WBITS)
        started = False
        while data := raw.read(max(1, size // 4)):
            while True:
                started = started or bool(data)
                out = decoder.decompress(data, size)
                if out:
                    yield out
                if decoder.eof:  # the end of one member; the next may follow
                    data = decoder.unused_data
                    decoder = zlib.decompressobj(wbits=_GZIP_WBITS)
                    started = False
                    if not data:
                        break
                    continue
                data = decoder.unconsumed_tail
                if not data and len(out) < size:  # all input taken and all output given
                    break
        if started:
            raise TruncatedCapture(path, 0)


def _content(path: Path, offset: int, size: int, opener: Opener) -> Iterator[bytes]:
    """The (decompressed) content from byte ``offset`` in pieces of at most ``size`` bytes."""
    if not path.name.endswith(".gz"):
        with opener() as handle:
            if offset:
                handle.seek(offset)
            while block := handle.read(size):
                yield block
        return
    skip = offset
    for piece in _gunzipped(path, size, opener):
        if skip:
            if len(piece) <= skip:
                skip -= len(piece)
                continue
            piece, skip = piece[skip:], 0
        yield piece


def read_pieces(
    path: Path,
    offset: int = 0,
    max_line_bytes: int | None = DEFAULT_MAX_LINE_BYTES,
    opener: Opener | None = None,
) -> Iterator[bytes | TooLarge]:
    """The content from byte ``offset``: blocks of whole lines (about 1 MiB) and, in their
    place, a :class:`TooLarge` for each line longer than ``max_line_bytes`` (None: no limit).

    Every block but the last ends with ``\\n``; the last may hold a line without one. The sizes
    of the pieces add up to the bytes read. Reads are at most ``max_line_bytes`` long, so a
    line inside one read is within the limit; only a line carried over between reads is
    measured, and it is dropped as soon as it passes the limit: memory stays below about twice
    the limit plus one read.

    A compressed file cut short yields every whole line before the cut, then raises
    :class:`TruncatedCapture` with the bytes of the cut line (too large or not) it dropped.

    ``opener`` opens the file for reading (default: the local ``path``); a remote tree passes
    its filesystem's (:mod:`analyzer.ingest.remote_files`), ``path`` then only names it.
    """
    path = Path(path)
    if opener is None:
        local = path

        def opener() -> BinaryIO:
            return open(local, "rb")

    limit = max_line_bytes
    read_size = _READ_BYTES if limit is None else max(1, min(_READ_BYTES, limit))
    rest = b""
    skipping: int | None = None  # bytes of a too-large line skipped so far
    try:
        for data in _content(path, offset, read_size, opener):
            if skipping is not None:
                newline = data.find(b"\n")
                if newline < 0:
                    skipping += len(data)
                    continue
                yield TooLarge(skipping + newline + 1)
                skipping = None
                data = data[newline + 1 :]
                if not data:
                    continue
            block = rest + data if rest else data
            rest = b""
            if limit is not None:
                first = block.find(b"\n")
                if first > limit:  # the line carried over from earlier reads is too long
                    yield TooLarge(first + 1)
                    block = block[first + 1 :]
            cut = block.rfind(b"\n") + 1
            if cut:
                yield block[:cut]
            rest = block[cut:]
            if limit is not None and len(rest) > limit:
                skipping, rest = len(rest), b""
    except TruncatedCapture as exc:
        raise TruncatedCapture(path, len(rest) if skipping is None else skipping) from exc
    if skipping is not None:
        yield TooLarge(skipping)
    elif rest:
        yield rest


def read_blocks(
    path: Path,
    offset: int = 0,
    max_line_bytes: int | None = None,
    skipped: Callable[[TooLarge], None] | None = None,
    opener: Opener | None = None,
) -> Iterator[bytes]:
    """The blocks of :func:`read_pieces` (``opener``: as there); each too-large line goes to
    ``skipped`` instead.

    Every block but the last ends with ``\\n``; the last may hold a line without one (not so
    for a compressed file cut short: its partial last line is dropped, see
    :class:`TruncatedCapture`).
    """
    for piece in read_pieces(path, offset, max_line_bytes, opener):
        if isinstance(piece, TooLarge):
            if skipped is not None:
                skipped(piece)
            continue
        yield piece


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


MAX_SOURCES = 100  # instances listed by name in the status; the rest are counted together


def capture_sources(paths: Iterable[Path]) -> dict[str, Any]:
    """Who writes into the capture tree: per instance (the name part the proxy writes, see
    :func:`modelmon.capture_names.instance_of`; ``(unnamed)`` for SageMaker's and older
    names) how many sealed files are on disk and when the newest was last written (epoch s).
    At most :data:`MAX_SOURCES` instances by name, the most recent first; the rest are
    counted under ``(more)``."""

    def written() -> Iterator[tuple[str, float]]:
        for path in paths:
            try:
                yield path.name, path.stat().st_mtime
            except OSError:  # removed by retention since it was listed
                continue

    return count_sources(written())


def count_sources(named: Iterable[tuple[str, float]]) -> dict[str, Any]:
    """:func:`capture_sources` of ``(file name, last written epoch s)`` pairs (a remote tree's
    objects: their names and upload times)."""
    found: dict[str, tuple[int, float]] = {}
    for file_name, written in named:
        name = instance_of(file_name) or "(unnamed)"
        files, last = found.get(name, (0, 0.0))
        found[name] = (files + 1, max(last, written))
    ranked = sorted(found.items(), key=lambda item: (-item[1][1], item[0]))
    instances = {
        name: {"files": files, "last_write_epoch": last}
        for name, (files, last) in ranked[:MAX_SOURCES]
    }
    rest = ranked[MAX_SOURCES:]
    if rest:
        instances["(more)"] = {
            "files": sum(files for _, (files, _) in rest),
            "last_write_epoch": max(last for _, (_, last) in rest),
        }
    return {"count": len(found), "instances": instances}
