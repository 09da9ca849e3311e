"""HTTP/1.1 pieces of the fast engine: header filtering, message heads, bodies as streams.

Framing policy (RFC 9112), the part that keeps the proxy from being a smuggling vector:

- Requests are parsed by llhttp (``httptools``) in strict mode: Content-Length together with
  Transfer-Encoding, repeated Content-Lengths, bad tokens, obs-fold and bare CR are rejected
  with 400; a Transfer-Encoding other than exactly ``chunked`` is a 501.
- Nothing of the incoming framing is copied: hop-by-hop fields and Content-Length /
  Transfer-Encoding are dropped and the proxy writes its own framing for the next hop
  (``Content-Length`` when the length is known, else ``chunked``; for HTTP/1.0 clients,
  close-delimited).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from capture_proxy.proxy_common import (
    HOP_BY_HOP_B,
    MAX_HEAD_BYTES,
    REQUEST_DROPPED,
    json_response,
    routing_path,
)

__all__ = [
    "HOP_BY_HOP_B",
    "MAX_HEAD_BYTES",
    "REQUEST_DROPPED",
    "BodyStream",
    "ClientGone",
    "chunk",
    "connection_tokens",
    "filter_headers",
    "json_response",
    "routing_path",
]

# Re-framed by the proxy (never copied) or already answered by it (Expect: 100-continue).
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"expect"})
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class ClientGone(ConnectionError):
    """The client connection closed while its request was still being read."""


# The Connection values nearly every message carries, parsed once.
_COMMON_TOKENS = {v: frozenset({v}) for v in (b"keep-alive", b"close")}


def connection_tokens(value: bytes) -> frozenset[bytes]:
    """The lower-cased field names one Connection field value names."""
    common = _COMMON_TOKENS.get(value)
    if common is not None:
        return common
    return frozenset(t.strip().lower() for t in value.split(b","))


def filter_headers(
    headers: list[tuple[bytes, bytes]], *, keep_length: bool = False
) -> tuple[list[tuple[bytes, bytes]], bytes | None]:
    """Drop hop-by-hop fields, those named by Connection, and the framing fields.

    Returns the kept fields and the Content-Length value (when ``keep_length``, it stays in
    the list; used for responses whose length passes through).
    """
    named: set[bytes] = set()
    length: bytes | None = None
    for name, value in headers:
        lower = name.lower()
        if lower == b"connection":
            named.update(connection_tokens(value))
        elif lower == b"content-length":
            length = value
    kept = []
    for name, value in headers:
        lower = name.lower()
        if lower in HOP_BY_HOP_B or lower in named:
            continue
        if lower in _FRAMING and not (keep_length and lower == b"content-length"):
            continue
        kept.append((name, value))
    return kept, length


def head_bytes(first_line: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    parts = [first_line]
    for name, value in headers:
        parts.append(name + b": " + value)
    parts.append(b"\r\n")
    return b"\r\n".join(parts)


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


class BodyStream:
    """Chunks of one message body between a protocol (producer) and a coroutine (consumer).

    The producer pauses its transport above ``HIGH_WATER`` buffered bytes and the consumer
    resumes it below ``LOW_WATER``, so a 200 MB body never sits in memory.
    """

    __slots__ = (
        "_buffered",
        "_chunks",
        "_error",
        "_pause",
        "_paused",
        "_resume",
        "_waiter",
        "done",
    )

    def __init__(
        self, pause: Callable[[], None] | None = None, resume: Callable[[], None] | None = None
    ) -> None:
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self.done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._pause = pause
        self._resume = resume
        self._paused = False

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER and not self._paused and self._pause is not None:
            self._paused = True
            self._pause()
        waiter = self._waiter  # _wake, inlined: this runs for every body chunk
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def finish(self) -> None:
        self.done = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def fail(self, exc: BaseException) -> None:
        if not self.done:
            self._error = exc
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take_all(self) -> bytes | None:
        """The whole body when it is already complete (the common small case), else None."""
        if not self.done:
            return None
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        if self._paused:
            self._resume_if_paused()
        return data

    async def wait_done(self) -> None:
        """Until the whole body is in (then :meth:`take_all` has it); raises as :meth:`read`."""
        while not self.done:
            if self._error is not None:
                raise self._error
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def read(self) -> bytes:
        """The next chunk; ``b""`` at the end; raises what the producer failed with."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self.done:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = self._chunks.popleft()
        self._buffered -= len(data)
        if self._buffered < LOW_WATER:
            self._resume_if_paused()
        return data

    def _resume_if_paused(self) -> None:
        # A body that completed while paused must not leave its connection paused: the
        # next message on a kept-alive connection would never be read.
        if self._paused and self._resume is not None:
            self._paused = False
            self._resume()
