"""``modelmon analyzer``: the long-running analyzer service (aiohttp).

``web.run_app`` owns the signals and graceful shutdown. Everything long-lived is a
``cleanup_ctx``: the SQLite store and its writer thread, the alert dispatcher, and the
monitoring loop task (named, kept, cancelled and awaited at shutdown). The loop calls
:meth:`analyzer.service.monitor.Monitor.tick` every ``schedule_interval_s`` (or at each minute that
matches ``schedule_cron``). Tests build the app with :func:`create_app` (``run_loop=False``
and an injected clock) and drive ticks with ``await monitor_of(app).tick()``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from functools import partial

import httpx
from aiohttp import web

from analyzer.ingest.decode_process import DecodeProcess
from analyzer.ingest.executor import cores
from analyzer.service.alerts import AlertDispatcher
from analyzer.service.malloc import fix_mmap_threshold
from analyzer.service.monitor import Monitor
from analyzer.store.database import Store, StoreError
from analyzer.web.auth import setup_auth_routes
from analyzer.web.intake import setup_intake_routes
from analyzer.web.prom import new_registry
from analyzer.web.routes import STATE_KEY, WebState, error_middleware, setup_routes
from analyzer.web.runs import setup_run_routes
from modelmon.config import ConfigError, ModelmonConfig, parse_listen
from modelmon.schedule import Schedule
from modelmon.storage_url import StorageUnavailable

__all__ = ["create_app", "monitor_of", "run_service"]

log = logging.getLogger("modelmon.analyzer.service")

# Only the sign-in form is read whole (capped again there); ground truth is streamed and
# capped by analyzer.ground_truth.max_body_bytes.
MAX_BODY_BYTES = 64 * 1024


def monitor_of(app: web.Application) -> Monitor:
    """The app's monitor (available once the app has started)."""
    return app[STATE_KEY].monitor


def _token(config: ModelmonConfig) -> str | None:
    name = config.analyzer.auth_token_env
    if not name:
        return None
    value = os.environ.get(name, "")
    if not value:
        log.warning("analyzer.auth_token_env names %s, which is not set: no auth", name)
        return None
    return value


async def _run_loop(monitor: Monitor, interval_s: float, cron: Schedule | None) -> None:
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        # logged once (also when no probe asks /monitor/health, which answers 503 for it)
        await asyncio.to_thread(monitor.store.file_problem)
        try:
            await monitor.tick()
            monitor.last_error = None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failed run is reported by /health and retried next time
            log.exception("monitoring run failed")
            monitor.last_error = f"{type(exc).__name__}: {exc}"
        if cron is None:  # every interval from the start of a run, not from its end
            delay = max(0.0, interval_s - (loop.time() - started))
        else:
            delay = cron.seconds_until_next(time.time())
        await asyncio.sleep(delay)


def _watch_sighup(monitor: Monitor) -> Callable[[], None] | None:
    """Re-read the baseline on SIGHUP; returns what removes the handler (None: no signals)."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[bool]] = set()

    def on_hup() -> None:
        log.info("SIGHUP: re-reading the baseline files")
        task = loop.create_task(monitor.reload_baseline(force=True), name="modelmon-sighup")
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    except (NotImplementedError, RuntimeError, AttributeError, ValueError):
        return None  # not the main thread, or a platform without SIGHUP
    paths = monitor.config.analyzer.baseline
    log.info(
        "baseline %s and %s are re-read when they change, and on SIGHUP",
        paths.statistics,
        paths.constraints,
    )

    def remove() -> None:
        loop.remove_signal_handler(signal.SIGHUP)

    return remove


def _decode_process(config: ModelmonConfig) -> DecodeProcess | None:
    """The process that decodes the local capture files' chunks (``analyzer.ingest_process``;
    ``auto``: when this process may run on two cores or more), or None."""
    mode = config.analyzer.ingest_process
    if config.analyzer.capture_url is not None or mode == "off":
        return None
    return DecodeProcess() if mode == "on" or cores() >= 2 else None


def create_app(
    config: ModelmonConfig,
    *,
    clock: Callable[[], float] = time.time,
    run_loop: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
    report_grace_s: float | None = None,
) -> web.Application:
    """The analyzer as an aiohttp app; ``run_loop=False`` leaves the ticks to the caller."""
    cron = config.analyzer.schedule()  # checked when the config was loaded
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY_BYTES)
    setup_routes(app)
    setup_auth_routes(app)
    setup_intake_routes(app)
    setup_run_routes(app)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        store = Store(config.analyzer.db)
        try:
            await asyncio.to_thread(store.start)
        except StoreError as exc:
            raise ConfigError(f"analyzer.db: {exc}") from exc
        alerts = AlertDispatcher(
            config.analyzer.alerts,
            transport=transport,
            endpoint=config.endpoint.name,
            status_url=f"{config.analyzer_url}/monitor/status",
        )
        decode = _decode_process(config)
        try:
            monitor = await asyncio.to_thread(
                partial(Monitor, config, store, clock=clock, alerts=alerts,
                        report_grace_s=report_grace_s, decode_process=decode)
            )  # fmt: skip
        except StorageUnavailable as exc:
            await asyncio.to_thread(store.close)
            raise ConfigError(f"analyzer.capture_url: {exc}") from exc
        await monitor.load_state()
        await alerts.start()
        registry, collector = new_registry()
        loop_task: asyncio.Task[None] | None = None
        if run_loop:
            loop_task = asyncio.get_running_loop().create_task(
                _run_loop(monitor, config.analyzer.schedule_interval_s, cron),
                name="modelmon-analyzer-loop",
            )
        app[STATE_KEY] = WebState(
            monitor=monitor,
            token=_token(config),
            registry=registry,
            collector=collector,
            alerts_stats=alerts.stats,
            loop_alive=lambda: loop_task is None or not loop_task.done(),
        )
        if monitor.baseline.info.get("error"):
            log.warning("%s", monitor.baseline.info["error"])
        hup = _watch_sighup(monitor) if run_loop else None
        try:
            yield
        finally:
            if hup is not None:
                hup()
            if loop_task is not None:
                loop_task.cancel()
                await asyncio.gather(loop_task, return_exceptions=True)
            await alerts.close()
            if decode is not None:
                await asyncio.to_thread(decode.close)
            await asyncio.to_thread(store.close)

    app.cleanup_ctx.append(lifecycle)
    return app


def run_service(config: ModelmonConfig) -> int:
    """Run until SIGINT/SIGTERM; the exit code of the ``modelmon analyzer`` command."""
    if config.analyzer.model_quality is not None:  # its blocks' blobs: see malloc.py
        fix_mmap_threshold()
    app = create_app(config)
    host, port = parse_listen(config.analyzer.listen)
    log.info("analyzer on http://%s:%d/monitor/status", host, port)
    try:
        web.run_app(app, host=host, port=port, print=None, access_log=None)
    except OSError as exc:
        log.error(
            "cannot listen on %s:%d (%s): free the port or change analyzer.listen",
            host,
            port,
            exc.strerror or exc,
        )
        return 1
    return 0
