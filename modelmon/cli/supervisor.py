"""Child processes kept running: prefixed output, restart with backoff, clean stop.

The engine of ``modelmon up`` (and of ``modelmon demo``). Each child's output (stdout and
stderr together) comes back line by line to a sink with the child's name. When ``stop`` is
set, each child's process group gets SIGTERM, a bounded wait, then SIGKILL. A child that exits
on its own is restarted after a backoff that doubles on each crash and resets once the child
has stayed up for a while; anything it left running in its process group (e.g. worker
processes) is stopped first. Too many crashes in a short time is a crash loop: it is reported,
everything is stopped, and :meth:`Supervisor.run` returns 1.

The children run in their own process group, so a terminal's Ctrl-C reaches only the
supervisor, which then stops them in order; on Linux they also receive SIGTERM if the
supervisor dies without cleaning up (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

__all__ = ["ChildSpec", "LineSink", "LogFile", "RestartPolicy", "Supervisor"]

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


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Signal every process in the group ``pgid``; False when none is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "unknown status"
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


class _ExitAwareProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Knows when the child exits even while a descendant still holds its output open.

    (``Process.wait()`` only returns once every pipe is closed as well.)
    """

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


@dataclass
class _Child:
    proc: asyncio.subprocess.Process
    exited: asyncio.Event

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode


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
        self._children: dict[str, _Child] = {}
        self.crash_looped: str | None = None  # the name of the child that crash-looped

    def pids(self) -> dict[str, int]:
        """The pid of each child running now."""
        return {n: c.proc.pid for n, c in self._children.items() if not c.exited.is_set()}

    def kill_all(self) -> None:
        """SIGKILL every child and what it started (a second Ctrl-C: stop waiting)."""
        for child in self._children.values():
            _signal_group(child.proc.pid, signal.SIGKILL)

    async def run(self, stop: asyncio.Event) -> int:
        """Supervise until ``stop`` is set; 0 after a clean stop, 1 after a crash loop."""
        try:
            async with asyncio.TaskGroup() as group:
                for spec in self._specs:
                    group.create_task(self._keep_alive(spec, stop), name=f"supervise-{spec.name}")
        except BaseException:  # cancelled or failed: no waiting, but leave no child behind
            for child in self._children.values():
                if not child.exited.is_set():
                    _signal_group(child.proc.pid, signal.SIGTERM)
            raise
        return 1 if self.crash_looped else 0

    def _note(self, message: str) -> None:
        self._sink("up", message)

    async def _spawn(self, spec: ChildSpec) -> _Child:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.subprocess_exec(
            lambda: _ExitAwareProtocol(_READ_CHUNK, loop),
            *spec.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self._env,
            process_group=0,  # its own group: Ctrl-C reaches us only; we signal the group
            preexec_fn=_die_with_parent,
        )
        proc = asyncio.subprocess.Process(transport, protocol, loop)
        return _Child(proc, protocol.exited)

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
                child = await self._spawn(spec)
            except OSError as exc:
                self._note(f"cannot start {spec.name}: {exc}")
                self.crash_looped = spec.name
                stop.set()
                return
            self._children[spec.name] = child
            started = loop.time()
            self._note(f"started {spec.name} (pid {child.proc.pid})")
            assert child.proc.stdout is not None  # we asked for a pipe
            async with asyncio.TaskGroup() as group:
                pump = group.create_task(
                    self._pump(spec.name, child.proc.stdout), name=f"pump-{spec.name}"
                )
                await _first(child.exited.wait(), stop.wait())
                if stop.is_set():
                    await self._stop_child(spec.name, child, pump)
                    return
                await self._reap_group(spec.name, child, pump)
            now = loop.time()
            ran = now - started
            if ran >= policy.stable_after_s:
                crashes.clear()
                backoff = policy.backoff_initial_s
            crashes.append(now)
            while crashes and crashes[0] < now - policy.crash_window_s:
                crashes.popleft()
            how = _describe_exit(child.returncode)
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

    async def _ended(self, child: _Child, pump: asyncio.Task[None], timeout_s: float) -> bool:
        """Whether the child exited and its output closed (no descendant holds it) in time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            await asyncio.wait_for(child.exited.wait(), timeout_s)
        except TimeoutError:
            return False
        done, _ = await asyncio.wait({pump}, timeout=max(0.0, deadline - loop.time()))
        return bool(done)

    async def _kill_group(self, child: _Child, pump: asyncio.Task[None]) -> None:
        _signal_group(child.proc.pid, signal.SIGKILL)
        if not child.exited.is_set():
            # os.kill, not Process.kill(): subprocess's send_signal polls first, and that
            # waitpid can reap the child before asyncio's child watcher does, which then
            # reports "Unknown child process pid", returncode 255 (seen under load)
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.proc.pid, signal.SIGKILL)
        await child.exited.wait()
        await asyncio.wait({pump})

    async def _stop_child(self, name: str, child: _Child, pump: asyncio.Task[None]) -> None:
        _signal_group(child.proc.pid, signal.SIGTERM)  # the child and what it started
        if not await self._ended(child, pump, self._policy.stop_grace_s):
            self._note(f"{name} did not stop within {self._policy.stop_grace_s:g}s; killing it")
            await self._kill_group(child, pump)
        await child.proc.wait()
        code = child.returncode
        self._note(f"{name} stopped" + ("" if code == 0 else f" ({_describe_exit(code)})"))

    async def _reap_group(self, name: str, child: _Child, pump: asyncio.Task[None]) -> None:
        """After the child exited on its own: stop what it left running before a restart."""
        if _signal_group(child.proc.pid, signal.SIGTERM):
            self._note(f"{name} left processes behind; stopping them")
        if not await self._ended(child, pump, self._policy.stop_grace_s):
            await self._kill_group(child, pump)
        await child.proc.wait()


class LogFile:
    """A :data:`LineSink` writing ``source | line`` to a file; keeps the last lines too."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: TextIO = path.open("a", encoding="utf-8")
        self.tail: collections.deque[str] = collections.deque(maxlen=30)

    def __call__(self, source: str, line: str) -> None:
        text = f"{source} | {line}"
        self._file.write(text + "\n")
        self._file.flush()
        self.tail.append(text)

    def close(self) -> None:
        self._file.close()
