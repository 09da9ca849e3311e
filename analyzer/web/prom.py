"""Prometheus exposition of the stored status: gauges named like SageMaker's CloudWatch metrics.

Per feature: ``feature_baseline_drift_{f}`` (the drift distance), ``feature_non_null_{f}``
(completeness) and ``feature_data_{f}{stat="min|max|sum|count|mean"}``; then violations by
check type, the monitor state, the ingest counters, the ground-truth intake counters and the
model-quality join's (``modelmon_model_quality_events_total{event}``).
Names are made legal for Prometheus (``[a-zA-Z_:][a-zA-Z0-9_:]*``): any other character
becomes ``_``, a leading digit gets a ``_`` in front. Each app has its own
:class:`~prometheus_client.CollectorRegistry`.

Examples
--------
>>> metric_name("feature_baseline_drift_", "credit score (v2)")
'feature_baseline_drift_credit_score__v2_'
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from analyzer.monitors.contract import STATES, Gauge
from analyzer.monitors.data_quality.monitor import CHECK_TYPES, metric_name
from analyzer.monitors.registry import section_gauges

__all__ = ["CHECK_TYPES", "StatusCollector", "metric_name", "new_registry", "render"]

MODEL_QUALITY = "model_quality:"


class StatusCollector(Collector):
    """Yields metrics from the snapshot handed to :meth:`set` just before a scrape."""

    def __init__(self) -> None:
        self._doc: Mapping[str, Any] = {}
        self._counters: Mapping[str, int] = {}
        self.lock = threading.Lock()  # one scrape at a time sets and reads the snapshot

    def set(self, doc: Mapping[str, Any], counters: Mapping[str, int]) -> None:
        self._doc, self._counters = doc, counters

    def collect(self) -> Iterator[Metric]:
        monitors = self._doc.get("monitors") or {}
        yield from _families(
            gauge
            for name, section in monitors.items()
            if isinstance(section, Mapping)
            for gauge in section_gauges(name, section)
        )
        state = GaugeMetricFamily(
            "modelmon_monitor_state",
            "1 for the monitor's current state",
            labels=["monitor", "state"],
        )
        samples = GaugeMetricFamily(
            "modelmon_window_samples", "Rows in the evaluated window", labels=["monitor"]
        )
        for name, monitor in monitors.items():
            for value in STATES:
                state.add_metric([name, value], 1.0 if monitor.get("state") == value else 0.0)
            samples.add_metric([name], float(monitor.get("samples") or 0))
        yield state
        yield samples
        if self._doc.get("last_run_epoch") is not None:
            yield GaugeMetricFamily(
                "modelmon_last_run_timestamp_seconds",
                "When the last monitoring run ended",
                value=float(self._doc["last_run_epoch"]),
            )
        yield from self._ingest()
        yield from self._decode_process()
        yield from self._ground_truth()
        yield from self._model_quality()

    def _decode_process(self) -> Iterator[Metric]:
        """Where the capture chunks were decoded, with a decoding process
        (``analyzer.ingest_process``; none without one)."""
        process = self._doc.get("decode_process")
        if not isinstance(process, Mapping):
            return
        chunks = CounterMetricFamily(
            "modelmon_ingest_decoded_chunks",
            "Capture chunks decoded by the decoding process (process), by the ingest thread "
            "while two waited for it (here), or by the ingest thread instead (fallback)",
            labels=["where"],
        )
        for where, key in (("process", "chunks"), ("here", "here"), ("fallback", "fallbacks")):
            chunks.add_metric([where], float(process.get(key, 0)))
        yield chunks
        yield CounterMetricFamily(
            "modelmon_ingest_decode_process_deaths",
            "Decoding worker processes that died (each replaced unless given up)",
            value=float(process.get("restarts", 0)),
        )
        yield GaugeMetricFamily(
            "modelmon_ingest_decode_process_given_up",
            "1 once the decoding process is given up (3 deaths in a row): the ingest thread "
            "decodes every chunk",
            value=1.0 if process.get("given_up") else 0.0,
        )

    def _model_quality(self) -> Iterator[Metric]:
        """The model-quality join's counters, ``model_quality:{event}`` → one sample each
        (``predictions``, ``labels``, ``label_duplicates``, ``skipped:{reason}``,
        ``bad_labels:{reason}``, the ground-truth folder's …: names and reasons are the
        code's, never the data's, so the label set is bounded)."""
        yield self._by_prefix(
            MODEL_QUALITY,
            "modelmon_model_quality_events",
            "Model-quality join counters: predictions and labels stored, refused by reason",
            "event",
        )

    def _by_prefix(self, prefix: str, name: str, help_text: str, label: str) -> Metric:
        """One sample per counter named ``{prefix}{value}``, labelled ``{label}="{value}"``."""
        family = CounterMetricFamily(name, help_text, labels=[label])
        for key, value in sorted(self._counters.items()):
            if key.startswith(prefix):
                family.add_metric([key[len(prefix) :]], float(value))
        return family

    def _ingest(self) -> Iterator[Metric]:
        counters = self._counters
        for key, help_text in (
            ("records", "Capture records ingested (each exactly once)"),
            ("bad_records", "Capture records skipped as bad"),
            ("files", "Sealed capture files fully read"),
            ("source_errors", "Failed listings or reads of the remote capture tree (retried)"),
            ("changed_files", "Remote capture objects whose size changed after they were read"),
        ):
            yield CounterMetricFamily(
                f"modelmon_ingest_{key}", help_text, value=float(counters.get(key, 0))
            )
        yield self._by_prefix(
            "bad:", "modelmon_ingest_bad_by_reason", "Bad capture records by reason", "reason"
        )

    def _ground_truth(self) -> Iterator[Metric]:
        for key, help_text in (
            ("stored", "Ground-truth records stored"),
            ("bad_lines", "Ground-truth lines refused as bad"),
            ("long_lines", "Ground-truth lines over analyzer.ground_truth.max_line_bytes"),
            ("too_large", "Ground-truth bodies over analyzer.ground_truth.max_body_bytes (413)"),
            ("bad_body", "Ground-truth bodies that do not decode as their Content-Encoding (400)"),
            ("slow_body", "Ground-truth bodies that paused over body_idle_timeout_s (408)"),
            ("source_errors", "Failed listings or reads of a remote ground-truth folder (retried)"),
        ):
            yield CounterMetricFamily(
                f"modelmon_ground_truth_{key}",
                help_text,
                value=float(self._counters.get(f"ground_truth:{key}", 0)),
            )


def _families(gauges: Iterable[Gauge]) -> Iterator[Metric]:
    """Samples grouped into one family per name (the first sample sets its help and labels)."""
    families: dict[str, GaugeMetricFamily] = {}
    for gauge in gauges:
        family = families.get(gauge.name)
        if family is None:
            keys = [key for key, _ in gauge.labels]
            family = families[gauge.name] = (
                GaugeMetricFamily(gauge.name, gauge.documentation, labels=keys)
                if keys
                else GaugeMetricFamily(gauge.name, gauge.documentation)
            )
        if gauge.labels or not family.samples:
            family.add_metric([value for _, value in gauge.labels], gauge.value)
    yield from families.values()


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
