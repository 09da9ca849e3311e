"""The model-quality monitor in the running service: its window, its hourly reports.

:class:`ModelQualityTenant` is what :class:`analyzer.service.monitor.Monitor` holds when
``analyzer.model_quality`` is configured. Each tick it evaluates the rolling window (the last
``window_s`` by *inference* time: labelled pairs for the realized metrics, every prediction
for the estimate), and re-reports every hour whose pairs changed since it was last reported
(a late label marks its window in the join): the hour's three SageMaker files are written
again under ``{reports_dir}/{endpoint}/{schedule}/yyyy/mm/dd/hh/model_quality/``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import partial
from typing import Any

from analyzer.monitors.contract import Evaluation
from analyzer.monitors.model_quality.monitor import ModelQuality
from analyzer.store.database import Store
from analyzer.store.model_quality import dirty_windows, mark_evaluated
from analyzer.store.model_quality_baseline import ModelQualityBaselineFiles
from analyzer.store.model_quality_reads import HOUR_S, read_hour, read_window
from analyzer.store.report_files import report_dir, write_reports
from modelmon.config import ModelmonConfig, ModelQualityConfig

__all__ = ["REPORT_SUBDIR", "ModelQualityTenant"]

log = logging.getLogger("modelmon.analyzer.model_quality")

REPORT_SUBDIR = "model_quality"


class ModelQualityTenant:
    """The model-quality monitor of the service (blocking methods: call them off the loop)."""

    def __init__(self, config: ModelmonConfig, quality: ModelQualityConfig, store: Store) -> None:
        self.config = config
        self.quality = quality
        self.store = store
        self.files = ModelQualityBaselineFiles(quality)
        self.reports_written = 0

    def monitor(self) -> ModelQuality:
        """The monitor type against the baseline in use."""
        current = self.files.current
        return ModelQuality(
            self.quality.problem_type,
            current.constraints,
            current.baseline,
            current.info,
            min_labels=self.quality.min_labels,
            false_alarm_rate=self.config.analyzer.false_alarm_rate,
            calibrator=current.calibrator if self.quality.estimate else None,
            r2_convention=self.quality.r2_convention,
        )

    def window(self, now: float) -> tuple[float, float]:
        """The rolling window at ``now``: the last ``window_s`` of inference time."""
        return now - self.quality.window_s, now

    def evaluate(self, now: float) -> Evaluation:
        """The rolling window, evaluated."""
        start, end = self.window(now)
        window = self.store.read(
            lambda conn: read_window(
                conn, start, end, now=now, label_delay_s=self.quality.label_delay_s
            )
        )
        return self.monitor().evaluate(window, start=start, end=end)

    def report_changed_hours(self, now: float) -> int:
        """Write the reports of every closed hour whose pairs changed; returns how many.

        A changed window is marked evaluated once all its hours are closed and reported (a
        label landing meanwhile keeps the mark: the join versions it); an hour still open
        waits, as SageMaker reports only past hours.
        """
        windows = self.store.read(dirty_windows)
        done = []
        hours: set[int] = set()
        for window in windows:
            first = window.start - window.start % HOUR_S
            span = range(first, window.start + self.quality.window_s, HOUR_S)
            closed = [hour for hour in span if hour + HOUR_S <= now]
            hours.update(closed)
            if len(closed) == len(span):
                done.append(window)
        monitor = self.monitor()
        written = 0
        for hour in sorted(hours):
            pairs = self.store.read(partial(read_hour, hour=hour, now=now))
            evaluation = monitor.evaluate(pairs, start=hour, end=hour + HOUR_S)
            documents: dict[str, Any] = dict(evaluation.documents)
            if not documents:
                continue
            constraints = self.files.current.constraints_doc
            if constraints is not None:
                documents["constraints.json"] = constraints
            folder = report_dir(self.config, datetime.fromtimestamp(hour, UTC)) / REPORT_SUBDIR
            write_reports(folder, documents)
            written += 1
        if done:
            self.store.write(partial(mark_evaluated, windows=done))
        self.reports_written += written
        return written

    def refresh(self, force: bool = False) -> bool:
        """Re-read the baseline files if they changed (blocking)."""
        return self.files.refresh(force)
