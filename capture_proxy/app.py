"""The proxy's aiohttp application: one catch-all route and the long-lived parts around it.

Routing, decided on the normalized path::

    /monitor/proxy/health, /monitor/proxy/metrics  answered here (never forwarded)
    /monitor/proxy/...                             404 here
    /monitor, /monitor/...                         forwarded to the analyzer, never captured
    anything else                                  forwarded to proxy.upstream, sampled for capture

The ClientSessions (one pooled session per backend) and the capture sink live in the app's
``cleanup_ctx``: started before the first request, drained and sealed at shutdown. Serve the
app with :class:`~capture_proxy.aio_guard.ProxySite` (client limits and timeouts); what both
engines share (routing, limits, the proxy's own answers) is in
:mod:`capture_proxy.proxy_common`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.http import HttpVersion10, HttpVersion11

from capture_proxy.aio_guard import ClientGuard, ClientGuards, guard_of
from capture_proxy.forward import UPSTREAM_SERVER, Forwarder, new_session
from capture_proxy.health import HEALTH_PATH, METRICS_PATH, health_response, metrics_response
from capture_proxy.metrics import ProxyMetrics
from capture_proxy.proxy_common import (
    ANALYZER_POOL,
    bad_request_body,
    client_limits,
    refusal_body,
    route,
)
from capture_proxy.tee import CaptureHooks, eligible, start_capture
from modelmon.config import ModelmonConfig

if TYPE_CHECKING:
    from capture_proxy.sink import CaptureSink

__all__ = ["PROXY_KEY", "Proxy", "build_app"]

log = logging.getLogger("modelmon.proxy")

_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store"}


class Proxy:
    """The request handler and the owner of the sessions and the sink of one app."""

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
        self._upstream: Forwarder | None = None
        self._analyzer: Forwarder | None = None
        self._capture: CaptureHooks | None = None
        self.guards = ClientGuards(client_limits(config), metrics)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        guard = guard_of(request)
        if guard is None:
            return await self._route(request, None)
        guard.started(request)
        try:
            return await self._route(request, guard)
        finally:
            guard.done()

    async def _route(self, request: web.Request, guard: ClientGuard | None) -> web.StreamResponse:
        if request.version not in (HttpVersion10, HttpVersion11):
            return _bad_request(
                f"unsupported HTTP version {request.version[0]}.{request.version[1]}"
            )
        if request.version == HttpVersion11 and "Host" not in request.headers:
            return _bad_request("an HTTP/1.1 request needs a Host header")
        where, path = route(request.raw_path.encode("utf-8", "surrogateescape"))
        if guard is not None and guard.overflow:
            if where == "local":  # health and metrics stay observable over the cap
                response = await self._local(request, path)
                response.force_close()
                return response
            self.metrics.refused["503"].inc()
            self.metrics.request(503)
            body = refusal_body(self.guards.limits.max_client_connections)
            refused = web.Response(
                status=503, body=body, headers={**_JSON_HEADERS, "Retry-After": "1"}
            )
            refused.force_close()
            return refused
        if where == "local":
            return await self._local(request, path)
        if where == "analyzer":
            assert self._analyzer is not None, "request before the app started"
            return await self._analyzer.forward(request)
        assert self._upstream is not None, "request before the app started"
        capture = eligible(self._capture, request.method, path)
        return await self._upstream.forward(request, capture)

    async def _local(self, request: web.Request, path: str) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
        depth = self.sink.queue_depth if self.sink is not None else 0
        if path == HEALTH_PATH:
            return await health_response(
                upstream=self.config.proxy.upstream,
                connect_timeout_s=self.config.proxy.connect_timeout_s,
                metrics=self.metrics,
                capture_enabled=self.sink is not None,
                queue_depth=depth,
                worker_id=self.worker_id,
            )
        if path == METRICS_PATH:
            return metrics_response(self.metrics)
        return web.json_response(
            {"error": "not found", "detail": f"the proxy answers {HEALTH_PATH} and {METRICS_PATH}"},
            status=404,
        )

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: sessions and sink up, then (at shutdown) sink sealed, sessions closed."""
        proxy = self.config.proxy
        upstream_session = new_session(proxy.max_connections, proxy.connect_timeout_s)
        analyzer_session = new_session(ANALYZER_POOL, proxy.connect_timeout_s)
        try:
            self._upstream = Forwarder(
                upstream_session,
                proxy.upstream,
                upstream_timeout_s=proxy.upstream_timeout_s,
                metrics=self.metrics,
            )
            self._analyzer = Forwarder(
                analyzer_session,
                self.config.analyzer_url,
                upstream_timeout_s=proxy.upstream_timeout_s,
                metrics=self.metrics,
                name="analyzer",
            )
            if self.config.capture.enabled:
                await self._start_capture()
            yield
        finally:
            try:
                if self.sink is not None:
                    self._capture = None
                    await self.sink.close()
            finally:
                await upstream_session.close()
                await analyzer_session.close()

    async def _start_capture(self) -> None:
        self.sink, self._capture = await start_capture(
            self.config, self.metrics, clock=self._clock, worker_id=self.worker_id
        )


PROXY_KEY = web.AppKey("proxy", Proxy)


def _bad_request(detail: str) -> web.Response:
    response = web.Response(status=400, body=bad_request_body(detail), headers=_JSON_HEADERS)
    response.force_close()
    return response


async def _no_server_field(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: no ``Server`` of aiohttp's own (the upstream's passes)."""
    if not response.get(UPSTREAM_SERVER):
        response.headers.popall("Server", None)


def _is_upgrade(request: web.Request) -> bool:
    """Upgrade with Connection naming it: what llhttp (the fast engine) calls an upgrade."""
    headers = request.headers
    if "Upgrade" not in headers:
        return False
    tokens = (t.strip().lower() for v in headers.getall("Connection", ()) for t in v.split(","))
    return "upgrade" in tokens


@web.middleware
async def _refuse_upgrades(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Before routing: a CONNECT target (``host:port``) matches no route."""
    if request.method == "CONNECT" or _is_upgrade(request):
        return await _not_implemented(request)
    return await handler(request)


async def _not_implemented(request: web.Request) -> web.StreamResponse:
    """Refused, never forwarded, and the connection closed at once (what follows an upgrade
    request is another protocol, which aiohttp would otherwise read for its lingering time);
    the same answer as the fast engine's."""
    response = web.json_response(
        {"error": "not implemented", "detail": "protocol upgrades and CONNECT are not supported"},
        status=501,
        headers={"Cache-Control": "no-store"},
    )
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()  # the answer is out; close after it, read nothing more
    return response


def build_app(
    config: ModelmonConfig,
    *,
    metrics: ProxyMetrics | None = None,
    clock: Callable[[], float] = time.time,
    worker_id: int = 0,
) -> web.Application:
    """The proxy app for ``config``; serve it with ``handler_cancellation=True`` (see main)."""
    proxy = Proxy(
        config,
        metrics if metrics is not None else ProxyMetrics(),
        clock=clock,
        worker_id=worker_id,
    )
    # auto_decompress off: a compressed request body goes on as it came (and is never inflated
    # whole here: capture inflates its copy within max_capture_bytes).
    app = web.Application(
        handler_args={"max_field_size": 65536, "auto_decompress": False},
        middlewares=[_refuse_upgrades],
    )
    app[PROXY_KEY] = proxy
    app.cleanup_ctx.append(proxy.lifecycle)
    app.on_response_prepare.append(_no_server_field)
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    return app
