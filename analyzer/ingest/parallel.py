"""Profiling many capture files on all cores: a map (one file → one profile) and a merge.

Each worker process decodes and profiles whole files and sends back the serialized profile
(a few hundred kB at most, whatever the file's size); the parent merges them in file order.
Memory per process is bounded by one read batch (about 1 MiB of lines) plus the sketches. With
one worker or one file it runs in this process. The map runs on an
:mod:`analyzer.ingest.executor` backend: in-process, local processes (the default) or Dask;
the results come back in file order on every backend, so the merge is the same.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from analyzer.decoding.arrow_batch import ArrowDecoder
from analyzer.decoding.codecs import PayloadDecoder
from analyzer.decoding.contract import DecodedBatch
from analyzer.ingest.capture_files import (
    DEFAULT_MAX_LINE_BYTES,
    TooLarge,
    TruncatedCapture,
    block_lines,
    read_blocks,
)
from analyzer.ingest.executor import Executor, LocalProcesses
from analyzer.ingest.remote_files import CaptureFile, opener_of
from analyzer.monitors.data_quality.cardinality import FeatureLimit
from analyzer.monitors.data_quality.profile import DatasetProfile
from modelmon.config import ArrowMode, PayloadConfig

__all__ = ["FilesProfile", "profile_capture_files"]


@dataclass
class FilesProfile:
    """The merged profile of some capture files and what was seen while reading them."""

    profile: DatasetProfile
    records: int = 0
    bad: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    first_time: datetime | None = None
    last_time: datetime | None = None
    files: int = 0

    def add(self, other: FilesProfile) -> None:
        self.profile.merge(other.profile)
        self.records += other.records
        self.bad.update(other.bad)
        self.warnings.update(other.warnings)
        self.files += other.files
        times = [t for t in (self.first_time, other.first_time) if t is not None]
        self.first_time = min(times) if times else None
        times = [t for t in (self.last_time, other.last_time) if t is not None]
        self.last_time = max(times) if times else None


def arrow_decoder(payload: PayloadConfig, arrow: ArrowMode = "csv") -> ArrowDecoder | None:
    """The optional Arrow fast path (pyarrow installed) as ``analyzer.arrow`` says: for CSV
    payloads (``csv``, the default), also for JSON and TF Serving payloads (``csv_and_json``;
    slower than orjson on the bench data, so not the default), or not at all (``off``)."""
    if arrow == "off":
        return None
    return ArrowDecoder.create(payload, json=arrow == "csv_and_json")


def _seen(out: FilesProfile, batch: DecodedBatch) -> None:
    out.records += batch.n_records
    span = batch.time_span()
    if span is None:
        return
    first, last = span
    out.first_time = first if out.first_time is None else min(out.first_time, first)
    out.last_time = last if out.last_time is None else max(out.last_time, last)


_GROUP_BYTES = 4 << 20  # blocks read by one Arrow call: fewer, larger calls


def _add_blocks(
    out: FilesProfile, blocks: list[bytes], decoder: PayloadDecoder, fast: ArrowDecoder | None
) -> bool:
    """Profile ``blocks``, each as one chunk; True when Arrow took them all in one call."""
    batches = fast.decode_blocks(blocks) if fast is not None and len(blocks) > 1 else None
    for index, block in enumerate(blocks):
        batch: DecodedBatch | None
        if batches is not None:
            batch = batches[index]
        else:
            batch = fast.decode_block(block) if fast is not None else None
        if batch is None:
            batch = decoder.decode_lines(block_lines(block))
        out.profile.update(batch)
        out.bad.update(batch.bad)
        out.warnings.update(batch.warnings)
        _seen(out, batch)
    return batches is not None or len(blocks) == 1


def profile_file(
    file: CaptureFile,
    payload: PayloadConfig,
    k: int,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    limit: FeatureLimit | None = None,
    arrow: ArrowMode = "csv",
) -> FilesProfile:
    """Decode and profile one capture file (``.jsonl`` or ``.jsonl.gz``) in bounded batches.

    Each ~1 MiB block of lines is profiled as one chunk whichever way it is decoded: by the
    Arrow fast path, which reads ~4 MiB of blocks per call while they are all plain CSV
    traffic (after a group it declines, one block at a time), else record by record. A line
    longer than ``max_line_bytes`` is skipped unread and counted as ``too_large``. At most
    ``limit`` features are profiled (:mod:`analyzer.monitors.data_quality.cardinality`); the
    others are tallied as untracked. ``arrow``: ``analyzer.arrow`` (:func:`arrow_decoder`).
    A remote ``file`` (:class:`~analyzer.ingest.remote_files.RemoteFile`) is opened here, in
    the process that profiles it, with the same line limit.
    """
    path, opener = opener_of(file)
    decoder = PayloadDecoder(payload, limit)
    fast = arrow_decoder(payload, arrow)
    out = FilesProfile(DatasetProfile(k, limit), files=1)
    grouping = fast is not None and fast.groups
    group: list[bytes] = []
    size = 0

    def skipped(line: TooLarge) -> None:
        out.bad["too_large"] += 1

    try:
        for block in read_blocks(path, 0, max_line_bytes, skipped, opener):
            group.append(block)
            size += len(block)
            if not grouping or size >= _GROUP_BYTES:
                grouping = _add_blocks(out, group, decoder, fast) and grouping
                group, size = [], 0
    except TruncatedCapture:  # a cut .jsonl.gz: what decompressed counts, the rest is counted
        out.bad["truncated_file"] += 1
    if group:
        _add_blocks(out, group, decoder, fast)
    return out


def _work(
    path: CaptureFile,
    *,
    payload: PayloadConfig,
    k: int,
    max_line_bytes: int,
    limit: FeatureLimit | None,
    arrow: ArrowMode,
) -> tuple[bytes, int, Counter[str], Counter[str], datetime | None, datetime | None]:
    part = profile_file(path, payload, k, max_line_bytes, limit, arrow)
    return (
        part.profile.to_bytes(),
        part.records,
        part.bad,
        part.warnings,
        part.first_time,
        part.last_time,
    )


def _parts(
    files: Sequence[CaptureFile],
    payload: PayloadConfig,
    k: int,
    executor: Executor,
    max_line_bytes: int,
    limit: FeatureLimit | None,
    arrow: ArrowMode,
) -> Iterator[FilesProfile]:
    work = partial(
        _work, payload=payload, k=k, max_line_bytes=max_line_bytes, limit=limit, arrow=arrow
    )
    for blob, records, bad, warnings, first, last in executor.map(work, files):
        profile = DatasetProfile.from_bytes(blob)
        yield FilesProfile(profile, records, bad, warnings, first, last, files=1)


def profile_capture_files(
    files: Sequence[CaptureFile],
    payload: PayloadConfig,
    k: int,
    workers: int | None = None,
    on_file: Callable[[FilesProfile], None] | None = None,
    *,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    limit: FeatureLimit | None = None,
    arrow: ArrowMode = "csv",
    executor: Executor | None = None,
) -> FilesProfile:
    """Profile ``files`` on ``executor`` (default: :class:`LocalProcesses` of ``workers``, one
    per core) and merge the results in file order, whichever backend ran them; each file and
    the merge keep to ``limit`` (``analyzer.max_features``).

    ``on_file`` is called in the parent with the running total after each file (progress);
    ``arrow`` is ``analyzer.arrow`` (:func:`arrow_decoder`).
    An unreadable file raises its ``OSError``/``EOFError`` here, as reading it in-process would.
    """
    arrow_decoder(payload, arrow)  # imports pyarrow (if used) once, before any worker forks
    if executor is None:
        executor = LocalProcesses(workers)
    total = FilesProfile(DatasetProfile(k, limit))
    for part in _parts(files, payload, k, executor, max_line_bytes, limit, arrow):
        total.add(part)
        if on_file is not None:
            on_file(total)
    return total
