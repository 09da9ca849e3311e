"""``modelmon up``: the proxy and the analyzer as supervised child processes in one terminal.

Each child is ``python -m modelmon proxy|analyzer --config PATH``; its output (stdout and
stderr together) comes back line by line, prefixed with its name (``proxy | …``). SIGINT or
SIGTERM stops both: SIGTERM to each child, a bounded wait, then SIGKILL (a second Ctrl-C kills
at once). A child that exits on its own is restarted after a backoff that doubles on each
crash and resets once the child has stayed up for a while; too many crashes in a short time is
a crash loop: it is reported, everything is stopped, and ``up`` exits 1.

The children run in their own process group, so a terminal's Ctrl-C reaches only the
supervisor, which then stops them in order; on Linux they also receive SIGTERM if the
supervisor dies without cleaning up (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from modelmon.config import ModelmonConfig, load_config

__all__ = ["ChildSpec", "RestartPolicy", "Supervisor", "child_specs", "run_up"]

LineSink = Callable[[str, str], None]
"""Receives ``(source, line)``: a child's name, or ``"up"`` for the supervisor's own notes."""

_READ_CHUNK = 65536
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ChildSpec:
    """One supervised command: a display name and its argv."""

    name: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class RestartPolicy:
    """How crashed children are restarted and how long a stop may take."""

    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    stable_after_s: float = 30.0  # a child up this long resets its backoff and crash count
    max_crashes: int = 5  # this many crashes within crash_window_s is a crash loop
    crash_window_s: float = 60.0
    stop_grace_s: float = 15.0  # SIGTERM, then SIGKILL after this long


def child_specs(config_path: Path, log_level: str | None = None) -> list[ChildSpec]:
    """The proxy and the analyzer, each as ``python -m modelmon … --config PATH``."""
    level = log_level or logging.getLevelName(logging.getLogger().getEffectiveLevel())
    path = str(Path(config_path).resolve())
    base = (sys.executable, "-m", "modelmon", "--log-level", level)
    return [
        ChildSpec("proxy", (*base, "proxy", "--config", path)),
        ChildSpec("analyzer", (*base, "analyzer", "--config", path)),
    ]


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


async def _first(*awaitables: Awaitable[object]) -> None:
    """Return as soon as one of ``awaitables`` finishes; the others are cancelled and awaited."""

    async def wrap(awaitable: Awaitable[object]) -> None:
        await awaitable

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(wrap(a), name=f"first-{i}") for i, a in enumerate(awaitables)]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()


class Supervisor:
    """Runs ``specs`` until ``stop`` is set, restarting crashed children; see the module doc."""

    def __init__(
        self,
        specs: list[ChildSpec],
        sink: LineSink,
        policy: RestartPolicy | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self._specs = specs
        self._sink = sink
        self._policy = policy or RestartPolicy()
        self._env = {**(env if env is not None else os.environ), "PYTHONUNBUFFERED": "1"}
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self.crash_looped: str | None = None  # the name of the child that crash-looped

    def pids(self) -> dict[str, int]:
        """The pid of each child running now."""
        return {name: proc.pid for name, proc in self._procs.items() if proc.returncode is None}

    def kill_all(self) -> None:
        """SIGKILL every running child (a second Ctrl-C: stop waiting for a clean exit)."""
        for proc in self._procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()

    async def run(self, stop: asyncio.Event) -> int:
        """Supervise until ``stop`` is set; 0 after a clean stop, 1 after a crash loop."""
        async with asyncio.TaskGroup() as group:
            for spec in self._specs:
                group.create_task(self._keep_alive(spec, stop), name=f"supervise-{spec.name}")
        return 1 if self.crash_looped else 0

    def _note(self, message: str) -> None:
        self._sink("up", message)

    async def _spawn(self, spec: ChildSpec) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *spec.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self._env,
            process_group=0,
            preexec_fn=_die_with_parent,
        )

    async def _pump(self, name: str, stream: asyncio.StreamReader) -> None:
        pending = b""
        while chunk := await stream.read(_READ_CHUNK):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                self._sink(name, line.decode("utf-8", "replace").rstrip("\r"))
        if pending:
            self._sink(name, pending.decode("utf-8", "replace"))

    async def _keep_alive(self, spec: ChildSpec, stop: asyncio.Event) -> None:
        policy = self._policy
        loop = asyncio.get_running_loop()
        crashes: collections.deque[float] = collections.deque()
        backoff = policy.backoff_initial_s
        while not stop.is_set():
            try:
                proc = await self._spawn(spec)
            except OSError as exc:
                self._note(f"cannot start {spec.name}: {exc}")
                self.crash_looped = spec.name
                stop.set()
                return
            self._procs[spec.name] = proc
            started = loop.time()
            self._note(f"started {spec.name} (pid {proc.pid})")
            assert proc.stdout is not None  # we asked for a pipe
            async with asyncio.TaskGroup() as group:
                group.create_task(self._pump(spec.name, proc.stdout), name=f"pump-{spec.name}")
                await _first(proc.wait(), stop.wait())
                if stop.is_set():
                    await self._stop_child(spec.name, proc)
                    return
            now = loop.time()
            ran = now - started
            assert proc.returncode is not None
            if ran >= policy.stable_after_s:
                crashes.clear()
                backoff = policy.backoff_initial_s
            crashes.append(now)
            while crashes and crashes[0] < now - policy.crash_window_s:
                crashes.popleft()
            how = _describe_exit(proc.returncode)
            if len(crashes) >= policy.max_crashes:
                self._note(
                    f"{spec.name} crashed {len(crashes)} times within "
                    f"{policy.crash_window_s:g}s (last: {how}); crash loop, giving up"
                )
                self.crash_looped = spec.name
                stop.set()
                return
            self._note(f"{spec.name} exited ({how}) after {ran:.1f}s; restarting in {backoff:g}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, policy.backoff_max_s)

    async def _stop_child(self, name: str, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self._policy.stop_grace_s)
            except TimeoutError:
                self._note(f"{name} did not stop within {self._policy.stop_grace_s:g}s; killing it")
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        code = proc.returncode
        assert code is not None
        self._note(f"{name} stopped" + ("" if code == 0 else f" ({_describe_exit(code)})"))


def _print_line(source: str, line: str) -> None:
    print(f"{source} | {line}", flush=True)


def _banner(config: ModelmonConfig) -> str:
    return (
        f"proxy on {config.proxy.listen} → {config.proxy.upstream}, "
        f"analyzer on {config.analyzer.listen}; Ctrl-C stops both"
    )


async def _up(specs: list[ChildSpec], config: ModelmonConfig) -> int:
    supervisor = Supervisor(specs, _print_line)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            _print_line("up", "second interrupt: killing the children")
            supervisor.kill_all()
        else:
            _print_line("up", "stopping proxy and analyzer")
            stop.set()

    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, on_signal)
    try:
        _print_line("up", _banner(config))
        return await supervisor.run(stop)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def run_up(config_path: Path) -> int:
    """Run proxy and analyzer from ``config_path`` until interrupted; 0 after a clean stop."""
    config = load_config(config_path)  # a bad file fails here, before any child starts
    return asyncio.run(_up(child_specs(config_path), config))
