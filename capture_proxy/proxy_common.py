"""What both proxy engines share: header sets, routing, the proxy's own answers, client limits.

The two engines (``proxy.engine``) are:

- **fast** (default): :mod:`~capture_proxy.engine` (routing), :mod:`~capture_proxy.fast_server`
  (the listener), :mod:`~capture_proxy.server` (client connections), :mod:`~capture_proxy.relay`
  (one exchange), :mod:`~capture_proxy.upstream` (upstream pool), :mod:`~capture_proxy.http1`
  (bodies, heads);
- **aiohttp** (reference): :mod:`~capture_proxy.app` (routing), :mod:`~capture_proxy.forward`
  (one exchange), :mod:`~capture_proxy.aio_guard` (client limits on aiohttp's protocol).

Anything both must agree on lives here, so that one change holds for both: the hop-by-hop
field names, the route a target takes, the JSON bodies of the proxy's own answers (400, 408,
431, 502, 503, 504), the client limits and timeouts (:class:`ClientLimits`) and the one timer
per client connection that enforces them (:class:`ClientTimer`).
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar
from urllib.parse import unquote

import orjson

from modelmon.config import ModelmonConfig

__all__ = [
    "ANALYZER_POOL",
    "HOP_BY_HOP",
    "HOP_BY_HOP_B",
    "MAX_HEAD_BYTES",
    "REFUSAL_SLOTS",
    "REQUEST_DROPPED",
    "REQUEST_DROPPED_S",
    "WHOLE_BODY_BYTES",
    "ClientLimits",
    "ClientTimer",
    "Phase",
    "Route",
    "admit",
    "bad_request_body",
    "client_cap",
    "client_limits",
    "error_body",
    "json_response",
    "origin_form",
    "refusal_body",
    "route",
    "routing_path",
    "timeout_body",
]

log = logging.getLogger("modelmon.proxy")

_HOP_BY_HOP_NAMES = (
    # RFC 9110 §7.6.1 connection-specific fields, plus the obsolete Proxy-Connection. They
    # describe one hop and are never forwarded; neither are the fields a Connection field names.
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
)
HOP_BY_HOP = frozenset(_HOP_BY_HOP_NAMES)
HOP_BY_HOP_B = frozenset(n.encode() for n in _HOP_BY_HOP_NAMES)
# A request also loses its framing (the proxy writes its own) and Expect (already answered).
REQUEST_DROPPED_S = HOP_BY_HOP | {"content-length", "expect"}
REQUEST_DROPPED = frozenset(n.encode() for n in REQUEST_DROPPED_S)

MAX_HEAD_BYTES = 64 * 1024  # a request or response head above this: 431 (or a bad response)
# A request body up to this size with a known length is read whole before an upstream
# connection is taken (a slow upload never holds one); larger or chunked bodies stream.
WHOLE_BODY_BYTES = 256 * 1024
ANALYZER_POOL = 16  # connections to the analyzer, per worker
# Connections accepted beyond proxy.max_client_connections only to be answered (503, or the
# health and metrics endpoints) and closed; beyond these, a connection is closed at once.
REFUSAL_SLOTS = 32
_FD_HEADROOM = 64  # descriptors kept for capture files, the listening socket, health probes


# -- routing ------------------------------------------------------------------------------

Route = Literal["local", "analyzer", "upstream"]


def origin_form(target: bytes) -> bytes | None:
    """The origin-form (``/path?query``) of a request target; None when it is not one.

    An absolute-form target (``http://host/path``) gives its path and query; ``*`` stays.
    """
    if target.startswith(b"/") or target == b"*":
        return target
    scheme, sep, rest = target.partition(b"://")
    if sep and scheme.lower() in (b"http", b"https"):
        slash = rest.find(b"/")
        query = rest.find(b"?")
        if slash < 0 or (0 <= query < slash):
            return b"/" + rest[query:] if query >= 0 else b"/"
        return rest[slash:]
    return None


def routing_path(target: bytes) -> str:
    """The path a route is chosen by: query cut, percent-decoded, dot segments removed."""
    path = target.split(b"?", 1)[0]
    if b"%" not in path and b"/." not in path and b"//" not in path:
        return path.decode("latin-1")
    text = unquote(path.decode("latin-1"))
    normal = posixpath.normpath(text)
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    return normal + ("/" if text.endswith("/") and normal != "/" else "")


def route(target: bytes) -> tuple[Route, str]:
    """Where a request for ``target`` (as sent, any form) goes, and its normalized path.

    ``/monitor/proxy/...`` is answered by the proxy, other ``/monitor`` paths go to the
    analyzer, anything else to the model. An absolute-form target routes on its path.
    """
    path = routing_path(origin_form(target) or target)
    if path.startswith("/monitor") and (len(path) == 8 or path[8] == "/"):
        return ("local" if path.startswith("/monitor/proxy/") else "analyzer"), path
    return "upstream", path


# -- the proxy's own answers --------------------------------------------------------------


def error_body(error: str, target: str, detail: str) -> bytes:
    """The body of a 502/504: ``{"error", "upstream", "detail"}``."""
    return orjson.dumps({"error": error, "upstream": target, "detail": detail})


def bad_request_body(detail: str, error: str = "bad request") -> bytes:
    """The body of a 400/431/501 answered for a request the proxy refuses to forward."""
    return orjson.dumps({"error": error, "detail": detail})


def timeout_body(phase: str, seconds: float) -> bytes:
    """The body of a 408: the client was too slow sending its request head or body."""
    if phase == "head":
        detail = f"no complete request head within {seconds:g}s"
    else:
        detail = f"no byte of the request body for {seconds:g}s"
    return orjson.dumps({"error": "request timeout", "detail": detail})


def refusal_body(limit: int) -> bytes:
    """The body of a 503 for a connection over ``proxy.max_client_connections``."""
    detail = f"the proxy holds its maximum of {limit} client connections; retry later"
    return orjson.dumps({"error": "too many connections", "detail": detail})


def json_response(
    status: int,
    reason: bytes,
    body: bytes,
    *,
    close: bool,
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> bytes:
    """A complete small JSON response the proxy answers itself, as bytes (fast engine)."""
    lines = [
        b"HTTP/1.1 %d %s" % (status, reason),
        b"Content-Type: application/json; charset=utf-8",
        b"Content-Length: %d" % len(body),
        b"Cache-Control: no-store",
    ]
    lines += [name + b": " + value for name, value in extra]
    if close:
        lines.append(b"Connection: close")
    lines.append(b"\r\n")
    return b"\r\n".join(lines) + body


# -- client limits ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """How long a client may take, and how many may be connected (``proxy.*`` keys)."""

    header_timeout_s: float = 10.0
    body_idle_timeout_s: float = 30.0
    keepalive_timeout_s: float = 75.0
    max_client_connections: int = 4096


def client_cap(configured: int, upstream_pool: int) -> int:
    """``configured``, lowered so that the cap and the pools fit the descriptor limit.

    An accept that fails for want of descriptors would refuse everyone (health checks too):
    the cap keeps room for the upstream and analyzer pools, the refusal slots and capture.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    room = soft - upstream_pool - ANALYZER_POOL - REFUSAL_SLOTS - _FD_HEADROOM
    if room < configured:
        log.warning(
            "proxy.max_client_connections=%d lowered to %d to fit the descriptor limit "
            "(ulimit -n %d); raise the limit to allow more",
            configured,
            max(1, room),
            soft,
        )
    return max(1, min(configured, room))


def client_limits(config: ModelmonConfig) -> ClientLimits:
    """The client limits of ``config`` (both engines), the cap fitted to ``ulimit -n``."""
    proxy = config.proxy
    return ClientLimits(
        header_timeout_s=proxy.header_timeout_s,
        body_idle_timeout_s=proxy.body_idle_timeout_s,
        keepalive_timeout_s=proxy.keepalive_timeout_s,
        max_client_connections=client_cap(proxy.max_client_connections, proxy.max_connections),
    )


_Conn = TypeVar("_Conn")


def admit(
    in_cap: int,
    limit: int,
    idle: dict[_Conn, None],
    overflow: dict[_Conn, None],
    evict: Callable[[_Conn], bool],
) -> Literal["cap", "overflow", "closed"]:
    """Where a new client connection goes: within the cap, into a refusal slot, or closed.

    ``in_cap`` connections are open within ``limit``; ``idle`` holds those of them with no
    request in progress and ``overflow`` those in the :data:`REFUSAL_SLOTS`, oldest first.
    At the cap, the oldest idle connection is closed for the newcomer (as nginx does: idle
    keep-alive connections cannot keep active clients out); with none idle, the newcomer gets
    a refusal slot; when the slots are full, their oldest connection that has not started a
    request makes room (a flood of silent connections cannot keep a health check out); when
    every slot is busy answering, the newcomer is closed at once. ``evict`` closes a
    connection and says whether it could (it was still idle).
    """
    if in_cap < limit:
        return "cap"
    victim = next((conn for conn in idle if evict(conn)), None)
    if victim is not None:
        del idle[victim]
        return "cap"
    if len(overflow) < REFUSAL_SLOTS:
        return "overflow"
    victim = next((conn for conn in overflow if evict(conn)), None)
    if victim is None:
        return "closed"
    del overflow[victim]
    return "overflow"


Phase = Literal["idle", "head", "body"]


class ClientTimer:
    """The one timer of a client connection: the deadline of its current phase.

    ``idle`` (nothing in progress: ``keepalive_timeout_s``), ``head`` (a request head
    started: ``header_timeout_s`` from its first byte), ``body`` (a request body being read:
    ``body_idle_timeout_s`` from the last byte). Moving a deadline costs no new timer: the
    timer fires at the earliest deadline set and re-arms itself when the deadline moved on,
    and ``expired`` is called only when the deadline of the phase has really passed.
    """

    __slots__ = ("_deadline", "_expired", "_loop", "_now", "_timer", "_when", "phase")

    def __init__(self, loop: asyncio.AbstractEventLoop, expired: Callable[[Phase], None]) -> None:
        self._loop = loop
        self._now = loop.time
        self._expired = expired
        self._timer: asyncio.TimerHandle | None = None
        self._when = 0.0  # when _timer fires
        self._deadline = 0.0
        self.phase: Phase | None = None

    def arm(self, phase: Phase, seconds: float) -> None:
        """Enter ``phase``, which ends the connection ``seconds`` from now."""
        self.phase = phase
        deadline = self._deadline = self._now() + seconds
        timer = self._timer
        if timer is not None:
            if self._when <= deadline:
                return  # runs per request: no new timer while the one set fires earlier
            timer.cancel()
        self._when = deadline
        self._timer = self._loop.call_at(deadline, self._fire)

    def stop(self) -> None:
        """No phase: the proxy is busy with the request (the upstream timeouts apply)."""
        self.phase = None

    def cancel(self) -> None:
        self.phase = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        phase = self.phase
        if phase is None:
            return
        if self._now() < self._deadline:
            self._when = self._deadline
            self._timer = self._loop.call_at(self._deadline, self._fire)
            return
        self._expired(phase)
