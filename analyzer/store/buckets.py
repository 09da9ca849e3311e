"""The ingest step's SQL: the read state of capture files, the bucket profiles, the hours.

:func:`commit_chunk` is the one transaction of an ingested chunk (see
:mod:`analyzer.ingest.ingestor`): it checks that the file's stored offset is still the one the
chunk started from, merges the chunk's bucket profiles into the stored ones, bumps the
``version`` of every hour touched, stores the file's new offset and line count, adds the
ingest counters and (model quality on) the chunk's predictions, all together or not at all.
:func:`merge_buckets` and :func:`read_buckets` read the stored buckets back as one profile.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Mapping

from sqlite_utils import Database

from analyzer.monitors.data_quality.cardinality import FeatureLimit
from analyzer.monitors.data_quality.profile import DatasetProfile, ProfileError
from analyzer.monitors.model_quality.predictions import Extracted
from analyzer.store.database import Store, add_counters, quarantine_bucket
from analyzer.store.model_quality import store_predictions
from analyzer.store.model_quality_blocks import ChunkBlocks

__all__ = [
    "HOUR_S",
    "FileState",
    "commit_chunk",
    "ingest_deltas",
    "merge_buckets",
    "merge_chunk",
    "read_buckets",
    "read_file_states",
]

log = logging.getLogger("modelmon.analyzer.ingest")

HOUR_S = 3600
FileState = tuple[int, int, bool]  # offset, lines, done


def read_file_states(conn: sqlite3.Connection, first: str = "") -> dict[str, FileState]:
    """Read state (offset, lines, done) of the files whose path sorts at or after ``first``."""
    rows = conn.execute(
        "SELECT path, offset, lines, done FROM files WHERE path >= ?", [first]
    ).fetchall()
    return {path: (int(offset), int(lines), bool(done)) for path, offset, lines, done in rows}


def commit_chunk(
    db: Database,
    rel: str,
    start_offset: int,
    new_offset: int,
    new_lines: int,
    done: bool,
    profiles: Mapping[int, DatasetProfile],
    records: int,
    bad: Counter[str],
    extracted: Extracted | None,
    *,
    bucket_s: int,
    limit: FeatureLimit | None,
    clock: Callable[[], float],
    quality_window_s: int = 0,
    blocks: ChunkBlocks | None = None,
) -> bool:
    """The one transaction of a chunk (runs on the writer thread); False, with nothing
    written, when the file's stored offset is no longer ``start_offset`` or it is done.
    ``blocks``: ``extracted``'s columns encoded by the ingest thread."""
    row = db.execute("SELECT offset, done FROM files WHERE path = ?", [rel]).fetchone()
    if (row[0] if row else 0) != start_offset or (row is not None and row[1]):
        return False
    merge_chunk(db, profiles, bucket_s=bucket_s, limit=limit, now=clock())
    db.execute(
        "INSERT OR REPLACE INTO files(path, offset, lines, records, bad, done) VALUES "
        "(?, ?, ?, COALESCE((SELECT records FROM files WHERE path = ?), 0) + ?, "
        "COALESCE((SELECT bad FROM files WHERE path = ?), 0) + ?, ?)",
        [rel, new_offset, new_lines, rel, records, rel, sum(bad.values()), int(done)],
    )
    counters = ingest_deltas(records, bad, int(done))
    if extracted is not None:
        store_predictions(db, extracted, quality_window_s, counters, blocks)
    add_counters(db, counters)  # one statement for the chunk's
    return True


def ingest_deltas(records: int, bad: Counter[str], files: int) -> dict[str, int]:
    """The ingest counters of ``records`` good records, ``bad`` ones and ``files`` fully read."""
    deltas = {"records": records, "bad_records": sum(bad.values()), "files": files}
    deltas.update({f"bad:{reason}": n for reason, n in bad.items()})
    return deltas


def merge_chunk(
    db: Database,
    profiles: Mapping[int, DatasetProfile],
    *,
    bucket_s: int,
    limit: FeatureLimit | None,
    now: float,
) -> None:
    """Merge a chunk's bucket profiles into the stored ones and bump the ``version`` of every
    hour they touch (inside the caller's transaction)."""
    for start, profile in sorted(profiles.items()):
        old = db.execute("SELECT profile, records FROM buckets WHERE start = ?", [start]).fetchone()
        n = profile.item_count
        if old is not None:
            try:
                merged = DatasetProfile.from_bytes(old[0])
            except ProfileError as exc:  # never merged into: moved aside, start afresh
                quarantine_bucket(db, start, str(exc), now)
            else:
                merged.set_limit(limit)
                merged.merge(profile)
                profile, n = merged, int(old[1]) + profile.item_count
        db.execute(
            "INSERT OR REPLACE INTO buckets(start, width, profile, records, updated_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [start, bucket_s, profile.to_bytes(), n, now],
        )
    for hour in sorted({start - start % HOUR_S for start in profiles}):
        db.execute(
            "INSERT INTO hours(hour, version, reported_version) VALUES (?, 1, 0) "
            "ON CONFLICT(hour) DO UPDATE SET version = version + 1",
            [hour],
        )


def merge_buckets(
    conn: sqlite3.Connection,
    start: float,
    end: float,
    unreadable: list[tuple[int, str]] | None = None,
    limit: FeatureLimit | None = None,
) -> DatasetProfile | None:
    """The merge of every stored bucket whose start is in ``[start, end)`` (None: no data),
    tracking the features ``limit`` allows (the others are tallied as untracked).

    A bucket whose profile cannot be read is left out and, when ``unreadable`` is given,
    listed there as ``(start, error)`` for the caller to quarantine (:func:`read_buckets`).
    """
    merged: DatasetProfile | None = None
    cursor = conn.execute(
        "SELECT start, profile FROM buckets WHERE start >= ? AND start < ? ORDER BY start",
        [start, end],
    )
    for bucket, blob in cursor:
        try:
            profile = DatasetProfile.from_bytes(blob)
        except ProfileError as exc:
            log.warning("bucket %d: unreadable profile left out (%s)", bucket, exc)
            if unreadable is not None:
                unreadable.append((int(bucket), str(exc)))
            continue
        if merged is None:
            merged = profile
            merged.set_limit(limit)
        else:
            merged.merge(profile)
    return merged


def read_buckets(
    store: Store,
    start: float,
    end: float,
    clock: Callable[[], float] = time.time,
    limit: FeatureLimit | None = None,
) -> DatasetProfile | None:
    """:func:`merge_buckets` on a read connection, then quarantine what could not be read
    (blocking; from a thread). A broken stored profile never stops a run."""
    unreadable: list[tuple[int, str]] = []
    merged = store.read(lambda c: merge_buckets(c, start, end, unreadable, limit))
    if unreadable:
        now = clock()

        def move(db: Database) -> None:
            for bucket, error in unreadable:
                quarantine_bucket(db, bucket, error, now)

        store.write(move)
    return merged
