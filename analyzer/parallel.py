"""Profiling many capture files on all cores: a map (one file → one profile) and a merge.

Each worker process decodes and profiles whole files and sends back the serialized profile
(a few hundred kB at most, whatever the file's size); the parent merges them in file order.
Memory per process is bounded by one read batch (about 1 MiB of lines) plus the sketches. With
one worker or one file it runs in this process. This is the same map/reduce that DESIGN.md
assigns to Dask for many sidecars; here it is ``concurrent.futures`` on one machine.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

from analyzer.arrow_batch import ArrowDecoder
from analyzer.capture_files import block_lines, read_blocks
from analyzer.codecs import PayloadDecoder
from analyzer.profile import DatasetProfile
from modelmon.config import PayloadConfig

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


def arrow_decoder(payload: PayloadConfig) -> ArrowDecoder | None:
    """The optional Arrow fast path (pyarrow installed; CSV payloads), unless
    ``MODELMON_ARROW=0`` is set in the environment; ``MODELMON_ARROW=json`` also reads JSON
    and TF Serving payloads with it (slower than orjson on the bench data, so not the default).
    """
    mode = os.environ.get("MODELMON_ARROW", "1")
    if mode == "0":
        return None
    return ArrowDecoder.create(payload, json=mode == "json")


def _seen(out: FilesProfile, records: int, first: datetime, last: datetime) -> None:
    out.records += records
    out.first_time = first if out.first_time is None else min(out.first_time, first)
    out.last_time = last if out.last_time is None else max(out.last_time, last)


def profile_file(path: Path, payload: PayloadConfig, k: int) -> FilesProfile:
    """Decode and profile one capture file (``.jsonl`` or ``.jsonl.gz``) in bounded batches."""
    decoder = PayloadDecoder(payload)
    fast = arrow_decoder(payload)
    out = FilesProfile(DatasetProfile(k), files=1)
    for block in read_blocks(path):
        quick = fast.decode(block) if fast is not None else None
        if quick is not None:
            out.profile.update_sides(
                quick.columns, quick.predictions, quick.n_rows, quick.field_counts
            )
            _seen(out, quick.n_records, quick.first_time, quick.last_time)
            continue
        batch = decoder.decode_lines(block_lines(block))
        out.profile.update(batch)
        out.bad.update(batch.bad)
        out.warnings.update(batch.warnings)
        if batch.inference_times:
            first, last = min(batch.inference_times), max(batch.inference_times)
            _seen(out, batch.n_records, first, last)
        else:
            out.records += batch.n_records
    return out


def _work(
    path: Path, payload: PayloadConfig, k: int
) -> tuple[bytes, int, Counter[str], Counter[str], datetime | None, datetime | None]:
    part = profile_file(path, payload, k)
    return (
        part.profile.to_bytes(),
        part.records,
        part.bad,
        part.warnings,
        part.first_time,
        part.last_time,
    )


def _parts(
    files: list[Path], payload: PayloadConfig, k: int, workers: int
) -> Iterator[FilesProfile]:
    if workers <= 1 or len(files) <= 1 or "fork" not in get_all_start_methods():
        for path in files:
            yield profile_file(path, payload, k)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as pool:
        n = len(files)
        for blob, records, bad, warnings, first, last in pool.map(
            _work, files, [payload] * n, [k] * n
        ):
            profile = DatasetProfile.from_bytes(blob)
            yield FilesProfile(profile, records, bad, warnings, first, last, files=1)


def _cores() -> int:
    """CPUs this process may run on (a container's CPU set, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def profile_capture_files(
    files: list[Path],
    payload: PayloadConfig,
    k: int,
    workers: int | None = None,
    on_file: Callable[[FilesProfile], None] | None = None,
) -> FilesProfile:
    """Profile ``files`` on ``workers`` processes (default: one per core) and merge the results.

    ``on_file`` is called in the parent with the running total after each file (progress).
    An unreadable file raises its ``OSError``/``EOFError`` here, as reading it in-process would.
    """
    if workers is None:
        workers = _cores()
    arrow_decoder(payload)  # imports pyarrow (if used) once, before any worker is forked
    workers = max(1, min(workers, len(files)))
    total = FilesProfile(DatasetProfile(k))
    for part in _parts(files, payload, k, workers):
        total.add(part)
        if on_file is not None:
            on_file(total)
    return total
