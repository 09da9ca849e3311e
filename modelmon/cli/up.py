"""``modelmon up``: the proxy and the analyzer as supervised child processes in one terminal.

Each child is ``python -m modelmon proxy|analyzer --config PATH``, run by
:class:`modelmon.cli.supervisor.Supervisor`: its output comes back line by line, prefixed with its
name (``proxy | …``); SIGINT or SIGTERM stops both (SIGTERM to each, a bounded wait, then
SIGKILL; a second Ctrl-C kills at once); a child that crashes is restarted with backoff, and a
crash loop stops everything with exit status 1. The config is validated first, with every
check either child makes at start, so a bad file fails at once with the config error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from modelmon.cli.supervisor import ChildSpec, LineSink, Supervisor
from modelmon.config import ModelmonConfig, load_config

__all__ = ["child_specs", "run_up"]


def child_specs(config_path: Path, log_level: str | None = None) -> list[ChildSpec]:
    """The proxy and the analyzer, each as ``python -m modelmon … --config PATH``."""
    level = log_level or logging.getLevelName(logging.getLogger().getEffectiveLevel())
    path = str(Path(config_path).resolve())
    base = (sys.executable, "-m", "modelmon", "--log-level", level)
    return [
        ChildSpec("proxy", (*base, "proxy", "--config", path)),
        ChildSpec("analyzer", (*base, "analyzer", "--config", path)),
    ]


def _terminal(stop: asyncio.Event) -> LineSink:
    """Print lines; when the reader goes away (``modelmon up | head``), stop cleanly."""
    closed = False

    def sink(source: str, line: str) -> None:
        nonlocal closed
        if closed:
            return
        try:
            print(f"{source} | {line}", flush=True)
        except BrokenPipeError:
            closed = True
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            stop.set()

    return sink


def _banner(config: ModelmonConfig) -> str:
    return (
        f"proxy on {config.proxy.listen} → {config.proxy.upstream}, "
        f"analyzer on {config.analyzer.listen}; Ctrl-C stops both"
    )


async def _up(specs: list[ChildSpec], config: ModelmonConfig) -> int:
    stop = asyncio.Event()
    say = _terminal(stop)
    supervisor = Supervisor(specs, say)
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            say("up", "second interrupt: killing the children")
            supervisor.kill_all()
        else:
            say("up", "stopping proxy and analyzer")
            stop.set()

    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, on_signal)
    try:
        say("up", _banner(config))
        return await supervisor.run(stop)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def run_up(config_path: Path, config: ModelmonConfig | None = None) -> int:
    """Run proxy and analyzer from ``config_path`` until interrupted; 0 after a clean stop.

    The file is validated first (``config``, when the caller loaded it already): everything
    both children check at start is in the config model, so a file either child would refuse
    fails here, with exit status 2, before any child starts.
    """
    if config is None:
        config = load_config(config_path)
    return asyncio.run(_up(child_specs(config_path), config))
