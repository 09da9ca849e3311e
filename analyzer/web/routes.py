"""The analyzer's HTTP API under ``/monitor/`` (documented in ``analyzer/web/openapi.json``).

Every answer is read from stored rows (the precomputed status document, counters, runs), so
the status answers in milliseconds whatever the history. SQLite is only touched off the event
loop. Errors are JSON ``{"error": ..., "status": ...}`` with a message that says what to fix,
also for a bug (a 500 whose details go to the log). This module serves what is never behind
the token (status, health, metrics, the OpenAPI document); ``analyzer.web.auth`` guards the
rest, ``analyzer.web.intake`` takes ground truth and ``analyzer.web.runs`` serves runs and the
report.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from analyzer.service.monitor import Monitor
from analyzer.store.database import QUARANTINED
from analyzer.store.package_data import OPENAPI_PATH, read_openapi
from analyzer.store.queries import READ_ERRORS, read_counter, read_snapshot
from analyzer.web.prom import StatusCollector, render
from analyzer.web.status_doc import full_status

__all__ = [
    "OPENAPI_PATH",
    "STATE_KEY",
    "ApiError",
    "WebState",
    "error_middleware",
    "json_error",
    "json_ok",
    "setup_routes",
]

log = logging.getLogger("modelmon.analyzer.web")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class WebState:
    """What the handlers need, built by the service at start-up."""

    monitor: Monitor
    token: str | None
    registry: CollectorRegistry
    collector: StatusCollector
    alerts_stats: Callable[[], dict[str, Any]] | None = None
    loop_alive: Callable[[], bool] = field(default=lambda: True)


STATE_KEY = web.AppKey("modelmon_analyzer_state", WebState)


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def json_ok(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=_dumps)


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    """A JSON error whose message says what to fix."""
    return json_ok({"error": message, "status": status, **extra}, status=status)


class ApiError(Exception):
    """Raised by a handler to answer a JSON error; the message says what to fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """:class:`ApiError`, routing errors (404, 405, 413) and bugs (500) as JSON."""
    try:
        return await handler(request)
    except ApiError as exc:
        return json_error(exc.status, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        hints = {
            404: f"no such endpoint {request.path}; the API is described at /monitor/openapi.json",
            405: f"{request.method} is not allowed on {request.path}",
            413: "the request body is too large; send it in smaller parts",
        }
        return json_error(exc.status, hints.get(exc.status, exc.reason))
    except Exception:  # a bug: the details go to the log, the client gets JSON, not a traceback
        log.exception("%s %s failed", request.method, request.path)
        return json_error(500, "the analyzer failed to answer; the details are in its log")


async def status(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    doc, counters = await state.monitor.store.aread(read_snapshot)
    stats = state.alerts_stats() if state.alerts_stats is not None else None
    return json_ok(full_status(state.monitor, doc, counters, stats))


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    problems: list[str] = []
    lost = await asyncio.to_thread(state.monitor.store.file_problem)
    if lost is not None:
        problems.append(lost)
    quarantined = 0
    try:
        quarantined = await state.monitor.store.aread(lambda c: read_counter(c, QUARANTINED))
    except READ_ERRORS as exc:
        problems.append(f"the database cannot be read: {exc}")
    if state.monitor.last_error is not None:
        problems.append(f"the last monitoring run failed: {state.monitor.last_error}")
    if not state.loop_alive():
        problems.append("the monitoring loop has stopped; see the analyzer's log")
    body = {
        "ok": not problems,
        "problems": problems,
        "ticks": state.monitor.ticks,
        "quarantined_profiles": quarantined,
    }
    return json_ok(body, status=503 if problems else 200)


async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    doc, counters = await state.monitor.store.aread(read_snapshot)
    doc = dict(doc or {})
    process = state.monitor.decode_process
    doc["decode_process"] = process.stats() if process is not None else None
    text = render(state.registry, state.collector, doc, counters)
    response = web.Response(body=text)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


OPENAPI_KEY = web.AppKey("modelmon_openapi", bytes)


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_KEY], content_type="application/json")


def setup_routes(app: web.Application) -> None:
    """Mount status, health, metrics and the OpenAPI document."""
    app[OPENAPI_KEY] = read_openapi()
    app.router.add_get("/monitor/status", status)
    app.router.add_get("/monitor/health", health)
    app.router.add_get("/monitor/metrics", metrics)
    app.router.add_get("/monitor/openapi.json", openapi)
