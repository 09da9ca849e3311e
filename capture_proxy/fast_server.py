"""The fast engine's listener: accepts client connections, admits them, shuts them down.

:class:`FastServer` owns the :class:`~capture_proxy.server.ClientConnection` of every accepted
socket and their tasks. Admission (``proxy.max_client_connections``, the refusal slots, an idle
connection making room at the cap) follows :func:`~capture_proxy.proxy_common.admit`, the
same rule as the aiohttp engine's :mod:`~capture_proxy.aio_guard`. Shutdown stops accepting,
closes idle connections, gives busy ones a grace period, then aborts what is left.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Literal

from capture_proxy.metrics import ProxyMetrics
from capture_proxy.proxy_common import ClientLimits, admit
from capture_proxy.server import ClientConnection, Handler

__all__ = ["FastServer"]


class FastServer:
    """Accepts connections for ``handler``; owns the connection tasks and their shutdown."""

    def __init__(
        self,
        handler: Handler,
        *,
        limits: ClientLimits | None = None,
        metrics: ProxyMetrics | None = None,
    ) -> None:
        self.handler = handler
        self.limits = limits if limits is not None else ClientLimits()
        self.metrics = metrics if metrics is not None else ProxyMetrics()
        self.loop = asyncio.get_running_loop()
        self.connections: set[ClientConnection] = set()
        self.overflow: dict[ClientConnection, None] = {}  # in the refusal slots, oldest first
        self.idle: dict[ClientConnection, None] = {}  # within the cap, nothing in progress
        self.tasks: set[asyncio.Task[None]] = set()
        self.closing = False
        self._server: asyncio.Server | None = None

    def admit(self, conn: ClientConnection) -> Literal["cap", "overflow", "closed"]:
        """Where a new connection goes (see :func:`~capture_proxy.proxy_common.admit`)."""
        in_cap = len(self.connections) - len(self.overflow)
        limit = self.limits.max_client_connections
        where = admit(in_cap, limit, self.idle, self.overflow, ClientConnection.evict)
        if where == "closed":
            self.metrics.refused["closed"].inc()
        elif where == "overflow":
            self.overflow[conn] = None
        else:
            self.idle[conn] = None
        return where

    def keep(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        """Own a connection task until it ends (shutdown awaits whatever is left)."""
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def start(self, sock: socket.socket, backlog: int = 1024) -> None:
        self._server = await self.loop.create_server(
            lambda: ClientConnection(self), sock=sock, backlog=backlog
        )

    async def shutdown(self, timeout_s: float) -> None:
        """Stop accepting, close idle connections, give busy ones ``timeout_s`` to finish."""
        self.closing = True
        if self._server is not None:
            self._server.close()
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
