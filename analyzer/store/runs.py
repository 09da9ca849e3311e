"""A monitoring tick's writes of runs: the run row of an evaluation, and retention.

Both run inside the tick's one write transaction (:meth:`analyzer.service.monitor.Monitor`),
with the precomputed status document.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlite_utils import Database

from analyzer.store.database import write_status_doc

__all__ = ["NewRun", "insert_run", "prune_history", "store_tick"]


@dataclass
class NewRun:
    """One evaluation's run row; its id is written into ``section["run_id"]`` (the section of
    the status document that reports it) before the status document is stored."""

    kind: str
    time: str
    time_epoch: float
    window_start: str
    window_end: str
    state: str
    samples: int
    features: Any
    violations: Any
    section: dict[str, Any] = field(default_factory=dict)


def insert_run(db: Database, run: NewRun) -> int:
    """Insert one run row (``features`` and ``violations`` stored as JSON); its id."""
    cursor = db.execute(
        "INSERT INTO runs(kind, time, time_epoch, window_start, window_end, state, "
        "samples, features, violations) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            run.kind,
            run.time,
            run.time_epoch,
            run.window_start,
            run.window_end,
            run.state,
            run.samples,
            orjson.dumps(run.features).decode(),
            orjson.dumps(run.violations).decode(),
        ],
    )
    return int(cursor.lastrowid or 0)


def store_tick(
    db: Database,
    runs: Sequence[NewRun],
    doc: Mapping[str, Any],
    cutoff: float,
    window_start: float,
    then: Callable[[Database], None] | None = None,
) -> None:
    """A tick's one transaction: its runs (each id into its section), the status document
    ``doc`` (which holds those sections), retention (:func:`prune_history`) and ``then``
    (the tidying of :func:`analyzer.store.retention.tidy`)."""
    for run in runs:
        run.section["run_id"] = insert_run(db, run)
    write_status_doc(db, doc)
    prune_history(db, cutoff, window_start)
    if then is not None:
        then(db)


def prune_history(db: Database, cutoff: float, window_start: float) -> None:
    """Retention (``analyzer.retention_days``), inside the run's transaction: runs (window and
    hourly, with their stored reports) older than ``cutoff``, and the buckets and hours that
    start before it (never one of the current window)."""
    old = [row[0] for row in db.execute("SELECT id FROM runs WHERE time_epoch < ?", [cutoff])]
    for i in range(0, len(old), 500):
        ids = old[i : i + 500]
        marks = ",".join("?" * len(ids))
        db.execute(f"DELETE FROM run_reports WHERE run_id IN ({marks})", ids)
        db.execute(f"DELETE FROM runs WHERE id IN ({marks})", ids)
    oldest = min(cutoff, window_start)
    db.execute("DELETE FROM buckets WHERE start < ?", [oldest])
    db.execute("DELETE FROM hours WHERE hour + 3600 <= ? AND version = reported_version", [oldest])
