"""The SQL behind the analyzer's HTTP API: what the web handlers read and write.

The handlers in ``analyzer.web`` hold no SQL: they hand these functions to the store
(``await store.aread(fn)`` on a read connection, ``await store.awrite(fn)`` in the writer's
transaction), so that SQLite is only touched in ``analyzer.store`` and off the event loop.

Examples
--------
>>> import tempfile, pathlib
>>> from analyzer.store.database import Store, add_counters
>>> with tempfile.TemporaryDirectory() as tmp:
...     store = Store(pathlib.Path(tmp) / "m.db")
...     store.start()
...     store.write(lambda db: add_counters(db, {"records": 3}))
...     doc, counters = store.read(read_snapshot)
...     runs = store.read(lambda conn: read_runs(conn, kind=None, before=None, limit=10))
...     store.read(lambda conn: read_counter(conn, "records")), doc, runs
...     store.close()
(3, None, [])
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlite_utils import Database

from analyzer.store.database import StoreError, add_counters, read_counters, read_status_doc
from analyzer.store.ground_truth import Row, store_ground_truth
from analyzer.store.model_quality_labels import store_labels

__all__ = [
    "READ_ERRORS",
    "StoredRun",
    "read_counter",
    "read_history",
    "read_run",
    "read_runs",
    "read_snapshot",
    "store_ground_truth_body",
]

# What a read can raise when the database is gone or broken (health reports it, not a 500).
READ_ERRORS = (sqlite3.Error, StoreError)
_COLUMNS = "id, kind, time, hour, window_start, window_end, state, samples, violations, report_dir"


def read_snapshot(conn: sqlite3.Connection) -> tuple[dict[str, Any] | None, dict[str, int]]:
    """The stored status document and the counters (one state of both in
    :meth:`~analyzer.store.database.Store.read`'s read transaction)."""
    return read_status_doc(conn), read_counters(conn)


def read_counter(conn: sqlite3.Connection, name: str) -> int:
    """One counter's value (0 when it was never counted)."""
    row = conn.execute("SELECT value FROM counters WHERE name = ?", [name]).fetchone()
    return int(row[0]) if row else 0


def _summary(row: tuple[Any, ...]) -> dict[str, Any]:
    run_id, kind, time, hour, start, end, state, samples, violations, report_dir = row
    return {
        "id": run_id,
        "kind": kind,
        "time": time,
        "hour": hour,
        "window": {"start": start, "end": end},
        "state": state,
        "samples": samples,
        "violations": len(orjson.loads(violations or "[]")),
        "report_dir": report_dir,
    }


def read_runs(
    conn: sqlite3.Connection, kind: str | None, before: int | None, limit: int | None
) -> list[dict[str, Any]]:
    """Run summaries, newest first: of ``kind`` (all when None), with ids below ``before``."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM runs WHERE (?1 IS NULL OR kind = ?1) "
        "AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3",
        [kind, before, limit],
    ).fetchall()
    return [_summary(row) for row in rows]


@dataclass(frozen=True)
class StoredRun:
    """One stored run: its summary, its per-feature results, its violations, its reports."""

    summary: dict[str, Any]
    features: dict[str, Any]
    violations: list[Any]
    reports: list[tuple[str, bytes]]


def read_run(conn: sqlite3.Connection, run_id: int) -> StoredRun | None:
    """The run ``run_id`` with its stored report files (name, body), or None."""
    found = conn.execute(f"SELECT {_COLUMNS}, features FROM runs WHERE id = ?", [run_id]).fetchone()
    if found is None:
        return None
    reports = conn.execute(
        "SELECT name, body FROM run_reports WHERE run_id = ?", [run_id]
    ).fetchall()
    *columns, features = found
    return StoredRun(
        summary=_summary(tuple(columns)),
        features=orjson.loads(features or "{}"),
        violations=orjson.loads(columns[8] or "[]"),
        reports=[(name, body) for name, body in reports],
    )


def read_history(conn: sqlite3.Connection, max_points: int = 300) -> list[dict[str, Any]]:
    """Window runs of the last day, oldest first (by their time: a backfill stores runs of
    the past after newer ones), at most ``max_points`` of them."""
    rows = conn.execute(
        "SELECT id, time, state, features FROM runs WHERE kind = 'window' "
        "AND time_epoch >= (SELECT MAX(time_epoch) FROM runs) - 86400 ORDER BY time_epoch, id"
    ).fetchall()
    step = max(1, -(-len(rows) // max_points))
    picked = rows[::step]
    if rows and picked[-1] is not rows[-1]:
        picked.append(rows[-1])
    history = []
    for run_id, time, state, features in picked:
        feats = orjson.loads(features or "{}")
        history.append(
            {
                "run_id": run_id,
                "time": time,
                "state": state,
                "features": {
                    name: {k: info.get(k) for k in ("distance", "threshold", "state")}
                    for name, info in feats.items()
                },
            }
        )
    return history


def store_ground_truth_body(
    db: Database,
    *,
    rows: list[Row],
    counts: Mapping[str, int],
    labels: tuple[Sequence[tuple[str, str]], Counter[str]] | None = None,
    received_at: float = 0.0,
    window_s: int = 0,
) -> None:
    """Store the ground-truth rows of one body, its counters and (model quality on) its
    labels into the join: one transaction, so a body is stored whole or not at all."""
    store_ground_truth(db, rows)
    add_counters(db, counts)
    if labels is not None:
        store_labels(db, labels[0], labels[1], received_at, window_s)
