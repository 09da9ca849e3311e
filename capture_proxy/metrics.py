"""The proxy's Prometheus metrics, on a registry of its own (a fresh one per app, so tests and
several apps in one process never share counters). Children with fixed labels are made once,
so the hot path pays a plain ``inc()``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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


class ProxyMetrics:
    """Every counter the proxy and its capture sink keep."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "modelmon_proxy_requests", "Requests answered, by status code", ["status"], registry=r
        )
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
        self.upstream_latency = Histogram(
            "modelmon_proxy_upstream_latency_seconds",
            "From request start to the upstream's response headers",
            buckets=_LATENCY_BUCKETS,
            registry=r,
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
        self._status: dict[int, Counter] = {}

    def drop(self, reason: str, count: int = 1) -> None:
        child = self._drop.get(reason)
        if child is None:
            child = self._drop[reason] = self.dropped.labels(reason=reason)
        child.inc(count)
        self.drop_counts[reason] = self.drop_counts.get(reason, 0) + count

    def filter_out(self, reason: str) -> None:
        self._filtered[reason].inc()

    def request(self, status: int) -> None:
        child = self._status.get(status)
        if child is None:
            child = self._status[status] = self.requests.labels(status=str(status))
        child.inc()
