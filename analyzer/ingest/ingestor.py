"""Ingestion: sealed capture files → per-bucket profiles in SQLite, exactly once.

Each tick lists the sealed capture files (never ``.part``), and for every file not yet fully
read, reads on from the stored offset in chunks of whole lines. A chunk is decoded, profiled
per time bucket (by each record's ``inferenceTime``), and committed in ONE transaction with:
the bucket profiles merged into what is stored, the file's new offset and line count, and the
ingest counters. A crash or ``kill -9`` at any moment therefore leaves either all of a chunk
or none of it in the database; the restart goes on from the last committed offset, so no
record is lost or counted twice. Every commit also checks that the stored offset is still
the one the chunk started from, so two ingesters on one database cannot double-count.

Touching a bucket bumps the ``version`` of its hour; the reporter re-writes an hour whose
version moved past the one it reported (late data re-opens an hour).

The chunks of a pass are pipelined, depth 1, across files: chunk N+1 is read and decoded on
the ingest thread while the writer thread commits chunk N (SQLite and the disk work without
the GIL). With a decoding process (:mod:`analyzer.ingest.decode_process`) up to two chunks
are queued to it ahead, and a chunk read while two wait is decoded on the ingest thread.
Chunk N+1's commit is only queued once chunk N's has returned; if N's found its file's
offset moved, the rest of that file is dropped (N+1 too, when it is of the same file).
Each transaction still carries its own file's start and end offsets, so a crash between two
commits loses or doubles nothing.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analyzer.ingest.capture_files import (
    TooLarge,
    TruncatedCapture,
    block_lines,
    capture_sources,
    read_pieces,
    sealed_files,
)
from analyzer.ingest.chunk_decode import ChunkDecoder, Decoded, DecodeSpec, bucket_records
from analyzer.ingest.decode_process import DecodeProcess, Ticket
from analyzer.monitors.data_quality.cardinality import FeatureLimit
from analyzer.monitors.data_quality.profile import DatasetProfile
from analyzer.monitors.model_quality.predictions import Extracted
from analyzer.store.buckets import HOUR_S, commit_chunk, read_file_states
from analyzer.store.database import Store
from analyzer.store.model_quality_blocks import ChunkBlocks, chunk_blocks
from analyzer.store.retention import forget_files
from modelmon.config import ModelmonConfig

__all__ = ["IngestStats", "Ingestor", "bucket_records", "feature_limit"]

log = logging.getLogger("modelmon.analyzer.ingest")

CHUNK_LINES = 10_000
CHUNK_BYTES = 8 * 1024 * 1024
# chunks queued to the decoding process at most; one read meanwhile is decoded on the ingest
# thread (in process, 1M records: labels after 152k -> 179k records/s, data quality only
# 210k -> 296k, against one chunk queued and none decoded here)
QUEUED = 2


@dataclass
class IngestStats:
    """What one pass read."""

    files: int = 0
    chunks: int = 0
    records: int = 0
    bad: Counter[str] = field(default_factory=Counter)
    hours: set[int] = field(default_factory=set)


def feature_limit(config: ModelmonConfig, keep: Iterable[str] = ()) -> FeatureLimit:
    """``analyzer.max_features``, always tracking ``keep`` and the configured payload columns."""
    payload = config.analyzer.payload
    names = frozenset([*keep, *payload.input.columns, *payload.output.columns])
    return FeatureLimit(config.analyzer.max_features, names)


@dataclass
class _Chunk:
    """Whole lines read from one file, the bytes they span (with skipped lines), and whether
    the file ends here."""

    lines: list[bytes] = field(default_factory=list)
    size: int = 0
    too_large: int = 0
    end: bool = False
    truncated: bool = False  # a compressed file cut short: its cut tail is counted, not read
    decoded: int = 0  # lines let go once decoded (:meth:`let_go`)

    @property
    def n_lines(self) -> int:
        return len(self.lines) + self.too_large + self.decoded

    def let_go(self) -> None:
        """Drop the lines, decoded and queued to commit (only their count is needed)."""
        self.decoded += len(self.lines)
        self.lines = []


_Decoded = Decoded


@dataclass
class _Landing:
    """A chunk's decode, taken back by ``take`` (from the decoding process: ``ticket``)."""

    take: Callable[[], _Decoded]
    ticket: Ticket | None = None


@dataclass
class _Position:
    """How far a file is committed (byte offset, line count), and whether a commit found its
    offset moved by someone else (``stale``: nothing more is committed for it)."""

    rel: str
    offset: int
    lines: int
    stale: bool = False


@dataclass
class _Pending:
    """A chunk whose commit is queued on the writer thread."""

    future: Future[bool]
    at: _Position
    chunk: _Chunk
    decoded: _Decoded


class Ingestor:
    """Reads new sealed capture files into the store; :meth:`run_once` is blocking."""

    def __init__(
        self,
        store: Store,
        config: ModelmonConfig,
        *,
        chunk_lines: int = CHUNK_LINES,
        chunk_bytes: int = CHUNK_BYTES,
        clock: Callable[[], float] = time.time,
        limit: FeatureLimit | None = None,
        decode_process: DecodeProcess | None = None,
    ) -> None:
        self._store = store
        self._root = config.capture.dir
        self._endpoint = config.endpoint.name
        self._variant = config.endpoint.variant
        self._bucket_s = config.analyzer.bucket_s
        self._kll_k = config.analyzer.kll_k
        self._limit = limit if limit is not None else feature_limit(config)
        self._spec = DecodeSpec.of(config, self._limit)
        self._chunk_decoder = ChunkDecoder(self._spec)
        self._process = decode_process  # None: chunks are decoded on the ingest thread
        self._chunk_lines = chunk_lines
        self._chunk_bytes = chunk_bytes
        self._max_line_bytes = config.analyzer.max_line_bytes
        self._clock = clock
        self._retention_s = config.analyzer.retention_days * 86400
        # model quality: each record's prediction is kept for the join, in the chunk's commit
        quality = config.analyzer.model_quality
        self._quality_window_s = quality.window_s if quality else 0
        self._pending: _Pending | None = None  # the chunk whose commit is in flight
        # who writes into the capture tree (replicas by instance), as of the last pass
        self.sources: dict[str, Any] = {"count": 0, "instances": {}}

    def set_limit(self, limit: FeatureLimit) -> None:
        """Track the features ``limit`` allows from the next file read on (a new baseline)."""
        self._limit = limit
        self._spec = replace(self._spec, limit=limit)
        self._chunk_decoder = ChunkDecoder(self._spec)

    def _known(self, first: str = "") -> dict[str, tuple[int, int, bool]]:
        """Read state of the files whose path sorts at or after ``first``.

        Paths are ``endpoint/variant/yyyy/mm/dd/hh/name``, so they sort by hour: the rows of
        files that retention has removed (older than the oldest file on disk) are not loaded.
        """
        return self._store.read(lambda c: read_file_states(c, first))

    def run_once(self) -> IngestStats:
        """Read every sealed file not fully read yet; returns what this pass committed."""
        stats = IngestStats()
        listed = [
            (path, path.relative_to(self._root).as_posix())
            for path in sealed_files(self._root, self._endpoint, self._variant, None, None)
        ]
        self.sources = capture_sources(path for path, _ in listed)
        if not listed:
            return stats
        oldest = min(rel for _, rel in listed)
        known = self._known(oldest)
        # with a decoding process, the next two chunks (maybe of the next files) are read and
        # queued to it before this one's decode is waited for (the process is never idle for
        # the reading), and a chunk read while two wait for it is decoded here meanwhile
        depth = 0 if self._process is None else QUEUED
        ahead: deque[tuple[_Position, _Chunk | BaseException, _Landing | None]] = deque()
        try:
            for at, read in self._reads(listed, known):
                landing = None
                if isinstance(read, _Chunk):
                    queued = sum(bool(entry[2] and entry[2].ticket) for entry in ahead)
                    landing = self._decode_soon(at.rel, read, here=queued >= QUEUED)
                ahead.append((at, read, landing))
                while len(ahead) > depth:
                    self._take(*ahead.popleft(), stats)
            while ahead:
                self._take(*ahead.popleft(), stats)
        finally:
            for _, _, landing in ahead:  # a failed pass's chunks queued ahead: never taken
                self._discard(landing)
            self._drain(stats)  # the last chunk's commit (also when a pass fails)
        cutoff = datetime.fromtimestamp(self._clock() - self._retention_s, UTC)
        tree = f"{self._endpoint}/{self._variant}/"
        older = f"{tree}{cutoff:%Y/%m/%d/%H}"
        # only this tree's rows: a URL's (a backfill, capture_url) may sort before them
        self._store.write(lambda db: forget_files(db, oldest, older, tree))
        return stats

    def _chunks(
        self, path: Path, offset: int, pieces: Iterable[bytes | TooLarge] | None = None
    ) -> Iterator[_Chunk]:
        """Whole lines from ``offset`` in chunks, the last with ``end`` (no empty chunk after a
        full one); lines over ``max_line_bytes`` are only counted.
        A compressed file cut short ends with what decompressed, and counts ``truncated_file``
        for the rest. ``pieces``: the file's :func:`read_pieces` from ``offset`` when it is not
        a local file (a remote tree's)."""
        chunk = _Chunk()
        full: _Chunk | None = None  # held back until more follows: the last one says ``end``
        if pieces is None:
            pieces = read_pieces(path, offset, self._max_line_bytes)
        try:
            for piece in pieces:
                if isinstance(piece, TooLarge):
                    chunk.too_large += 1
                    chunk.size += piece.size
                    continue
                for line in block_lines(piece):
                    chunk.lines.append(line)
                    chunk.size += len(line)
                    if len(chunk.lines) >= self._chunk_lines or chunk.size >= self._chunk_bytes:
                        if full is not None:
                            yield full
                        full, chunk = chunk, _Chunk()
        except TruncatedCapture as exc:
            log.warning("%s; the complete records before the cut are kept", exc)
            chunk.truncated = True
        if full is not None and not (chunk.size or chunk.n_lines or chunk.truncated):
            chunk = full  # nothing after the last full chunk: it ends the file
        elif full is not None:
            yield full
        chunk.end = True
        yield chunk

    def _reads(
        self, listed: list[tuple[Path, str]], known: dict[str, tuple[int, int, bool]]
    ) -> Iterator[tuple[_Position, _Chunk | BaseException]]:
        """The chunks of every file not fully read, in order, each with its file's position;
        a file that fails to read ends with its error. A file found stale is read no further."""
        for path, rel in listed:
            offset, lines, done = known.get(rel, (0, 0, False))
            if done:
                continue
            at = _Position(rel, offset, lines)
            try:
                for chunk in self._chunks(path, offset):
                    yield at, chunk
                    if at.stale:
                        break
            except FileNotFoundError:
                log.warning("%s: removed before it was read (retention?); skipped", rel)
            except (OSError, EOFError, zlib.error) as exc:  # zlib: a broken .gz stream
                yield at, exc

    def _take(
        self,
        at: _Position,
        read: _Chunk | BaseException,
        landing: _Landing | None,
        stats: IngestStats,
    ) -> None:
        """Queue a chunk's commit once the one in flight has returned, unless its file turned
        out stale; a read's error ends the file where it is committed (``_unreadable``)."""
        if at.stale:
            self._discard(landing)
            return
        if isinstance(read, BaseException):
            self._drain(stats)  # ``at`` as committed
            if not at.stale:
                self._unreadable(at.rel, at.offset, at.lines, read, stats)
            return
        assert landing is not None  # a chunk's
        decoded = landing.take()
        self._drain(stats)  # the previous chunk's commit, maybe of another file
        if at.stale:
            return
        self._pending = _Pending(self._submit(at, read, decoded), at, read, decoded)
        read.let_go()  # its commit needs only its counts: one chunk's lines less held

    def _decode_soon(self, rel: str, chunk: _Chunk, *, here: bool = False) -> _Landing:
        """The chunk's decode: done on this thread now (``here``, or without a decoding
        process), or queued to the process (its ``ticket``: taken back, or decoded here when the
        process died)."""
        process = self._process
        if process is None or not chunk.lines or here:
            if process is not None and here and chunk.lines:
                process.decoded_here()
            return self._decoded_now(rel, chunk)
        ticket = process.submit(self._spec, chunk.lines)
        if ticket is None:  # given up, or its input could not be written
            return self._decoded_now(rel, chunk)

        def land() -> _Decoded:
            decoded = process.result(ticket)
            if decoded is None:  # the process died
                return self._chunk_profiles(rel, chunk)
            return self._file_counts(rel, chunk, decoded)

        return _Landing(land, ticket)

    def _decoded_now(self, rel: str, chunk: _Chunk) -> _Landing:
        """The chunk decoded on this thread now; a decode that raises raises when it is taken,
        in order (the chunks queued ahead of it to the worker are committed first, as they
        would be without the process)."""
        try:
            decoded = self._chunk_profiles(rel, chunk)
        except Exception as exc:
            error = exc  # ``exc`` is unbound after the handler

            def fail() -> _Decoded:
                raise error

            return _Landing(fail)
        return _Landing(lambda: decoded)

    def _discard(self, landing: _Landing | None) -> None:
        """A chunk's decode never taken: the decoding process removes its files."""
        if landing is not None and landing.ticket is not None and self._process is not None:
            self._process.discard(landing.ticket)

    def _submit(self, at: _Position, chunk: _Chunk, decoded: _Decoded) -> Future[bool]:
        """Queue the chunk's transaction, from where its file is committed (``at``).

        Its predictions' blocks are encoded here, on this thread, once the previous chunk is
        drained: on the writer, beside this thread's decoding, each of the encoding's numpy
        steps gave the GIL away and waited for it again."""
        profiles, records, bad, extracted = decoded
        blocks = chunk_blocks(extracted.columns) if extracted and extracted.columns else None
        return self._store.submit(
            self._write(
                at.rel, at.offset, at.offset + chunk.size, at.lines + chunk.n_lines, chunk.end,
                profiles, records, bad, extracted, blocks,
            )
        )  # fmt: skip

    def _drain(self, stats: IngestStats) -> None:
        """Wait for the chunk in flight, if any (:meth:`_settle`)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self._settle(pending, stats)

    def _settle(self, pending: _Pending, stats: IngestStats) -> bool:
        """Wait for a chunk's commit; when it went in, count it and move its file's position
        past it, else mark the file stale."""
        at, chunk = pending.at, pending.chunk
        if not pending.future.result():
            at.stale = True
            log.warning("%s: offset moved under us (another ingester?); skipped", at.rel)
            return False
        profiles, records, bad, _ = pending.decoded
        at.offset += chunk.size
        at.lines += chunk.n_lines
        stats.chunks += 1
        stats.records += records
        stats.bad.update(bad)
        stats.files += int(chunk.end)
        stats.hours.update(start - start % HOUR_S for start in profiles)
        return True

    def _profiles(self, chunk: list[bytes]) -> _Decoded:
        """:meth:`ChunkDecoder.decode` of a chunk's lines, on this thread."""
        return self._chunk_decoder.decode(chunk)

    def _chunk_profiles(self, rel: str, chunk: _Chunk) -> _Decoded:
        """:meth:`_profiles` of the chunk's lines, with :meth:`_file_counts`."""
        return self._file_counts(rel, chunk, self._profiles(chunk.lines))

    def _file_counts(self, rel: str, chunk: _Chunk, decoded: _Decoded) -> _Decoded:
        """A chunk's decode with the file's cut and too-long lines counted (and the latter
        logged) under ``rel``."""
        profiles, records, bad, extracted = decoded
        if chunk.truncated:
            bad["truncated_file"] += 1
        if chunk.too_large:
            bad["too_large"] += chunk.too_large
            log.warning(
                "%s: %d line(s) longer than analyzer.max_line_bytes (%d) skipped (too_large)",
                rel,
                chunk.too_large,
                self._max_line_bytes,
            )
        return profiles, records, bad, extracted

    def _commit_chunk(
        self, rel: str, offset: int, lines: int, chunk: _Chunk, stats: IngestStats
    ) -> bool:
        """Decode and commit one chunk, waiting for it (no pipeline: a remote tree's)."""
        at = _Position(rel, offset, lines)
        decoded = self._chunk_profiles(rel, chunk)
        return self._settle(_Pending(self._submit(at, chunk, decoded), at, chunk, decoded), stats)

    def _unreadable(
        self, rel: str, offset: int, lines: int, exc: BaseException, stats: IngestStats
    ) -> None:
        """End a file that cannot be read past ``offset``: logged, committed as done, and
        counted as one ``unreadable_file`` (waited for)."""
        log.error("%s: unreadable after line %d (%s); counted as bad", rel, lines, exc)
        bad = Counter({"unreadable_file": 1})
        if self._store.write(self._write(rel, offset, offset, lines, True, {}, 0, bad, None)):
            stats.bad.update(bad)

    def _write(
        self,
        rel: str,
        start_offset: int,
        new_offset: int,
        new_lines: int,
        done: bool,
        profiles: dict[int, DatasetProfile],
        records: int,
        bad: Counter[str],
        extracted: Extracted | None,
        blocks: ChunkBlocks | None = None,
    ) -> Callable[[Any], bool]:
        """The one transaction of a chunk, for the writer thread (:func:`commit_chunk`)."""

        def write(db: Any) -> bool:
            ok = commit_chunk(
                db,
                rel,
                start_offset,
                new_offset,
                new_lines,
                done,
                profiles,
                records,
                bad,
                extracted,
                bucket_s=self._bucket_s,
                limit=self._limit,
                clock=self._clock,
                quality_window_s=self._quality_window_s,
                blocks=blocks,
            )
            if ok:
                self._committed(db, rel)
            return ok

        return write

    def _committed(self, db: Any, rel: str) -> None:
        """Inside a chunk's transaction, once it is written (a remote tree notes the size)."""
