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
the GIL). Chunk N+1's commit is only queued once chunk N's has returned; if N's found its
file's offset moved, the rest of that file is dropped (N+1 too, when it is of the same file).
Each transaction still carries its own file's start and end offsets, so a crash between two
commits loses or doubles nothing.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from analyzer.decoding.codecs import DecodedBatch, PayloadDecoder
from analyzer.decoding.inference_time import parse_inference_time
from analyzer.ingest.capture_files import (
    TooLarge,
    TruncatedCapture,
    block_lines,
    capture_sources,
    read_pieces,
    sealed_files,
)
from analyzer.ingest.chunk_buckets import lines_by_bucket, lines_by_time
from analyzer.monitors.data_quality.cardinality import FeatureLimit
from analyzer.monitors.data_quality.profile import DatasetProfile
from analyzer.monitors.model_quality.predictions import Extracted, PredictionExtractor
from analyzer.store.buckets import HOUR_S, commit_chunk, read_file_states
from analyzer.store.database import Store
from analyzer.store.model_quality_blocks import ChunkBlocks, chunk_blocks
from analyzer.store.retention import forget_files
from modelmon.config import ModelmonConfig

__all__ = ["IngestStats", "Ingestor", "bucket_records", "feature_limit"]

log = logging.getLogger("modelmon.analyzer.ingest")

CHUNK_LINES = 10_000
CHUNK_BYTES = 8 * 1024 * 1024


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


def bucket_records(
    lines: Iterable[bytes], bucket_s: int
) -> tuple[dict[int | None, list[Any]], Counter[str]]:
    """Parse JSON lines once and group the records by the time bucket of their inferenceTime.

    Lines that are not JSON are counted as ``not_json``; records without a readable time go
    under ``None`` (the decoder then counts them by reason). Blank lines are skipped.
    """
    groups: dict[int | None, list[Any]] = {}
    bad: Counter[str] = Counter()
    for line in lines:
        if not line or line.isspace():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad["not_json"] += 1
            continue
        key: int | None
        try:
            moment = parse_inference_time(record["eventMetadata"]["inferenceTime"])
            key = int(moment.timestamp()) // bucket_s * bucket_s
        except (KeyError, TypeError, ValueError, AttributeError):
            key = None
        groups.setdefault(key, []).append(record)
    return groups, bad


@dataclass
class _Chunk:
    """Whole lines read from one file, the bytes they span (with skipped lines), and whether
    the file ends here."""

    lines: list[bytes] = field(default_factory=list)
    size: int = 0
    too_large: int = 0
    end: bool = False
    truncated: bool = False  # a compressed file cut short: its cut tail is counted, not read

    @property
    def n_lines(self) -> int:
        return len(self.lines) + self.too_large


_Decoded = tuple[dict[int, DatasetProfile], int, Counter[str], Extracted | None]


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
    ) -> None:
        self._store = store
        self._root = config.capture.dir
        self._endpoint = config.endpoint.name
        self._variant = config.endpoint.variant
        self._bucket_s = config.analyzer.bucket_s
        self._kll_k = config.analyzer.kll_k
        self._limit = limit if limit is not None else feature_limit(config)
        self._decoder = PayloadDecoder(config.analyzer.payload, self._limit)
        self._chunk_lines = chunk_lines
        self._chunk_bytes = chunk_bytes
        self._max_line_bytes = config.analyzer.max_line_bytes
        self._clock = clock
        self._retention_s = config.analyzer.retention_days * 86400
        # model quality: each record's prediction is kept for the join, in the chunk's commit
        quality = config.analyzer.model_quality
        self._predictions = (
            PredictionExtractor(quality, config.analyzer.payload.output) if quality else None
        )
        self._quality_window_s = quality.window_s if quality else 0
        self._pending: _Pending | None = None  # the chunk whose commit is in flight
        # who writes into the capture tree (replicas by instance), as of the last pass
        self.sources: dict[str, Any] = {"count": 0, "instances": {}}

    def set_limit(self, limit: FeatureLimit) -> None:
        """Track the features ``limit`` allows from the next file read on (a new baseline)."""
        self._limit = limit
        self._decoder = PayloadDecoder(self._decoder.payload, limit)

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
        try:
            for path, rel in listed:
                offset, lines, done = known.get(rel, (0, 0, False))
                if done:
                    continue
                self._ingest_file(path, rel, offset, lines, stats)
        finally:
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

    def _ingest_file(
        self, path: Path, rel: str, offset: int, lines: int, stats: IngestStats
    ) -> None:
        """Queue the commits of the file's chunks (the last may still be in flight)."""
        at = _Position(rel, offset, lines)
        try:
            for chunk in self._chunks(path, offset):
                decoded = self._chunk_profiles(rel, chunk)
                self._drain(stats)  # the previous chunk's commit, maybe of another file
                if at.stale:
                    return
                self._pending = _Pending(self._submit(at, chunk, decoded), at, chunk, decoded)
        except FileNotFoundError:
            log.warning("%s: removed before it was read (retention?); skipped", rel)
        except (OSError, EOFError, zlib.error) as exc:  # zlib: a broken .gz stream
            self._drain(stats)  # ``at`` as committed
            if at.stale:
                return
            self._unreadable(rel, at.offset, at.lines, exc, stats)

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
        """Bucket profiles of a chunk, its good records, its bad ones by reason, and (with
        model quality on) its predictions.

        Most chunks fall in one bucket: they are decoded once as a whole. A chunk that spans
        buckets is grouped by bucket and each group decoded on its own: by the times the
        lines show when its first and last lines show two buckets and every group decodes
        into its own (:func:`lines_by_time`: the chunk is decoded once); by
        :func:`bucket_records` when those groups held bad records and good ones in two
        buckets or more; else by the whole chunk's decoded times when every line gave one
        record (the lines are then split, not parsed by :func:`bucket_records`), else by
        :func:`bucket_records`.
        """
        bucket_s = self._bucket_s
        extract = self._predictions.extract if self._predictions is not None else None
        guessed = self._decoded_by_time(chunk)
        if isinstance(guessed, list):
            return self._grouped(guessed, Counter(), extract)
        if guessed is None:
            batch = self._decoder.decode_lines(chunk)
            stamps = list(map(datetime.timestamp, batch.inference_times))
            keys = [int(stamp) // bucket_s * bucket_s for stamp in stamps]
            starts = set(keys)
            if len(starts) <= 1:
                extracted = extract(batch, stamps) if extract is not None else None
                if not starts:
                    return {}, 0, Counter(batch.bad), extracted
                profile = DatasetProfile(self._kll_k, self._limit)
                profile.update(batch)
                return {starts.pop(): profile}, batch.n_records, Counter(batch.bad), extracted
            lines = lines_by_bucket(chunk, keys, stamps) if not batch.bad else None
            if lines is not None:
                batches = (
                    (key, self._decoder.decode_lines(group), times)
                    for key, (group, times) in lines.items()
                )
                return self._grouped(batches, Counter(), extract)
        groups, bad = bucket_records(chunk, bucket_s)  # bad records, good ones in 2+ buckets
        records = (
            (key, self._decoder.decode_records(group), None) for key, group in groups.items()
        )
        return self._grouped(records, bad, extract)

    def _decoded_by_time(
        self, chunk: list[bytes]
    ) -> list[tuple[int | None, DecodedBatch, list[float] | None]] | bool | None:
        """The chunk's groups by :func:`lines_by_time`, each decoded, when every group's
        lines each gave one record in its bucket (as a split by the decoded times would
        have grouped them). Else True when the groups held bad records and good ones in two
        buckets or more: the whole chunk's decode would show the same (a line decodes alike
        in any batch), and send it to :func:`bucket_records`; else None (decode it whole)."""
        groups = lines_by_time(chunk, self._bucket_s)
        if groups is None:
            return None
        decoded: list[tuple[int | None, DecodedBatch, list[float] | None]] = []
        starts: set[int] = set()
        bad = False
        fits = True
        for key, group in groups.items():
            batch = self._decoder.decode_lines(group)
            stamps = list(map(datetime.timestamp, batch.inference_times))
            buckets = {int(stamp) // self._bucket_s * self._bucket_s for stamp in stamps}
            starts |= buckets
            bad = bad or bool(batch.bad)
            fits = fits and not batch.bad and len(stamps) == len(group) and buckets <= {key}
            decoded.append((key, batch, stamps))
        if fits:
            return decoded
        return True if bad and len(starts) >= 2 else None

    def _grouped(
        self,
        batches: Iterable[tuple[int | None, DecodedBatch, list[float] | None]],
        bad: Counter[str],
        extract: Callable[[DecodedBatch, list[float] | None], Extracted] | None,
    ) -> _Decoded:
        """The profiles of a chunk's groups (each a bucket's), with their bad records added
        to ``bad`` and their predictions."""
        bucket_s = self._bucket_s
        profiles: dict[int, DatasetProfile] = {}
        records = 0
        extracted = Extracted() if extract is not None else None
        for key, batch, times in batches:
            bad.update(batch.bad)
            if extract is not None and extracted is not None:  # refused records too
                extracted.add(extract(batch, times))
            if not batch.n_records:
                continue
            records += batch.n_records
            start = key
            if start is None:  # not reached: both read times with parse_inference_time
                start = int(batch.inference_times[0].timestamp()) // bucket_s * bucket_s
            into = profiles.get(start)
            if into is None:
                into = profiles[start] = DatasetProfile(self._kll_k, self._limit)
            into.update(batch)
        return profiles, records, bad, extracted

    def _chunk_profiles(self, rel: str, chunk: _Chunk) -> _Decoded:
        """:meth:`_profiles` of the chunk's lines, with the file's cut and too-long lines
        counted (and the latter logged) under ``rel``."""
        profiles, records, bad, extracted = self._profiles(chunk.lines)
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
