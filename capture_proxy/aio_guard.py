"""The aiohttp engine's client limits: the fast engine's slow-client rules on aiohttp's protocol.

aiohttp has no request-head or body-idle timeout, and closes a silent connection only after
its own keep-alive timeout (an hour by default). Each client connection is therefore served
through a :class:`ClientGuard`, a thin protocol in front of aiohttp's ``RequestHandler``: it
sees every byte arrive and runs the same :class:`~capture_proxy.proxy_common.ClientTimer` as
the fast engine (:mod:`capture_proxy.server`), with the same phases, answers and counters:

- ``head``: a request head not complete ``header_timeout_s`` after its first byte -> 408, close;
- ``body``: no byte of the request body for ``body_idle_timeout_s`` -> 408 (cut when part of the
  answer already went out), close; closing cancels the handler, so the upstream exchange and
  its pooled connection are dropped at once;
- ``idle``: nothing in progress for ``keepalive_timeout_s`` -> close.

Over ``max_client_connections`` the guard marks the connection ``overflow`` (the app answers
503 unless it asks for health or metrics); when the refusal slots are full, the oldest silent
one makes room, or else the new connection is closed at once (``proxy_common.admit``).
:class:`ProxySite` serves an :class:`~aiohttp.web.AppRunner` through guards.
"""

from __future__ import annotations

import asyncio
import socket
from typing import cast

from aiohttp import web
from aiohttp.http import HttpProcessingError
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.web_protocol import RequestHandler

from capture_proxy.metrics import ProxyMetrics
from capture_proxy.proxy_common import (
    ClientLimits,
    ClientTimer,
    Phase,
    admit,
    json_response,
    timeout_body,
)

__all__ = ["ClientGuard", "ClientGuards", "ProxySite", "guard_of"]


class ClientGuards:
    """The limits, the counters and the number of open connections of one server."""

    def __init__(self, limits: ClientLimits, metrics: ProxyMetrics) -> None:
        self.limits = limits
        self.metrics = metrics
        self.open = 0
        self.overflow: dict[ClientGuard, None] = {}  # in the refusal slots, oldest first
        self.idle: dict[ClientGuard, None] = {}  # within the cap, nothing in progress


class ClientGuard(asyncio.Protocol):
    """One client connection: counts it, times it, and passes everything to aiohttp."""

    def __init__(self, handler: RequestHandler, guards: ClientGuards) -> None:
        self.handler = handler
        self.overflow = False
        self._guards = guards
        self._limits = guards.limits
        self._timer = ClientTimer(asyncio.get_running_loop(), self._expired)
        self._transport: asyncio.Transport | None = None
        self._request: web.BaseRequest | None = None
        self._serving = False
        self._counted = False

    # -- asyncio.Protocol, passed on ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        guards, limits = self._guards, self._limits
        in_cap = guards.open - len(guards.overflow)
        where = admit(
            in_cap, limits.max_client_connections, guards.idle, guards.overflow, ClientGuard._evict
        )
        if where == "closed":
            guards.metrics.refused["closed"].inc()
            self._transport.abort()
            return
        guards.open += 1
        self._counted = True
        guards.metrics.client_connections.inc()
        idle = limits.keepalive_timeout_s
        if where == "overflow":
            self.overflow = True
            guards.overflow[self] = None
            idle = min(idle, limits.header_timeout_s)
        else:
            guards.idle[self] = None
        self.handler.connection_made(transport)
        self._timer.arm("idle", idle)

    def data_received(self, data: bytes) -> None:
        phase = self._timer.phase
        if phase == "idle":
            self._timer.arm("head", self._limits.header_timeout_s)
            self._guards.idle.pop(self, None)
        elif phase == "body":
            self._timer.arm("body", self._limits.body_idle_timeout_s)
            self.handler.data_received(data)
            self._fail_broken_body()
            return
        self.handler.data_received(data)

    def _fail_broken_body(self) -> None:
        """A request body that aiohttp's parser gave up on must fail, not wait forever.

        With its C parser, aiohttp queues a parse error in the body (a bad chunk size) as the
        next "message" and never fails the body being read (its pure-Python parser does), so
        the exchange would wait for bytes that cannot come. A message queued while the body
        is incomplete can only be that error: fail the body with it, the exchange ends in a
        400 (see :mod:`capture_proxy.forward`), as on the fast engine.
        """
        request = self._request
        queued = self.handler._messages  # aiohttp internals: test_engine_parity fails without
        if request is None or not queued or request.content.is_eof():
            return
        if request.content.exception() is not None:
            return
        error = getattr(queued[-1][0], "exc", None)
        if not isinstance(error, HttpProcessingError):
            error = BadHttpMessage("malformed request body")
        request.content.set_exception(error)

    def eof_received(self) -> bool | None:
        if not self._counted:
            return None
        self.handler.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()
        self._request = None
        self._guards.overflow.pop(self, None)
        self._guards.idle.pop(self, None)
        if self._counted:
            self._counted = False
            self._guards.open -= 1
            self._guards.metrics.client_connections.dec()
            self.handler.connection_lost(exc)

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    def _evict(self) -> bool:
        """Close this connection if it has no request in progress (see admit)."""
        transport = self._transport
        if self._timer.phase != "idle" or self._serving or transport is None:
            return False
        metrics = self._guards.metrics
        (metrics.refused["closed"] if self.overflow else metrics.timeouts["idle"]).inc()
        transport.abort()
        return True

    # -- told by the app ------------------------------------------------------------------

    def started(self, request: web.BaseRequest) -> None:
        """A request head is complete and its handler runs."""
        self._request = request
        self._serving = True
        if request.body_exists and not request.content.is_eof():
            self._timer.arm("body", self._limits.body_idle_timeout_s)
            self._fail_broken_body()  # it may have broken in the segment that held the head
        else:
            self._timer.stop()

    def done(self) -> None:
        """The handler returned; a body still arriving keeps its deadline."""
        self._serving = False
        request = self._request
        if request is not None and self._timer.phase == "body" and not request.content.is_eof():
            return
        self._request = None
        self._timer.arm("idle", self._limits.keepalive_timeout_s)
        if not self.overflow:
            self._guards.idle[self] = None

    # -- deadlines ------------------------------------------------------------------------

    def _expired(self, phase: Phase) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        limits, metrics = self._limits, self._guards.metrics
        if phase == "idle":
            if self._serving:
                return
            metrics.timeouts["idle"].inc()
            self.handler.force_close()
        elif phase == "head":
            if self._serving:
                return
            metrics.timeouts["head"].inc()
            self._answer_timeout(transport, "head", limits.header_timeout_s)
        else:
            request = self._request
            if request is None or request.content.is_eof():
                if self._serving:
                    self._timer.stop()
                else:
                    self._timer.arm("idle", limits.keepalive_timeout_s)
                    if not self.overflow:
                        self._guards.idle[self] = None
                return
            if not transport.is_reading():  # paused by the proxy: not the client's delay
                self._timer.arm("body", limits.body_idle_timeout_s)
                return
            metrics.timeouts["body"].inc()
            if request.writer.output_size:
                transport.abort()  # part of the answer is out: a cut is the only signal left
                return
            self._answer_timeout(transport, "body", limits.body_idle_timeout_s)

    def _answer_timeout(self, transport: asyncio.Transport, phase: Phase, seconds: float) -> None:
        body = timeout_body(phase, seconds)
        transport.write(json_response(408, b"Request Timeout", body, close=True))
        self.handler.force_close()  # and with the connection, the handler and its exchange


def guard_of(request: web.BaseRequest) -> ClientGuard | None:
    """The guard of the connection ``request`` came on (None when served without one)."""
    transport = request.transport
    protocol = transport.get_protocol() if transport is not None else None
    return protocol if isinstance(protocol, ClientGuard) else None


class ProxySite(web.SockSite):
    """A :class:`~aiohttp.web.SockSite` whose connections are served through guards."""

    def __init__(
        self,
        runner: web.AppRunner,
        sock: socket.socket,
        guards: ClientGuards,
        backlog: int = 1024,
    ) -> None:
        super().__init__(runner, sock, backlog=backlog)
        self._guards = guards

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        guards = self._guards
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ClientGuard(server(), guards),
            sock=self._sock,
            backlog=self._backlog,
        )
