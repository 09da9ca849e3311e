"""The fast engine's client side: a bounded keep-alive pool of raw HTTP/1.1 connections.

One :class:`UpstreamConnection` carries one exchange at a time; its response is parsed by
llhttp (``httptools``) into a status, the fields to relay and a :class:`BodyStream`. Anything the
upstream sends after the complete response (a second response in the same segment, stray
bytes) is a protocol error: the connection is closed and those bytes are never relayed; so is
a head over ``MAX_HEAD_BYTES`` and a ``101`` nobody asked for. Trailer fields are dropped.
Failures are
typed for the one place that turns them into answers (:mod:`capture_proxy.relay`)::

    UpstreamError
    ├── UpstreamUnreachable   connect refused/reset, closed before the response head  -> 502
    ├── UpstreamTimeout       no connection or no response head in time                -> 504
    │   └── PoolExhausted     every pooled connection busy for connect_timeout_s       -> 504
    └── UpstreamBroken        the response broke after its head (cut the client)
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

import httptools

from capture_proxy.http1 import HOP_BY_HOP_B, MAX_HEAD_BYTES, BodyStream, connection_tokens

__all__ = [
    "PoolExhausted",
    "UpstreamBroken",
    "UpstreamConnection",
    "UpstreamError",
    "UpstreamPool",
    "UpstreamTimeout",
    "UpstreamUnreachable",
]

# Response fields a relay must not pass on as they came (HOP_BY_HOP_B covers the rest).
_DROPPED = HOP_BY_HOP_B | {b"expect"}


class UpstreamError(Exception):
    """Base of the upstream failures; ``kind`` labels modelmon_proxy_upstream_errors_total."""

    kind = "error"


class UpstreamUnreachable(UpstreamError):
    """No usable connection, or it closed before the response head."""

    kind = "unreachable"


class UpstreamTimeout(UpstreamError):
    """No connection or no response head within the configured time."""

    kind = "timeout"


class PoolExhausted(UpstreamTimeout):
    """Every connection of the pool stayed busy for the whole ``connect_timeout_s``."""

    kind = "pool_exhausted"


class UpstreamBroken(UpstreamError):
    """The response broke after its head was received."""

    kind = "upstream_broken"


class UpstreamConnection(asyncio.Protocol):
    """One connection to the upstream and the response currently read on it."""

    def __init__(self, pool: UpstreamPool) -> None:
        self._pool = pool
        self._loop = pool.loop
        self.transport: asyncio.Transport | None = None
        # The transport's pause/resume_reading, bound once (each response body gets them).
        self._pause: Callable[[], None] | None = None
        self._resume: Callable[[], None] | None = None
        self.closed = False
        self.reused = False
        self.busy = False
        self._parser = httptools.HttpResponseParser(self)
        self._head: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._drain: asyncio.Future[None] | None = None
        self._write_paused = False
        self._head_size = 0  # exact: reason phrase and header fields of this response
        self._stalled = 0  # bytes of consecutive reads that completed nothing
        self._progress = False
        self._in_head = False
        self._interim = False
        self._head_only = False
        self.status = 0
        self.reason = b""
        # Noted while parsing, so the relay needs no second scan of ``headers``:
        # The fields a relay passes on, as ``Name: value`` lines, and their lower-cased names
        # (all but hop-by-hop and re-framed fields; those the Connection fields name are
        # still among them: ``named``).
        self.lines: list[bytes] = []
        self.names: list[bytes] = []
        self.named: frozenset[bytes] | None = None  # the tokens of the Connection fields
        self.length: bytes | None = None  # Content-Length
        self.framed = False  # Content-Length, or Transfer-Encoding naming chunked
        self.content_type: bytes | None = None  # the last Content-Type
        self.content_encoding: bytes | None = None  # the last Content-Encoding
        self.body: BodyStream | None = None
        self.keep_alive = False
        self.until_close = False
        self.complete = False
        self.received_any = False

    # -- driving one exchange -------------------------------------------------------------

    def begin(self, *, head_only: bool) -> asyncio.Future[None]:
        """Prepare for a response; the future resolves when its head has arrived."""
        self._head = self._loop.create_future()
        self.busy = True
        self._head_only = head_only
        self.status = 0
        self._stalled = 0
        self._reset_head()
        self.body = None
        self.keep_alive = False
        self.until_close = False
        self.complete = False
        self.received_any = False
        return self._head

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    async def drain(self) -> None:
        if self._write_paused and not self.closed:
            self._drain = self._loop.create_future()
            await self._drain

    def arm_timeout(self, seconds: float) -> None:
        """Fail the pending head with :class:`UpstreamTimeout` after ``seconds``.

        Arming only moves a deadline; the one timer of the connection is kept across
        exchanges and re-sets itself when it fires before the current deadline, so a
        request costs no timer of its own.
        """
        deadline = self._loop.time() + seconds
        self._deadline = deadline
        timer = self._timer
        if timer is not None and timer.when() <= deadline:
            return
        if timer is not None:
            timer.cancel()
        self._timer = self._loop.call_at(deadline, self._on_timeout)

    def _on_timeout(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return
        if self._loop.time() < deadline:
            self._timer = self._loop.call_at(deadline, self._on_timeout)
            return
        self._deadline = None
        head = self._head
        if head is not None and not head.done():
            head.set_exception(UpstreamTimeout("no response headers in time"))
            self.abort()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its interface.
        self.transport = cast(asyncio.Transport, transport)
        self._pause, self._resume = self.transport.pause_reading, self.transport.resume_reading

    def data_received(self, data: bytes) -> None:
        if not self.busy:  # bytes on an idle pooled connection (a late 408 ...): never reuse it
            self.abort()
            return
        self.received_any = True
        self._progress = False
        try:
            self._parser.feed_data(data)
            # As on the server side: a field that never ends is buffered by httptools without
            # a callback; bound it by the reads that completed nothing (never body bytes).
            if self._progress:
                self._stalled = 0
            else:
                self._stalled += len(data)
                if self._stalled > MAX_HEAD_BYTES:
                    raise httptools.HttpParserError("response head too large")
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(f"bad response from upstream: {type(exc).__name__}: {exc}")
            self.abort()

    def eof_received(self) -> bool | None:
        self.closed = True  # never handed out again, even before connection_lost runs
        return None  # close the transport; connection_lost decides what the EOF meant

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pool.forget(self)
        body = self.body
        if body is not None and not body.done and self.until_close and exc is None:
            self.complete = True
            body.finish()  # a close-delimited body ends here, as it should
        else:
            detail = f"upstream closed the connection ({exc or 'EOF'})"
            self._fail(detail)
        waiter = self._drain
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, detail: str) -> None:
        head = self._head
        if head is not None and not head.done():
            head.set_exception(UpstreamUnreachable(detail))
        elif self.body is not None and not self.body.done:
            self.body.fail(UpstreamBroken(detail))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- httptools callbacks --------------------------------------------------------------

    # A head is reset by begin() and after an interim 1xx, the only two ways a new response
    # head can start; on_message_begin only refuses a message after the complete response.

    def on_message_begin(self) -> None:
        if self.complete:  # never merged into the answer being relayed, never relayed
            raise httptools.HttpParserError("bytes after the complete response")

    def _reset_head(self) -> None:
        self.reason = b""
        self._in_head = True
        self._head_size = 0
        self.lines = []
        self.names = []
        self.framed = False
        self.named = self.length = self.content_type = self.content_encoding = None

    def on_status(self, reason: bytes) -> None:
        self.reason += reason
        self._head_size += len(reason)
        if self._head_size > MAX_HEAD_BYTES:
            raise httptools.HttpParserError("response head too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > MAX_HEAD_BYTES:
            raise httptools.HttpParserError("response head too large")
        if not self._in_head:
            return  # a trailer field: counted, never relayed (the head may be out already)
        lower = name.lower()
        if lower in _DROPPED:
            if lower == b"connection":
                tokens = connection_tokens(value)
                self.named = tokens if self.named is None else self.named | tokens
            elif lower == b"transfer-encoding" and b"chunked" in value.lower():
                self.framed = True
            return
        self.lines.append(name + b": " + value)
        self.names.append(lower)
        if lower == b"content-length":
            self.length = value
            self.framed = True
        elif lower == b"content-type":
            self.content_type = value
        elif lower == b"content-encoding":
            self.content_encoding = value

    def on_headers_complete(self) -> None:
        self._progress = True
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # interim (103 Early Hints ...): not forwarded, keep waiting
            self._interim = True
            return
        self._in_head = False
        self._interim = False
        self._deadline = None
        self.status = status
        self.keep_alive = self._parser.should_keep_alive()
        transport = self.transport
        assert transport is not None
        self.body = BodyStream(self._pause, self._resume)
        if self._head_only:
            # llhttp cannot be told a HEAD response has no body: finish here and never
            # reuse the connection (its parser would wait for Content-Length bytes).
            self.keep_alive = False
            self.complete = True
            self.body.finish()
        elif status not in (204, 304):
            if not self.framed:
                self.until_close = True
                self.keep_alive = False
        head = self._head
        if head is not None and not head.done():
            head.set_result(None)

    def on_body(self, data: bytes) -> None:
        self._progress = True
        if self.body is not None and not self._head_only:
            self.body.feed(data)

    def on_message_complete(self) -> None:
        self._progress = True
        if self._interim:
            self._interim = False
            self._reset_head()  # the final response's head follows
            return
        self.complete = True
        if self.body is not None:
            self.body.finish()


class UpstreamPool:
    """At most ``limit`` connections to one ``http(s)://host:port``, reused LIFO."""

    def __init__(self, url: str, *, limit: int, connect_timeout_s: float) -> None:
        parts = urlsplit(url)
        self.url = url
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.host_header = parts.netloc.rpartition("@")[2].encode("latin-1")
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._limit = limit
        self._connect_timeout = connect_timeout_s
        self.loop = asyncio.get_running_loop()
        self._idle: deque[UpstreamConnection] = deque()
        self._all: set[UpstreamConnection] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._opening = 0

    def idle(self) -> UpstreamConnection | None:
        """An idle pooled connection, if there is one (no coroutine for the usual case)."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                conn.reused = True
                return conn
        return None

    async def acquire(self) -> UpstreamConnection:
        """A connection: idle, new, or the next one freed, all within ``connect_timeout_s``.

        Waiting for a free slot counts against the same deadline as connecting: when every
        connection stays busy that long, :class:`PoolExhausted` (a 504).
        """
        deadline = self.loop.time() + self._connect_timeout
        while True:
            conn = self.idle()
            if conn is not None:
                return conn
            if len(self._all) + self._opening < self._limit:
                return await self._open(deadline)
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken, then cancelled: hand the free slot on
                raise
            except TimeoutError as exc:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken as the deadline passed: hand the free slot on
                raise PoolExhausted(
                    f"no free connection to the upstream within {self._connect_timeout:g}s "
                    f"(all {self._limit} in use)"
                ) from exc
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def _open(self, deadline: float) -> UpstreamConnection:
        self._opening += 1
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await self.loop.create_connection(
                    lambda: UpstreamConnection(self),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                )
        except TimeoutError as exc:
            raise UpstreamTimeout(f"no connection within {self._connect_timeout:g}s") from exc
        except OSError as exc:
            raise UpstreamUnreachable(f"{type(exc).__name__}: {exc}") from exc
        finally:
            self._opening -= 1
            self._wake()
        self._all.add(conn)
        return conn

    def release(self, conn: UpstreamConnection, *, reusable: bool) -> None:
        conn.busy = False
        if reusable and conn.complete and conn.keep_alive and not conn.closed:
            self._idle.append(conn)
        else:
            conn.abort()
            self.forget(conn)
        self._wake()

    def forget(self, conn: UpstreamConnection) -> None:
        self._all.discard(conn)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def connections(self) -> int:
        return len(self._all)

    async def close(self) -> None:
        for conn in list(self._all):
            if conn.transport is not None:
                conn.transport.close()
        self._all.clear()
        self._idle.clear()
