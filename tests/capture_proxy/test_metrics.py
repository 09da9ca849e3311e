"""The per-request metrics kept as plain numbers export what prometheus_client's would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from capture_proxy.metrics import _LATENCY_BUCKETS, ProxyMetrics


def _lines(text: bytes, prefix: str) -> list[str]:
    return [
        line
        for line in text.decode().splitlines()
        if line.startswith(prefix) and "_created" not in line and not line.startswith("#")
    ]


def test_request_counts_and_latency_match_prometheus_client() -> None:
    statuses = [200, 200, 404, 502, 200, 504]
    # Bounds themselves (le: a value equal to a bound is in that bucket), between, above all.
    latencies = [0.001, 0.0025, 0.0011, 0.0, 5.0, 60.0, 61.0, 0.3, 0.02]
    metrics = ProxyMetrics()
    for status in statuses:
        metrics.request(status)
    for seconds in latencies:
        metrics.upstream_latency.observe(seconds)

    reference = CollectorRegistry()
    requests = Counter("modelmon_proxy_requests", "x", ["status"], registry=reference)
    latency = Histogram(
        "modelmon_proxy_upstream_latency_seconds", "x", buckets=_LATENCY_BUCKETS, registry=reference
    )
    for status in statuses:
        requests.labels(status=str(status)).inc()
    for seconds in latencies:
        latency.observe(seconds)

    ours = generate_latest(metrics.registry)
    theirs = generate_latest(reference)
    for prefix in ("modelmon_proxy_requests_total", "modelmon_proxy_upstream_latency_seconds"):
        assert sorted(_lines(ours, prefix)) == sorted(_lines(theirs, prefix))
    assert b"# TYPE modelmon_proxy_requests_total counter" in ours
    assert b"# TYPE modelmon_proxy_upstream_latency_seconds histogram" in ours
