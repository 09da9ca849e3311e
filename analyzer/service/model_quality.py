"""The model-quality monitor in the running service: its window, its hourly reports.

:class:`ModelQualityTenant` is what :class:`analyzer.service.monitor.Monitor` holds when
``analyzer.model_quality`` is configured. Each tick it evaluates the rolling window (the last
``window_s`` by *inference* time: labelled pairs for the realized metrics, every prediction
for the estimate), and re-reports every hour whose pairs changed since it was last reported
(a late label marks its window in the join): the hour's three SageMaker files are written
again under ``{reports_dir}/{endpoint}/{schedule}/yyyy/mm/dd/hh/model_quality/``.

Evaluating a window of 100,000s of pairs takes seconds, so neither is done again for
nothing: the window is evaluated again only when the join changed (a prediction or label
stored or removed: :func:`~analyzer.store.model_quality.join_changes`), the baseline
changed, or its moving edges passed a prediction; otherwise the last evaluation stands with
the new window bounds and the live label counts. An hour is reported once per change of the
join's windows that cover it (their versions), not at every tick until they close.

With steady traffic the join changes at every tick, and a large window (millions of pairs:
tens of seconds) would be evaluated again at each one, taking the core the ingest needs.
So the re-evaluation is bounded to a share of the time (:data:`EVALUATION_SHARE`): after an
evaluation that took ``d`` seconds (at least :data:`DEFER_FROM_S`, by the ``timer``: the
service's clock), the window is evaluated again only once ``d × (1 / share − 1)`` has
passed; meanwhile the last evaluation stands with its own window, the live label counts and
a ``deferred`` note saying so.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from analyzer.monitors.contract import Evaluation, iso
from analyzer.monitors.model_quality.monitor import ModelQuality
from analyzer.store.database import Store
from analyzer.store.model_quality import DirtyWindow, dirty_windows, mark_evaluated
from analyzer.store.model_quality_baseline import ModelQualityBaselineFiles
from analyzer.store.model_quality_reads import (
    HOUR_S,
    counts_doc,
    read_changes,
    read_hour,
    read_window,
    unchanged_since,
)
from analyzer.store.report_files import report_dir, write_reports
from modelmon.config import ModelmonConfig, ModelQualityConfig

__all__ = ["REPORT_SUBDIR", "ModelQualityTenant"]

log = logging.getLogger("modelmon.analyzer.model_quality")

REPORT_SUBDIR = "model_quality"
# at most this share of the service's time goes to evaluating the rolling window again
EVALUATION_SHARE = 0.25
DEFER_FROM_S = 1.0  # an evaluation quicker than this is never deferred


@dataclass(frozen=True)
class _Evaluated:
    """The last evaluation of the rolling window, and what it was of."""

    baseline: object  # the baseline files' content in use (replaced when they change)
    changes: int  # the join's row changes seen before the window was read
    window: tuple[float, float]
    evaluation: Evaluation
    seconds: float = 0.0  # how long the evaluation took
    finished: float = 0.0  # when it ended (the tenant's timer)


class ModelQualityTenant:
    """The model-quality monitor of the service (blocking methods: call them off the loop)."""

    def __init__(
        self,
        config: ModelmonConfig,
        quality: ModelQualityConfig,
        store: Store,
        *,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.config = config
        self.quality = quality
        self.store = store
        self.files = ModelQualityBaselineFiles(quality)
        self.reports_written = 0
        self.evaluations = 0  # windows evaluated (not counting the ones that stood)
        self.deferred = 0  # changed windows whose evaluation waited (EVALUATION_SHARE)
        self._timer = timer
        self._last: _Evaluated | None = None
        self._reported: dict[int, tuple[object, frozenset[DirtyWindow]]] = {}

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
        """The rolling window, evaluated (again only when what it holds changed)."""
        start, end = self.window(now)
        delay = self.quality.label_delay_s
        baseline, last = self.files.current, self._last
        if last is not None and last.baseline is baseline:
            counts = self.store.read(
                lambda conn: (
                    counts_doc(conn, now, delay)
                    if unchanged_since(conn, last.changes, last.window, (start, end))
                    else None
                )
            )
            if counts is not None:
                window = {"start": iso(start), "end": iso(end)}
                section = {**last.evaluation.section, "window": window, "labels": counts}
                return dataclasses.replace(last.evaluation, section=section)
            wait = last.seconds * (1 / EVALUATION_SHARE - 1) - (self._timer() - last.finished)
            if last.seconds >= DEFER_FROM_S and wait > 0:
                return self._deferred(last, now, wait)
        changes = self.store.read(read_changes)  # before the window: a later change re-evaluates
        began = self._timer()
        pairs = self.store.read(
            lambda conn: read_window(conn, start, end, now=now, label_delay_s=delay)
        )
        evaluation = self.monitor().evaluate(pairs, start=start, end=end)
        self.evaluations += 1
        finished = self._timer()
        self._last = _Evaluated(
            baseline, changes, (start, end), evaluation, finished - began, finished
        )
        return evaluation

    def _deferred(self, last: _Evaluated, now: float, wait: float) -> Evaluation:
        """The last evaluation (of its own window) with the live label counts, and why the
        changed window waits (:data:`EVALUATION_SHARE`)."""
        self.deferred += 1
        delay = self.quality.label_delay_s
        counts = self.store.read(lambda conn: counts_doc(conn, now, delay))
        note = {
            "reason": (
                f"the window changed; its last evaluation took {last.seconds:.1f} s, so it is"
                f" evaluated again at most {EVALUATION_SHARE:.0%} of the time"
            ),
            "evaluation_s": round(last.seconds, 3),
            "next_in_s": round(wait, 3),
        }
        section = {**last.evaluation.section, "labels": counts, "deferred": note}
        return dataclasses.replace(last.evaluation, section=section)

    def report_changed_hours(self, now: float) -> int:
        """Write the reports of every closed hour whose pairs changed; returns how many.

        A changed window is marked evaluated once all its hours are closed and reported (a
        label landing meanwhile keeps the mark: the join versions it); an hour still open
        waits, as SageMaker reports only past hours.
        """
        windows = self.store.read(dirty_windows)
        done = []
        hours: dict[int, set[DirtyWindow]] = {}
        for window in windows:
            first = window.start - window.start % HOUR_S
            span = range(first, window.start + self.quality.window_s, HOUR_S)
            closed = [hour for hour in span if hour + HOUR_S <= now]
            for hour in closed:
                hours.setdefault(hour, set()).add(window)
            if len(closed) == len(span):
                done.append(window)
        monitor = self.monitor()
        written = 0
        baseline = self.files.current
        reported = self._reported
        self._reported = {}  # only hours still covered by a changed window are remembered
        for hour in sorted(hours):
            seen = (baseline, frozenset(hours[hour]))
            if hours[hour].isdisjoint(done):  # a done window is cleared: its next mark is new
                self._reported[hour] = seen
            if reported.get(hour) == seen:  # written at these versions already
                continue
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
