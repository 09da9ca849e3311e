"""SageMaker's three report files for every closed hour, re-written when late data arrives.

An hour is reported once it has closed (its end plus ``grace_s`` is past) and its ``version``
(bumped by every ingest commit that touched one of its buckets) is newer than the version
last reported. The files land in
``{reports_dir}/{endpoint}/{schedule_name}/yyyy/mm/dd/hh/`` as ``statistics.json`` (the hour's
profile), ``constraints.json`` (the baseline constraints the hour was checked against; the
suggested ones when there is no baseline) and ``constraint_violations.json`` (only with a
baseline). Each file is written to a temporary name and renamed, so a reader never sees
half a report; the run row and the reported version are committed after the files, so a
crash in between only means the hour is written again.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlite_utils import Database

from analyzer.monitors.data_quality.cardinality import FeatureLimit
from analyzer.monitors.data_quality.evaluate import WindowVerdict, iso
from analyzer.monitors.data_quality.profile import DatasetProfile
from analyzer.monitors.data_quality.statistics_format import statistics_json, suggest_constraints
from analyzer.store.buckets import HOUR_S, read_buckets
from analyzer.store.database import Store
from analyzer.store.report_files import report_dir, write_reports
from modelmon.config import ModelmonConfig

__all__ = ["REPORT_FILES", "HourlyReporter", "hour_dir", "read_report"]

log = logging.getLogger("modelmon.analyzer.hourly")

REPORT_FILES = ("statistics.json", "constraints.json", "constraint_violations.json")
DEFAULT_GRACE_S = 60.0


def hour_dir(config: ModelmonConfig, hour: int) -> Path:
    """``{reports_dir}/{endpoint}/{schedule}/yyyy/mm/dd/hh``."""
    return report_dir(config, datetime.fromtimestamp(hour, UTC))


def read_report(blob: bytes) -> Any:
    """A report body as stored in ``run_reports`` (zlib-compressed JSON)."""
    return orjson.loads(zlib.decompress(blob))


class HourlyReporter:
    """Writes the report of every closed hour whose data changed since it was reported."""

    def __init__(
        self,
        config: ModelmonConfig,
        store: Store,
        check: Callable[[DatasetProfile | None], WindowVerdict],
        *,
        baseline_constraints: dict[str, Any] | None,
        grace_s: float | None = None,
        limit: FeatureLimit | None = None,
    ) -> None:
        self._config = config
        self.limit = limit
        self._store = store
        self._check = check
        self.constraints = baseline_constraints
        self.grace_s = DEFAULT_GRACE_S if grace_s is None else grace_s

    def pending(self, now: float) -> list[tuple[int, int]]:
        """(hour, version) of the closed hours to (re-)report, oldest first."""
        rows = self._store.read(
            lambda c: c.execute(
                "SELECT hour, version FROM hours WHERE version > reported_version "
                "AND hour + ? + ? <= ? ORDER BY hour",
                [HOUR_S, self.grace_s, now],
            ).fetchall()
        )
        return [(int(hour), int(version)) for hour, version in rows]

    def run(self, now: float) -> list[int]:
        """Report every pending hour (blocking); returns the run ids written."""
        return [self.report_hour(hour, version, now) for hour, version in self.pending(now)]

    def report_hour(self, hour: int, version: int, now: float) -> int:
        profile = read_buckets(self._store, hour, hour + HOUR_S, limit=self.limit)
        result = self._check(profile)
        docs: dict[str, Any] = {}
        if profile is not None:
            docs["statistics.json"] = statistics_json(profile)
            docs["constraints.json"] = (
                self.constraints if self.constraints is not None else suggest_constraints(profile)
            )
        if self.constraints is not None:
            docs["constraint_violations.json"] = {"violations": result.violations}
        folder = hour_dir(self._config, hour)
        write_reports(folder, docs)
        reopened = self._store.read(
            lambda c: c.execute(
                "SELECT reported_version FROM hours WHERE hour = ?", [hour]
            ).fetchone()[0]
        )

        def commit(db: Database) -> int:
            cursor = db.execute(
                "INSERT INTO runs(kind, time, time_epoch, hour, window_start, window_end, state, "
                "samples, features, violations, report_dir) "
                "VALUES ('hourly', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    iso(now),
                    now,
                    iso(hour),
                    iso(hour),
                    iso(hour + HOUR_S),
                    result.state,
                    result.samples,
                    orjson.dumps(result.features).decode(),
                    orjson.dumps(result.violations).decode(),
                    str(folder),
                ],
            )
            run_id = int(cursor.lastrowid or 0)
            for name, doc in docs.items():
                db.execute(
                    "INSERT INTO run_reports(run_id, name, body) VALUES (?, ?, ?)",
                    [run_id, name, zlib.compress(orjson.dumps(doc))],
                )
            db.execute("UPDATE hours SET reported_version = ? WHERE hour = ?", [version, hour])
            return run_id

        run_id = self._store.write(commit)
        log.info(
            "%s report for %s (%s, %d samples) in %s",
            "re-wrote" if reopened else "wrote",
            iso(hour),
            result.state,
            result.samples,
            folder,
        )
        return run_id
