"""The proxy's own endpoints, answered locally so it stays observable when the analyzer is down.

``GET /monitor/proxy/health``  JSON: upstream reachable, capture queue depth, drops by reason.
``GET /monitor/proxy/metrics`` Prometheus text exposition of :class:`ProxyMetrics`.

Health answers 200 whenever the proxy itself works, with ``upstream.reachable`` telling the
rest: a probe that restarted the proxy because the model server is down would only add an
outage.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from capture_proxy.metrics import ProxyMetrics

__all__ = [
    "HEALTH_PATH",
    "METRICS_PATH",
    "health_document",
    "health_response",
    "metrics_response",
    "metrics_text",
    "tcp_reachable",
]

HEALTH_PATH = "/monitor/proxy/health"
METRICS_PATH = "/monitor/proxy/metrics"
_PROBE_TIMEOUT_S = 2.0


async def tcp_reachable(url: str, timeout_s: float) -> tuple[bool, float | None]:
    """Whether a TCP connection to ``url``'s host and port opens within ``timeout_s``."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False, None
    elapsed_ms = (time.perf_counter() - started) * 1000.0
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass  # the probe already succeeded; how the close went does not matter
    return True, elapsed_ms


async def health_document(
    *,
    upstream: str,
    connect_timeout_s: float,
    metrics: ProxyMetrics,
    capture_enabled: bool,
    queue_depth: int,
    worker_id: int,
) -> dict[str, Any]:
    """The health document (see the module docstring)."""
    reachable, connect_ms = await tcp_reachable(upstream, min(connect_timeout_s, _PROBE_TIMEOUT_S))
    return {
        "status": "ok",
        "worker_id": worker_id,
        "upstream": {"url": upstream, "reachable": reachable, "connect_ms": connect_ms},
        "capture": {
            "enabled": capture_enabled,
            "queue_depth": queue_depth,
            "dropped": dict(metrics.drop_counts),
        },
    }


async def health_response(
    *,
    upstream: str,
    connect_timeout_s: float,
    metrics: ProxyMetrics,
    capture_enabled: bool,
    queue_depth: int,
    worker_id: int,
) -> web.Response:
    """:func:`health_document` as an aiohttp response."""
    body = await health_document(
        upstream=upstream,
        connect_timeout_s=connect_timeout_s,
        metrics=metrics,
        capture_enabled=capture_enabled,
        queue_depth=queue_depth,
        worker_id=worker_id,
    )
    return web.json_response(body, headers={"Cache-Control": "no-store"})


def metrics_text(metrics: ProxyMetrics) -> tuple[bytes, str]:
    """Prometheus text for this process (each worker answers for itself) and its type."""
    return generate_latest(metrics.registry), CONTENT_TYPE_LATEST


def metrics_response(metrics: ProxyMetrics) -> web.Response:
    """:func:`metrics_text` as an aiohttp response."""
    body, content_type = metrics_text(metrics)
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response
