"""Whole-process runs for ``bench/scale_out.py``: psutil sampling of a process tree, a time cap
and a memory watchdog, CPU seconds, and a pre-started Dask scheduler with its workers.

A run samples the RSS of the command and all its descendants (and of any extra processes, such
as a pre-started Dask cluster's) every 0.1 s and keeps each process's peak. The command runs in
a session of its own; it is killed (its process group, by id) when it passes ``cap_s`` seconds
or when the sampled tree passes ``cap_mb``, and the run says which.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Run:
    """One whole process: wall and CPU seconds, peaks, the load when it started."""

    wall_s: float
    cpu_s: float
    tree_peak_mb: float
    command_peak_mb: float
    worker_peaks_mb: list[float]
    load: float
    stopped: str = ""  # "" when it finished; else why it was killed
    last_line: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def worker_peak_mb(self) -> float:
        return max(self.worker_peaks_mb, default=0.0)


def _tree(roots: list[psutil.Process]) -> list[psutil.Process]:
    members: list[psutil.Process] = []
    for root in roots:
        try:
            members.extend([root, *root.children(recursive=True)])
        except psutil.NoSuchProcess:
            continue
    return members


def _cpu(processes: list[psutil.Process]) -> float:
    total = 0.0
    for proc in processes:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def run_sampled(
    command: list[str],
    *,
    extra: list[psutil.Process] | None = None,
    cap_s: float = 1800.0,
    cap_mb: float = 16_000.0,
    env: dict[str, str] | None = None,
) -> Run:
    """Run ``command`` to its end or its cap. Worker peaks: every process of the tree but the
    command itself (pool workers, Dask workers, ``extra``'s children), by pid."""
    extra = extra or []
    extra_members = _tree(extra)
    extra_cpu0 = _cpu(extra_members)
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    started = time.monotonic()
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=env,
    )
    root = psutil.Process(proc.pid)
    peaks: dict[int, float] = {}
    tree_peak = 0.0
    stopped = ""
    while proc.poll() is None:
        total = 0.0
        for member in [*_tree([root]), *_tree(extra)]:
            try:
                rss = member.memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                continue
            total += rss
            peaks[member.pid] = max(peaks.get(member.pid, 0.0), rss)
        tree_peak = max(tree_peak, total)
        elapsed = time.monotonic() - started
        if not stopped and total > cap_mb:
            stopped = f"memory cap: tree RSS {total:.0f} MB > {cap_mb:.0f} MB at {elapsed:.0f} s"
        elif not stopped and elapsed > cap_s:
            stopped = f"time cap: still running after {cap_s:.0f} s"
        if stopped:
            os.killpg(proc.pid, signal.SIGKILL)  # the session this run started, by its id
            break
        time.sleep(0.1)
    out, err = proc.communicate()
    wall = time.monotonic() - started
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    cpu += _cpu(_tree(extra)) - extra_cpu0
    if proc.returncode != 0 and not stopped:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(command)}\n{err.decode()}")
    lines = (out.decode().strip() or err.decode().strip()).splitlines()
    extra_pids = {p.pid for p in extra}  # the scheduler and the `dask worker` CLI itself
    workers = [mb for pid, mb in peaks.items() if pid != proc.pid and pid not in extra_pids]
    return Run(
        wall_s=wall,
        cpu_s=cpu,
        tree_peak_mb=tree_peak,
        command_peak_mb=peaks.get(proc.pid, 0.0),
        worker_peaks_mb=sorted(workers, reverse=True),
        load=load,
        stopped=stopped,
        last_line=lines[-1] if lines else "",
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PreStartedCluster:
    """``dask scheduler`` and ``dask worker --nworkers N --nthreads 1`` on 127.0.0.1, started
    before the rounds so that their start-up is outside the timing; stopped by :meth:`close`."""

    def __init__(self, workers: int) -> None:
        import distributed

        # as docs/dask.md advises for a cluster you run (scheduler and workers)
        quiet = {**os.environ, "DASK_CONFIG": str(ROOT / "configs" / "dask")}
        quiet.pop("MALLOC_TRIM_THRESHOLD_", None)
        port = free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
        self.scheduler = subprocess.Popen(
            [*dask, "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=quiet,
        )
        worker_cli = [sys.executable, "-m", "distributed.cli.dask_worker", self.address]
        self.worker = subprocess.Popen(
            [*worker_cli, "--nworkers", str(workers), "--nthreads", "1", "--no-dashboard",
             "--host", "127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=quiet,
        )  # fmt: skip
        client = distributed.Client(self.address, timeout=120)
        try:
            client.wait_for_workers(workers, timeout=300)
        finally:
            client.close()

    def processes(self) -> list[psutil.Process]:
        return [psutil.Process(self.scheduler.pid), psutil.Process(self.worker.pid)]

    def close(self) -> None:
        for proc in (self.worker, self.scheduler):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
