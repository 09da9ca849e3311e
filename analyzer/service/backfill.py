"""``modelmon backfill``: fill the service's database from an existing capture tree.

So that ``/monitor/status``, the runs and the report cover the past: the sealed files of a
local tree (``--from DIR``) or a remote one (``--from s3://bucket/prefix``, SageMaker's
layout) are read on an executor backend (:mod:`analyzer.ingest.backfill_map`: local
processes, Dask, in-process), merged into the stored buckets in file order and marked read in
``files`` under the key the running service uses (the path below the tree's root for a
folder, the URL for an object), so neither the service nor a second backfill reads them again.
Then the window is evaluated at the end of every hour that got data (window runs for the
past) and SageMaker's hourly reports are written for every closed hour that changed.

Files already read (by the service, or an earlier backfill) are skipped and counted. Only
hours within ``analyzer.retention_days`` are read: older ones would be pruned at the service's
next run.

A running service on the same database: both write through SQLite in WAL mode, in short
transactions (SQLite's busy timeout makes each wait for the other). A batch of files is
committed all or nothing and only when none of them has a read state yet, so a file the
service starts reading meanwhile is left to it (counted as ``taken``): nothing is counted
twice. The status document a past evaluation writes does not replace a newer one.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TextIO

from analyzer.ingest.backfill_map import FileTask, Profiling, read_file
from analyzer.ingest.capture_files import sealed_files
from analyzer.ingest.executor import Executor, LocalProcesses
from analyzer.ingest.remote_files import RemoteCaptureTree
from analyzer.service.monitor import Monitor
from analyzer.store.buckets import HOUR_S
from analyzer.store.database import Store, StoreError, read_status_doc, write_status_doc
from analyzer.store.file_sources import FileRead, commit_files, keys_read
from modelmon.config import ModelmonConfig
from modelmon.config_types import storage_url
from modelmon.storage_url import StorageUnavailable, storage_errors

__all__ = ["BATCH_FILES", "BackfillError", "BackfillResult", "list_tasks", "run_backfill"]

log = logging.getLogger("modelmon.analyzer.backfill")

BATCH_FILES = 32  # files per map and per commit: bounds what waits in memory
PROGRESS_EVERY_S = 2.0


class BackfillError(Exception):
    """The backfill cannot go on; the message is one line. ``code``: the exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class BackfillResult:
    listed: int = 0
    skipped: int = 0  # read already (by the service or an earlier backfill)
    taken: int = 0  # started by someone else while this backfill ran
    missing: int = 0  # gone before they were read
    files: int = 0
    records: int = 0
    bad: int = 0
    hours: set[int] = field(default_factory=set)
    window_runs: int = 0
    hourly_runs: int = 0

    def summary(self, source: str) -> str:
        return (
            f"backfilled {self.files} files ({self.records:,} records, {self.bad:,} bad) from "
            f"{source} into {len(self.hours)} hours; skipped {self.skipped} files already "
            f"read"
            + (f", {self.taken} taken by the running service" if self.taken else "")
            + (f", {self.missing} gone before they were read" if self.missing else "")
            + f"; {self.window_runs} window runs, {self.hourly_runs} hourly reports"
        )


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def list_tasks(
    config: ModelmonConfig, source: str, start: datetime | None, end: datetime | None
) -> list[FileTask]:
    """The sealed files of the tree at ``source`` (a folder or a URL) in ``[start, end)``,
    by hour then name."""
    endpoint, variant = config.endpoint.name, config.endpoint.variant
    if "://" not in source:
        root = Path(source)
        if not (root / endpoint / variant).is_dir():
            raise BackfillError(f"--from {source}: no {endpoint}/{variant}/ capture tree there", 2)
        return [
            FileTask(path.relative_to(root).as_posix(), path=str(path))
            for path in sealed_files(root, endpoint, variant, start, end)
        ]
    try:
        url = storage_url(source)
        tree = RemoteCaptureTree(url, endpoint, variant)
    except (ValueError, StorageUnavailable) as exc:
        raise BackfillError(f"--from {source}: {exc}", 2) from exc
    tasks: list[FileTask] = []
    seen: set[str] = set()
    first = start
    while True:
        try:
            listing = tree.sealed_files(first, end)
        except storage_errors() as exc:  # the store unreachable, denied, no bucket: one line
            raise BackfillError(f"cannot list {url}: {type(exc).__name__}: {exc}") from exc
        for file in listing.files:
            if file.url not in seen:
                seen.add(file.url)
                tasks.append(FileTask(file.url, remote=file))
        if not listing.cut or first == listing.files[-1].hour:
            return tasks
        first = listing.files[-1].hour


class _Progress:
    def __init__(self, total: int, out: TextIO) -> None:
        self.total, self.out = total, out
        self.started = self.last = time.monotonic()

    def tick(self, result: BackfillResult, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if final or now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            rate = result.records / max(now - self.started, 1e-9)
            print(
                f"  … {done}/{self.total} files, {result.records:,} records "
                f"({rate:,.0f} records/s)",
                file=self.out,
                flush=True,
            )


def _commit(store: Store, monitor: Monitor, reads: list[FileRead], result: BackfillResult) -> None:
    """Commit a batch; files someone else started meanwhile are left out and counted."""
    config = monitor.config
    quality = config.analyzer.model_quality
    pending = [read for read in reads if not read.missing]
    result.missing += len(reads) - len(pending)
    write = partial(
        commit_files,
        bucket_s=config.analyzer.bucket_s,
        limit=monitor.limit,
        quality_window_s=quality.window_s if quality is not None else 0,
    )
    while pending:
        try:
            taken = store.write(partial(write, files=pending))
        except Exception as exc:  # e.g. SQLite's "database is locked" past its busy timeout
            raise BackfillError(
                f"writing to {config.analyzer.db} failed after {result.files} files were "
                f"backfilled (kept; run again to go on): {type(exc).__name__}: {exc}"
            ) from exc
        if not taken:
            break
        result.taken += len(taken)
        pending = [read for read in pending if read.key not in taken]
    for read in pending:
        result.files += 1
        result.records += read.records
        result.bad += sum(read.bad.values())
        for chunk in read.chunks:
            result.hours.update(start - start % HOUR_S for start in chunk.profiles)


def _evaluate_past(store: Store, monitor: Monitor, hours: set[int], now: float) -> int:
    """Window runs at the end of every hour that got data (up to ``now``), oldest first; the
    status document is left as it was when it is newer than the last of them."""
    before = store.read(read_status_doc)
    times = sorted(hour + HOUR_S for hour in hours if hour + HOUR_S <= now)
    for moment in times:
        monitor.evaluate_at(float(moment))
    if times and before is not None and (before.get("last_run_epoch") or 0) > times[-1]:
        store.write(lambda db: write_status_doc(db, before))
    return len(times)


def run_backfill(
    config: ModelmonConfig,
    source: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    executor: Executor | None = None,
    out: TextIO = sys.stderr,
    clock: float | None = None,
) -> BackfillResult:
    """Backfill the database of ``config`` from ``source`` (see the module docstring).
    Progress goes to ``out``; raises :class:`BackfillError` with one line."""
    now = time.time() if clock is None else clock
    horizon = _hour(datetime.fromtimestamp(now - config.analyzer.retention_days * 86400, UTC))
    if start is None or start < horizon:
        if start is not None:
            print(
                f"note: --start {start.isoformat()} is before analyzer.retention_days: "
                f"from {horizon.isoformat()} on",
                file=out,
                flush=True,
            )
        start = horizon
    tasks = list_tasks(config, source, start, end)
    result = BackfillResult(listed=len(tasks))
    if not tasks:
        raise BackfillError(f"no sealed capture files (*.jsonl, *.jsonl.gz) in {source}", 4)
    store = Store(config.analyzer.db)
    try:
        store.start()
    except StoreError as exc:
        raise BackfillError(f"analyzer.db: {exc}", 2) from exc
    try:
        monitor = Monitor(config, store, clock=lambda: now)
        read = store.read(lambda c: keys_read(c, [task.key for task in tasks]))
        todo = [task for task in tasks if task.key not in read]
        result.skipped = len(tasks) - len(todo)
        executor = executor if executor is not None else LocalProcesses()
        print(
            f"backfilling {len(todo)} of {len(tasks)} capture files from {source} into "
            f"{config.analyzer.db} on {executor.name} ({result.skipped} read already: skipped)",
            file=out,
            flush=True,
        )
        task_fn = partial(read_file, Profiling(config, monitor.limit))
        progress = _Progress(len(todo), out)
        for i in range(0, len(todo), BATCH_FILES):
            batch = todo[i : i + BATCH_FILES]
            try:
                reads = list(executor.map(task_fn, batch))
            except Exception as exc:  # a task's error after its retries (e.g. the store down)
                raise BackfillError(
                    f"reading {source} failed after {result.files} files were backfilled "
                    f"(kept; run again to go on): {type(exc).__name__}: {exc}"
                ) from exc
            _commit(store, monitor, reads, result)
            progress.tick(result, i + len(batch))
        if todo:
            progress.tick(result, len(todo), final=True)
        result.window_runs = _evaluate_past(store, monitor, result.hours, now)
        result.hourly_runs = len(monitor.reporter.run(now))
        if monitor.model_quality is not None:
            monitor.model_quality.report_changed_hours(now)
    finally:
        store.close()
    return result
