"""The read state of capture files beyond the local folder: remote objects and backfills.

A remote tree's files (``analyzer.capture_url``) are keyed in ``files`` by URL and carry the
object's ``size`` when it was read: a sealed object never changes, so URL and size say that it
was read; a listing that shows another size is counted (``changed_files``), never re-read.

:func:`commit_files` is a backfill's transaction for a batch of files: each file's chunks are
merged into the stored buckets in file order, chunk by chunk, exactly as the service's ingest
merges them (:func:`analyzer.store.buckets.merge_chunk`), then each file's row and the ingest
counters. All or nothing: when any file of the batch has a row by then (the running service or
another backfill read it since the listing), nothing is written and those keys are returned.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sqlite_utils import Database

from analyzer.monitors.data_quality.cardinality import FeatureLimit
from analyzer.monitors.data_quality.profile import DatasetProfile
from analyzer.monitors.model_quality.predictions import Extracted
from analyzer.store.buckets import ingest_deltas, merge_chunk
from analyzer.store.database import add_counters
from analyzer.store.model_quality import store_predictions

__all__ = [
    "CHANGED",
    "GT_ERRORS",
    "SOURCE_ERRORS",
    "FileRead",
    "ReadChunk",
    "RemoteState",
    "commit_files",
    "count_changed",
    "count_source_error",
    "keys_read",
    "note_size",
    "read_remote_states",
]

SOURCE_ERRORS = "source_errors"  # a listing or read of the capture source failed (retried)
# a listing or read of the remote ground-truth folder failed (retried)
GT_ERRORS = "ground_truth:source_errors"
CHANGED = "changed_files"  # a remote object read before now has another size (not re-read)

RemoteState = tuple[int, int, bool, int | None]  # offset, lines, done, size


def read_remote_states(conn: sqlite3.Connection, first: str, below: str) -> dict[str, RemoteState]:
    """Read state of the files keyed in ``[first, below)`` (a remote tree's URLs)."""
    rows = conn.execute(
        "SELECT path, offset, lines, done, size FROM files WHERE path >= ? AND path < ?",
        [first, below],
    ).fetchall()
    return {
        path: (int(offset), int(lines), bool(done), None if size is None else int(size))
        for path, offset, lines, done, size in rows
    }


def note_size(db: Database, key: str, size: int) -> None:
    """The object's size beside its read state (inside the chunk's transaction)."""
    db.execute("UPDATE files SET size = ? WHERE path = ?", [size, key])


def count_changed(db: Database, changed: Iterable[tuple[str, int]]) -> int:
    """Objects read before with another size now: counted once each (the new size is kept,
    a file partly read is closed); never re-read. Returns how many."""
    n = 0
    for key, size in changed:
        db.execute("UPDATE files SET size = ?, done = 1 WHERE path = ?", [size, key])
        n += 1
    add_counters(db, {CHANGED: n})
    return n


def count_source_error(db: Database) -> None:
    add_counters(db, {SOURCE_ERRORS: 1})


def keys_read(conn: sqlite3.Connection, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` have a row in ``files`` (read, or being read, by anyone)."""
    found: set[str] = set()
    for i in range(0, len(keys), 500):
        part = list(keys[i : i + 500])
        marks = ",".join("?" * len(part))
        rows = conn.execute(f"SELECT path FROM files WHERE path IN ({marks})", part)
        found.update(str(path) for (path,) in rows)
    return found


@dataclass
class ReadChunk:
    """One chunk of a file as the service's ingest would commit it."""

    profiles: dict[int, bytes]  # bucket start -> DatasetProfile.to_bytes()
    records: int = 0
    bad: Counter[str] = field(default_factory=Counter)
    extracted: Extracted | None = None


@dataclass
class FileRead:
    """A whole file read by a backfill task: its key in ``files``, its chunks in order."""

    key: str
    offset: int = 0  # bytes of (decompressed) content read
    lines: int = 0
    size: int | None = None  # a remote object's size
    chunks: list[ReadChunk] = field(default_factory=list)
    missing: bool = False  # gone before it was read: no row written

    @property
    def records(self) -> int:
        return sum(c.records for c in self.chunks)

    @property
    def bad(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for chunk in self.chunks:
            total.update(chunk.bad)
        return total


def commit_files(
    db: Database,
    files: Sequence[FileRead],
    *,
    bucket_s: int,
    limit: FeatureLimit | None,
    clock: Callable[[], float] = time.time,
    quality_window_s: int = 0,
) -> set[str]:
    """Write a batch of whole files (see the module docstring); returns the keys already read
    (then nothing was written), or an empty set when all were written."""
    taken = keys_read(_conn(db), [f.key for f in files])
    if taken:
        return taken
    now = clock()
    for read in files:
        if read.missing:
            continue
        for chunk in read.chunks:
            profiles = {
                start: DatasetProfile.from_bytes(blob) for start, blob in chunk.profiles.items()
            }
            merge_chunk(db, profiles, bucket_s=bucket_s, limit=limit, now=now)
            if chunk.extracted is not None:
                store_predictions(db, chunk.extracted, quality_window_s)
        bad = read.bad
        db.execute(
            "INSERT INTO files(path, offset, lines, records, bad, done, size) "
            "VALUES (?, ?, ?, ?, ?, 1, ?)",
            [read.key, read.offset, read.lines, read.records, sum(bad.values()), read.size],
        )
        add_counters(db, ingest_deltas(read.records, bad, 1))
    return set()


def _conn(db: Database) -> sqlite3.Connection:
    return db.conn
