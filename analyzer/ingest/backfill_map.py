"""The map of ``modelmon backfill``: one capture file → its chunks, as the service's ingest
would commit them.

A task names a local file (its path) or a remote object (its URL and its listing entry); the
worker reads it itself, on whatever executor backend runs the map (in-process, local processes,
Dask: :mod:`analyzer.ingest.executor`). It decodes and profiles the file in the same chunks,
with the same code, as the running service (:class:`~analyzer.ingest.ingestor.Ingestor`), and
returns each chunk's bucket profiles (serialized), good and bad record counts and predictions
(:class:`~analyzer.store.file_sources.FileRead`). The caller merges them into the stored
buckets chunk by chunk in file order (:func:`~analyzer.store.file_sources.commit_files`): the
rows are those the service's own ingest of the same files would write.

A local file that cannot be read, or an object whose content is broken, is one
``unreadable_file`` (as in the service). A remote read that fails for a reason of the store
(unreachable, denied) raises: the backend retries the task (Dask: ``analyzer.dask.retries``),
then the backfill stops with that error; what it committed stays, and a re-run goes on.
"""

from __future__ import annotations

import logging
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from analyzer.ingest.capture_files import read_pieces
from analyzer.ingest.ingestor import Ingestor
from analyzer.ingest.remote_files import RemoteFile, opener_of
from analyzer.monitors.data_quality.cardinality import FeatureLimit
from analyzer.store.database import Store
from analyzer.store.file_sources import FileRead, ReadChunk
from modelmon.config import ModelmonConfig

__all__ = ["FileTask", "Profiling", "read_file"]

log = logging.getLogger("modelmon.analyzer.backfill")


@dataclass(frozen=True)
class FileTask:
    """One file to read: its key in ``files`` (the path below the tree's root, as the service
    keys a local file; or the object's URL, as it keys a remote one) and where it is."""

    key: str
    path: str | None = None  # a local file
    remote: RemoteFile | None = None  # a remote object: the listing's entry


@dataclass(frozen=True)
class Profiling:
    """What every task needs: the config (payload, buckets, limits) and the features tracked."""

    config: ModelmonConfig
    limit: FeatureLimit


class _FileReader(Ingestor):
    """The service's chunking and profiling, without a store."""

    def __init__(self, profiling: Profiling) -> None:
        super().__init__(cast(Store, None), profiling.config, limit=profiling.limit)
        self._profiling = profiling

    def read(self, task: FileTask) -> FileRead:
        out = FileRead(task.key)
        if task.remote is not None:  # opened with this process's client (one per worker)
            path, opener = opener_of(task.remote)
            out.size = task.remote.size
            pieces = read_pieces(path, 0, self._max_line_bytes, opener)
            broken: tuple[type[BaseException], ...] = (EOFError, zlib.error)
        else:
            path, pieces = Path(str(task.path)), None
            broken = (OSError, EOFError, zlib.error)
        try:
            for chunk in self._chunks(path, 0, pieces):
                profiles, records, bad, extracted = self._chunk_profiles(task.key, chunk)
                blobs = {start: profile.to_bytes() for start, profile in profiles.items()}
                out.chunks.append(ReadChunk(blobs, records, bad, extracted))
                out.offset += chunk.size
                out.lines += chunk.n_lines
        except FileNotFoundError:
            log.warning("%s: removed before it was read; skipped", task.key)
            out.missing = True
        except broken as exc:
            log.error("%s: unreadable after line %d (%s); counted as bad", task.key, out.lines, exc)
            out.chunks.append(ReadChunk({}, 0, Counter({"unreadable_file": 1})))
        return out


def read_file(profiling: Profiling, task: FileTask) -> FileRead:
    """The map function (picklable with :func:`functools.partial`)."""
    return _FileReader(profiling).read(task)
