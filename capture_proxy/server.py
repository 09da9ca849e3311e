"""The fast engine's server side: an asyncio Protocol per client connection, parsed by llhttp.

Each connection runs one kept task that takes its requests in order (pipelining allowed) and
hands each to the handler; body bytes flow through a :class:`BodyStream` with flow control.
Reading pauses while a pipelined request waits for the one in flight (so a client that sends
requests and reads no answers holds at most one read's worth of them), and the handler waits
for the transport to drain above its high-water mark. A parse error answers 400 (431 for an
oversized head, 501 for an upgrade, CONNECT or an unknown transfer coding) and closes. A
client that hangs up cancels its task, so the handler's upstream exchange is cancelled with
it. Idle keep-alive connections are closed after ``KEEPALIVE_S``; shutdown stops accepting,
closes idle connections and waits for busy ones.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast

import httptools
import orjson

from capture_proxy.http1 import (
    MAX_HEAD_BYTES,
    BodyStream,
    ClientGone,
    connection_tokens,
    json_response,
)

__all__ = ["ClientConnection", "FastServer", "Request"]

log = logging.getLogger("modelmon.proxy.server")

KEEPALIVE_S = 75.0
_LINGER_S = 2.0
_SWEEP_S = 5.0
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
    named: set[bytes] | None = None  # the tokens of the Connection fields, if any


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
        self.last_active = time.monotonic()
        self._parser = httptools.HttpRequestParser(self)
        self._queue: deque[Request] = deque()
        self._next: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._write_paused = False
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._names: list[bytes] = []
        self._named: set[bytes] | None = None
        self._paused_by = 0
        self._head_size = 0  # exact: the URL and the header fields of the current message
        self._stalled = 0  # bytes of consecutive reads that completed nothing (see below)
        self._progress = False
        self._in_head = False
        self._parsing: Request | None = None
        self._broken = False
        self._lingering = False

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its interface.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) else ""
        self.peer_bytes = self.peer.encode()
        self._server.connections.add(self)
        self._task = self._server.keep(self._loop.create_task(self._run(), name="proxy-conn"))

    def data_received(self, data: bytes) -> None:
        if self._broken:
            return
        self.last_active = time.monotonic()
        self._progress = False
        try:
            self._parser.feed_data(data)
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
        if hosts > 1:
            error = (400, b"Bad Request", "more than one Host header")
        if parser.should_upgrade():  # Connection: upgrade + Upgrade, or CONNECT
            error = (501, b"Not Implemented", "protocol upgrades and CONNECT are not supported")
        request = Request(
            method=parser.get_method(),
            target=self._url,
            version=parser.get_http_version(),
            headers=self._headers,
            keep_alive=parser.should_keep_alive() and error is None,
            body=BodyStream(self._pause_body, self._resume_body),
            has_body=chunked or bool(length),
            content_length=length,
            error=error,
            expect_continue=expect and (chunked or bool(length)),
            names=self._names,
            named=self._named,
        )
        if not request.has_body:
            request.body.finish()
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

    def _reject(self, status: int, reason: bytes, detail: str) -> None:
        """Queue an error answer after what is in flight; read nothing more."""
        self._broken = True  # from here on, whatever arrives is read and dropped
        if self._parsing is not None:
            self._parsing.body.fail(ClientGone(detail))
            self._parsing = None
        body = BodyStream()
        body.finish()
        self._queue.append(
            Request(b"", b"", "1.1", [], False, body, False, None, (status, reason, detail))
        )
        if self._next is not None and not self._next.done():
            self._next.set_result(None)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
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
                if self._paused_by & _QUEUED and not self._queue:
                    self._resume_reading(_QUEUED)  # read the next request while this one runs
                if request.expect_continue and not request.body.done:
                    # Only now: written earlier, it could land inside a previous answer.
                    self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                try:
                    if request.error is not None:
                        status, reason, detail = request.error
                        body = _error_body(status, detail)
                        self.write(json_response(status, reason, body, close=True))
                        self._linger()
                        return
                    keep = await self._server.handler(request, self)
                finally:
                    self.busy = False
                    self.last_active = time.monotonic()
                if not keep or self._server.closing:
                    return
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


def _error_body(status: int, detail: str) -> bytes:
    error = "not implemented" if status == 501 else "bad request"
    return orjson.dumps({"error": error, "detail": detail})


class FastServer:
    """Accepts connections for ``handler``; owns the connection tasks and their shutdown."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.loop = asyncio.get_running_loop()
        self.connections: set[ClientConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.closing = False
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def keep(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        """Own a connection task until it ends (shutdown awaits whatever is left)."""
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def start(self, sock: socket.socket, backlog: int = 1024) -> None:
        self._server = await self.loop.create_server(
            lambda: ClientConnection(self), sock=sock, backlog=backlog
        )
        self._sweeper = self.loop.create_task(self._sweep(), name="proxy-idle-sweeper")

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_S)
            limit = time.monotonic() - KEEPALIVE_S
            for conn in list(self.connections):
                if not conn.busy and conn.last_active < limit:
                    conn.close()

    async def shutdown(self, timeout_s: float) -> None:
        """Stop accepting, close idle connections, give busy ones ``timeout_s`` to finish."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            try:
                await self._sweeper
            except asyncio.CancelledError:
                pass  # we cancelled it ourselves, just above
        deadline = self.loop.time() + timeout_s
        while True:
            for conn in list(self.connections):
                if not conn.busy:
                    conn.close()
            busy = [c for c in self.connections if c.busy]
            if not busy or self.loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
