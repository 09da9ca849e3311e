"""A browser's way to the report with a token set: the sign-in form, the signed session cookie
and its limits (wrong token, tampering, expiry, sign-out, never for writes), on a real server
with a real client session (its cookie jar)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from analyzer.service.app import create_app
from analyzer.web.auth import COOKIE, session_cookie, valid_session
from tests.analyzer.service_helpers import T0, Clock, make_config

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
TOKEN_ENV = "MODELMON_TEST_TOKEN_AUTH"
TOKEN = "correct-horse-battery-staple"
BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
MAX_AGE_S = 3600


@pytest.fixture
async def served(
    aiohttp_client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[TestClient[Any, Any], Clock]:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    clock = Clock(T0)
    config = make_config(tmp_path, None, auth_token_env=TOKEN_ENV, session_max_age_s=MAX_AGE_S)
    client = await aiohttp_client(create_app(config, clock=clock, run_loop=False))
    return client, clock


def session_of(client: TestClient[Any, Any]) -> str | None:
    for cookie in client.session.cookie_jar:
        if cookie.key == COOKIE:
            return cookie.value
    return None


async def sign_in(client: TestClient[Any, Any], token: str) -> web.Response | Any:
    return await client.post(
        "/monitor/login",
        data={"token": token, "next": "/monitor/report"},
        headers=BROWSER,
        allow_redirects=False,
    )


async def test_a_browser_signs_in_and_reaches_the_report(
    served: tuple[TestClient[Any, Any], Clock],
) -> None:
    client, _ = served
    response = await client.get("/monitor/report", headers=BROWSER, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/monitor/login?next=/monitor/report"
    api = await client.get("/monitor/report")  # not a browser: a JSON 401 that says how
    assert api.status == 401 and "/monitor/login" in (await api.json())["error"]

    form = await client.get("/monitor/login?next=/monitor/report", headers=BROWSER)
    page = await form.text()
    assert form.status == 200 and 'name="token"' in page and 'value="/monitor/report"' in page

    wrong = await sign_in(client, "not-the-token")
    assert wrong.status == 401 and "not the token" in await wrong.text()
    assert session_of(client) is None

    right = await sign_in(client, TOKEN)
    assert right.status == 303 and right.headers["Location"] == "/monitor/report"
    set_cookie = right.headers["Set-Cookie"]
    morsel = SimpleCookie(set_cookie)[COOKIE]
    assert morsel["httponly"] and morsel["samesite"] == "Strict"
    assert morsel["path"] == "/monitor" and morsel["max-age"] == str(MAX_AGE_S)
    assert TOKEN not in set_cookie

    report = await client.get("/monitor/report", headers=BROWSER)
    assert report.status == 200 and report.content_type == "text/html"
    assert (await client.get("/monitor/runs")).status == 200
    assert (await client.get("/monitor/runs/1")).status == 404  # let in; there is no run 1


async def test_the_cookie_never_writes(served: tuple[TestClient[Any, Any], Clock]) -> None:
    client, _ = served
    assert (await sign_in(client, TOKEN)).status == 303
    record = b'{"groundTruthData": {"data": "1"}, "eventMetadata": {"eventId": "e"}}\n'
    response = await client.post("/monitor/ground-truth", data=record)
    assert response.status == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    response = await client.post("/monitor/ground-truth", data=record, headers=bearer)
    assert response.status == 200


async def test_tampered_expired_and_signed_out_cookies_are_refused(
    served: tuple[TestClient[Any, Any], Clock],
) -> None:
    client, clock = served
    assert (await sign_in(client, TOKEN)).status == 303
    good = session_of(client)
    assert good is not None
    expiry, _, signature = good.partition(".")
    forged = [
        f"{int(expiry) + 10**6}.{signature}",  # a later expiry under the old signature
        f"{expiry}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}",
        session_cookie("another-token", int(expiry)),
        "",
        "garbage",
        f"{expiry}",
        f"١٢٣.{signature}",  # Arabic-Indic digits are not digits here
    ]
    for value in forged:
        client.session.cookie_jar.clear()
        client.session.cookie_jar.update_cookies({COOKIE: value})
        response = await client.get("/monitor/report", allow_redirects=False)
        assert response.status == 401, value

    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({COOKIE: good})
    assert (await client.get("/monitor/report")).status == 200
    clock.set(T0 + timedelta(seconds=MAX_AGE_S))  # the session has ended
    assert (await client.get("/monitor/report")).status == 401
    clock.set(T0)

    client.session.cookie_jar.clear()
    assert (await sign_in(client, TOKEN)).status == 303
    assert (await client.get("/monitor/report")).status == 200

    response = await client.post("/monitor/logout", headers=BROWSER, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/monitor/login"
    assert session_of(client) is None
    assert (await client.get("/monitor/report")).status == 401


async def test_next_only_leads_to_a_page_of_the_monitor(
    served: tuple[TestClient[Any, Any], Clock],
) -> None:
    client, _ = served
    for target in (
        "//evil.example/x",
        "https://evil.example/",
        "/monitor/../etc",
        "/monitor/%2e%2e/etc",
        "/other",
    ):
        response = await client.post(
            "/monitor/login", data={"token": TOKEN, "next": target}, allow_redirects=False
        )
        assert response.headers["Location"] == "/monitor/report", target
    response = await client.post(
        "/monitor/login",
        data={"token": TOKEN, "next": "/monitor/runs?kind=hourly"},
        allow_redirects=False,
    )
    assert response.headers["Location"] == "/monitor/runs?kind=hourly"
    big = await client.post("/monitor/login", data={"token": "x" * 10_000})
    assert big.status == 413


def test_a_session_is_bound_to_the_token_and_its_expiry() -> None:
    value = session_cookie(TOKEN, 1_000)
    assert valid_session(TOKEN, value, now=999.0)
    assert not valid_session(TOKEN, value, now=1_000.0)
    assert not valid_session("other", value, now=0.0)


async def test_without_a_token_nothing_asks_for_one(aiohttp_client: Client, tmp_path: Path) -> None:
    client = await aiohttp_client(create_app(make_config(tmp_path, None), run_loop=False))
    assert (await client.get("/monitor/report", headers=BROWSER)).status == 200
    assert (await client.get("/monitor/runs")).status == 200
    response = await client.post("/monitor/login", data={"token": ""}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/monitor/report"
