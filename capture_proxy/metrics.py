"""The proxy's Prometheus metrics, on a registry of its own (a fresh one per app, so tests and
several apps in one process never share counters). Children with fixed labels are made once,
so the hot path pays a plain ``inc()``.

The two that every request updates, ``modelmon_proxy_requests_total{status}`` and the
``modelmon_proxy_upstream_latency_seconds`` histogram, are plain numbers on the event loop (the
only thread that updates them) turned into metric families when scraped
(:class:`RequestCounts`): a ``prometheus_client`` histogram takes a lock and walks its buckets
in Python per observation, a counter takes a lock per increment.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

DROP_REASONS = ("queue_full", "queue_bytes", "disk_full", "write_error", "encode_error")
FILTER_REASONS = ("method", "path", "status")

_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class RequestCounts(Collector):
    """Requests answered by status, and the upstream latency histogram, kept as plain numbers.

    Updated on the event loop only; exported on scrape with the same names, types and buckets
    as a ``prometheus_client`` ``Counter`` and ``Histogram`` (less their ``_created`` series).

    Examples
    --------
    >>> counts = RequestCounts()
    >>> counts.request(200)
    >>> counts.request(200)
    >>> counts.observe(0.003)
    >>> samples = [s for m in counts.collect() for s in m.samples]
    >>> [(s.labels, s.value) for s in samples if s.name == "modelmon_proxy_requests_total"]
    [({'status': '200'}, 2.0)]
    >>> [s.labels["le"] for s in samples if s.name.endswith("_bucket") and s.value][:3]
    ['0.005', '0.01', '0.025']
    """

    def __init__(self) -> None:
        self.by_status: dict[int, int] = {}
        self._bounds = _LATENCY_BUCKETS
        self._buckets = [0] * (len(_LATENCY_BUCKETS) + 1)  # the last one: +Inf
        self._le = [floatToGoString(b) for b in (*_LATENCY_BUCKETS, float("inf"))]  # type: ignore[no-untyped-call]
        self._sum = 0.0

    def request(self, status: int) -> None:
        """One request answered with ``status``."""
        counts = self.by_status
        counts[status] = counts.get(status, 0) + 1

    def observe(self, seconds: float) -> None:
        """One upstream latency (``le`` buckets: the first bound >= ``seconds``)."""
        self._buckets[bisect_left(self._bounds, seconds)] += 1
        self._sum += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "modelmon_proxy_requests", "Requests answered, by status code", labels=["status"]
        )
        for status, count in sorted(self.by_status.items()):
            requests.add_metric([str(status)], float(count))
        yield requests
        cumulative: list[tuple[str, float]] = []
        total = 0
        for le, count in zip(self._le, self._buckets, strict=True):
            total += count
            cumulative.append((le, float(total)))
        latency = HistogramMetricFamily(
            "modelmon_proxy_upstream_latency_seconds",
            "From request start to the upstream's response headers",
        )
        latency.add_metric([], cumulative, sum_value=self._sum)
        yield latency


class ProxyMetrics:
    """Every counter the proxy and its capture sink keep."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.counts = RequestCounts()  # requests by status, upstream latency
        r.register(self.counts)
        self.upstream_latency = self.counts  # .observe(seconds)
        self.request = self.counts.request  # .request(status): one request answered
        self.captured = Counter(
            "modelmon_capture_records", "Records handed to the capture queue", registry=r
        )
        self.sampled_out = Counter(
            "modelmon_capture_sampled_out", "Requests not sampled for capture", registry=r
        )
        self.dropped = Counter(
            "modelmon_capture_dropped",
            "Sampled records not written, by reason",
            ["reason"],
            registry=r,
        )
        self.truncated = Counter(
            "modelmon_capture_truncated",
            "Records with a side captured cut (over max_capture_bytes, raw or decoded, or a "
            "partial upload) and flagged",
            registry=r,
        )
        self.filtered = Counter(
            "modelmon_capture_filtered",
            "Requests not eligible for capture by capture.filters, by what excluded them",
            ["reason"],
            registry=r,
        )
        self.queue_bytes = Gauge(
            "modelmon_capture_queue_bytes",
            "Body bytes waiting for the capture writer or in its hands",
            registry=r,
        )
        self.write_errors = Counter(
            "modelmon_capture_write_errors",
            "Failed writes of capture records (each logged, at most once a minute per kind)",
            registry=r,
        )
        self.queue_depth = Gauge(
            "modelmon_capture_queue_depth", "Records waiting for the writer", registry=r
        )
        self.upstream_errors = Counter(
            "modelmon_proxy_upstream_errors",
            "Requests answered by the proxy itself (502, 504: unreachable, timeout, "
            "pool_exhausted) or cut (upstream_broken, client_gone)",
            ["kind"],
            registry=r,
        )
        self.client_timeouts = Counter(
            "modelmon_proxy_client_timeouts",
            "Client connections closed for slowness: head (header_timeout_s), body "
            "(body_idle_timeout_s), idle (keepalive_timeout_s)",
            ["phase"],
            registry=r,
        )
        self.connections_refused = Counter(
            "modelmon_proxy_connections_refused",
            "Client connections over proxy.max_client_connections: answered 503, or closed "
            "at once when the refusal slots are full too",
            ["answer"],
            registry=r,
        )
        self.client_connections = Gauge(
            "modelmon_proxy_client_connections", "Open client connections", registry=r
        )
        self.bytes_written = Counter(
            "modelmon_capture_bytes_written", "Bytes written to capture files", registry=r
        )
        self.files_sealed = Counter(
            "modelmon_capture_files_sealed", "Capture files sealed (renamed from .part)", registry=r
        )
        self.files_removed = Counter(
            "modelmon_capture_files_removed", "Sealed files removed by retention", registry=r
        )
        self.uploaded_files = Counter(
            "modelmon_capture_uploaded_files",
            "Sealed capture files uploaded to capture.upload (size read back)",
            registry=r,
        )
        self.uploaded_bytes = Counter(
            "modelmon_capture_uploaded_bytes", "Bytes of the files uploaded", registry=r
        )
        self.upload_failures = Counter(
            "modelmon_capture_upload_failures",
            "Failed upload attempts (each retried with backoff)",
            registry=r,
        )
        self.upload_pending = Gauge(
            "modelmon_capture_upload_pending",
            "Sealed files not uploaded yet (queued or waiting for a retry)",
            registry=r,
        )
        self.upload_abandoned = Counter(
            "modelmon_capture_upload_abandoned",
            "Sealed files removed by retention before their upload (disk full)",
            registry=r,
        )
        self.redact_unredactable = Counter(
            "modelmon_capture_redact_unredactable",
            "Bodies stored as a mask because they could not be parsed for redaction",
            registry=r,
        )
        self.timeouts = {
            phase: self.client_timeouts.labels(phase=phase) for phase in ("head", "body", "idle")
        }
        self.refused = {
            answer: self.connections_refused.labels(answer=answer) for answer in ("503", "closed")
        }
        self._drop = {reason: self.dropped.labels(reason=reason) for reason in DROP_REASONS}
        self._filtered = {r: self.filtered.labels(reason=r) for r in FILTER_REASONS}
        self.drop_counts: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)

    def drop(self, reason: str, count: int = 1) -> None:
        child = self._drop.get(reason)
        if child is None:
            child = self._drop[reason] = self.dropped.labels(reason=reason)
        child.inc(count)
        self.drop_counts[reason] = self.drop_counts.get(reason, 0) + count

    def filter_out(self, reason: str) -> None:
        self._filtered[reason].inc()
