"""Many rows in one ``INSERT`` statement.

The model-quality join stores a batch of labels with this, writes the bits of the label
batches a chunk joined (an insert whose rows all exist: ``ON CONFLICT … DO UPDATE``;
:mod:`analyzer.store.model_quality_claims`) and a run's pages
(:mod:`analyzer.store.model_quality_runs`), inside the caller's transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from itertools import chain
from typing import Any

__all__ = ["INSERT_ROWS", "insert_rows"]

# rows per INSERT statement (at most 5 parameters a row here: under SQLite's 32,766)
INSERT_ROWS = 4000


def insert_rows(
    conn: sqlite3.Connection, head: str, rows: Sequence[tuple[Any, ...]], tail: str = ""
) -> int:
    """``head VALUES (…), (…), … tail`` over the rows (a ``?`` per value), a few thousand
    per statement; returns how many rows went in.

    One statement of many rows is one step that SQLite runs without Python's GIL, so the
    ingest thread decodes the next chunk meanwhile; ``executemany`` would take the GIL back
    after every row, and wait for it each time the other thread is busy.
    """
    if not rows:
        return 0
    width = len(rows[0])
    one = "(" + ", ".join(["?"] * width) + ")"
    per = max(1, min(INSERT_ROWS, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
    added = 0
    for first in range(0, len(rows), per):
        part = rows[first : first + per]
        added += conn.execute(
            f"{head} VALUES {','.join([one] * len(part))}{tail}", list(chain.from_iterable(part))
        ).rowcount
    return added
