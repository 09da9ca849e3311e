"""``modelmon up``: the supervisor with real child processes, and the CLI end to end.

The supervisor tests run tiny real Python children (so a crash loop or a child that ignores
SIGTERM can be produced for real, quickly); the CLI tests run ``modelmon up`` as a subprocess
with the real proxy and analyzer as its children.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import psutil
import pytest
import yaml
from aiohttp import web

from modelmon.cli.supervisor import ChildSpec, RestartPolicy, Supervisor

FAST = RestartPolicy(
    backoff_initial_s=0.05, backoff_max_s=0.2, max_crashes=3, crash_window_s=30, stop_grace_s=5
)


def _python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


class Lines:
    """A sink that records ``(source, line)`` and wakes waiters on each new line."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self._changed = asyncio.Event()

    def __call__(self, source: str, line: str) -> None:
        self.lines.append((source, line))
        self._changed.set()

    async def wait_for(self, source: str, pattern: str, within_s: float = 20) -> re.Match[str]:
        async def scan() -> re.Match[str]:
            seen = 0
            while True:
                for src, line in self.lines[seen:]:
                    if src == source and (match := re.search(pattern, line)):
                        return match
                seen = len(self.lines)
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(scan(), within_s)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def _all_gone(pids: list[int], within_s: float = 10) -> bool:
    """Whether every pid has exited (a process is briefly still running after closing its fds)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while any(_alive(pid) for pid in pids):
        if asyncio.get_running_loop().time() > deadline:
            return False
        await _tick(0.05)
    return True


async def test_lines_are_prefixed_and_children_stop_cleanly() -> None:
    lines = Lines()
    specs = [
        ChildSpec("one", _python("import signal\nprint('hello', flush=True)\nsignal.pause()")),
        ChildSpec(
            "two",
            _python("import signal, sys\nsys.stdout.write('ready\\nno newline')\nsignal.pause()"),
        ),
    ]
    supervisor = Supervisor(specs, lines, FAST)
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        task = group.create_task(supervisor.run(stop))
        await lines.wait_for("one", "^hello$")
        await lines.wait_for("two", "^ready$")
        pid = supervisor.pids()["one"]
        stop.set()
    assert task.result() == 0
    assert ("two", "no newline") in lines.lines  # a last line without "\n" comes at exit
    assert not _alive(pid)
    assert ("up", "one stopped (signal SIGTERM)") in lines.lines


async def test_crashed_child_restarts_then_a_crash_loop_gives_up() -> None:
    lines = Lines()
    crash = ChildSpec("crashy", _python("import sys\nprint('up once', flush=True)\nsys.exit(3)"))
    calm = ChildSpec("calm", _python("import signal\nprint('ready', flush=True)\nsignal.pause()"))
    supervisor = Supervisor([crash, calm], lines, FAST)
    stop = asyncio.Event()
    status = await asyncio.wait_for(supervisor.run(stop), 30)
    assert status == 1
    assert supervisor.crash_looped == "crashy"
    assert sum(1 for src, line in lines.lines if (src, line) == ("crashy", "up once")) == 3
    notes = [line for src, line in lines.lines if src == "up"]
    assert any(re.match(r"crashy exited \(exit status 3\) .* restarting in", n) for n in notes)
    assert any("crash loop, giving up" in n for n in notes)
    assert "calm stopped (signal SIGTERM)" in notes  # the healthy one is stopped with it


async def test_a_child_ignoring_sigterm_is_killed_after_the_grace() -> None:
    lines = Lines()
    stubborn = _python(
        "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\nsignal.pause()"
    )
    policy = RestartPolicy(stop_grace_s=0.3)
    supervisor = Supervisor([ChildSpec("stubborn", stubborn)], lines, policy)
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        task = group.create_task(supervisor.run(stop))
        await lines.wait_for("stubborn", "ready")
        stop.set()
    assert task.result() == 0
    notes = [line for src, line in lines.lines if src == "up"]
    assert "stubborn did not stop within 0.3s; killing it" in notes
    assert "stubborn stopped (signal SIGKILL)" in notes


async def test_what_a_crashed_child_left_running_is_stopped_before_the_restart() -> None:
    lines = Lines()
    leaves_one_behind = _python(
        "import subprocess, sys\n"
        "grandchild = subprocess.Popen([sys.executable, '-c', 'import signal; signal.pause()'])\n"
        "print(f'grandchild {grandchild.pid}', flush=True)\n"
        "sys.exit(3)"
    )
    supervisor = Supervisor([ChildSpec("parent", leaves_one_behind)], lines, FAST)
    # the grandchild holds the output pipe open: without reaping, this would never end
    assert await asyncio.wait_for(supervisor.run(asyncio.Event()), 30) == 1
    grandchildren = [int(line.split()[1]) for src, line in lines.lines if src == "parent"]
    assert len(grandchildren) == FAST.max_crashes
    assert await _all_gone(grandchildren)
    notes = [line for src, line in lines.lines if src == "up"]
    assert notes.count("parent left processes behind; stopping them") == FAST.max_crashes


# --- ``modelmon up`` as a subprocess, with the real proxy and analyzer ---------------------


async def _tick(seconds: float) -> None:
    """Pause between polls of a port: a wait on an event nobody sets, bounded by a timeout."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.Event().wait(), seconds)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _model(request: web.Request) -> web.Response:
    return web.Response(text="0.5\n", content_type="text/csv")


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _model)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


def _write_config(tmp_path: Path, upstream: str) -> tuple[Path, str, str]:
    proxy, analyzer = _free_port(), _free_port()
    config = {
        "proxy": {"listen": f"127.0.0.1:{proxy}", "upstream": upstream},
        "capture": {"dir": "capture", "sampling_percentage": 100, "rotate_interval_s": 1},
        "analyzer": {"listen": f"127.0.0.1:{analyzer}", "schedule_interval_s": 1},
    }
    path = tmp_path / "modelmon.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, f"http://127.0.0.1:{proxy}", f"http://127.0.0.1:{analyzer}"


class UpProcess:
    """``modelmon up`` running as a subprocess, its output read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.output: list[str] = []

    async def expect(self, pattern: str, within_s: float = 30) -> re.Match[str]:
        """Read lines until one matches ``pattern`` (lines read earlier are not searched)."""

        async def scan() -> re.Match[str]:
            assert self.proc.stdout is not None
            while line := await self.proc.stdout.readline():
                self.output.append(line.decode().rstrip("\n"))
                if match := re.search(pattern, self.output[-1]):
                    return match
            raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.output))

        try:
            return await asyncio.wait_for(scan(), within_s)
        except TimeoutError:
            raise AssertionError(await self._failure(f"no line matching {pattern!r}")) from None

    async def answers(self, url: str, within_s: float = 30) -> int:
        """Poll ``url`` until it answers (any status); returns the status."""

        async def poll() -> int:
            async with aiohttp.ClientSession() as session:
                while True:
                    try:
                        async with session.get(url) as response:
                            return response.status
                    except aiohttp.ClientConnectionError:
                        await _tick(0.1)

        try:
            return await asyncio.wait_for(poll(), within_s)
        except TimeoutError:
            raise AssertionError(await self._failure(f"{url} never answered")) from None

    async def _failure(self, what: str) -> str:
        if self.proc.returncode is None:
            self.proc.kill()
        rest, _ = await self.proc.communicate()
        return f"{what}; modelmon up said:\n" + "\n".join([*self.output, rest.decode()])

    async def finish(self, within_s: float = 30) -> int:
        assert self.proc.stdout is not None
        rest, _ = await asyncio.wait_for(self.proc.communicate(), within_s)
        self.output.extend(rest.decode().splitlines())
        assert self.proc.returncode is not None
        return self.proc.returncode


StartUp = Callable[[Path], Awaitable[UpProcess]]


@pytest.fixture
async def start_up() -> AsyncIterator[StartUp]:
    """Start ``modelmon up --config PATH``; any still running at the end is killed."""
    started: list[UpProcess] = []

    async def start(config: Path) -> UpProcess:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "modelmon", "up", "--config", str(config)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        started.append(UpProcess(proc))
        return started[-1]

    yield start
    for up in started:
        if up.proc.returncode is None:  # a failed test: the children die with it (PDEATHSIG)
            up.proc.kill()
            await up.proc.communicate()


async def test_bad_config_fails_at_once_with_the_key(tmp_path: Path, start_up: StartUp) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("proxy: {upstream: 'http://127.0.0.1:1', colour: red}\n")
    up = await start_up(path)
    assert await up.finish(within_s=20) == 2
    text = "\n".join(up.output)
    assert "proxy.colour: unknown key" in text and str(path) in text
    assert "started proxy" not in text


async def test_a_value_only_the_analyzer_refused_stops_up_before_anything_starts(
    tmp_path: Path, start_up: StartUp
) -> None:
    # bucket_s: 7 does not divide an hour: before, up started both, the analyzer exited five
    # times and up gave up after ~20 s with exit 1.
    config, proxy, analyzer = _write_config(tmp_path, "http://127.0.0.1:9")
    doc = yaml.safe_load(config.read_text())
    doc["analyzer"]["bucket_s"] = 7
    config.write_text(yaml.safe_dump(doc))
    up = await start_up(config)
    assert await up.finish(within_s=20) == 2
    text = "\n".join(up.output)
    assert "analyzer.bucket_s: must divide 3600" in text and str(config) in text
    assert "started" not in text
    for url in (proxy, analyzer):  # no port was ever opened, no file written
        port = int(url.rpartition(":")[2])
        with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
            sock.connect(("127.0.0.1", port))
    assert _names(tmp_path) == [config.name]


async def test_up_serves_both_and_sigterm_stops_both(
    tmp_path: Path, upstream: str, start_up: StartUp
) -> None:
    config, proxy, analyzer = _write_config(tmp_path, upstream)
    up = await start_up(config)
    pids = {}
    for _ in range(2):
        match = await up.expect(r"^up \| started (proxy|analyzer) \(pid (\d+)\)")
        pids[match.group(1)] = int(match.group(2))
    await up.expect(r"^proxy \| ")  # the child's own log lines come back prefixed
    assert await up.answers(proxy + "/monitor/proxy/health") == 200
    assert await up.answers(analyzer + "/monitor/health") in (200, 503)
    proxy_pid, analyzer_pid = pids["proxy"], pids["analyzer"]
    up.proc.send_signal(signal.SIGTERM)
    assert await up.finish() == 0
    text = "\n".join(up.output)
    assert "up | proxy stopped" in text and "up | analyzer stopped" in text
    assert any(line.startswith("analyzer | ") for line in up.output)
    assert not _alive(proxy_pid) and not _alive(analyzer_pid)


async def test_a_killed_proxy_is_restarted(
    tmp_path: Path, upstream: str, start_up: StartUp
) -> None:
    config, proxy, _ = _write_config(tmp_path, upstream)
    up = await start_up(config)
    first = int((await up.expect(r"^up \| started proxy \(pid (\d+)\)")).group(1))
    assert await up.answers(proxy + "/monitor/proxy/health") == 200
    os.kill(first, signal.SIGKILL)
    await up.expect(r"^up \| proxy exited \(signal SIGKILL\)")
    second = int((await up.expect(r"^up \| started proxy \(pid (\d+)\)")).group(1))
    assert second != first
    assert await up.answers(proxy + "/monitor/proxy/health") == 200
    up.proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert await up.finish() == 0
    assert not _alive(second)


async def test_a_closed_output_pipe_stops_both_cleanly(tmp_path: Path, upstream: str) -> None:
    config, _, _ = _write_config(tmp_path, upstream)
    proc = await asyncio.create_subprocess_shell(
        f"set -o pipefail; {sys.executable} -m modelmon up --config {config} | head -n 3",
        executable="/bin/bash",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 40)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err
    pids = [int(pid) for pid in re.findall(rb"started \w+ \(pid (\d+)\)", out)]
    assert len(pids) == 2
    assert await _all_gone(pids)
