"""Keeping the database flat: each kind of row is kept only as long as something needs it.

Run inside every window run's transaction (after ``analyzer.retention_days`` removed what is
older), so the SQLite file stops growing once the horizons below have passed, whatever the
traffic:

- **Buckets** (one profile per ``bucket_s``): the rolling window needs the ones starting in
  the last ``window_s``, and a window run keeps its exact ``statistics.json`` for
  ``run_detail_s``. Older buckets are merged into ONE row per hour (``start`` = the hour,
  ``width`` = 3600), which the hour's report (and its re-report when late data arrives) merges
  like any other bucket of the hour. An hour row keeps only the features the limit always
  tracks (the baseline's, the configured columns) and the predictions; the client-chosen
  others join its untracked tally, so what an hour keeps does not depend on what clients send
  (a report written from it shows them as ``(more extra columns)``; with the defaults an hour
  is reported long before its buckets are merged). Without names to keep (no baseline, no
  configured columns) an hour row keeps to ``analyzer.max_features`` like a bucket. Hour rows
  go at ``retention_days``.
- **Window runs** (one per tick): full for ``run_detail_s``; then a summary (the violations'
  types and features without their descriptions; per feature only the state, distance and
  threshold that the report's history chart reads); after a day (the history chart's span)
  the per-feature part goes too. A model-quality run's summary keeps per metric its value,
  standard deviation, threshold and state and per estimate its value, low and high
  (``store.model_quality_history.history_detail``: a few numbers per metric), and keeps them
  until ``retention_days``: the report's model-quality chart spans the retention. Hourly runs
  (one per hour, SageMaker's report files) stay whole until ``retention_days``.
- **Files read** (one small row per capture file): a row is forgotten once its file is gone
  from disk (its path sorts before the oldest file listed: paths sort by hour) and its hour
  is older than ``retention_days``, so a file still on disk is never read twice.
- **Ground truth**: the raw rows of ``POST /monitor/ground-truth`` bodies (``ground_truth``)
  go at ``retention_days`` after they were received (the join's own labels go with their
  predictions, ``store.model_quality.prune``). The read state of a ground-truth folder's file
  (``mq_gt_files``) is forgotten as a capture file's is: once the file is gone from disk (its
  path sorts before the oldest file listed: ``yyyy/mm/dd/hh/…`` sorts by hour) and its hour is
  older than ``retention_days``; a file still on disk is never read twice.
- **Pages**: a new database is created with ``auto_vacuum=INCREMENTAL``; when the free pages
  pass a quarter of the pages in use, all but an eighth of those are given back to the file
  system (the rest is reused by the next writes).

Work per call is bounded (at most :data:`BATCH` runs change per call; the rest next time).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from sqlite_utils import Database

from analyzer.monitors.data_quality.cardinality import FeatureLimit
from analyzer.monitors.data_quality.profile import DatasetProfile, ProfileError
from analyzer.store.database import quarantine_bucket
from analyzer.store.model_quality_history import KIND as MODEL_QUALITY
from analyzer.store.model_quality_history import history_detail

__all__ = [
    "BATCH",
    "FULL",
    "HISTORY_S",
    "HOUR_S",
    "SUMMARY",
    "compact_buckets",
    "forget_files",
    "forget_ground_truth",
    "forget_label_files",
    "give_back_pages",
    "summarize_runs",
    "summary_features",
    "summary_violations",
    "tidy",
]

log = logging.getLogger("modelmon.analyzer.retention")

HOUR_S = 3600
HISTORY_S = 86_400  # what the report's history chart shows (store.queries.read_history)
FULL, SUMMARY, BARE = 2, 1, 0
BATCH = 1000
MAX_PAGES_GIVEN = 10_000  # per call (~0.4 s); the rest at the next run
GROUND_TRUTH_BATCH = 20_000  # raw ground-truth rows looked at per run (333/s at a run a minute)
_HISTORY_KEYS = ("state", "distance", "threshold")


def compact_buckets(
    db: Database, before: float, limit: FeatureLimit | None, now: float
) -> list[int]:
    """Merge the buckets that start before ``before`` into one row per hour that keeps only
    ``limit.keep`` and the predictions; returns the hours rewritten. A bucket that cannot be
    read is quarantined, never merged."""
    rows = db.execute(
        "SELECT start FROM buckets WHERE start < ? AND width < ? ORDER BY start",
        [before, HOUR_S],
    ).fetchall()
    hours = sorted({int(start) - int(start) % HOUR_S for (start,) in rows})
    for hour in hours:
        _compact_hour(db, hour, min(hour + HOUR_S, before), limit, now)
    return hours


def _compact_hour(
    db: Database, hour: int, end: float, limit: FeatureLimit | None, now: float
) -> None:
    rows = db.execute(
        "SELECT start, profile, records FROM buckets WHERE start >= ? AND start < ? ORDER BY start",
        [hour, end],
    ).fetchall()
    merged: DatasetProfile | None = None
    records = 0
    for start, blob, n in rows:
        try:
            profile = DatasetProfile.from_bytes(blob)
        except ProfileError as exc:
            quarantine_bucket(db, int(start), str(exc), now)
            continue
        records += int(n)
        if merged is None:
            merged = profile
            merged.set_limit(limit)
        else:
            merged.merge(profile)
    db.execute("DELETE FROM buckets WHERE start >= ? AND start < ?", [hour, end])
    if merged is not None:
        if limit is not None and limit.keep:
            merged.set_limit(FeatureLimit(0, limit.keep | frozenset(merged.predictions)))
        db.execute(
            "INSERT INTO buckets(start, width, profile, records, updated_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [hour, HOUR_S, merged.to_bytes(), records, now],
        )


def summary_violations(violations: Any) -> list[Any]:
    """A run's violations without their descriptions (their number, types and features)."""
    if not isinstance(violations, list):
        return []
    return [
        {k: v.get(k) for k in ("feature_name", "constraint_check_type")}
        if isinstance(v, dict)
        else v
        for v in violations
    ]


def summary_features(features: Any) -> dict[str, Any]:
    """Per feature only what the report's history chart reads (state, distance, threshold)."""
    if not isinstance(features, dict):
        return {}
    return {
        name: {k: info.get(k) for k in _HISTORY_KEYS} if isinstance(info, dict) else info
        for name, info in features.items()
    }


def summarize_runs(db: Database, detail_before: float, bare_before: float) -> int:
    """Summarize the non-hourly runs older than ``detail_before`` and strip the per-feature
    part of those older than ``bare_before`` (not of model-quality runs: their summary stays
    for the chart); returns how many rows changed (≤ 2 × BATCH)."""
    rows = db.execute(
        "SELECT id, kind, features, violations FROM runs WHERE detail = ? AND kind != 'hourly' "
        "AND time_epoch < ? ORDER BY time_epoch LIMIT ?",
        [FULL, detail_before, BATCH],
    ).fetchall()
    for run_id, kind, features, violations in rows:
        feats = orjson.loads(features or "{}")
        if kind == "window":
            feats = summary_features(feats)
        elif kind == MODEL_QUALITY:
            feats = history_detail(feats)
        db.execute(
            "UPDATE runs SET detail = ?, features = ?, violations = ? WHERE id = ?",
            [
                SUMMARY,
                orjson.dumps(feats).decode(),
                orjson.dumps(summary_violations(orjson.loads(violations or "[]"))).decode(),
                run_id,
            ],
        )
    bare = db.execute(
        "UPDATE runs SET detail = ?, features = '{}' WHERE id IN (SELECT id FROM runs "
        "WHERE detail = ? AND kind NOT IN ('hourly', ?) AND time_epoch < ? ORDER BY time_epoch"
        " LIMIT ?)",
        [BARE, SUMMARY, MODEL_QUALITY, bare_before, BATCH],
    ).rowcount
    return len(rows) + max(0, bare)


def give_back_pages(db: Database) -> int:
    """With ``auto_vacuum=INCREMENTAL``: when the free pages pass a quarter of the pages in use,
    give back all but an eighth of them (at most MAX_PAGES_GIVEN a call); returns how many."""
    if db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
        return 0
    pages = int(db.execute("PRAGMA page_count").fetchone()[0])
    free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
    used = pages - free
    if free <= max(64, used // 4):
        return 0
    give = min(free - used // 8, MAX_PAGES_GIVEN)
    # Python's sqlite3 steps this pragma once, and each step frees one page
    for _ in range(give):
        db.execute("PRAGMA incremental_vacuum(1)")
    return give


def tidy(
    db: Database,
    *,
    now: float,
    buckets_before: float,
    run_detail_s: float,
    limit: FeatureLimit | None,
    kept_after: float | None = None,
) -> None:
    """All of the above, inside the caller's (the window run's) transaction: buckets starting
    before ``buckets_before`` (the start of the window of ``now - run_detail_s``) into hour
    rows, runs into summaries, ground-truth rows received before ``kept_after`` (the
    ``retention_days`` cutoff) deleted, free pages back."""
    compact_buckets(db, buckets_before, limit, now)
    summarize_runs(db, now - run_detail_s, now - max(HISTORY_S, run_detail_s))
    if kept_after is not None:
        forget_ground_truth(db, kept_after)
    give_back_pages(db)


def forget_files(db: Database, oldest_listed: str, older_than: str, prefix: str = "") -> int:
    """Delete the rows of files fully read whose path sorts before both ``oldest_listed``
    (the oldest sealed file on disk) and ``older_than`` (``endpoint/variant/yyyy/mm/dd/hh`` of
    the retention cutoff), and at or after ``prefix`` (a remote tree's rows are keyed by URL:
    ``{capture_url}/endpoint/variant/…``); returns how many."""
    bound = min(oldest_listed, older_than)
    return int(
        db.execute(
            "DELETE FROM files WHERE done = 1 AND path >= ? AND path < ?", [prefix, bound]
        ).rowcount
    )


def forget_ground_truth(db: Database, before: float, batch: int = GROUND_TRUTH_BATCH) -> int:
    """Delete the raw ground-truth rows (``POST /monitor/ground-truth``) received before
    ``before``; returns how many. Rows are stored in the order received, so only the oldest
    ``batch`` (by id: no scan of the table, no index on the time) are looked at per call."""
    return int(
        db.execute(
            "DELETE FROM ground_truth WHERE id IN (SELECT id FROM (SELECT id, received_at FROM "
            "ground_truth ORDER BY id LIMIT ?) WHERE received_at < ?)",
            [batch, before],
        ).rowcount
    )


def forget_label_files(db: Database, oldest_listed: str | None, before: float) -> int:
    """Delete the read state (``mq_gt_files``) of ground-truth files whose path (relative to
    the folder, ``yyyy/mm/dd/hh/…``) sorts before both ``oldest_listed`` (the oldest file on
    disk; None: none is) and the hour of ``before`` (the retention cutoff); returns how many."""
    hour = time.strftime("%Y/%m/%d/%H", time.gmtime(before))
    bound = hour if oldest_listed is None else min(oldest_listed, hour)
    return int(db.execute("DELETE FROM mq_gt_files WHERE path < ?", [bound]).rowcount)
