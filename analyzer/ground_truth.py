"""``POST /monitor/ground-truth``: SageMaker ground-truth JSON Lines, validated and stored.

A record is ``{"groundTruthData": {"data": "1", "encoding": "CSV"}, "eventMetadata":
{"eventId": "...", "inferenceTime": "..."}, "eventVersion": "0"}``; it is joined later on
``inferenceId`` (when given) or ``eventId``. Each bad line is reported with its number and
what is wrong, and the good ones are stored. Model-quality metrics are not computed yet.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlite_utils import Database

__all__ = ["parse_ground_truth", "store_ground_truth"]

ENCODINGS = ("CSV", "JSON", "BASE64")


def _row(record: Any, received_at: float) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise ValueError("a line must be a JSON object")
    data = record.get("groundTruthData")
    if not isinstance(data, dict) or not isinstance(data.get("data"), str):
        raise ValueError('groundTruthData.data must be a string (e.g. "1")')
    encoding = str(data.get("encoding", "CSV")).upper()
    if encoding not in ENCODINGS:
        raise ValueError(f"groundTruthData.encoding must be one of {', '.join(ENCODINGS)}")
    metadata = record.get("eventMetadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("eventId"), str):
        raise ValueError("eventMetadata.eventId must be the eventId of the captured request")
    inference_id = metadata.get("inferenceId")
    inference_time = metadata.get("inferenceTime")
    return {
        "event_id": metadata["eventId"],
        "inference_id": inference_id if isinstance(inference_id, str) else None,
        "inference_time": inference_time if isinstance(inference_time, str) else None,
        "data": data["data"],
        "encoding": encoding,
        "received_at": received_at,
    }


def parse_ground_truth(
    body: bytes, *, received_at: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows to store, and ``[{"line": n, "error": ...}]`` for lines that are not records."""
    rows: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(_row(orjson.loads(line), received_at))
        except orjson.JSONDecodeError as exc:
            bad.append({"line": number, "error": f"not JSON: {exc}"})
        except ValueError as exc:
            bad.append({"line": number, "error": str(exc)})
    return rows, bad


def store_ground_truth(db: Database, rows: list[dict[str, Any]]) -> None:
    """Insert the rows (inside the writer's transaction)."""
    if rows:
        db.table("ground_truth").insert_all(rows)
