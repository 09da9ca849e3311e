"""Failed sign-ins are throttled (issue 9): per client address and for all addresses, 429 with
``Retry-After`` beyond the limit (the token is not even compared), counted in
``modelmon_login_throttled_total``, and memory bounded in the number of addresses. A real
server and client; the clock is injected (no sleeps)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from analyzer.service.app import create_app
from analyzer.web.login_throttle import BURST, PER_S, LoginThrottle
from tests.analyzer.service_helpers import T0, Clock, make_config

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
TOKEN_ENV = "MODELMON_TEST_TOKEN_THROTTLE"
TOKEN = "correct-horse-battery-staple"


async def _sign_in(client: TestClient[Any, Any], token: str) -> Any:
    return await client.post(
        "/monitor/login",
        data={"token": token, "next": "/monitor/report"},
        allow_redirects=False,
    )


async def _throttled_total(client: TestClient[Any, Any]) -> float:
    text = await (await client.get("/monitor/metrics")).text()
    [line] = [x for x in text.splitlines() if x.startswith("modelmon_login_throttled_total ")]
    return float(line.split()[1])


async def test_failed_sign_ins_from_one_address_get_429_then_retry_after(
    aiohttp_client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    clock = Clock(T0)
    config = make_config(tmp_path, None, auth_token_env=TOKEN_ENV)
    client = await aiohttp_client(create_app(config, clock=clock, run_loop=False))
    for _ in range(BURST):
        assert (await _sign_in(client, "guess")).status == 401
    assert await _throttled_total(client) == 0
    refused = await _sign_in(client, TOKEN)  # even the right token: no answer to a guess
    assert refused.status == 429
    body = await refused.json()
    wait = int(refused.headers["Retry-After"])
    assert wait == round(1 / PER_S) and body["retry_after_s"] == wait
    assert "too many failed sign-ins" in body["error"]
    assert (await _sign_in(client, "guess")).status == 429
    assert await _throttled_total(client) == 2
    clock.now += wait - 1
    assert (await _sign_in(client, TOKEN)).status == 429
    clock.now += 1  # Retry-After has passed: one more try
    assert (await _sign_in(client, TOKEN)).status == 303
    assert await _throttled_total(client) == 3
    # the API's bearer token is never throttled
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert (await client.get("/monitor/runs", headers=auth)).status == 200


def test_the_global_bucket_bounds_guesses_from_many_addresses() -> None:
    throttle = LoginThrottle(burst=3, per_s=1.0, global_burst=20, global_per_s=2.0)
    tried = 0
    for i in range(100):  # 100 addresses, 3 guesses each, all at once
        for _ in range(3):
            if throttle.wait(f"10.0.0.{i}", 0.0) == 0:
                throttle.failed(f"10.0.0.{i}", 0.0)
                tried += 1
    assert tried == 20  # the global burst
    assert throttle.wait("10.9.9.9", 0.0) == 0.5  # a new address waits for the global bucket
    assert throttle.wait("10.9.9.9", 0.5) == 0.0
    assert throttle.throttled == 300 - 20 + 1


def test_addresses_kept_are_bounded_least_recently_seen_first() -> None:
    throttle = LoginThrottle(burst=2, per_s=0.01, global_burst=10**9, max_addresses=100)
    throttle.failed("first", 0.0)
    throttle.failed("first", 0.0)
    assert throttle.wait("first", 0.0) > 0
    for i in range(99):
        throttle.failed(f"a{i}", 0.0)
    assert throttle.wait("first", 0.0) > 0  # seen again: the most recent now
    for i in range(99, 10_000):
        throttle.failed(f"a{i}", 0.0)
    assert len(throttle) == 100
    assert throttle.wait("first", 0.0) == 0.0  # forgotten: a full bucket again
    assert len(throttle) == 100
