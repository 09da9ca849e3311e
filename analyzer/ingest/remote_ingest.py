"""Ingestion from a remote capture tree (``analyzer.capture_url``), exactly once, as from a folder.

The same tree the proxies' ``capture.upload`` writes (and SageMaker's Data Capture):
``{capture_url}/{endpoint}/{variant}/yyyy/mm/dd/hh/*``, listed hour by hour with
:class:`~analyzer.ingest.remote_files.RemoteCaptureTree` (sealed names only, at most
``max_files`` per listing), read with the same line limit, chunks and one transaction per chunk
as a local file (:class:`~analyzer.ingest.ingestor.Ingestor`). A file's read state is keyed by
its URL and notes the object's size: a sealed object never changes, so a listing that shows
another size is counted (``changed_files``) and not read again.

Each run lists the hours from ``now - analyzer.retention_days`` on (what retention would drop is
never listed; the rows of older files are forgotten). A listing cut at ``max_files`` goes on
from its last hour at the next run. A listing or a read that fails (the store unreachable,
access denied, a timeout) is counted (``source_errors``, and ``sources.errors`` with the last
error in the status), logged, and retried at the next run: the pass stops there, what was
committed stays, nothing is read twice.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from analyzer.ingest.capture_files import TooLarge, count_sources
from analyzer.ingest.ingestor import Ingestor, IngestStats
from analyzer.ingest.remote_files import DEFAULT_MAX_FILES, RemoteCaptureTree, RemoteFile
from analyzer.store.database import Store
from analyzer.store.file_sources import (
    count_changed,
    count_source_error,
    note_size,
    read_remote_states,
)
from analyzer.store.retention import forget_files
from modelmon.config import ModelmonConfig
from modelmon.storage_url import storage_errors

__all__ = ["RemoteIngestor", "SourceDown", "url_prefix"]

log = logging.getLogger("modelmon.analyzer.ingest")

MAX_ERROR_CHARS = 500


class SourceDown(Exception):
    """Reading the remote tree failed for a reason of the store, not of the file (retried)."""


def url_prefix(url: str, endpoint: str, variant: str) -> str:
    """The start of every file key of the tree at ``url`` (``{url}/{endpoint}/{variant}/``)."""
    return f"{url.rstrip('/')}/{endpoint}/{variant}/"


def _guarded(pieces: Iterable[bytes | TooLarge]) -> Iterator[bytes | TooLarge]:
    """The pieces of a remote file; a failure of the store or its library is :class:`SourceDown`
    (a missing object, a cut or corrupt gzip are the file's: they pass as they are)."""
    try:
        yield from pieces
    except (FileNotFoundError, EOFError, zlib.error):
        raise
    except storage_errors() as exc:  # the store unreachable, denied, a timeout: next run
        raise SourceDown(f"{type(exc).__name__}: {exc}") from exc


def _written(file: RemoteFile) -> float:
    """When the object was stored; the end of its hour when the listing does not say."""
    if file.modified is not None:
        return file.modified
    return (file.hour + timedelta(hours=1)).timestamp()


class RemoteIngestor(Ingestor):
    """:class:`Ingestor` over the tree at ``url``; ``sources`` also says the URL and the
    listing/read errors since start."""

    def __init__(
        self,
        store: Store,
        config: ModelmonConfig,
        url: str,
        *,
        max_files: int = DEFAULT_MAX_FILES,
        **options: Any,
    ) -> None:
        super().__init__(store, config, **options)
        endpoint, variant = config.endpoint.name, config.endpoint.variant
        self.tree = RemoteCaptureTree(url, endpoint, variant)  # StorageUnavailable: no library
        self.url = self.tree.url
        self.prefix = url_prefix(self.url, endpoint, variant)
        self.max_files = max_files
        self.errors = 0
        self.last_error: str | None = None
        self._resume: datetime | None = None
        self._sizes: dict[str, int] = {}
        self._found: dict[str, Any] = {"count": 0, "instances": {}}
        self.sources = self._sources()

    def _sources(self) -> dict[str, Any]:
        errors = {"url": self.url, "errors": self.errors, "last_error": self.last_error}
        return {**self._found, **errors}

    def _failed(self, what: str, error: str) -> None:
        self.errors += 1
        self.last_error = f"{what} {self.url}: {error}"[:MAX_ERROR_CHARS]
        log.warning("%s (counted; retried at the next run)", self.last_error)
        self._store.write(count_source_error)
        self.sources = self._sources()

    def run_once(self) -> IngestStats:
        """List the tree and read every sealed object not fully read yet (see the module)."""
        stats = IngestStats()
        cutoff = datetime.fromtimestamp(self._clock() - self._retention_s, UTC)
        cutoff = cutoff.replace(minute=0, second=0, microsecond=0)
        start = cutoff if self._resume is None else max(cutoff, self._resume)
        try:
            listing = self.tree.sealed_files(start, None, max_files=self.max_files)
        except storage_errors() as exc:  # the store unreachable, denied, a timeout: next run
            self._failed("listing", f"{type(exc).__name__}: {exc}")
            return stats
        self._resume = listing.files[-1].hour if listing.cut else None
        if listing.cut:
            log.warning(
                "%s: more than %d sealed files from %s; the rest from %s at the next run",
                self.url,
                self.max_files,
                start.isoformat(),
                self._resume.isoformat() if self._resume else "",
            )
        self._found = count_sources((f.name, _written(f)) for f in listing.files)
        self.sources = self._sources()
        first = f"{self.prefix}{cutoff:%Y/%m/%d/%H}"
        below = self.prefix[:-1] + "0"  # every key that starts with the prefix sorts before
        known = self._store.read(lambda c: read_remote_states(c, first, below))
        changed: list[tuple[str, int]] = []
        for file in listing.files:
            offset, lines, done, size = known.get(file.url, (0, 0, False, None))
            if size is not None and size != file.size:
                changed.append((file.url, file.size))
                continue
            if done:
                continue
            try:
                self._ingest_remote(file, offset, lines, stats)
            except SourceDown as exc:
                self._failed("reading", str(exc))
                break
        if changed:
            for url, size in changed:
                log.warning("%s: now %d bytes, not as when read: counted, not re-read", url, size)
            self._store.write(lambda db: count_changed(db, changed))
        self._store.write(lambda db: forget_files(db, first, first, self.prefix))
        return stats

    def _ingest_remote(self, file: RemoteFile, offset: int, lines: int, stats: IngestStats) -> None:
        self._sizes[file.url] = file.size
        pieces = _guarded(self.tree.read_pieces(file, offset, self._max_line_bytes))
        try:
            for chunk in self._chunks(Path(file.path), offset, pieces):
                if not self._commit_chunk(file.url, offset, lines, chunk, stats):
                    return  # the offset moved under us: said by _settle
                offset += chunk.size
                lines += chunk.n_lines
        except FileNotFoundError:
            log.warning("%s: removed before it was read; skipped", file.url)
        except (EOFError, zlib.error) as exc:  # the object's content: counted, not retried
            self._unreadable(file.url, offset, lines, exc, stats)
        finally:
            self._sizes.pop(file.url, None)

    def _committed(self, db: Any, rel: str) -> None:
        size = self._sizes.get(rel)
        if size is not None:
            note_size(db, rel, size)
