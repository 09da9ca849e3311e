"""``modelmon proxy``: serve the proxy app, in one process or ``proxy.workers`` processes.

With N workers every process binds its own listening socket to the same address with
``SO_REUSEPORT`` (the kernel spreads connections across them) and runs its own app, sink and
writer with a distinct ``worker_id``, so capture file names never collide. The parent only
supervises: it forwards SIGTERM/SIGINT to the workers and exits 0 when all of them drained; a
worker that dies on its own brings the others down and the parent exits 1, for the outer
supervisor (systemd, Kubernetes, ``modelmon up``) to restart.

SIGTERM or SIGINT: stop accepting, let in-flight requests finish (up to ``_SHUTDOWN_S``),
drain the capture queue, seal every file, exit 0.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType

from aiohttp import web

from capture_proxy.aio_guard import ProxySite
from capture_proxy.app import PROXY_KEY, build_app
from capture_proxy.engine import FastProxy
from capture_proxy.fast_server import FastServer
from capture_proxy.metrics import ProxyMetrics
from modelmon.config import ModelmonConfig, parse_listen
from modelmon.storage_url import StorageUnavailable, open_url

__all__ = [
    "SWITCH_INTERVAL_S",
    "bind_socket",
    "make_runner",
    "run_proxy",
    "serve",
    "tune_interpreter",
]

log = logging.getLogger("modelmon.proxy")

_SHUTDOWN_S = 15.0
# How long a thread holding the GIL keeps a waiting one out (Python's default: 5 ms). The event
# loop shares the GIL with the capture writer thread: a slice that the thread decodes, redacts
# or encodes would otherwise hold a request back up to 5 ms at a time.
SWITCH_INTERVAL_S = 0.0005
_PR_SET_PDEATHSIG = 1
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def make_runner(app: web.Application) -> web.AppRunner:
    """The runner options the proxy needs; tests serve the app through this too.

    ``handler_cancellation`` makes a client that hangs up cancel its handler, and with it the
    upstream request.
    """
    return web.AppRunner(
        app, handler_cancellation=True, access_log=None, shutdown_timeout=_SHUTDOWN_S
    )


def bind_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A bound (not yet listening) TCP socket for ``host:port``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, so that accepted sockets carry it and asyncio sets TCP_NODELAY on them
    # (it checks ``sock.proto``): without it a second small write waits for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


async def serve(config: ModelmonConfig, sock: socket.socket, worker_id: int = 0) -> None:
    """Serve on ``sock`` until SIGTERM/SIGINT, then drain and seal."""
    if config.proxy.engine == "aiohttp":
        app = build_app(config, worker_id=worker_id)
        runner = make_runner(app)
        await runner.setup()
        try:
            await ProxySite(runner, sock, app[PROXY_KEY].guards, backlog=1024).start()
            await _until_signal(config, sock, worker_id)
        finally:
            await runner.cleanup()
    else:
        proxy = FastProxy(config, ProxyMetrics(), worker_id=worker_id)
        await proxy.start()
        try:
            server = FastServer(proxy.handle, limits=proxy.limits, metrics=proxy.metrics)
            await server.start(sock, backlog=1024)
            await _until_signal(config, sock, worker_id)
            await server.shutdown(_SHUTDOWN_S)
        finally:
            await proxy.close()
    log.info("worker %d stopped", worker_id)


async def _until_signal(config: ModelmonConfig, sock: socket.socket, worker_id: int) -> None:
    host, port = sock.getsockname()[:2]
    log.info(
        "worker %d listening on http://%s:%d, forwarding to %s (capture %s, engine %s)",
        worker_id,
        host,
        port,
        config.proxy.upstream,
        f"{config.capture.sampling_percentage:g}%" if config.capture.enabled else "off",
        config.proxy.engine,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("worker %d stopping: draining requests and capture", worker_id)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def tune_interpreter() -> None:
    """Process-wide settings of a proxy worker (see :data:`SWITCH_INTERVAL_S`)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def _run_worker(config: ModelmonConfig, sock: socket.socket, worker_id: int) -> int:
    tune_interpreter()
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve(config, sock, worker_id))
    return 0


def _worker_main(config: ModelmonConfig, host: str, port: int, worker_id: int) -> None:
    for sig in _STOP_SIGNALS:  # the parent's forwarding handlers are not ours
        signal.signal(sig, signal.SIG_DFL if sig == signal.SIGTERM else signal.default_int_handler)
    _term_with_parent()
    sock = bind_socket(host, port, reuse_port=True)
    sys.exit(_run_worker(config, sock, worker_id))


def _term_with_parent() -> None:
    """Linux: SIGTERM this worker when the supervisor dies, even by ``kill -9``, so that no
    worker keeps the port (and its sink) alone. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError) as exc:
        log.warning("cannot tie workers to the supervisor's life: %s", exc)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _supervise(config: ModelmonConfig, host: str, workers: int, reserve: socket.socket) -> int:
    # Holding a bound SO_REUSEPORT socket (``reserve``) fixes the port (also when the config
    # says port 0) without taking connections: only listening sockets get them.
    port = reserve.getsockname()[1]
    context = multiprocessing.get_context("fork")
    stopping = False
    procs: list[multiprocessing.process.BaseProcess] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.pid is not None and proc.exitcode is None:
                os.kill(proc.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in _STOP_SIGNALS}
    try:
        for worker_id in range(workers):
            proc: multiprocessing.process.BaseProcess = context.Process(
                target=_worker_main,
                args=(config, host, port, worker_id),
                name=f"modelmon-proxy-{worker_id}",
            )
            proc.start()
            procs.append(proc)
        log.info("supervising %d workers on port %d (SO_REUSEPORT)", workers, port)
        failed = False
        while True:
            alive = [p.sentinel for p in procs if p.exitcode is None]
            if not alive:
                break
            multiprocessing.connection.wait(alive)
            for proc in procs:
                if proc.exitcode not in (None, 0) or (proc.exitcode == 0 and not stopping):
                    if not failed:
                        log.error(
                            "%s exited with %s; stopping the others", proc.name, proc.exitcode
                        )
                    failed = True
            if failed and not stopping:
                forward(signal.SIGTERM, None)
        return 1 if failed else 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        reserve.close()


def run_proxy(config: ModelmonConfig) -> int:
    """Entry point of ``modelmon proxy``; returns the exit status."""
    host, port = parse_listen(config.proxy.listen)
    workers = config.proxy.workers
    capture = config.capture
    if capture.enabled and capture.upload is not None:
        try:
            open_url(capture.upload)  # no request yet: only that its library is there
        except StorageUnavailable as exc:
            print(f"modelmon proxy: capture.upload: {exc}", file=sys.stderr)
            return 1
    try:
        sock = bind_socket(host, port, reuse_port=workers > 1)
    except OSError as exc:
        where = f" (from {config.source})" if config.source else ""
        print(
            f"modelmon proxy: cannot listen on {config.proxy.listen}: {exc.strerror or exc}; "
            f"change proxy.listen{where} or stop what holds the port",
            file=sys.stderr,
        )
        return 1
    if workers > 1:
        return _supervise(config, host, workers, sock)
    return _run_worker(config, sock, 0)
