"""Many rows in one ``INSERT`` statement, bound the way the sqlite3 module binds fastest.

The model-quality join (:mod:`analyzer.store.model_quality`) stores a chunk's predictions and
a batch of labels with these, inside the caller's transaction.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from itertools import chain
from typing import Any

from analyzer.monitors.model_quality.predictions import PredictionRow

__all__ = ["INSERT_ROWS", "PREDICTION_VALUES", "bindable_predictions", "insert_rows"]

# rows per INSERT statement (7 parameters each: under SQLite's 32,766 parameters)
INSERT_ROWS = 4000


def insert_rows(conn: sqlite3.Connection, head: str, rows: Sequence[tuple[Any, ...]],
                 tail: str = "", one: str = "") -> int:  # fmt: skip
    """``head VALUES (…), (…), … tail`` over the rows, a few thousand per statement; returns
    how many rows went in. ``one``: the row's ``(…)`` (default: a ``?`` per value).

    One statement of many rows is one step that SQLite runs without Python's GIL, so the
    ingest thread decodes the next chunk meanwhile; ``executemany`` would take the GIL back
    after every row, and wait for it each time the other thread is busy.
    """
    if not rows:
        return 0
    width = len(rows[0])
    one = one or "(" + ", ".join(["?"] * width) + ")"
    per = max(1, min(INSERT_ROWS, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
    added = 0
    for first in range(0, len(rows), per):
        part = rows[first : first + per]
        added += conn.execute(
            f"{head} VALUES {','.join([one] * len(part))}{tail}", list(chain.from_iterable(part))
        ).rowcount
    return added


# A prediction row's values as the sqlite3 module binds fastest: a str, float or int is bound
# as it is, while None and bytes take the module's adapter lookup (~0.5 µs a value, with the
# GIL held: half the insert's cost). So a missing id or input row travels as the integer 0
# (never equal to a text, not even '' or '0'), a missing probability as NaN (which SQLite
# stores as NULL), the row as text, and the SQL turns them back: the stored values are the
# same as binding None and bytes.
PREDICTION_VALUES = "(?, NULLIF(?, 0), NULLIF(?, 0), ?, ?, ?, CAST(NULLIF(?, 0) AS BLOB))"


def bindable_predictions(rows: Sequence[PredictionRow]) -> list[tuple[Any, ...]]:
    """The rows with None as 0 (ids, input row) or NaN (probability), the row as text."""
    nan = math.nan
    return [
        (key, 0 if event_id is None else event_id, 0 if inference_id is None else inference_id,
         moment, prediction, nan if probability is None else probability,
         0 if row is None else row.decode())
        for key, event_id, inference_id, moment, prediction, probability, row in rows
    ]  # fmt: skip
