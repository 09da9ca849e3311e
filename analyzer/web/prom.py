"""Prometheus exposition of the stored status: gauges named like SageMaker's CloudWatch metrics.

Per feature: ``feature_baseline_drift_{f}`` (the drift distance), ``feature_non_null_{f}``
(completeness) and ``feature_data_{f}{stat="min|max|sum|count|mean"}``; then violations by
check type, the monitor state, the ingest counters and the ground-truth intake counters.
Names are made legal for Prometheus (``[a-zA-Z_:][a-zA-Z0-9_:]*``): any other character
becomes ``_``, a leading digit gets a ``_`` in front. Each app has its own
:class:`~prometheus_client.CollectorRegistry`.

Examples
--------
>>> metric_name("feature_baseline_drift_", "credit score (v2)")
'feature_baseline_drift_credit_score__v2_'
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from analyzer.monitors.data_quality.evaluate import STATES

__all__ = ["CHECK_TYPES", "StatusCollector", "metric_name", "new_registry", "render"]

log = logging.getLogger("modelmon.analyzer.prom")

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
    """``prefix + feature`` made legal as a Prometheus metric name."""
    name = _ILLEGAL.sub("_", prefix + feature)
    return f"_{name}" if name[0].isdigit() else name


class StatusCollector(Collector):
    """Yields metrics from the snapshot handed to :meth:`set` just before a scrape."""

    def __init__(self) -> None:
        self._doc: Mapping[str, Any] = {}
        self._counters: Mapping[str, int] = {}
        self.lock = threading.Lock()  # one scrape at a time sets and reads the snapshot

    def set(self, doc: Mapping[str, Any], counters: Mapping[str, int]) -> None:
        self._doc, self._counters = doc, counters

    def collect(self) -> Iterator[Metric]:
        yield from self._features()
        monitors = self._doc.get("monitors") or {}
        violations = GaugeMetricFamily(
            "modelmon_violations", "Constraint violations in the last run", labels=["check"]
        )
        by_check = dict.fromkeys(CHECK_TYPES, 0)
        state = GaugeMetricFamily(
            "modelmon_monitor_state",
            "1 for the monitor's current state",
            labels=["monitor", "state"],
        )
        samples = GaugeMetricFamily(
            "modelmon_window_samples", "Rows in the evaluated window", labels=["monitor"]
        )
        for name, monitor in monitors.items():
            for violation in monitor.get("violations") or []:
                check = str(violation.get("constraint_check_type"))
                by_check[check] = by_check.get(check, 0) + 1
            for value in STATES:
                state.add_metric([name, value], 1.0 if monitor.get("state") == value else 0.0)
            samples.add_metric([name], float(monitor.get("samples") or 0))
        for check, n in by_check.items():
            violations.add_metric([check], float(n))
        yield violations
        yield state
        yield samples
        if self._doc.get("last_run_epoch") is not None:
            yield GaugeMetricFamily(
                "modelmon_last_run_timestamp_seconds",
                "When the last monitoring run ended",
                value=float(self._doc["last_run_epoch"]),
            )
        yield from self._ingest()
        yield from self._ground_truth()

    def _features(self) -> Iterator[Metric]:
        monitor = (self._doc.get("monitors") or {}).get("data_quality") or {}
        seen: set[str] = set()
        for feature, info in (monitor.get("features") or {}).items():
            drift = metric_name("feature_baseline_drift_", feature)
            if drift in seen:
                log.warning("feature %r clashes with another after sanitizing; skipped", feature)
                continue
            seen.add(drift)
            if info.get("distance") is not None:
                yield GaugeMetricFamily(
                    drift, f"Baseline drift distance of {feature}", value=info["distance"]
                )
            if info.get("non_null") is not None:
                yield GaugeMetricFamily(
                    metric_name("feature_non_null_", feature),
                    f"Completeness of {feature}",
                    value=info["non_null"],
                )
            data = info.get("data") or {}
            if data:
                family = GaugeMetricFamily(
                    metric_name("feature_data_", feature),
                    f"Statistics of {feature} in the window",
                    labels=["stat"],
                )
                for stat in ("min", "max", "sum", "count", "mean"):
                    if data.get(stat) is not None:
                        family.add_metric([stat], float(data[stat]))
                yield family

    def _ingest(self) -> Iterator[Metric]:
        counters = self._counters
        for key, help_text in (
            ("records", "Capture records ingested (each exactly once)"),
            ("bad_records", "Capture records skipped as bad"),
            ("files", "Sealed capture files fully read"),
        ):
            yield CounterMetricFamily(
                f"modelmon_ingest_{key}", help_text, value=float(counters.get(key, 0))
            )
        bad = CounterMetricFamily(
            "modelmon_ingest_bad_by_reason", "Bad capture records by reason", labels=["reason"]
        )
        for key, value in sorted(counters.items()):
            if key.startswith("bad:"):
                bad.add_metric([key[4:]], float(value))
        yield bad

    def _ground_truth(self) -> Iterator[Metric]:
        for key, help_text in (
            ("stored", "Ground-truth records stored"),
            ("bad_lines", "Ground-truth lines refused as bad"),
            ("long_lines", "Ground-truth lines over analyzer.ground_truth.max_line_bytes"),
            ("too_large", "Ground-truth bodies over analyzer.ground_truth.max_body_bytes (413)"),
        ):
            yield CounterMetricFamily(
                f"modelmon_ground_truth_{key}",
                help_text,
                value=float(self._counters.get(f"ground_truth:{key}", 0)),
            )


def new_registry() -> tuple[CollectorRegistry, StatusCollector]:
    """A registry of its own (one per app) with the status collector registered."""
    registry = CollectorRegistry(auto_describe=False)
    collector = StatusCollector()
    registry.register(collector)
    return registry, collector


def render(
    registry: CollectorRegistry,
    collector: StatusCollector,
    doc: Mapping[str, Any],
    counters: Mapping[str, int],
) -> bytes:
    """The Prometheus text for this snapshot."""
    with collector.lock:
        collector.set(doc, counters)
        return generate_latest(registry)
