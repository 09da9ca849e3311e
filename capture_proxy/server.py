"""The fast engine's server side: an asyncio Protocol per client connection, parsed by llhttp.

Each connection runs one kept task that takes its requests in order (pipelining allowed) and
hands each to the handler; body bytes flow through a :class:`BodyStream` with flow control.
Reading pauses while a pipelined request waits for the one in flight (so a client that sends
requests and reads no answers holds at most one read's worth of them), and the handler waits
for the transport to drain above its high-water mark. A parse error answers 400 (431 for an
oversized head, 501 for an upgrade, CONNECT or an unknown transfer coding) and closes. A
client that hangs up cancels its task, so the handler's upstream exchange is cancelled with
it. Shutdown stops accepting, closes idle connections and waits for busy ones.

Slow and idle clients (:class:`~capture_proxy.proxy_common.ClientLimits`, the same on the
aiohttp engine): one :class:`~capture_proxy.proxy_common.ClientTimer` per connection closes it
when a request head takes longer than ``header_timeout_s`` (408), a request body pauses longer
than ``body_idle_timeout_s`` (408, and its upstream exchange is abandoned), or nothing happens
for ``keepalive_timeout_s``. Over ``max_client_connections`` a connection is marked
``overflow`` (the handler answers it 503 unless it asks for health or metrics) while one of
the :data:`~capture_proxy.proxy_common.REFUSAL_SLOTS` is free or held by a silent connection
(closed to make room); otherwise it is closed at once (:func:`~capture_proxy.proxy_common.admit`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import httptools

from capture_proxy.http1 import (
    MAX_HEAD_BYTES,
    BodyStream,
    ClientGone,
    connection_tokens,
    json_response,
)
from capture_proxy.proxy_common import ClientTimer, Phase, bad_request_body, timeout_body

if TYPE_CHECKING:
    from capture_proxy.fast_server import FastServer

__all__ = ["ClientConnection", "Request"]

log = logging.getLogger("modelmon.proxy.server")

_LINGER_S = 2.0
_VERSIONS = frozenset({"1.0", "1.1"})
# Why reading is paused (a bit each): a body above its high-water mark, a pipelined request
# waiting for the one in flight. Reading resumes when no reason is left.
_BODY = 1
_QUEUED = 2


@dataclass(slots=True)
class Request:
    method: bytes
    target: bytes
    version: str
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    body: BodyStream
    has_body: bool
    content_length: int | None
    error: tuple[int, bytes, str] | None = None  # answer this instead of forwarding
    expect_continue: bool = False
    names: list[bytes] = field(default_factory=list)  # lower-cased, parallel to headers
    named: frozenset[bytes] | None = None  # the tokens of the Connection fields, if any
    error_body: bytes | None = None  # the body of the error answer (default: bad request)


Handler = Callable[[Request, "ClientConnection"], Awaitable[bool]]


class ClientConnection(asyncio.Protocol):
    """One client connection: parser callbacks in, requests out to the handler."""

    def __init__(self, server: FastServer) -> None:
        self._server = server
        self._loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.peer_bytes = b""
        self.closed = False
        self.busy = False
        self.overflow = False  # over max_client_connections: answered 503 unless local
        self._limits = server.limits
        self._timer = ClientTimer(self._loop, self._expired)
        self._current: Request | None = None  # the request being served
        self._wrote = False  # any byte of an answer to _current written
        self._counted = False
        self._parser = httptools.HttpRequestParser(self)
        self._pause_cb, self._resume_cb = self._pause_body, self._resume_body  # bound once
        self._queue: deque[Request] = deque()
        self._next: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._write_paused = False
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._names: list[bytes] = []
        self._named: frozenset[bytes] | None = None
        self._paused_by = 0
        self._head_size = 0  # exact: the URL and the header fields of the current message
        self._stalled = 0  # bytes of consecutive reads that completed nothing (see below)
        self._progress = False
        self._in_head = False
        self._arm: Phase | None = None  # the phase to arm when the current read is parsed
        self._parsing: Request | None = None
        self._broken = False
        self._lingering = False

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its interface.
        self.transport = cast(asyncio.Transport, transport)
        where = self._server.admit(self)
        if where == "closed":
            self.closed = True
            self.transport.abort()
            return
        self._counted = True
        self._server.metrics.client_connections.inc()
        if where == "overflow":
            self.overflow = True  # only health, metrics or a 503: no long stay either
            self._timer.arm("idle", min(self._limits.header_timeout_s, self._keepalive()))
        else:
            self._timer.arm("idle", self._keepalive())
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) else ""
        self.peer_bytes = self.peer.encode()
        self._server.connections.add(self)
        self._task = self._server.keep(self._loop.create_task(self._run(), name="proxy-conn"))

    def data_received(self, data: bytes) -> None:
        if self._broken:
            return
        timer = self._timer
        if timer.phase == "body":
            timer.arm("body", self._limits.body_idle_timeout_s)
        self._progress = False
        try:
            self._parser.feed_data(data)
            # The phase the read ended in is armed once per read, not per callback: a request
            # that arrives whole in one read (the usual case) arms no timer at all.
            arm = self._arm
            if arm is not None:
                self._arm = None
                limits = self._limits
                timer.arm(
                    arm, limits.header_timeout_s if arm == "head" else limits.body_idle_timeout_s
                )
            # A field that never ends is buffered by httptools without a callback: bound it by
            # the reads that completed nothing (no head, no body bytes, no message). Those are
            # all head, chunk-framing or trailer bytes, so the count never includes a body.
            if self._progress:
                self._stalled = 0
            else:
                self._stalled += len(data)
                if self._stalled > MAX_HEAD_BYTES:
                    raise httptools.HttpParserError("request head too large")
        except httptools.HttpParserUpgrade:
            # The request itself was queued with its 501 by on_headers_complete; what follows
            # it is another protocol: read nothing more.
            self._broken = True
        except httptools.HttpParserError as exc:
            if self._head_size > MAX_HEAD_BYTES or self._stalled > MAX_HEAD_BYTES:
                self._reject(431, b"Request Header Fields Too Large", "request head too large")
            else:
                self._reject(400, b"Bad Request", f"malformed request: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._timer.cancel()
        if self._counted:
            self._counted = False
            self._server.metrics.client_connections.dec()
        self._server.overflow.pop(self, None)
        self._server.idle.pop(self, None)
        self._server.connections.discard(self)
        if self._parsing is not None:
            self._parsing.body.fail(ClientGone("client closed the connection"))
        for waiter in (self._next, self._drain):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        if self._task is not None and not self._task.done() and self.busy:
            self._task.cancel()  # the client is gone: so is its upstream exchange

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # -- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._names = []
        self._named = None
        self._head_size = 0
        self._in_head = True
        self._arm = "head"  # armed at the end of this read, unless the message is done by then
        self._server.idle.pop(self, None)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > MAX_HEAD_BYTES:
            raise httptools.HttpParserError("request head too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > MAX_HEAD_BYTES:
            raise httptools.HttpParserError("request head too large")
        if not self._in_head:
            return  # a trailer field of a chunked body: counted, never forwarded
        self._headers.append((name, value))
        lower = name.lower()
        self._names.append(lower)
        if lower == b"connection":
            tokens = connection_tokens(value)
            self._named = tokens if self._named is None else self._named | tokens

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._progress = True
        parser = self._parser
        length: int | None = None
        chunked = False
        error: tuple[int, bytes, str] | None = None
        hosts = 0
        expect = False
        for lower, (_, value) in zip(self._names, self._headers, strict=True):
            if lower == b"content-length":
                length = int(value)
            elif lower == b"transfer-encoding":
                chunked = True
                if value.strip().lower() != b"chunked":
                    error = (
                        501,
                        b"Not Implemented",
                        "only Transfer-Encoding: chunked is supported",
                    )
            elif lower == b"host":
                hosts += 1
            elif lower == b"expect" and value.lower() == b"100-continue":
                expect = True
        version = parser.get_http_version()
        if hosts > 1:
            error = (400, b"Bad Request", "more than one Host header")
        elif version not in _VERSIONS:
            error = (400, b"Bad Request", f"unsupported HTTP version {version}")
        elif hosts == 0 and version == "1.1":
            error = (400, b"Bad Request", "an HTTP/1.1 request needs a Host header")
        if parser.should_upgrade():  # Connection: upgrade + Upgrade, or CONNECT
            error = (501, b"Not Implemented", "protocol upgrades and CONNECT are not supported")
        request = Request(
            method=parser.get_method(),
            target=self._url,
            version=version,
            headers=self._headers,
            keep_alive=parser.should_keep_alive() and error is None,
            body=BodyStream(self._pause_cb, self._resume_cb),
            has_body=chunked or bool(length),
            content_length=length,
            error=error,
            expect_continue=expect and (chunked or bool(length)),
            names=self._names,
            named=self._named,
        )
        if not request.has_body:
            request.body.finish()
            self._timer.stop()
            self._arm = None
        else:
            self._arm = "body"  # armed at the end of this read, unless the body is in by then
        self._parsing = request
        if self.busy or self._queue:
            # Pipelined behind a request in flight: read no further until it is served, so
            # the queue holds at most what one read carried (uvicorn does the same).
            self._pause_reading(_QUEUED)
        self._queue.append(request)
        if self._next is not None and not self._next.done():
            self._next.set_result(None)

    def on_body(self, data: bytes) -> None:
        self._progress = True
        if self._parsing is not None:
            self._parsing.body.feed(data)

    def on_message_complete(self) -> None:
        self._timer.stop()
        self._arm = None
        self._progress = True
        if self._parsing is not None:
            self._parsing.body.finish()
            self._parsing = None

    # -- read flow control -----------------------------------------------------------------

    def _pause_reading(self, reason: int) -> None:
        if not self._paused_by and self.transport is not None:
            self.transport.pause_reading()
        self._paused_by |= reason

    def _resume_reading(self, reason: int) -> None:
        if self._paused_by & reason:
            self._paused_by &= ~reason
            if not self._paused_by and self.transport is not None and not self.closed:
                self.transport.resume_reading()

    def _pause_body(self) -> None:
        self._pause_reading(_BODY)

    def _resume_body(self) -> None:
        self._resume_reading(_BODY)

    # -- serving --------------------------------------------------------------------------

    def _reject(
        self, status: int, reason: bytes, detail: str, body_text: bytes | None = None
    ) -> None:
        """Answer an error after what is in flight and read nothing more.

        The request whose message broke (a bad chunk, a stalled body) is never forwarded;
        when its exchange is already in flight, it is abandoned (the task is cancelled, the
        upstream connection dropped) and the error goes out now, unless part of an answer
        already did (then the connection is cut).
        """
        self._broken = True  # from here on, whatever arrives is read and dropped
        self._timer.stop()
        self._arm = None
        text = bad_request_body(detail) if body_text is None else body_text
        broken, self._parsing = self._parsing, None
        if broken is not None:
            if broken is self._current and self.busy:
                if self._task is not None:
                    self._task.cancel()  # first: the exchange sees a cancel, not an error
                broken.body.fail(ClientGone(detail))
                if self._wrote:
                    self.abort()
                else:
                    self.write(json_response(status, reason, text, close=True))
                    self._linger()
                return
            broken.body.fail(ClientGone(detail))
            if broken in self._queue:
                self._queue.remove(broken)  # a request with a broken body is never forwarded
        body = BodyStream()
        body.finish()
        error = (status, reason, detail)
        self._queue.append(
            Request(b"", b"", "1.1", [], False, body, False, None, error, error_body=text)
        )
        if self._next is not None and not self._next.done():
            self._next.set_result(None)

    def _expired(self, phase: Phase) -> None:
        """The deadline of ``phase`` passed (see :class:`ClientTimer`)."""
        if self.closed or self._broken:
            return
        limits = self._limits
        if phase == "idle":
            if self.busy or self._queue or self._parsing is not None or self._in_head:
                return  # not idle after all
            self._server.metrics.timeouts["idle"].inc()
            self.close()
        elif phase == "head":
            if self.busy:  # pipelined behind an answer in progress: not the client's delay
                self._timer.arm("head", limits.header_timeout_s)
                return
            self._server.metrics.timeouts["head"].inc()
            seconds = limits.header_timeout_s
            text = timeout_body("head", seconds)
            self._reject(408, b"Request Timeout", "request head timeout", text)
        else:
            transport = self.transport
            if transport is not None and not transport.is_reading():
                # Paused by the proxy (flow control): the client is not the one waiting.
                self._timer.arm("body", limits.body_idle_timeout_s)
                return
            self._server.metrics.timeouts["body"].inc()
            seconds = limits.body_idle_timeout_s
            text = timeout_body("body", seconds)
            self._reject(408, b"Request Timeout", "request body timeout", text)

    def evict(self) -> bool:
        """Close this connection if it has no request in progress (see ``admit``)."""
        if self._timer.phase != "idle" or self.busy or self._queue or self.closed:
            return False
        metrics = self._server.metrics
        (metrics.refused["closed"] if self.overflow else metrics.timeouts["idle"]).inc()
        self.abort()
        return True

    def _keepalive(self) -> float:
        return self._limits.keepalive_timeout_s

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self._wrote = True
            self.transport.write(data)

    @property
    def write_paused(self) -> bool:
        """The transport holds more than its high-water mark: :meth:`drain` before more."""
        return self._write_paused

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionResetError("client closed the connection")
        if self._write_paused:
            self._drain = self._loop.create_future()
            await self._drain
            if self.closed:
                raise ConnectionResetError("client closed the connection")

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def _run(self) -> None:
        try:
            while not self.closed:
                while not self._queue:
                    if self.closed or self._server.closing:
                        return
                    self._next = self._loop.create_future()
                    await self._next
                    self._next = None
                request = self._queue.popleft()
                self.busy = True
                self._current = request
                if self._paused_by & _QUEUED and not self._queue:
                    self._resume_reading(_QUEUED)  # read the next request while this one runs
                if request.expect_continue and not request.body.done:
                    # Only now: written earlier, it could land inside a previous answer.
                    self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                self._wrote = False  # a final answer may still follow a 100 Continue
                try:
                    if request.error is not None:
                        status, reason, detail = request.error
                        error = "not implemented" if status == 501 else "bad request"
                        text = request.error_body or bad_request_body(detail, error)
                        self.write(json_response(status, reason, text, close=True))
                        self._linger()
                        return
                    keep = await self._server.handler(request, self)
                finally:
                    self.busy = False
                    self._current = None
                if not keep or self._server.closing:
                    return
                if not self._queue and self._parsing is None and not self._in_head:
                    self._timer.arm("idle", self._limits.keepalive_timeout_s)
                    if not self.overflow:
                        self._server.idle[self] = None
        except Exception:  # a bug must cost one connection, never the process
            log.exception("error serving %s", self.peer)
            self.abort()
        finally:
            if not self._lingering:
                self.close()

    def _linger(self) -> None:
        """Close gently after an error answer: a client still sending would otherwise get a
        reset that can destroy the answer before it reads it (RFC 9112 §9.6)."""
        transport = self.transport
        if transport is None or self.closed:
            return
        self._lingering = True
        if transport.can_write_eof():
            transport.write_eof()
        self._loop.call_later(_LINGER_S, transport.close)
