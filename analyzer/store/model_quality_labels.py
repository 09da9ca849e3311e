"""Labels into the join, from ``POST /monitor/ground-truth`` and from the ground-truth folder.

Each runs inside one write transaction: the labels, their counters and, for a file, its new
read offset and the bad lines found in it, so a ``kill -9`` loses or doubles nothing. The
read state of the folder is ``mq_gt_files`` (path relative to the folder → offset, lines,
labels, bad lines); the bad lines themselves (file, line number, what is wrong) are kept in
``mq_gt_bad``, at most :data:`MAX_BAD_KEPT` (the newest), for the status and the log.

Counters: ``model_quality:labels`` (new labels), ``model_quality:label_duplicates`` (a key
that already had a label: not applied), ``model_quality:bad_labels:{reason}`` (a record
whose label could not be read with ``ground_truth_attribute``),
``model_quality:ground_truth_files`` (files begun) and
``model_quality:ground_truth_bad_lines`` (bad lines of files, unreadable labels included).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlite_utils import Database

from analyzer.store.database import add_counters
from analyzer.store.model_quality import add_labels

__all__ = [
    "MAX_BAD_KEPT",
    "FileChunk",
    "bad_label_lines",
    "commit_file_chunk",
    "create_label_file_tables",
    "file_offsets",
    "store_labels",
]

MAX_BAD_KEPT = 1000


def create_label_file_tables(db: Database) -> None:
    """The ground-truth folder's read state and bad lines (idempotent; migration m003)."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS mq_gt_files (path TEXT PRIMARY KEY, offset INTEGER NOT NULL,"
        " lines INTEGER NOT NULL, labels INTEGER NOT NULL, bad INTEGER NOT NULL)"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS mq_gt_bad (id INTEGER PRIMARY KEY, path TEXT NOT NULL,"
        " line INTEGER NOT NULL, error TEXT NOT NULL, at REAL NOT NULL)"
    )


def store_labels(
    db: Database,
    labels: Sequence[tuple[str, str]],
    skipped: Counter[str],
    received_at: float,
    window_s: int,
) -> tuple[int, int]:
    """Add labels and count them (inside the caller's transaction); ``(new, duplicates)``."""
    new, duplicates = add_labels(db, labels, received_at, window_s) if labels else (0, 0)
    deltas = {"model_quality:labels": new, "model_quality:label_duplicates": duplicates}
    deltas.update({f"model_quality:bad_labels:{r}": n for r, n in skipped.items()})
    add_counters(db, deltas)
    return new, duplicates


@dataclass
class FileChunk:
    """Whole lines of one ground-truth file, read from ``start`` to ``end`` (bytes)."""

    path: str  # relative to the folder
    start: int
    end: int
    lines: int  # the file's lines up to ``end``
    labels: list[tuple[str, str]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    bad_lines: list[tuple[int, str]] = field(default_factory=list)  # the first ones, numbered
    bad_count: int = 0  # every bad line, unreadable labels included


def file_offsets(conn: sqlite3.Connection) -> dict[str, tuple[int, int]]:
    """path → (offset, lines) of every ground-truth file begun."""
    rows = conn.execute("SELECT path, offset, lines FROM mq_gt_files").fetchall()
    return {path: (int(offset), int(lines)) for path, offset, lines in rows}


def commit_file_chunk(
    db: Database, chunk: FileChunk, received_at: float, window_s: int
) -> tuple[int, int] | None:
    """Store a chunk and move the file's offset, in the caller's transaction; ``(new,
    duplicates)``, or None when the stored offset is not where the chunk began (another
    reader got there first: nothing is stored)."""
    row = db.execute("SELECT offset FROM mq_gt_files WHERE path = ?", [chunk.path]).fetchone()
    if (row[0] if row else 0) != chunk.start:
        return None
    new, duplicates = store_labels(db, chunk.labels, chunk.skipped, received_at, window_s)
    if chunk.bad_lines:
        db.conn.executemany(
            "INSERT INTO mq_gt_bad (path, line, error, at) VALUES (?, ?, ?, ?)",
            [(chunk.path, line, error[:500], received_at) for line, error in chunk.bad_lines],
        )
        db.execute(
            "DELETE FROM mq_gt_bad WHERE id <= (SELECT max(id) FROM mq_gt_bad) - ?",
            [MAX_BAD_KEPT],
        )
    db.execute(
        "INSERT INTO mq_gt_files (path, offset, lines, labels, bad) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (path) DO UPDATE SET offset = excluded.offset, lines = excluded.lines,"
        " labels = labels + excluded.labels, bad = bad + excluded.bad",
        [chunk.path, chunk.end, chunk.lines, new + duplicates, chunk.bad_count],
    )
    add_counters(
        db,
        {
            "model_quality:ground_truth_files": int(row is None),
            "model_quality:ground_truth_bad_lines": chunk.bad_count,
        },
    )
    return new, duplicates


def bad_label_lines(conn: sqlite3.Connection, limit: int = 100) -> list[dict[str, Any]]:
    """The newest bad lines of ground-truth files: ``{"file", "line", "error"}``."""
    rows = conn.execute(
        "SELECT path, line, error FROM mq_gt_bad ORDER BY id DESC LIMIT ?", [limit]
    ).fetchall()
    return [{"file": path, "line": int(line), "error": error} for path, line, error in rows]
