"""The fast engine (``proxy.engine: fast``, the default): routing and the long-lived parts.

Same routes and behaviour as the aiohttp app (:mod:`capture_proxy.app`), served by
:mod:`capture_proxy.server` and forwarded by :mod:`capture_proxy.relay` over raw pooled
connections (:mod:`capture_proxy.upstream`). :meth:`FastProxy.start` opens the pools and the
capture sink; :meth:`FastProxy.close` drains and seals the sink and closes the pools.
What both engines share (routing, limits, the proxy's own answers) is in
:mod:`capture_proxy.proxy_common`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson

from capture_proxy.health import HEALTH_PATH, METRICS_PATH, health_document, metrics_text
from capture_proxy.http1 import head_bytes, json_response
from capture_proxy.metrics import ProxyMetrics
from capture_proxy.proxy_common import (
    ANALYZER_POOL,
    Route,
    client_limits,
    refusal_body,
    route,
)
from capture_proxy.relay import Relay
from capture_proxy.server import ClientConnection, Request
from capture_proxy.tee import CaptureHooks, eligible, start_capture
from capture_proxy.upstream import UpstreamPool
from modelmon.config import ModelmonConfig

if TYPE_CHECKING:
    from capture_proxy.sink import CaptureSink

__all__ = ["FastProxy", "RouteCache"]

ROUTE_CACHE_SIZE = 1024


class RouteCache:
    """:func:`~capture_proxy.proxy_common.route` remembered for the first ``size`` targets.

    A model is called on a handful of targets (``/invocations``), so the usual request is
    routed by one dict lookup. Targets come from clients: the cache stops taking new ones
    when full (no eviction, no growth), and the others are routed the long way, as before.

    Examples
    --------
    >>> routes = RouteCache(size=1)
    >>> routes(b"/invocations"), routes(b"/x/../monitor/proxy/health")
    (('upstream', '/invocations'), ('local', '/monitor/proxy/health'))
    >>> len(routes)
    1
    """

    __slots__ = ("_routes", "_size")

    def __init__(self, size: int = ROUTE_CACHE_SIZE) -> None:
        self._routes: dict[bytes, tuple[Route, str]] = {}
        self._size = size

    def __call__(self, target: bytes) -> tuple[Route, str]:
        known = self._routes.get(target)
        if known is not None:
            return known
        known = route(target)
        if len(self._routes) < self._size:
            self._routes[target] = known
        return known

    def __len__(self) -> int:
        return len(self._routes)


class FastProxy:
    """The request handler of the fast engine and the owner of its pools and sink."""

    def __init__(
        self,
        config: ModelmonConfig,
        metrics: ProxyMetrics,
        *,
        clock: Callable[[], float] = time.time,
        worker_id: int = 0,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.worker_id = worker_id
        self._clock = clock
        self.sink: CaptureSink | None = None
        self._capture: CaptureHooks | None = None
        self._pools: list[UpstreamPool] = []
        self._upstream: Relay | None = None
        self._analyzer: Relay | None = None
        self.limits = client_limits(config)
        self._route = RouteCache()

    async def start(self) -> None:
        proxy = self.config.proxy
        upstream = UpstreamPool(
            proxy.upstream, limit=proxy.max_connections, connect_timeout_s=proxy.connect_timeout_s
        )
        analyzer = UpstreamPool(
            self.config.analyzer_url,
            limit=ANALYZER_POOL,
            connect_timeout_s=proxy.connect_timeout_s,
        )
        self._pools = [upstream, analyzer]
        timeout = proxy.upstream_timeout_s
        self._upstream = Relay(upstream, upstream_timeout_s=timeout, metrics=self.metrics)
        self._analyzer = Relay(
            analyzer, upstream_timeout_s=timeout, metrics=self.metrics, name="analyzer"
        )
        if self.config.capture.enabled:
            await self._start_capture()

    async def close(self) -> None:
        try:
            if self.sink is not None:
                self._capture = None
                await self.sink.close()
        finally:
            for pool in self._pools:
                await pool.close()

    async def _start_capture(self) -> None:
        self.sink, self._capture = await start_capture(
            self.config, self.metrics, clock=self._clock, worker_id=self.worker_id
        )

    async def handle(self, req: Request, conn: ClientConnection) -> bool:
        """Route one request (see :mod:`capture_proxy.app` for the table)."""
        where, path = self._route(req.target)
        assert self._upstream is not None and self._analyzer is not None, "not started"
        if conn.overflow:
            if where == "local":  # health and metrics stay observable over the cap
                return await self._local(req, conn, path, close=True)
            self.metrics.refused["503"].inc()
            self.metrics.request(503)
            body = refusal_body(self.limits.max_client_connections)
            extra = ((b"Retry-After", b"1"),)
            conn.write(json_response(503, b"Service Unavailable", body, close=True, extra=extra))
            return False
        if where == "local":
            return await self._local(req, conn, path)
        if where == "analyzer":
            return await self._analyzer.forward(req, conn)
        capture = eligible(self._capture, req.method, path)
        return await self._upstream.forward(req, conn, capture)

    async def _local(
        self, req: Request, conn: ClientConnection, path: str, *, close: bool = False
    ) -> bool:
        keep = req.keep_alive and req.body.done and not close
        if req.method not in (b"GET", b"HEAD"):
            conn.write(_json(405, b"Method Not Allowed", {"error": "use GET"}, keep))
            return keep
        if path == HEALTH_PATH:
            doc = await health_document(
                upstream=self.config.proxy.upstream,
                connect_timeout_s=self.config.proxy.connect_timeout_s,
                metrics=self.metrics,
                capture_enabled=self.sink is not None,
                queue_depth=self.sink.queue_depth if self.sink is not None else 0,
                worker_id=self.worker_id,
            )
            conn.write(_json(200, b"OK", doc, keep))
        elif path == METRICS_PATH:
            body, content_type = metrics_text(self.metrics)
            headers = [
                (b"Content-Type", content_type.encode()),
                (b"Content-Length", b"%d" % len(body)),
            ]
            if not keep:
                headers.append((b"Connection", b"close"))
            conn.write(head_bytes(b"HTTP/1.1 200 OK", headers) + body)
        else:
            detail = f"the proxy answers {HEALTH_PATH} and {METRICS_PATH}"
            conn.write(_json(404, b"Not Found", {"error": "not found", "detail": detail}, keep))
        return keep


def _json(status: int, reason: bytes, doc: object, keep: bool) -> bytes:
    return json_response(status, reason, orjson.dumps(doc), close=not keep)
