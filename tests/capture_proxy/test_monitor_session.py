"""A browser's session through the proxy: ``/monitor/login`` on the proxy's address signs in
to the analyzer behind it (the cookie goes through both ways), with either engine."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from analyzer.service.app import create_app
from tests.analyzer.service_helpers import T0, Clock
from tests.analyzer.service_helpers import make_config as analyzer_config
from tests.capture_proxy.conftest import StartProxy, start_app

TOKEN_ENV = "MODELMON_TEST_TOKEN_SESSION"
BROWSER = {"Accept": "text/html"}


async def test_a_browser_signs_in_through_the_proxy(
    start_proxy: StartProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "through-the-proxy")
    config = analyzer_config(tmp_path / "analyzer", None, auth_token_env=TOKEN_ENV)
    runner, analyzer_url = await start_app(create_app(config, clock=Clock(T0), run_loop=False))
    try:
        proxy = await start_proxy(proxy={"analyzer_url": analyzer_url})
        jar = aiohttp.CookieJar(unsafe=True)  # a browser's jar (127.0.0.1 is an IP address)
        async with aiohttp.ClientSession(cookie_jar=jar) as browser:
            async with browser.get(f"{proxy.url}/monitor/report", headers=BROWSER) as page:
                assert page.status == 200 and page.url.path == "/monitor/login"  # redirected
            async with browser.post(
                f"{proxy.url}/monitor/login", data={"token": "wrong"}, headers=BROWSER
            ) as refused:
                assert refused.status == 401
            async with browser.post(
                f"{proxy.url}/monitor/login",
                data={"token": "through-the-proxy", "next": "/monitor/report"},
                headers=BROWSER,
            ) as report:
                assert report.status == 200 and report.url.path == "/monitor/report"
                assert "<html" in await report.text()
            async with browser.get(f"{proxy.url}/monitor/runs") as runs:
                assert runs.status == 200
    finally:
        await runner.cleanup()
