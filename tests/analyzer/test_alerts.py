"""AlertDispatcher against a real aiohttp webhook receiver on 127.0.0.1 (port 0).

No sleeps: tests wait on the receiver's queue of requests, or on ``close()``, which drains
the queued deliveries (backoff is made tiny through ``backoff_base_s``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from analyzer.service.alerts import PAYLOAD_SCHEMA, AlertDispatcher
from modelmon.config import AlertsConfig, WebhookConfig

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
WAIT_S = 10.0


def _status(state: str, drifting: tuple[str, ...] = ("income",)) -> dict[str, Any]:
    features = {
        "income": {"state": "ok", "distance": 0.01, "threshold": 0.1},
        "age": {"state": "ok", "distance": 0.0, "threshold": 0.1},
        "score": {"state": "warning", "distance": 0.085, "threshold": 0.1},
    }
    violations = []
    for name in drifting if state == "alert" else ():
        features[name] = {"state": "alert", "distance": 0.23, "threshold": 0.1}
        violations.append(
            {
                "feature_name": name,
                "constraint_check_type": "baseline_drift_check",
                "description": f"Baseline drift distance 0.23 exceeds threshold 0.1 for {name}",
            }
        )
    return {
        "state": state,
        "monitors": {
            "data_quality": {
                "state": state,
                "window": {"start": "2026-11-27T07:00:00Z", "end": "2026-11-27T08:00:00Z"},
                "samples": 1500,
                "violations": violations,
                "features": features,
            }
        },
        "ingest": {"records": 1500, "bad_records": 0, "files": 3},
    }


class Receiver:
    """A webhook endpoint that records each request and answers from a script of statuses."""

    def __init__(self, statuses: list[int] | None = None, *, hang: bool = False) -> None:
        self.statuses = list(statuses or [])
        self.hang = hang
        self.release = asyncio.Event()
        self.requests: asyncio.Queue[tuple[dict[str, str], dict[str, Any]]] = asyncio.Queue()
        self.count = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.count += 1
        await self.requests.put((dict(request.headers), body))
        if self.hang:
            await self.release.wait()
        status = self.statuses.pop(0) if self.statuses else 200
        return web.json_response({"ok": status < 300}, status=status)

    async def next(self) -> tuple[dict[str, str], dict[str, Any]]:
        return await asyncio.wait_for(self.requests.get(), WAIT_S)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook/secret-token", self.handle)
        return app


async def _serve(aiohttp_server: ServerFactory, receiver: Receiver) -> str:
    server = await aiohttp_server(receiver.app())
    return str(server.make_url("/hook/secret-token"))


def _dispatcher(urls: list[str], **kwargs: Any) -> AlertDispatcher:
    config_keys = {
        k: kwargs.pop(k) for k in ("cooldown_s", "max_attempts", "timeout_s") if k in kwargs
    }
    config = AlertsConfig(webhooks=[WebhookConfig(url=u) for u in urls], **config_keys)
    kwargs.setdefault("backoff_base_s", 0.001)
    kwargs.setdefault("drain_timeout_s", WAIT_S)
    return AlertDispatcher(config, **kwargs)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_ok_to_alert_sends_one_alert_naming_the_drifting_features(
    aiohttp_server: ServerFactory,
) -> None:
    receiver = Receiver()
    url = await _serve(aiohttp_server, receiver)
    dispatcher = _dispatcher([url], endpoint="churn-model")
    await dispatcher.start()
    dispatcher.state_changed("data_quality", "ok", "alert", _status("alert"))
    headers, payload = await receiver.next()
    await dispatcher.close()

    assert receiver.count == 1
    assert payload["schema"] == PAYLOAD_SCHEMA
    assert payload["event"] == "alert"
    assert (payload["monitor"], payload["previous_state"], payload["state"]) == (
        "data_quality",
        "ok",
        "alert",
    )
    assert payload["endpoint"] == "churn-model"
    assert payload["overall_state"] == "alert"
    assert payload["samples"] == 1500
    assert set(payload["features"]) == {"income", "score"}  # alert and warning, not ok
    assert payload["features"]["income"] == {"state": "alert", "distance": 0.23, "threshold": 0.1}
    assert [v["feature_name"] for v in payload["violations"]] == ["income"]
    assert payload["violation_count"] == 1
    assert payload["time"].endswith("Z")
    assert headers["X-Modelmon-Delivery"] == payload["id"]
    assert headers["Content-Type"] == "application/json"
    stats = dispatcher.stats()
    assert (stats["sent"], stats["failed"], stats["pending"]) == (1, 0, 0)
    assert stats["last_sent"] is not None and stats["last_error"] is None


async def test_alert_to_ok_sends_one_resolution(aiohttp_server: ServerFactory) -> None:
    receiver = Receiver()
    url = await _serve(aiohttp_server, receiver)
    dispatcher = _dispatcher([url])
    await dispatcher.start()
    dispatcher.state_changed("data_quality", "alert", "ok", _status("ok"))
    _, payload = await receiver.next()
    await dispatcher.close()

    assert receiver.count == 1
    assert (payload["event"], payload["previous_state"], payload["state"]) == (
        "resolved",
        "alert",
        "ok",
    )
    assert payload["violations"] == [] and payload["violation_count"] == 0


async def test_changes_not_touching_alert_send_nothing(aiohttp_server: ServerFactory) -> None:
    receiver = Receiver()
    url = await _serve(aiohttp_server, receiver)
    dispatcher = _dispatcher([url])
    await dispatcher.start()
    for old, new in [("no_data", "ok"), (None, "ok"), ("ok", "warning"), ("alert", "alert")]:
        dispatcher.state_changed("data_quality", old, new, _status(new))
    # a real alert afterwards proves the pipe works: it must be the first thing received
    dispatcher.state_changed("data_quality", None, "alert", _status("alert"))
    _, payload = await receiver.next()
    await dispatcher.close()

    assert payload["previous_state"] is None and payload["state"] == "alert"
    assert receiver.count == 1
    assert dispatcher.stats()["sent"] == 1


async def test_identical_alerts_within_cooldown_are_not_resent(
    aiohttp_server: ServerFactory,
) -> None:
    receiver = Receiver()
    url = await _serve(aiohttp_server, receiver)
    clock = FakeClock()
    dispatcher = _dispatcher([url], clock=clock, cooldown_s=600)
    await dispatcher.start()
    change = dispatcher.state_changed

    change("data_quality", "ok", "alert", _status("alert"))  # sent
    change("data_quality", "alert", "ok", _status("ok"))  # sent
    clock.now += 60
    change("data_quality", "ok", "alert", _status("alert"))  # same alert: suppressed
    change("data_quality", "alert", "ok", _status("ok"))  # same resolution: suppressed
    change("data_quality", "ok", "alert", _status("alert", ("age",)))  # other feature: sent
    clock.now += 600
    change("data_quality", "alert", "ok", _status("ok"))  # cooldown over: sent
    seen = [(await receiver.next())[1] for _ in range(4)]
    await dispatcher.close()

    assert [
        (p["event"], sorted(k for k, f in p["features"].items() if f["state"] == "alert"))
        for p in seen
    ] == [
        ("alert", ["income"]),
        ("resolved", []),
        ("alert", ["age"]),
        ("resolved", []),
    ]
    assert receiver.count == 4
    stats = dispatcher.stats()
    assert (stats["sent"], stats["suppressed"]) == (4, 2)


async def test_server_errors_are_retried_until_success(aiohttp_server: ServerFactory) -> None:
    receiver = Receiver([500, 503, 200])
    url = await _serve(aiohttp_server, receiver)
    dispatcher = _dispatcher([url], max_attempts=5)
    await dispatcher.start()
    dispatcher.state_changed("data_quality", "ok", "alert", _status("alert"))
    attempts = [await receiver.next() for _ in range(3)]
    await dispatcher.close()

    assert receiver.count == 3
    assert len({headers["X-Modelmon-Delivery"] for headers, _ in attempts}) == 1  # one delivery
    stats = dispatcher.stats()
    assert (stats["sent"], stats["failed"], stats["retries"]) == (1, 0, 2)


async def test_gives_up_after_max_attempts_and_does_not_retry_client_errors(
    aiohttp_server: ServerFactory,
) -> None:
    failing, refusing = Receiver([500] * 10), Receiver([400] * 10)
    urls = [await _serve(aiohttp_server, failing), await _serve(aiohttp_server, refusing)]
    dispatcher = _dispatcher(urls, max_attempts=3)
    await dispatcher.start()
    dispatcher.state_changed("data_quality", "ok", "alert", _status("alert"))
    await dispatcher.close()

    assert (failing.count, refusing.count) == (3, 1)
    stats = dispatcher.stats()
    assert (stats["sent"], stats["failed"], stats["pending"]) == (0, 2, 0)
    assert "HTTP" in stats["last_error"]
    assert "secret-token" not in stats["last_error"]  # paths can hold secrets: never shown


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook/secret-token"


async def test_failures_are_counted_when_the_receiver_is_down() -> None:
    dispatcher = _dispatcher([_closed_port_url()], max_attempts=3)
    await dispatcher.start()
    dispatcher.state_changed("data_quality", "ok", "alert", _status("alert"))
    dispatcher.state_changed("data_quality", "alert", "ok", _status("ok"))
    await dispatcher.close()

    stats = dispatcher.stats()
    assert (stats["sent"], stats["failed"], stats["pending"]) == (0, 2, 0)
    assert stats["retries"] == 4  # two deliveries, three attempts each
    assert "ConnectError" in stats["last_error"]
    assert "secret-token" not in stats["last_error"]
    assert "/hook/***: ConnectError" in stats["last_error"]  # the path's plain words are shown


async def test_no_log_line_shows_a_webhook_secret(
    aiohttp_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    receiver, failing = Receiver(), Receiver([500] * 10)
    ok_url = await _serve(aiohttp_server, receiver) + "?key=s3cr3t-query"
    bad_url = await _serve(aiohttp_server, failing)
    bad_url = bad_url.replace("http://", "http://user:pa55word@")
    caplog.set_level(logging.DEBUG)  # everything any logger would say
    dispatcher = _dispatcher([ok_url, bad_url], max_attempts=2)
    await dispatcher.start()
    dispatcher.state_changed("data_quality", "ok", "alert", _status("alert"))
    await receiver.next()
    await dispatcher.close()
    assert (receiver.count, failing.count) == (1, 2)
    ours = [r for r in caplog.records if r.name != "aiohttp.access"]  # not the receiver's log
    text = "\n".join(record.getMessage() for record in ours)
    assert "alert delivery to http://127.0.0.1:" in text  # our own line, redacted
    for secret in ("secret-token", "s3cr3t-query", "pa55word", "user:"):
        assert secret not in text
    assert secret not in (dispatcher.stats()["last_error"] or "")


async def test_state_changed_never_waits_and_close_is_bounded(
    aiohttp_server: ServerFactory,
) -> None:
    receiver = Receiver(hang=True)
    url = await _serve(aiohttp_server, receiver)
    dispatcher = _dispatcher([url], timeout_s=60, drain_timeout_s=0.2)
    await dispatcher.start()
    try:
        dispatcher.state_changed("data_quality", "ok", "alert", _status("alert"))
        dispatcher.state_changed("data_quality", "alert", "ok", _status("ok"))
        await receiver.next()  # the first delivery is stuck in the receiver
        assert dispatcher.stats()["pending"] == 2
        await asyncio.wait_for(dispatcher.close(), WAIT_S)
    finally:
        receiver.release.set()

    stats = dispatcher.stats()
    assert (stats["sent"], stats["failed"], stats["pending"]) == (0, 2, 0)
    assert "shutdown" in stats["last_error"]
    dispatcher.state_changed("data_quality", "ok", "alert", _status("alert"))  # ignored
    assert dispatcher.stats()["pending"] == 0


async def test_configured_headers_reach_every_webhook(aiohttp_server: ServerFactory) -> None:
    first, second = Receiver(), Receiver()
    urls = [await _serve(aiohttp_server, first), await _serve(aiohttp_server, second)]
    config = AlertsConfig(
        webhooks=[
            WebhookConfig(url=urls[0], headers={"Authorization": "Bearer s3cret"}),
            WebhookConfig(url=urls[1], headers={"X-Team": "ml-ops"}),
        ]
    )
    dispatcher = AlertDispatcher(config, backoff_base_s=0.001)
    await dispatcher.start()
    dispatcher.state_changed("data_quality", "ok", "alert", _status("alert"))
    (headers1, body1), (headers2, body2) = await first.next(), await second.next()
    await dispatcher.close()

    assert headers1["Authorization"] == "Bearer s3cret" and "X-Team" not in headers1
    assert headers2["X-Team"] == "ml-ops" and "Authorization" not in headers2
    assert body1 == body2
    assert dispatcher.stats()["sent"] == 2


async def test_alerts_from_another_thread_and_before_start_are_delivered(
    aiohttp_server: ServerFactory,
) -> None:
    receiver = Receiver()
    url = await _serve(aiohttp_server, receiver)
    dispatcher = _dispatcher([url])
    dispatcher.state_changed("data_quality", "ok", "alert", _status("alert"))
    assert dispatcher.stats()["pending"] == 1
    await dispatcher.start()
    _, first = await receiver.next()
    await asyncio.to_thread(dispatcher.state_changed, "data_quality", "alert", "ok", _status("ok"))
    _, second = await receiver.next()
    await dispatcher.close()

    assert (first["event"], second["event"]) == ("alert", "resolved")


async def test_status_may_be_the_monitor_part_only_and_odd_values_serialize(
    aiohttp_server: ServerFactory,
) -> None:
    receiver = Receiver()
    url = await _serve(aiohttp_server, receiver)
    dispatcher = _dispatcher([url])
    await dispatcher.start()
    part = _status("alert")["monitors"]["data_quality"]
    part["window"] = {"start": pytest, "end": None}  # not JSON: sent as its str()
    dispatcher.state_changed("model_quality", "warning", "alert", part)
    _, payload = await receiver.next()
    await dispatcher.close()

    assert payload["monitor"] == "model_quality"
    assert payload["overall_state"] is None
    assert payload["features"]["income"]["state"] == "alert"
    assert payload["window"]["start"] == str(pytest)
    json.dumps(payload)


async def test_a_receiver_that_never_answers_times_out_and_is_retried(
    aiohttp_server: ServerFactory,
) -> None:
    receiver = Receiver(hang=True)
    url = await _serve(aiohttp_server, receiver)
    dispatcher = _dispatcher([url], timeout_s=0.2, max_attempts=2)
    await dispatcher.start()
    try:
        dispatcher.state_changed("data_quality", "ok", "alert", _status("alert"))
        await dispatcher.close()
    finally:
        receiver.release.set()

    assert receiver.count == 2
    stats = dispatcher.stats()
    assert (stats["sent"], stats["failed"], stats["retries"]) == (0, 1, 1)
    assert "no answer within 0.2 s" in stats["last_error"]
