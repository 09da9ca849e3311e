"""One monitoring tick: ingest new files, evaluate the rolling window, report closed hours.

:class:`Monitor` owns the baseline (:class:`~analyzer.store.baseline_files.BaselineFiles`: re-read
at the start of a tick when its files changed, and on SIGHUP), the
:class:`~analyzer.ingest.ingestor.Ingestor` and the :class:`~analyzer.store.hourly.HourlyReporter`.
:meth:`Monitor.tick` is what the service loop calls every ``schedule_interval_s`` and what
tests call directly with an injected clock. Each tick stores one run row and the precomputed
status document in one transaction, so ``GET /monitor/status`` is a single-row read; then it
tells the alert dispatcher about a change of state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from analyzer.decoding.column_mapping import BY_NAME, BY_POSITION, mapping_note, positional_mapping
from analyzer.ingest.decode_process import DecodeProcess
from analyzer.ingest.ground_truth_folder import FolderStats, GroundTruthFolder
from analyzer.ingest.ingestor import Ingestor, IngestStats, feature_limit
from analyzer.ingest.remote_ground_truth import RemoteGroundTruthFolder
from analyzer.ingest.remote_ingest import RemoteIngestor
from analyzer.monitors.contract import Evaluation, iso, worst
from analyzer.monitors.data_quality.checks import check_options
from analyzer.monitors.data_quality.evaluate import WindowVerdict
from analyzer.monitors.data_quality.monitor import DataQuality, DataQualityWindow
from analyzer.monitors.data_quality.profile import DatasetProfile
from analyzer.service.model_quality import ModelQualityTenant
from analyzer.store.baseline_files import Baseline, BaselineFiles, load_baseline
from analyzer.store.buckets import read_buckets
from analyzer.store.database import Store, read_status_doc
from analyzer.store.hourly import HourlyReporter
from analyzer.store.model_quality import ModelQualityStore
from analyzer.store.retention import tidy
from analyzer.store.runs import NewRun, store_tick
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


def _baseline_names(baseline: Baseline) -> list[str]:
    """Every feature name the baseline knows (always tracked, whatever the limit), and the
    positional names ``_c0 …`` of as many fields (matched to them by position)."""
    names: list[str] = []
    if baseline.statistics is not None:
        names.extend(baseline.statistics.features)
        names.extend(f"_c{i}" for i in range(len(baseline.statistics.features)))
    if baseline.constraints is not None:
        names.extend(baseline.constraints.features)
    return names


def _sources(found: dict[str, Any]) -> dict[str, Any]:
    """``sources``: how many writers (proxy instances) the capture tree holds files of, and
    when each last wrote (several replicas of one endpoint into one tree: docs/scale-out.md)."""
    doc: dict[str, Any] = {
        "count": found.get("count", 0),
        "instances": {
            name: {"files": info["files"], "last_write": iso(info["last_write_epoch"])}
            for name, info in (found.get("instances") or {}).items()
        },
    }
    if "url" in found:  # analyzer.capture_url: the tree's URL and its listing/read errors
        doc.update({key: found[key] for key in ("url", "errors", "last_error")})
    return doc


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
        decode_process: DecodeProcess | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.alerts = alerts
        self.baseline_files = BaselineFiles(
            config.analyzer.baseline, clock_iso=lambda: iso(clock())
        )
        self.column_mapping: str | None = None
        self.column_mapping_note: str | None = None
        self.limit = feature_limit(config, _baseline_names(self.baseline))
        url = config.analyzer.capture_url
        self.ingestor = (
            RemoteIngestor(store, config, url, clock=clock, limit=self.limit)
            if url is not None
            else Ingestor(
                store, config, clock=clock, limit=self.limit, decode_process=decode_process
            )
        )
        # where the local ingest decodes its chunks (None: on its thread; see create_app)
        self.decode_process = decode_process if url is None else None
        self.reporter = HourlyReporter(
            config,
            store,
            self.check,
            baseline_constraints=self.baseline.constraints_doc,
            grace_s=report_grace_s,
            limit=self.limit,
        )
        self.last_ingest = IngestStats()
        # model quality (analyzer.model_quality): the join's store API for the evaluation, and
        # the ground-truth folder read at each tick (predictions come with the ingest)
        quality = config.analyzer.model_quality
        self.model_quality_join: ModelQualityStore | None = None
        self.model_quality: ModelQualityTenant | None = None  # the monitor type's evaluation
        self.ground_truth_folder: GroundTruthFolder | None = None
        self.last_ground_truth = FolderStats()
        if quality is not None:
            self.model_quality = ModelQualityTenant(config, quality, store, timer=clock)
            self.model_quality_join = ModelQualityStore(
                store, window_s=quality.window_s, label_delay_s=quality.label_delay_s
            )
            where = quality.ground_truth.dir
            self.ground_truth_folder = (
                RemoteGroundTruthFolder(store, config, where, clock=clock)
                if isinstance(where, str)
                else GroundTruthFolder(store, config, clock=clock)
            )
        self.last_error: str | None = None
        self.ticks = 0
        self.last_tick_s: float | None = None
        self._states: dict[str, str] = {}  # the last state of each monitor type
        self._loaded = False
        self._lock = asyncio.Lock()

    @property
    def baseline(self) -> Baseline:
        """The baseline in use (replaced atomically when its files change)."""
        return self.baseline_files.current

    def ground_truth_source(self) -> dict[str, Any] | None:
        """The remote ground-truth folder's URL and its listing/read errors since start (None:
        no folder, or a local one)."""
        folder = self.ground_truth_folder
        return folder.sources() if isinstance(folder, RemoteGroundTruthFolder) else None

    def refresh_baseline(self, force: bool = False) -> bool:
        """Re-read the baseline files if they changed (blocking); True when a new one is used."""
        quality = self.model_quality.refresh(force) if self.model_quality is not None else False
        if not self.baseline_files.refresh(force):
            return quality
            return False
        self.reporter.constraints = self.baseline.constraints_doc
        self.limit = feature_limit(self.config, _baseline_names(self.baseline))
        self.ingestor.set_limit(self.limit)
        self.reporter.limit = self.limit
        return True

    # -- evaluation ------------------------------------------------------------------------
    def map_columns(self, profile: DatasetProfile | None) -> DatasetProfile | None:
        """Name positional input columns after the baseline's features (in place; see
        :mod:`analyzer.decoding.column_mapping`), and remember how the columns were matched."""
        statistics = self.baseline.statistics
        if profile is None or statistics is None or self.config.analyzer.payload.input.columns:
            return profile
        baseline_names = list(statistics.features)
        mapping = positional_mapping(list(profile.features), baseline_names, profile.predictions)
        if mapping is None:
            if profile.features and not profile.renamed:
                self.column_mapping, self.column_mapping_note = BY_NAME, None
            return profile
        note = mapping_note(
            mapping,
            len(profile.features),
            len([n for n in baseline_names if n not in profile.predictions]),
        )
        if note != self.column_mapping_note:
            log.info("%s", note)
        self.column_mapping, self.column_mapping_note = BY_POSITION, note
        profile.rename_features(mapping)
        return profile

    def data_quality(self) -> DataQuality:
        """The data-quality monitor type against the baseline in use."""
        baseline = self.baseline
        return DataQuality(
            baseline.statistics,
            baseline.constraints,
            baseline.info,
            min_samples=self.config.analyzer.min_samples,
            check_options=check_options(self.config.analyzer),
        )

    def check(self, profile: DatasetProfile | None) -> WindowVerdict:
        """Run the checks on a profile against the baseline (blocking, CPU)."""
        return self.data_quality().check(self.map_columns(profile))

    def window(self, now: float) -> tuple[float, float]:
        """The rolling window at ``now``: whole buckets starting in the last ``window_s``."""
        bucket = self.config.analyzer.bucket_s
        start = -(-(now - self.config.analyzer.window_s) // bucket) * bucket
        return float(start), now

    def window_profile(self, now: float) -> DatasetProfile | None:
        """The window's profile, its columns named as the checks see them."""
        start, end = self.window(now)
        return self.map_columns(read_buckets(self.store, start, end, self.clock, self.limit))

    def evaluations(self, now: float) -> list[Evaluation]:
        """Every configured monitor type's evaluation of its window at ``now`` (blocking)."""
        start, end = self.window(now)
        profile = self.window_profile(now)
        window = DataQualityWindow(profile, self.column_mapping, self.column_mapping_note)
        evaluations = [self.data_quality().evaluate(window, start=start, end=end)]
        if self.model_quality is not None:
            evaluations.append(self.model_quality.evaluate(now))
        return evaluations

    def evaluate_at(self, now: float) -> dict[str, Any]:
        """Evaluate the window at ``now`` and store its runs and status document (blocking):
        what a tick does after the ingest; a backfill runs it for past times."""
        return self._evaluate(now)

    def _evaluate(self, now: float) -> dict[str, Any]:
        start, end = self.window(now)
        evaluations = self.evaluations(now)
        monitors = {e.monitor: e.section for e in evaluations}
        doc: dict[str, Any] = {
            "state": worst(m["state"] for m in monitors.values()),
            "monitors": monitors,
            "last_run": iso(now),
            "last_run_epoch": now,
            "endpoint": {
                "name": self.config.endpoint.name,
                "variant": self.config.endpoint.variant,
            },
            "sources": _sources(self.ingestor.sources),
        }

        runs = [
            NewRun(
                # the data-quality run keeps its historical kind; others are named by type
                kind="window" if evaluation.monitor == MONITOR else evaluation.monitor,
                time=iso(now),
                time_epoch=now,
                window_start=(evaluation.section.get("window") or {}).get("start", iso(start)),
                window_end=(evaluation.section.get("window") or {}).get("end", iso(end)),
                state=evaluation.state,
                samples=evaluation.samples,
                features=evaluation.detail,
                violations=evaluation.violations,
                section=evaluation.section,
            )
            for evaluation in evaluations
        ]
        cutoff = now - self.config.analyzer.retention_days * 86400
        detail_s = self.config.analyzer.run_detail_s
        buckets_before = self.window(now - detail_s)[0]
        self.store.write(
            lambda db: store_tick(
                db,
                runs,
                doc,
                cutoff,
                start,
                then=lambda db: tidy(
                    db,
                    now=now,
                    buckets_before=buckets_before,
                    run_detail_s=detail_s,
                    limit=self.limit,
                    kept_after=cutoff,
                ),
            )
        )
        return doc

    # -- the tick --------------------------------------------------------------------------
    async def load_state(self) -> None:
        """Remember the state stored by the last run (so a restart re-sends no alert)."""
        stored = await self.store.aread(read_status_doc)
        if stored is not None:
            for name, section in (stored.get("monitors") or {}).items():
                if isinstance(section, dict) and section.get("state") is not None:
                    self._states[name] = section["state"]
        self._loaded = True

    async def reload_baseline(self, force: bool = True) -> bool:
        """Re-read the baseline files now (SIGHUP), between ticks; True when a new one is used."""
        async with self._lock:
            return await asyncio.to_thread(self.refresh_baseline, force)

    async def tick(self) -> dict[str, Any]:
        """Ingest, evaluate, report; returns the status document stored for this run."""
        async with self._lock:
            if not self._loaded:
                await self.load_state()
            started = time.perf_counter()
            await asyncio.to_thread(self.refresh_baseline)
            self.last_ingest = await asyncio.to_thread(self.ingestor.run_once)
            if self.ground_truth_folder is not None:  # model quality: labels from the folder
                self.last_ground_truth = await asyncio.to_thread(self.ground_truth_folder.run_once)
            now = self.clock()
            doc = await asyncio.to_thread(self._evaluate, now)
            await asyncio.to_thread(self.reporter.run, now)
            if self.model_quality is not None:
                await asyncio.to_thread(self.model_quality.report_changed_hours, now)
            self.ticks += 1
            self.last_tick_s = time.perf_counter() - started
            for name, section in doc["monitors"].items():
                new = section["state"]
                old, self._states[name] = self._states.get(name), new
                if new != old and self.alerts is not None:
                    self.alerts.state_changed(name, old, new, doc)
            return doc
