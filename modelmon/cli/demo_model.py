"""The toy model behind ``modelmon demo``: a tiny aiohttp app scoring ``text/csv`` rows.

It speaks the SageMaker serving contract: ``POST /invocations`` with headerless CSV rows
(``age,income,credit_score,utilization,state,plan``) answers one probability per line, and
``GET /ping`` answers 200. The score is a fixed logistic function of the features, so the same
row always gets the same score. The same server also stands in for a chat or paging service:
``POST /hook`` receives the analyzer's alert webhooks and hands each JSON body to a callback.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from aiohttp import web

__all__ = ["FEATURES", "HookCallback", "build_app", "score_row", "start_model"]

HookCallback = Callable[[dict[str, Any]], None]
_HOOK_KEY: web.AppKey[HookCallback] = web.AppKey("on_hook")

FEATURES = ("age", "income", "credit_score", "utilization", "state", "plan")
_PLAN_WEIGHT = {"basic": 0.2, "plus": 0.0, "premium": -0.3}
_STATE_WEIGHT = {"CA": -0.1, "TX": 0.15, "FL": 0.1}


def score_row(fields: list[str]) -> float:
    """The default probability for one row of :data:`FEATURES`; unparseable numbers count as 0.

    Examples
    --------
    >>> round(score_row(["40", "60000", "700", "0.3", "CA", "basic"]), 4)
    0.2142
    """

    def number(index: int) -> float:
        try:
            return float(fields[index])
        except (IndexError, ValueError):
            return 0.0

    def word(index: int) -> str:
        return fields[index].strip() if index < len(fields) else ""

    z = (
        -1.0
        - 0.01 * (number(0) - 40.0)
        - 0.00001 * (number(1) - 60000.0)
        - 0.008 * (number(2) - 650.0)
        + 2.5 * (number(3) - 0.3)
        + _STATE_WEIGHT.get(word(4), 0.0)
        + _PLAN_WEIGHT.get(word(5), 0.0)
    )
    return 1.0 / (1.0 + math.exp(-max(-40.0, min(40.0, z))))


async def _invocations(request: web.Request) -> web.Response:
    if request.content_type != "text/csv":
        return web.json_response(
            {"error": f"send text/csv rows of {','.join(FEATURES)}, not {request.content_type}"},
            status=415,
        )
    text = await request.text()
    scores = [score_row(line.split(",")) for line in text.splitlines() if line.strip()]
    body = "".join(f"{score:.6f}\n" for score in scores)
    return web.Response(text=body, content_type="text/csv")


async def _ping(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _hook(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "send a JSON object"}, status=400)
    if isinstance(body, dict):
        request.app[_HOOK_KEY](body)
    return web.Response(status=204)


def build_app(on_hook: HookCallback | None = None) -> web.Application:
    """The toy model (and webhook receiver) as an aiohttp application."""
    app = web.Application()
    app[_HOOK_KEY] = on_hook or (lambda body: None)
    app.router.add_post("/invocations", _invocations)
    app.router.add_get("/ping", _ping)
    app.router.add_post("/hook", _hook)
    return app


async def start_model(
    host: str = "127.0.0.1", port: int = 0, on_hook: HookCallback | None = None
) -> tuple[web.AppRunner, int]:
    """Serve the toy model on ``host:port`` (0: a free port); returns the runner and the port."""
    runner = web.AppRunner(build_app(on_hook), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, int(runner.addresses[0][1])
