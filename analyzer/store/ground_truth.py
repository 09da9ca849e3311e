"""The ``ground_truth`` table: the rows of ``POST /monitor/ground-truth`` bodies.

A row is what :class:`analyzer.ingest.ground_truth.GroundTruthIntake` reads from one record,
in the order of :data:`COLUMNS`.
"""

from __future__ import annotations

from sqlite_utils import Database

__all__ = ["COLUMNS", "Row", "store_ground_truth"]

COLUMNS = ("event_id", "inference_id", "inference_time", "data", "encoding", "received_at")
Row = tuple[str, str | None, str | None, str, str, float]


def store_ground_truth(db: Database, rows: list[Row]) -> None:
    """Insert the rows (inside the writer's transaction)."""
    if rows:
        db.table("ground_truth").insert_all(dict(zip(COLUMNS, row, strict=True)) for row in rows)
