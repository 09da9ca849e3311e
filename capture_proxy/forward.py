"""Forwarding one request to an upstream and its response back, streamed both ways.

The one place where upstream failures become the proxy's own answers::

    refused, reset, DNS failure, ...      -> 502 {"error": "upstream unreachable", ...}
    no response headers in time           -> 504 {"error": "upstream timeout", ...}
    upstream breaks after headers are sent -> the client connection is cut (the status is gone)
    client goes away                       -> the handler is cancelled (``handler_cancellation``)
                                              and so is the upstream request

Capture is a tee on the side: at most ``max_capture_bytes`` of each body is kept while the bytes
stream through, and the finished :class:`~capture_proxy.exchange.Exchange` is handed to
``submit`` (non-blocking). Nothing capture does can change or delay the response.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from aiohttp.http import HttpProcessingError
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from capture_proxy.metrics import ProxyMetrics
from capture_proxy.proxy_common import (
    HOP_BY_HOP,
    WHOLE_BODY_BYTES,
    bad_request_body,
    error_body,
)
from capture_proxy.tee import (
    CUSTOM_ATTRIBUTES_HEADER,
    EVENT_ID_HEADER,
    CaptureHooks,
    Tee,
    hand_over,
    status_eligible,
)

__all__ = [
    "HOP_BY_HOP",
    "UPSTREAM_SERVER",
    "Forwarder",
    "error_response",
    "new_session",
]

log = logging.getLogger("modelmon.proxy.forward")

# Set on a relayed response whose upstream sent a Server field (any other loses aiohttp's own).
UPSTREAM_SERVER = web.ResponseKey("modelmon_upstream_server", bool)
# Expect: 100-continue was already answered by our own server; the upstream sees a plain request.
_REQUEST_ONLY_DROP = frozenset({"expect"})

# Bodies up to this size with a Content-Length are read at once (cheaper than a streamed
# payload); anything larger or of unknown size streams chunk by chunk.
_SMALL_BODY = WHOLE_BODY_BYTES


def new_session(limit: int, connect_timeout_s: float) -> aiohttp.ClientSession:
    """The one pooled, keep-alive session to a backend, as transparent as aiohttp allows.

    No cookie jar (one client's cookies must never reach another), no automatic
    decompression (compressed bodies pass compressed), no default headers added.
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, ttl_dns_cache=300),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        trust_env=False,
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        timeout=aiohttp.ClientTimeout(total=None, connect=connect_timeout_s),
    )


def error_response(status: int, error: str, target: str, detail: str) -> web.Response:
    """The proxy's own short JSON error answer (502, 504), the fast engine's bytes."""
    return web.Response(
        body=error_body(error, target, detail),
        status=status,
        headers={"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store"},
    )


def _connection_tokens(headers: CIMultiDictProxy[str]) -> frozenset[str]:
    values = headers.getall("Connection", ())
    if not values:
        return frozenset()
    return frozenset(t.strip().lower() for v in values for t in v.split(",") if t.strip())


def _request_headers(request: web.Request) -> CIMultiDict[str]:
    src = request.headers
    named = _connection_tokens(src)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in src.items():
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in _REQUEST_ONLY_DROP or lower in named:
            continue
        out.add(name, value)
    peer = request.remote or ""
    previous = ", ".join(src.getall("X-Forwarded-For", ()))
    out["X-Forwarded-For"] = f"{previous}, {peer}" if previous else peer
    if "X-Forwarded-Proto" not in out:
        out["X-Forwarded-Proto"] = request.scheme
    return out


def _response_headers(upstream: aiohttp.ClientResponse) -> CIMultiDict[str]:
    src = upstream.headers
    named = _connection_tokens(src)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in src.items():
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in named:
            continue
        out.add(name, value)
    return out


def _bad_body(exc: HttpProcessingError) -> web.Response:
    detail = f"malformed request: {exc.message}"
    response = web.Response(
        status=400,
        body=bad_request_body(detail),
        headers={"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store"},
    )
    response.force_close()
    return response


class Forwarder:
    """Forwards requests to one backend (the model server, or the analyzer for ``/monitor/*``)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        upstream_timeout_s: float,
        metrics: ProxyMetrics,
        name: str = "upstream",
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._timeout = upstream_timeout_s
        self._metrics = metrics
        self._name = name
        self._active = 0  # exchanges in progress: holding or waiting for a pooled connection

    async def forward(
        self, request: web.Request, capture: CaptureHooks | None = None
    ) -> web.StreamResponse:
        """Send ``request`` on, stream the answer back, capture it when ``capture`` samples it."""
        started = time.time()
        loop_start = time.perf_counter()
        event_id: str | None = None
        tee_in: Tee | None = None
        tee_out: Tee | None = None
        inference_id: str | None = None
        if capture is not None:
            event_id = capture.event_ids.next()
            for header in capture.inference_id_headers:
                inference_id = request.headers.get(header)
                if inference_id:
                    break
            if capture.sample(inference_id or None):
                if capture.capture_input:
                    tee_in = Tee(capture.max_capture_bytes)
                if capture.capture_output:
                    tee_out = Tee(capture.max_capture_bytes)
            else:
                capture.metrics.sampled_out.inc()
                capture = None

        target = request.raw_path
        if not target.startswith("/"):  # absolute-form: the origin-form part goes on
            target = request.rel_url.raw_path_qs
        url = URL(self._base + target, encoded=True)
        headers = _request_headers(request)
        data: bytes | AsyncIterator[bytes] | None = None
        small = request.content_length is not None and request.content_length <= _SMALL_BODY
        if request.body_exists and small:
            data = await request.read()
            if tee_in is not None:
                tee_in.add(data)
        bad_body: list[HttpProcessingError] = []  # the client's body broke (a bad chunk ...)
        self._active += 1
        try:
            try:
                async with asyncio.timeout(self._timeout) as deadline:
                    if request.body_exists and not small:
                        if tee_in is not None:
                            tee_in.complete = False  # until the client's body has ended
                        data = self._stream_body(request, tee_in, deadline, bad_body)
                    upstream = await self._session.request(
                        request.method,
                        url,
                        headers=headers,
                        data=data,
                        allow_redirects=False,
                        compress=None,
                    )
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                return self._failed(exc, bad_body)
            if capture is not None and not status_eligible(capture, upstream.status):
                capture = tee_out = event_id = None  # before any of the body is copied
            return await self._relay(
                request,
                upstream,
                capture,
                tee_in,
                tee_out,
                event_id,
                inference_id,
                started,
                loop_start,
            )
        finally:
            self._active -= 1

    async def _stream_body(
        self,
        request: web.Request,
        tee: Tee | None,
        deadline: asyncio.Timeout,
        bad_body: list[HttpProcessingError],
    ) -> AsyncIterator[bytes]:
        # The header timeout runs from the last byte of the request body sent, so a long upload
        # is not mistaken for a slow upstream.
        loop = asyncio.get_running_loop()
        try:
            async for chunk in request.content.iter_any():
                if tee is not None:
                    tee.add(chunk)
                deadline.reschedule(loop.time() + self._timeout)
                yield chunk
            if tee is not None:
                tee.complete = True
        except HttpProcessingError as exc:
            # The client's framing broke mid-upload: end the exchange now (the upstream must
            # not wait for the rest); forward answers 400, as the fast engine does.
            bad_body.append(exc)
            deadline.reschedule(loop.time())
            raise

    def _failed(
        self, exc: TimeoutError | aiohttp.ClientError | OSError, bad_body: list[HttpProcessingError]
    ) -> web.Response:
        """The answer for an exchange that got no response head."""
        if bad_body:  # the client's fault, not the upstream's
            return _bad_body(bad_body[0])
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            # aiohttp's connect timeout covers the wait for a pooled connection too: when
            # every connection was held by another exchange, say so (as the fast engine).
            limit = self._session.connector.limit if self._session.connector else 0
            if limit and self._active - 1 >= limit:
                seconds = self._session.timeout.connect or 0.0
                detail = (
                    f"no free connection to the upstream within {seconds:g}s (all {limit} in use)"
                )
                return self._fail(504, "upstream timeout", exc, "pool_exhausted", detail)
        if isinstance(exc, TimeoutError):  # also aiohttp's connect timeout
            return self._fail(504, "upstream timeout", exc)
        return self._fail(502, "upstream unreachable", exc)

    def _fail(
        self,
        status: int,
        error: str,
        exc: BaseException,
        kind: str | None = None,
        detail: str | None = None,
    ) -> web.Response:
        if kind is None:
            kind = "timeout" if status == 504 else "unreachable"
        self._metrics.upstream_errors.labels(kind=kind).inc()
        self._metrics.request(status)
        if detail is None:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        log.warning("%s %s (%s): %s", self._name, error.split()[-1], self._base, detail)
        return error_response(status, error, self._base, detail)

    async def _relay(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        capture: CaptureHooks | None,
        tee_in: Tee | None,
        tee_out: Tee | None,
        event_id: str | None,
        inference_id: str | None,
        started: float,
        loop_start: float,
    ) -> web.StreamResponse:
        self._metrics.upstream_latency.observe(time.perf_counter() - loop_start)
        headers = _response_headers(upstream)
        if event_id is not None:
            headers[EVENT_ID_HEADER] = event_id
        response = web.StreamResponse(
            status=upstream.status, reason=upstream.reason, headers=headers
        )
        if "Server" in headers:
            response[UPSTREAM_SERVER] = True
        try:
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                if tee_out is not None:
                    tee_out.add(chunk)
                await response.write(chunk)
            await response.write_eof()
            # aiohttp drains only within one body, above 64 KiB: a client that pipelines small
            # requests and reads nothing would have every answer buffered here.
            await request.writer.drain()
        except (aiohttp.ClientError, OSError) as exc:
            # Either side broke mid-body. The status line is already out, so the only honest
            # signal left for the client is a cut connection (never a clean, short body).
            upstream.close()
            kind = "client_gone" if isinstance(exc, ConnectionResetError) else "upstream_broken"
            self._metrics.upstream_errors.labels(kind=kind).inc()
            log.info("%s: response cut (%s: %s)", self._name, type(exc).__name__, exc)
            if request.transport is not None:
                request.transport.abort()
            return response
        except BaseException:  # cancelled: the client went away; drop the upstream connection
            upstream.close()
            raise
        upstream.release()
        self._metrics.request(upstream.status)
        if capture is not None and event_id is not None:
            rh, uh = request.headers, upstream.headers
            hand_over(
                capture,
                event_id=event_id,
                started=started,
                t0=loop_start,
                inference_id=inference_id,
                custom_attributes=rh.get(CUSTOM_ATTRIBUTES_HEADER),
                tee_in=tee_in,
                tee_out=tee_out,
                request_type=rh.get("Content-Type"),
                request_encoding=rh.get("Content-Encoding"),
                response_type=uh.get("Content-Type"),
                response_encoding=uh.get("Content-Encoding"),
                status=upstream.status,
            )
        return response
