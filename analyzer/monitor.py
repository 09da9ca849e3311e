"""One monitoring tick: ingest new files, evaluate the rolling window, report closed hours.

:class:`Monitor` owns the baseline (loaded once), the :class:`~analyzer.ingest.Ingestor` and
the :class:`~analyzer.hourly.HourlyReporter`. :meth:`Monitor.tick` is what the service loop
calls every ``schedule_interval_s`` and what tests call directly with an injected clock. Each
tick stores one run row and the precomputed status document in one transaction, so
``GET /monitor/status`` is a single-row read; then it tells the alert dispatcher about a
change of state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson
from sqlite_utils import Database

from analyzer.checks import check_options, run_checks
from analyzer.evaluate import WindowVerdict, iso, monitor_doc, verdict, worst
from analyzer.hourly import HourlyReporter
from analyzer.ingest import Ingestor, IngestStats, feature_limit, read_buckets
from analyzer.profile import DatasetProfile
from analyzer.statistics_format import (
    BaselineStatistics,
    Constraints,
    parse_constraints,
    parse_statistics,
)
from analyzer.store import Store, read_status_doc, write_status_doc
from modelmon.config import ModelmonConfig

__all__ = ["HISTORY_KEEP_S", "MONITOR", "Baseline", "Monitor", "load_baseline"]

log = logging.getLogger("modelmon.analyzer.monitor")

MONITOR = "data_quality"
HISTORY_KEEP_S = 30 * 86400  # the default of analyzer.retention_days, in seconds


class AlertSink(Protocol):
    def state_changed(
        self, monitor: str, old: str | None, new: str, status: dict[str, Any]
    ) -> None:
        """Told of every change of a monitor's state."""


@dataclass
class Baseline:
    """The baseline files, parsed; ``error`` says why there is none."""

    statistics: BaselineStatistics | None
    constraints: Constraints | None
    constraints_doc: dict[str, Any] | None
    info: dict[str, Any]


def _read_json(path: Path) -> dict[str, Any]:
    doc = orjson.loads(path.read_bytes())
    if not isinstance(doc, dict):
        raise ValueError("the top level is not a JSON object")
    return doc


def load_baseline(config: ModelmonConfig) -> Baseline:
    """Read ``analyzer.baseline``; a missing or bad file gives a baseline with an error."""
    paths = config.analyzer.baseline
    info: dict[str, Any] = {
        "statistics": str(paths.statistics),
        "constraints": str(paths.constraints),
        "error": None,
    }
    try:
        statistics = parse_statistics(_read_json(paths.statistics))
    except FileNotFoundError:
        info["error"] = (
            f"no baseline statistics at {paths.statistics}: run `modelmon baseline --data "
            "TRAINING.csv` or set analyzer.baseline.statistics"
        )
        return Baseline(None, None, None, info)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        info["error"] = f"cannot use {paths.statistics}: {exc}"
        return Baseline(None, None, None, info)
    try:
        constraints_doc = _read_json(paths.constraints)
    except FileNotFoundError:
        log.warning("no %s: SageMaker's default constraints apply", paths.constraints)
        constraints_doc = {"version": 0.0, "features": []}
    except (OSError, ValueError) as exc:
        info["error"] = f"cannot use {paths.constraints}: {exc}"
        return Baseline(None, None, None, info)
    try:
        constraints = parse_constraints(constraints_doc)
    except (ValueError, KeyError, TypeError) as exc:
        info["error"] = f"cannot use {paths.constraints}: {exc}"
        return Baseline(None, None, None, info)
    return Baseline(statistics, constraints, constraints_doc, info)


def _baseline_names(baseline: Baseline) -> list[str]:
    """Every feature name the baseline knows (always tracked, whatever the limit)."""
    names: list[str] = []
    if baseline.statistics is not None:
        names.extend(baseline.statistics.features)
    if baseline.constraints is not None:
        names.extend(baseline.constraints.features)
    return names


def prune(db: Database, cutoff: float, window_start: float) -> None:
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


class Monitor:
    """The data-quality monitor of one endpoint; :meth:`tick` runs one pass."""

    def __init__(
        self,
        config: ModelmonConfig,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        alerts: AlertSink | None = None,
        report_grace_s: float | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.alerts = alerts
        self.baseline = load_baseline(config)
        self.limit = feature_limit(config, _baseline_names(self.baseline))
        self.ingestor = Ingestor(store, config, clock=clock, limit=self.limit)
        self.reporter = HourlyReporter(
            config,
            store,
            self.check,
            baseline_constraints=self.baseline.constraints_doc,
            grace_s=report_grace_s,
            limit=self.limit,
        )
        self.last_ingest = IngestStats()
        self.last_error: str | None = None
        self.ticks = 0
        self.last_tick_s: float | None = None
        self._state: str | None = None
        self._loaded = False
        self._lock = asyncio.Lock()

    # -- evaluation ------------------------------------------------------------------------
    def check(self, profile: DatasetProfile | None) -> WindowVerdict:
        """Run the checks on a profile against the baseline (blocking, CPU)."""
        samples = profile.item_count if profile is not None else 0
        if self.baseline.statistics is None or self.baseline.constraints is None:
            return verdict(None, samples, self.config.analyzer.min_samples)
        if profile is None or samples == 0:
            return verdict(object(), 0, self.config.analyzer.min_samples)
        result = run_checks(
            self.baseline.statistics,
            self.baseline.constraints,
            profile,
            **check_options(self.config.analyzer),
        )
        return verdict(result, samples, self.config.analyzer.min_samples, profile)

    def window(self, now: float) -> tuple[float, float]:
        """The rolling window at ``now``: whole buckets starting in the last ``window_s``."""
        bucket = self.config.analyzer.bucket_s
        start = -(-(now - self.config.analyzer.window_s) // bucket) * bucket
        return float(start), now

    def window_profile(self, now: float) -> DatasetProfile | None:
        start, end = self.window(now)
        return read_buckets(self.store, start, end, self.clock, self.limit)

    def _evaluate(self, now: float) -> dict[str, Any]:
        start, end = self.window(now)
        window_verdict = self.check(self.window_profile(now))
        monitors: dict[str, dict[str, Any]] = {
            MONITOR: monitor_doc(
                window_verdict,
                window_start=start,
                window_end=end,
                run_id=None,
                min_samples=self.config.analyzer.min_samples,
                baseline=self.baseline.info,
            )
        }
        doc: dict[str, Any] = {
            "state": worst(m["state"] for m in monitors.values()),
            "monitors": monitors,
            "last_run": iso(now),
            "last_run_epoch": now,
            "endpoint": {
                "name": self.config.endpoint.name,
                "variant": self.config.endpoint.variant,
            },
        }

        def commit(db: Database) -> int:
            cursor = db.execute(
                "INSERT INTO runs(kind, time, time_epoch, window_start, window_end, state, "
                "samples, features, violations) VALUES ('window', ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    iso(now),
                    now,
                    iso(start),
                    iso(end),
                    window_verdict.state,
                    window_verdict.samples,
                    orjson.dumps(window_verdict.features).decode(),
                    orjson.dumps(window_verdict.violations).decode(),
                ],
            )
            run_id = int(cursor.lastrowid or 0)
            monitors[MONITOR]["run_id"] = run_id
            write_status_doc(db, doc)
            prune(db, now - self.config.analyzer.retention_days * 86400, start)
            return run_id

        self.store.write(commit)
        return doc

    # -- the tick --------------------------------------------------------------------------
    async def load_state(self) -> None:
        """Remember the state stored by the last run (so a restart re-sends no alert)."""
        stored = await self.store.aread(read_status_doc)
        if stored is not None:
            self._state = stored.get("monitors", {}).get(MONITOR, {}).get("state")
        self._loaded = True

    async def tick(self) -> dict[str, Any]:
        """Ingest, evaluate, report; returns the status document stored for this run."""
        async with self._lock:
            if not self._loaded:
                await self.load_state()
            started = time.perf_counter()
            self.last_ingest = await asyncio.to_thread(self.ingestor.run_once)
            now = self.clock()
            doc = await asyncio.to_thread(self._evaluate, now)
            await asyncio.to_thread(self.reporter.run, now)
            self.ticks += 1
            self.last_tick_s = time.perf_counter() - started
            new = doc["monitors"][MONITOR]["state"]
            old, self._state = self._state, new
            if new != old and self.alerts is not None:
                self.alerts.state_changed(MONITOR, old, new, doc)
            return doc
