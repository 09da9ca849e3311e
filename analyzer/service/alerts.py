"""Webhook alerts on a monitor's change of state into or out of ``alert``.

:meth:`AlertDispatcher.state_changed` only decides and enqueues (it never awaits, never does
I/O, and may be called from any thread), so monitoring is never blocked by a slow or dead
receiver. One worker task per webhook sends that webhook's deliveries in order (an alert is
never overtaken by its own resolution), retrying transport errors, 408, 429 and 5xx with
exponential backoff plus jitter, up to ``max_attempts``. Identical alerts within
``cooldown_s`` are suppressed. Every outcome is counted in :meth:`AlertDispatcher.stats`.
The payload is documented in ``docs/alerts.md``.

A webhook URL is only ever shown through :func:`analyzer.service.alert_payload.redact_url` (its
secrets withheld). httpx and httpcore log every request's full URL at INFO and DEBUG, so
their loggers are set to WARNING when a dispatcher is made.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from analyzer.service.alert_payload import (
    PAYLOAD_SCHEMA,
    alert_signature,
    build_payload,
    iso_z,
    redact_url,
)
from modelmon.config import AlertsConfig, WebhookConfig

__all__ = ["PAYLOAD_SCHEMA", "AlertDispatcher", "build_payload"]

log = logging.getLogger("modelmon.analyzer.alerts")
_HTTP_CLIENT_LOGGERS = ("httpx", "httpcore")

_RETRY_STATUS = frozenset({408, 429})


@dataclass(frozen=True)
class _Delivery:
    id: str
    body: bytes


@dataclass
class _Webhook:
    config: WebhookConfig
    name: str
    queue: deque[_Delivery] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0


class AlertDispatcher:
    """Sends alert webhooks without ever blocking the caller.

    Parameters
    ----------
    config : AlertsConfig
        Webhooks, cooldown, attempts and per-request timeout.
    clock : callable
        Monotonic seconds, for the cooldown (inject a fake one in tests).
    transport : httpx.AsyncBaseTransport, optional
        Passed to the one ``httpx.AsyncClient``.
    backoff_base_s, backoff_max_s : float
        Delay before retry ``n`` is ``min(max, base * 2**(n-1))`` times a jitter in [0.5, 1].
    queue_max : int
        Deliveries waiting per webhook; beyond it the oldest is dropped and counted failed.
    drain_timeout_s : float, optional
        How long :meth:`close` lets queued deliveries finish (default: ``timeout_s``, at most 5).
    endpoint, status_url : str, optional
        Copied into every payload.
    wall_clock : callable
        The payload's ``time``.
    rng : random.Random, optional
        Jitter source.
    """

    def __init__(
        self,
        config: AlertsConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        queue_max: int = 100,
        drain_timeout_s: float | None = None,
        endpoint: str | None = None,
        status_url: str | None = None,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._transport = transport
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._queue_max = queue_max
        self._drain_timeout_s = (
            min(config.timeout_s, 5.0) if drain_timeout_s is None else drain_timeout_s
        )
        self._endpoint = endpoint
        self._status_url = status_url
        self._wall_clock = wall_clock
        self._rng = rng if rng is not None else random.Random()
        for name in _HTTP_CLIENT_LOGGERS:  # they would log the webhook URLs with their secrets
            logging.getLogger(name).setLevel(logging.WARNING)
        self._webhooks = [
            _Webhook(config=hook, name=f"alerts-webhook-{i}")
            for i, hook in enumerate(config.webhooks)
        ]
        self._lock = threading.Lock()
        self._last_enqueued: dict[Hashable, float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.AsyncClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._closed = False
        self._sent = 0
        self._failed = 0
        self._suppressed = 0
        self._retries = 0
        self._last_error: str | None = None
        self._last_sent: str | None = None

    async def start(self) -> None:
        """Open the HTTP client and start one worker task per webhook."""
        if self._loop is not None:
            raise RuntimeError("AlertDispatcher.start() called twice")
        self._loop = asyncio.get_running_loop()
        self._client = httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(self._config.timeout_s),
            follow_redirects=False,
        )
        for hook in self._webhooks:
            hook.wake.set()  # deliveries enqueued before start()
            task = self._loop.create_task(self._run_worker(hook), name=hook.name)
            self._tasks.append(task)

    async def close(self) -> None:
        """Let queued deliveries finish for up to ``drain_timeout_s``, then cancel the rest.

        Whatever was not delivered is counted as failed.
        """
        if self._closed:
            return
        self._closing = True
        for hook in self._webhooks:
            hook.wake.set()
        if self._tasks:
            _, unfinished = await asyncio.wait(self._tasks, timeout=self._drain_timeout_s)
            for task in unfinished:
                task.cancel()
            if unfinished:
                await asyncio.wait(unfinished)
            for task in self._tasks:
                if not task.cancelled() and task.exception() is not None:
                    log.error("alert worker %s failed", task.get_name(), exc_info=task.exception())
        dropped = sum(len(h.queue) + h.in_flight for h in self._webhooks)
        for hook in self._webhooks:
            hook.queue.clear()
            hook.in_flight = 0
        if dropped:
            self._fail(f"{dropped} alert deliveries undelivered at shutdown", count=dropped)
        if self._client is not None:
            await self._client.aclose()
        self._closed = True

    def state_changed(
        self, monitor: str, old: str | None, new: str, status: dict[str, Any]
    ) -> None:
        """Enqueue an alert if ``old -> new`` crosses into or out of ``alert``; never blocks.

        ``status`` is the status document (or the monitor's part of it). ``old`` is ``None``
        for a monitor's first evaluation; ``None -> alert`` alerts, ``None -> ok`` does not.
        """
        if (old == "alert") == (new == "alert"):
            return
        if self._closing:
            log.warning("alert for %s after close(): not sent", monitor)
            return
        now = self._clock()
        delivery_id = str(uuid.uuid4())
        try:
            payload = build_payload(
                monitor,
                old,
                new,
                status,
                time_iso=iso_z(self._wall_clock()),
                delivery_id=delivery_id,
                endpoint=self._endpoint,
                status_url=self._status_url,
            )
            body = orjson.dumps(payload, default=str)
        except (TypeError, ValueError, AttributeError, orjson.JSONEncodeError) as exc:
            log.error("alert payload for %s could not be built", monitor, exc_info=True)
            self._fail(f"payload: {exc}")
            return
        key = alert_signature(monitor, new, payload)
        with self._lock:
            last = self._last_enqueued.get(key)
            if last is not None and now - last < self._config.cooldown_s:
                self._suppressed += 1
                log.info("alert %s -> %s for %s suppressed (cooldown)", old, new, monitor)
                return
            if len(self._last_enqueued) >= 1024:  # forget alerts whose cooldown is over
                cutoff = now - self._config.cooldown_s
                self._last_enqueued = {k: t for k, t in self._last_enqueued.items() if t > cutoff}
            self._last_enqueued[key] = now
            delivery = _Delivery(id=delivery_id, body=body)
            for hook in self._webhooks:
                if len(hook.queue) >= self._queue_max:
                    hook.queue.popleft()
                    self._fail(f"{redact_url(hook.config.url)}: queue full, oldest alert dropped")
                hook.queue.append(delivery)
        log.info("alert %s -> %s for %s queued", old, new, monitor)
        self._wake()

    def stats(self) -> dict[str, Any]:
        """Delivery counters, for the status document (``alerts``)."""
        return {
            "sent": self._sent,
            "failed": self._failed,
            "pending": sum(len(h.queue) + h.in_flight for h in self._webhooks),
            "suppressed": self._suppressed,
            "retries": self._retries,
            "webhooks": len(self._webhooks),
            "last_error": self._last_error,
            "last_sent": self._last_sent,
        }

    def _fail(self, error: str, *, count: int = 1) -> None:
        self._failed += count
        self._last_error = error

    def _wake(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # start() wakes the workers
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._set_events(self._webhooks)
        else:
            loop.call_soon_threadsafe(self._set_events, self._webhooks)

    @staticmethod
    def _set_events(hooks: Iterable[_Webhook]) -> None:
        for hook in hooks:
            hook.wake.set()

    async def _run_worker(self, hook: _Webhook) -> None:
        while True:
            if not hook.queue:
                if self._closing:
                    return
                hook.wake.clear()
                await hook.wake.wait()
                continue
            delivery = hook.queue.popleft()
            hook.in_flight = 1  # stays 1 if cancelled mid-delivery: close() counts it
            try:
                await self._deliver(hook, delivery)
            except Exception as exc:  # a bug must not kill the worker; it is logged and counted
                log.exception("alert delivery %s crashed", delivery.id)
                error = f"{type(exc).__name__}: {_scrub(str(exc), hook.config.url)}"
                self._fail(f"{redact_url(hook.config.url)}: {error}")
            hook.in_flight = 0

    async def _deliver(self, hook: _Webhook, delivery: _Delivery) -> None:
        assert self._client is not None
        url = hook.config.url
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "modelmon-alerts/1",
            "X-Modelmon-Delivery": delivery.id,
            **hook.config.headers,
        }
        error = ""
        for attempt in range(1, self._config.max_attempts + 1):
            try:
                # httpx's timeout is per phase; this bounds the whole request (slow drip too)
                async with asyncio.timeout(self._config.timeout_s):
                    response = await self._client.post(url, content=delivery.body, headers=headers)
            except TimeoutError:
                error = f"no answer within {self._config.timeout_s:g} s"
                retryable = True
            except httpx.TransportError as exc:
                error = f"{type(exc).__name__}: {_scrub(str(exc), url)}"
                retryable = True
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {_scrub(str(exc), url)}"
                retryable = False
            else:
                if response.is_success:
                    self._sent += 1
                    self._last_sent = iso_z(self._wall_clock())
                    return
                error = f"HTTP {response.status_code}"
                retryable = response.status_code >= 500 or response.status_code in _RETRY_STATUS
            if not retryable or attempt == self._config.max_attempts:
                break
            self._retries += 1
            await asyncio.sleep(self._backoff_s(attempt))
        log.warning("alert delivery to %s failed: %s", redact_url(url), error)
        self._fail(f"{redact_url(url)}: {error}")

    def _backoff_s(self, attempt: int) -> float:
        delay = min(self._backoff_max_s, self._backoff_base_s * 2.0 ** (attempt - 1))
        return float(delay * self._rng.uniform(0.5, 1.0))


def _scrub(text: str, url: str) -> str:
    """``text`` with the webhook URL (as given, or as httpx normalised it) redacted."""
    shown = redact_url(url)
    for form in sorted({url, str(httpx.URL(url))}, key=len, reverse=True):
        text = text.replace(form, shown)
    return text
