"""The ground-truth folder behind a storage URL (``analyzer.model_quality.ground_truth.dir:
s3://bucket/prefix``), read exactly once, as a local folder is.

SageMaker's layout under the URL: ``{url}/{yyyy}/{mm}/{dd}/{hh}/*.jsonl``. Each run lists the
hour prefixes from ``now - analyzer.retention_days`` on (at most ``max_files`` objects; a cut
listing goes on from its last hour at the next run) with
:class:`~analyzer.ingest.remote_files.RemoteCaptureTree`, and reads every object on from the
offset remembered for it (keyed, as a local file, by ``yyyy/mm/dd/hh/name``), with the chunks
and the one-transaction commits of :class:`~analyzer.ingest.ground_truth_folder.GroundTruthFolder`:
a restart goes on where the last commit ended, nothing is read twice. A listing or a read
that fails (the store unreachable, access denied, a timeout) is counted
(``ground_truth:source_errors``, and ``errors``/``last_error`` in the status), logged, and
retried at the next run: the pass stops there, what was committed stays.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from analyzer.ingest.ground_truth_folder import CHUNK_BYTES, FolderStats, GroundTruthFolder
from analyzer.ingest.remote_files import DEFAULT_MAX_FILES, RemoteCaptureTree
from analyzer.store.database import Store, add_counters
from analyzer.store.file_sources import GT_ERRORS
from analyzer.store.model_quality import prune
from analyzer.store.model_quality_labels import file_offsets
from analyzer.store.retention import forget_label_files
from analyzer.store.stored_files import one_line
from modelmon.config import ModelmonConfig
from modelmon.storage_url import storage_errors

__all__ = ["RemoteGroundTruthFolder"]

log = logging.getLogger("modelmon.analyzer.ground_truth")

MAX_ERROR_CHARS = 500


class RemoteGroundTruthFolder(GroundTruthFolder):
    """:class:`GroundTruthFolder` over the objects under ``url``; ``sources()`` says the URL
    and the listing/read errors since start."""

    def __init__(
        self,
        store: Store,
        config: ModelmonConfig,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        chunk_bytes: int = CHUNK_BYTES,
        max_files: int = DEFAULT_MAX_FILES,
    ) -> None:
        super().__init__(store, config, clock=clock, chunk_bytes=chunk_bytes)
        self.tree = RemoteCaptureTree.folder(url)  # StorageUnavailable: no library
        self.url = self.tree.url
        self.max_files = max_files
        self.errors = 0
        self.last_error: str | None = None
        self._resume: datetime | None = None

    def sources(self) -> dict[str, Any]:
        return {"url": self.url, "errors": self.errors, "last_error": self.last_error}

    def _failed(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        error = f"{what} {self.url}: {type(exc).__name__}: {one_line(exc)}"
        self.last_error = error[:MAX_ERROR_CHARS]
        log.warning("ground truth: %s (counted; retried at the next run)", self.last_error)
        self._store.write(lambda db: add_counters(db, {GT_ERRORS: 1}))

    def run_once(self) -> FolderStats:
        """List the hours within retention and read what is new in each object (see the
        module), then apply the retention."""
        stats = FolderStats()
        before = self._clock() - self._retention_s
        cutoff = datetime.fromtimestamp(before, UTC).replace(minute=0, second=0, microsecond=0)
        start = cutoff if self._resume is None else max(cutoff, self._resume)
        try:
            listing = self.tree.sealed_files(start, None, max_files=self.max_files)
        except storage_errors() as exc:  # unreachable, denied, a timeout: the next run
            self._failed("listing", exc)
            listing = None
        if listing is not None:
            self._resume = listing.files[-1].hour if listing.cut else None
            files = [f for f in listing.files if f.name.endswith(".jsonl")]
            known = self._store.read(file_offsets) if files else {}
            root = self.tree.base.rstrip("/") + "/"
            for file in files:
                rel = file.path.removeprefix(root)
                offset, lines = known.get(rel, (0, 0))
                if file.size <= offset:
                    continue
                try:
                    self._read_file(file, rel, offset, lines, stats)
                except FileNotFoundError:
                    log.warning("%s: removed before it was read; skipped", file.url)
                except storage_errors() as exc:
                    self._failed("reading", exc)
                    break
        stats.pruned = self._store.write(lambda db: prune(db, before))
        stats.files_forgotten = self._store.write(lambda db: forget_label_files(db, None, before))
        return stats
