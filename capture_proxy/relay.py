"""The fast engine's request path: route, forward, relay back, tee for capture.

Same contract as :mod:`capture_proxy.forward` (the aiohttp engine), on raw connections:
upstream failures become 502/504 JSON here and only here; a response that breaks after its
head cuts the client connection; capture keeps at most ``max_capture_bytes`` per body and
never changes or delays the response.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from capture_proxy.http1 import (
    HOP_BY_HOP_B,
    LAST_CHUNK,
    REQUEST_DROPPED,
    chunk,
    json_response,
)
from capture_proxy.metrics import ProxyMetrics
from capture_proxy.proxy_common import WHOLE_BODY_BYTES, error_body, origin_form
from capture_proxy.server import ClientConnection, Request
from capture_proxy.tee import (
    CUSTOM_ATTRIBUTES_HEADER,
    EVENT_ID_HEADER,
    CaptureHooks,
    Tee,
    hand_over,
    status_eligible,
)
from capture_proxy.upstream import (
    UpstreamBroken,
    UpstreamConnection,
    UpstreamError,
    UpstreamPool,
    UpstreamTimeout,
    UpstreamUnreachable,
)

__all__ = ["Relay"]

log = logging.getLogger("modelmon.proxy.forward")

_EVENT_ID = EVENT_ID_HEADER.encode()
_CUSTOM = CUSTOM_ATTRIBUTES_HEADER.lower().encode()
_NO_BODY_STATUS = frozenset({204, 304})
_ALWAYS_WATCHED = frozenset({b"host", b"content-type", b"content-encoding", _CUSTOM})
_CRLF = b"\r\n"
_WHOLE = WHOLE_BODY_BYTES
# RFC 9110 §9.2.2: only these may be sent again automatically when a connection fails before
# the answer (the upstream may have acted on a POST it never answered).
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})


class Relay:
    """Forwards to one backend through its pool; ``name`` labels logs and errors."""

    def __init__(
        self,
        pool: UpstreamPool,
        *,
        upstream_timeout_s: float,
        metrics: ProxyMetrics,
        name: str = "upstream",
    ) -> None:
        self._pool = pool
        self._timeout = upstream_timeout_s
        self._metrics = metrics
        self._name = name
        self._loop = asyncio.get_running_loop()
        self._clock: Callable[[], float] = time.time
        self._id_names: tuple[bytes, ...] = ()
        self._watch: frozenset[bytes] = _ALWAYS_WATCHED

    def _watched(self, capture: CaptureHooks | None) -> frozenset[bytes]:
        if capture is not None and not self._id_names:
            self._id_names = tuple(h.lower().encode() for h in capture.inference_id_headers)
            self._watch = _ALWAYS_WATCHED | frozenset(self._id_names)
        return self._watch

    async def forward(
        self, req: Request, conn: ClientConnection, capture: CaptureHooks | None = None
    ) -> bool:
        """Forward ``req``, answer on ``conn``; True when the connection may be kept."""
        started = self._clock()
        t0 = time.perf_counter()
        target = origin_form(req.target)
        if target is None:
            conn.write(_error(400, b"Bad Request", "bad request", "bad request target", "", True))
            return False
        event_id: str | None = None
        # What capture keeps of each body: the bytes of a whole one (cut at hand-over), or a
        # Tee for one that streams. None: that side is not captured.
        tee_in: Tee | None = None
        captured_in: Tee | bytes | None = None
        captured_out: Tee | bytes | None = None
        capture_in = capture_out = False
        xff = b""
        proto = False
        seen: dict[bytes, bytes] = {}
        watched = self._watch if capture is None or self._id_names else self._watched(capture)
        lines = [req.method + b" " + target + b" HTTP/1.1"]
        named = req.named
        # One pass over the fields, by the names lower-cased while parsing: hop-by-hop and
        # framing fields and those the Connection fields name are dropped.
        for (name, value), lower in zip(req.headers, req.names, strict=True):
            if lower in REQUEST_DROPPED or (named is not None and lower in named):
                continue
            if lower == b"x-forwarded-for":
                xff = xff + b", " + value if xff else value
                continue
            if lower == b"x-forwarded-proto":
                proto = True
            elif lower in watched and lower not in seen:
                seen[lower] = value
            lines.append(name + b": " + value)
        if b"host" not in seen:  # an HTTP/1.0 client may omit it; HTTP/1.1 requires one
            lines.append(b"Host: " + self._pool.host_header)
        lines.append(b"X-Forwarded-For: " + (xff + b", " if xff else b"") + conn.peer_bytes)
        if not proto:
            lines.append(b"X-Forwarded-Proto: http")
        inference_id: str | None = None
        if capture is not None:
            event_id = capture.event_ids.next()
            for key in self._id_names:
                if seen.get(key):
                    inference_id = seen[key].decode("latin-1")
                    break
            if capture.sample(inference_id):
                capture_in, capture_out = capture.capture_input, capture.capture_output
            else:
                capture.metrics.sampled_out.inc()
                capture = None

        length = req.content_length
        if length is not None and length <= _WHOLE and not req.body.done:
            # A small body is read whole before a pooled connection is taken, so that a slow
            # upload holds none (the client's body_idle_timeout_s bounds the wait).
            try:
                await req.body.wait_done()
            except ConnectionError:
                return False  # the client is gone, or its body broke (already answered)
        body = req.body.take_all() if req.has_body else b""
        if body is not None:
            if req.has_body or req.content_length == 0:
                lines.append(b"Content-Length: %d" % len(body))
            if capture_in:
                captured_in = body
        else:
            if capture_in and capture is not None:
                tee_in = captured_in = Tee(capture.max_capture_bytes)
            lines.append(
                b"Transfer-Encoding: chunked"
                if req.content_length is None
                else b"Content-Length: %d" % req.content_length
            )
        lines.append(b"\r\n")
        head = b"\r\n".join(lines)

        up: UpstreamConnection | None = None
        sender: asyncio.Task[None] | None = None
        try:
            for attempt in (1, 2):
                try:
                    up = self._pool.idle() or await self._pool.acquire()
                    head_done = up.begin(head_only=req.method == b"HEAD")
                    if body is not None:
                        up.write(head + body)
                        up.arm_timeout(self._timeout)
                    else:
                        up.write(head)
                        up.arm_timeout(self._timeout)
                        if tee_in is not None:
                            tee_in.complete = False  # until the client's body has ended
                        sender = self._loop.create_task(
                            self._send_body(req, up, tee_in), name="proxy-upload"
                        )
                    await head_done
                    break
                except UpstreamUnreachable as exc:
                    # A reused keep-alive connection that closed before any answer: most likely
                    # the upstream closed it while idle, but it may have read the request and
                    # failed. Only an idempotent request with its body in hand goes again.
                    if (
                        attempt == 1
                        and up is not None
                        and up.reused
                        and not up.received_any
                        and body is not None
                        and req.method in _IDEMPOTENT
                    ):
                        self._pool.release(up, reusable=False)
                        up = None
                        continue
                    await self._abandon(up, sender)
                    return self._fail(conn, req, 502, "upstream unreachable", exc)
                except UpstreamTimeout as exc:
                    await self._abandon(up, sender)
                    return self._fail(conn, req, 504, "upstream timeout", exc)
            assert up is not None and up.body is not None
            self._metrics.upstream_latency.observe(time.perf_counter() - t0)
            if capture is not None and not status_eligible(capture, up.status):
                capture = event_id = None  # before any of the body is copied
                capture_out = False
            try:
                # The response head and body to the client (no coroutine of its own for the
                # usual complete small body: head and body in one write).
                lines, keep, chunked_out = self._head(req, up, event_id)
                whole = up.body.take_all()
                if whole is not None:
                    if capture_out:
                        captured_out = whole
                    if chunked_out:
                        whole = (chunk(whole) if whole else b"") + LAST_CHUNK
                    conn.write(_CRLF.join(lines) + whole)
                    if conn.write_paused:
                        await self._drain(conn)
                else:
                    tee_out = None
                    if capture_out and capture is not None:
                        tee_out = captured_out = Tee(capture.max_capture_bytes)
                    await self._stream(conn, up, lines, tee_out, chunked_out)
            except _Cut:
                keep, cut = False, True
            else:
                cut = False
            reusable = not cut
            if sender is not None and not sender.done():
                sender.cancel()  # answered before the whole request body was read
                keep = reusable = False
            if sender is not None:
                await asyncio.gather(sender, return_exceptions=True)
        except BaseException:
            await self._abandon(up, sender)
            raise
        self._pool.release(up, reusable=reusable)
        if cut:
            return False
        self._metrics.request(up.status)
        if capture is not None and event_id is not None:
            resp_type, resp_encoding = up.content_type, up.content_encoding
            custom, req_type, req_encoding = (
                seen.get(_CUSTOM),
                seen.get(b"content-type"),
                seen.get(b"content-encoding"),
            )
            hand_over(
                capture,
                event_id=event_id,
                started=started,
                t0=t0,
                inference_id=inference_id,
                custom_attributes=custom.decode("latin-1") if custom else None,
                tee_in=captured_in,
                tee_out=captured_out,
                request_type=req_type.decode("latin-1") if req_type else None,
                request_encoding=req_encoding.decode("latin-1") if req_encoding else None,
                response_type=None if resp_type is None else resp_type.decode("latin-1"),
                response_encoding=None
                if resp_encoding is None
                else resp_encoding.decode("latin-1"),
                status=up.status,
            )
        return keep and req.body.done

    async def _abandon(
        self, up: UpstreamConnection | None, sender: asyncio.Task[None] | None
    ) -> None:
        """Give up an exchange: stop the upload and drop (never reuse) its connection."""
        if up is not None:
            self._pool.release(up, reusable=False)
        if sender is not None:
            if not sender.done():
                sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def _send_body(self, req: Request, up: UpstreamConnection, tee: Tee | None) -> None:
        chunked = req.content_length is None
        while not up.closed:
            try:
                data = await req.body.read()
            except ConnectionError:
                up.abort()  # a half-sent body must never be completed or reused
                raise
            if not data:
                if tee is not None:
                    tee.complete = True
                break
            if tee is not None:
                tee.add(data)
            up.write(chunk(data) if chunked else data)
            up.arm_timeout(self._timeout)  # the header timeout runs from the last byte sent
            await up.drain()
        if chunked:
            up.write(LAST_CHUNK)

    def _head(
        self, req: Request, up: UpstreamConnection, event_id: str | None
    ) -> tuple[list[bytes], bool, bool]:
        """The response head's lines for the client; whether the client connection may be kept
        and whether the body goes out chunked."""
        status = up.status
        # The fields as the upstream sent them, less hop-by-hop, re-framed and Connection-named
        # ones (noted by the parser; most responses need no filtering at all).
        named = up.named
        if named is None or named <= HOP_BY_HOP_B:  # e.g. "Connection: keep-alive"
            lines = [b"HTTP/1.1 %d %s" % (status, up.reason), *up.lines]
        else:
            lines = [b"HTTP/1.1 %d %s" % (status, up.reason)]
            lines += [
                line for line, lower in zip(up.lines, up.names, strict=True) if lower not in named
            ]
        keep = req.keep_alive
        chunked_out = False
        if req.method != b"HEAD" and status not in _NO_BODY_STATUS and up.length is None:
            if req.version == "1.1":
                lines.append(b"Transfer-Encoding: chunked")
                chunked_out = True
            else:
                keep = False  # an HTTP/1.0 client reads this body until the close
        if event_id is not None:
            lines.append(_EVENT_ID + b": " + event_id.encode())
        if not keep:
            lines.append(b"Connection: close")
        elif req.version == "1.0":
            lines.append(b"Connection: keep-alive")
        lines.append(_CRLF)
        return lines, keep, chunked_out

    async def _drain(self, conn: ClientConnection) -> None:
        """Wait for a client that reads slowly (or pipelines and reads nothing)."""
        try:
            await conn.drain()
        except ConnectionError as exc:
            self._metrics.upstream_errors.labels(kind="client_gone").inc()
            conn.abort()
            raise _Cut from exc

    async def _stream(
        self,
        conn: ClientConnection,
        up: UpstreamConnection,
        lines: list[bytes],
        tee: Tee | None,
        chunked_out: bool,
    ) -> None:
        """Write the head, then stream the body as it arrives (a large or slow response)."""
        assert up.body is not None
        conn.write(_CRLF.join(lines))
        try:
            while True:
                data = await up.body.read()
                if not data:
                    break
                if tee is not None:
                    tee.add(data)
                conn.write(chunk(data) if chunked_out else data)
                await conn.drain()
            if chunked_out:
                conn.write(LAST_CHUNK)
        except (UpstreamBroken, ConnectionError) as exc:
            # The status line is out: a cut connection is the only honest signal left.
            kind = "upstream_broken" if isinstance(exc, UpstreamBroken) else "client_gone"
            self._metrics.upstream_errors.labels(kind=kind).inc()
            log.info("%s: response cut (%s: %s)", self._name, type(exc).__name__, exc)
            conn.abort()
            up.abort()
            raise _Cut from exc

    def _fail(
        self, conn: ClientConnection, req: Request, status: int, error: str, exc: UpstreamError
    ) -> bool:
        kind = exc.kind  # unreachable, timeout, pool_exhausted
        self._metrics.upstream_errors.labels(kind=kind).inc()
        self._metrics.request(status)
        log.warning("%s %s (%s): %s", self._name, error.split()[-1], self._pool.url, exc)
        keep = req.keep_alive and req.body.done
        reason = b"Gateway Timeout" if status == 504 else b"Bad Gateway"
        conn.write(_error(status, reason, error, str(exc), self._pool.url, not keep))
        return keep


class _Cut(Exception):
    """The response was cut mid-body; both connections are already aborted."""


def _error(status: int, reason: bytes, error: str, detail: str, target: str, close: bool) -> bytes:
    return json_response(status, reason, error_body(error, target, detail), close=close)
