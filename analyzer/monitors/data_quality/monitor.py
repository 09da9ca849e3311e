"""The data-quality monitor type: a window's profile in, SageMaker's six checks out (pure).

:class:`DataQuality` keeps :class:`analyzer.monitors.contract.MonitorType`: the service reads
the window's merged profile (its columns already named as the baseline's, see
:mod:`analyzer.decoding.column_mapping`) and hands it over as a :class:`DataQualityWindow`;
the evaluation runs the checks (:mod:`analyzer.monitors.data_quality.checks`), turns them into
states (:mod:`analyzer.monitors.data_quality.evaluate`) and fills ``monitors.data_quality``
of the status document. :meth:`DataQuality.gauges` names the per-feature gauges like
SageMaker's CloudWatch metrics (``feature_baseline_drift_{f}``, ``feature_non_null_{f}``,
``feature_data_{f}{stat}``) and counts violations by check type.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from analyzer.monitors.contract import Evaluation, Gauge
from analyzer.monitors.data_quality.checks import run_checks
from analyzer.monitors.data_quality.evaluate import (
    WindowVerdict,
    describe_predictions,
    monitor_doc,
    verdict,
)
from analyzer.monitors.data_quality.profile import DatasetProfile

__all__ = ["CHECK_TYPES", "NAME", "DataQuality", "DataQualityWindow", "metric_name"]

log = logging.getLogger("modelmon.analyzer.data_quality")

NAME = "data_quality"
CHECK_TYPES = (
    "data_type_check",
    "completeness_check",
    "baseline_drift_check",
    "missing_column_check",
    "extra_column_check",
    "categorical_values_check",
)
_ILLEGAL = re.compile(r"[^a-zA-Z0-9_:]")


def metric_name(prefix: str, feature: str) -> str:
    """``prefix + feature`` made legal as a Prometheus metric name.

    >>> metric_name("feature_baseline_drift_", "credit score (v2)")
    'feature_baseline_drift_credit_score__v2_'
    """
    name = _ILLEGAL.sub("_", prefix + feature)
    return f"_{name}" if name[0].isdigit() else name


@dataclass(frozen=True)
class DataQualityWindow:
    """What the service read for one window: the merged profile and how columns matched."""

    profile: DatasetProfile | None
    column_mapping: str | None = None
    column_mapping_note: str | None = None


class DataQuality:
    """The data-quality monitor of one endpoint against one baseline (``None``: no baseline)."""

    name = NAME

    def __init__(
        self,
        statistics: Any | None,
        constraints: Any | None,
        baseline_info: Mapping[str, Any],
        *,
        min_samples: int,
        check_options: Mapping[str, Any],
    ) -> None:
        self.statistics = statistics
        self.constraints = constraints
        self.baseline_info = dict(baseline_info)
        self.min_samples = min_samples
        self.check_options = dict(check_options)

    def check(self, profile: DatasetProfile | None) -> WindowVerdict:
        """The checks of one profile against the baseline (CPU)."""
        samples = profile.item_count if profile is not None else 0
        if self.statistics is None or self.constraints is None:
            return verdict(None, samples, self.min_samples)
        if profile is None or samples == 0:
            return verdict(object(), 0, self.min_samples)
        result = run_checks(self.statistics, self.constraints, profile, **self.check_options)
        return verdict(result, samples, self.min_samples, profile)

    def evaluate(self, window: DataQualityWindow, *, start: float, end: float) -> Evaluation:
        """The checks of the window, as the status section and the run's per-feature detail."""
        window_verdict = self.check(window.profile)
        section = monitor_doc(
            window_verdict,
            window_start=start,
            window_end=end,
            run_id=None,
            min_samples=self.min_samples,
            baseline=self.baseline_info,
        )
        section["predictions"] = describe_predictions(window.profile, window_verdict.features)
        if self.statistics is not None:
            section["column_mapping"] = window.column_mapping
            section["column_mapping_note"] = window.column_mapping_note
        return Evaluation(
            NAME,
            window_verdict.state,
            window_verdict.samples,
            section,
            violations=window_verdict.violations,
            detail=window_verdict.features,
        )

    @staticmethod
    def gauges(section: Mapping[str, Any]) -> Iterator[Gauge]:
        """Per-feature gauges (SageMaker's CloudWatch names) and violations by check type."""
        seen: set[str] = set()
        for feature, info in (section.get("features") or {}).items():
            drift = metric_name("feature_baseline_drift_", feature)
            if drift in seen:
                log.warning("feature %r clashes with another after sanitizing; skipped", feature)
                continue
            seen.add(drift)
            if info.get("distance") is not None:
                yield Gauge(drift, f"Baseline drift distance of {feature}", info["distance"])
            if info.get("non_null") is not None:
                yield Gauge(
                    metric_name("feature_non_null_", feature),
                    f"Completeness of {feature}",
                    info["non_null"],
                )
            data = info.get("data") or {}
            for stat in ("min", "max", "sum", "count", "mean"):
                if data.get(stat) is not None:
                    yield Gauge(
                        metric_name("feature_data_", feature),
                        f"Statistics of {feature} in the window",
                        float(data[stat]),
                        (("stat", stat),),
                    )
        by_check = dict.fromkeys(CHECK_TYPES, 0)
        for violation in section.get("violations") or []:
            check = str(violation.get("constraint_check_type"))
            by_check[check] = by_check.get(check, 0) + 1
        for check, n in by_check.items():
            yield Gauge(
                "modelmon_violations",
                "Constraint violations in the last run",
                float(n),
                (("check", check),),
            )
