"""One seam for the heavy passes: map a picklable function over items, results in input order.

Three backends, the same results: :class:`InProcess` (this process, one item after another),
:class:`LocalProcesses` (a fork-based ``ProcessPoolExecutor`` on this machine; the default for
batch commands) and :class:`DaskExecutor` (a ``dask.distributed`` cluster: a scheduler's
address, or a ``LocalCluster`` of N worker processes). Results come back in the order of the
items whatever order the workers finish in, so the caller merges in a fixed order and a re-run
gives the same bytes (up to the sketches' own randomness, see docs/dask.md).

Dask is the optional extra ``modelmon[dask]``; :func:`open_executor` says how to install it
when it is missing. A task whose worker dies is re-run by the scheduler on another worker
(``distributed.scheduler.allowed-failures``); a task that raises is re-run ``retries`` times
(``retries=`` of ``Client.map``) before its exception reaches the caller.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any, Protocol, TypeVar

from modelmon.config import DaskConfig

__all__ = [
    "DASK_MISSING",
    "QUIET_CLUSTER",
    "TASK_SWITCH_INTERVAL_S",
    "DaskExecutor",
    "DaskUnavailable",
    "Executor",
    "InProcess",
    "LocalProcesses",
    "cores",
    "cpu_quota",
    "executor_for",
    "open_executor",
    "run_task",
]

T = TypeVar("T")
R = TypeVar("R")

DASK_MISSING = "Dask is not installed: pip install 'modelmon[dask]'"


class DaskUnavailable(Exception):
    """Dask was asked for but cannot be used (not installed, or no scheduler answered)."""


class Executor(Protocol):
    """Where a pass's map runs. ``map`` yields ``fn(item)`` for each item, in input order."""

    name: str

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]: ...

    def close(self) -> None: ...


CGROUP = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")


def cores(cgroup: Path = CGROUP, own: Path = SELF_CGROUP) -> int:
    """CPUs this process may run on: a container's CPU set, not the host's count, and no more
    than its CPU quota (:func:`cpu_quota`, rounded up)."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        count = os.cpu_count() or 1
    quota = cpu_quota(cgroup, own)
    return count if quota is None else max(1, min(count, math.ceil(quota)))


def cpu_quota(cgroup: Path = CGROUP, own: Path = SELF_CGROUP) -> float | None:
    """The CPUs a cgroup quota allows (e.g. 1.5), or None: no quota, or none readable.

    The tightest of the process's own cgroup (``own``: ``/proc/self/cgroup``) and its parents
    up to ``cgroup`` (a systemd service's quota is on its own group, the root has none): v2's
    ``cpu.max``, else v1's ``cpu/…/cpu.cfs_quota_us`` over ``cpu.cfs_period_us``."""
    v2, v1 = _own_groups(own)
    found = False
    quotas: list[float] = []
    for folder in _up_from(cgroup, v2):
        try:
            text = (folder / "cpu.max").read_text().split()  # "max 100000", "150000 100000"
        except OSError:
            continue
        found = True
        quotas += _ratio(*text[:2]) if len(text) >= 2 else []
    if not found:
        for folder in _up_from(cgroup / "cpu", v1):
            try:  # -1 when there is none
                quota = (folder / "cpu.cfs_quota_us").read_text().strip()
                period = (folder / "cpu.cfs_period_us").read_text().strip()
            except OSError:
                continue
            quotas += _ratio(quota, period)
    return min(quotas, default=None)


def _ratio(quota: str, period: str) -> list[float]:
    """``quota / period`` as a list of one, or none (no quota: ``max``, -1, or not numbers)."""
    try:
        allowed, each = int(quota), int(period)
    except ValueError:  # "max"
        return []
    return [allowed / each] if allowed > 0 and each > 0 else []


def _own_groups(own: Path) -> tuple[str, str]:
    """The process's cgroup path in v2 and in v1's ``cpu`` hierarchy ("/" when not known)."""
    v2 = v1 = "/"
    try:
        text = own.read_text()
    except OSError:
        return v2, v1
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and not parts[1]:
            v2 = parts[2]
        elif "cpu" in parts[1].split(","):
            v1 = parts[2]
    return v2, v1


def _up_from(root: Path, path: str) -> list[Path]:
    """``path``'s folder under ``root`` and its parents up to ``root``; only ``root`` when the
    path is not there (a container's own cgroup mounted as the root: the path is the host's)."""
    leaf = root / path.strip("/")
    if leaf == root or ".." in Path(path).parts or not leaf.is_dir():
        return [root]
    folders = [leaf]
    while folders[-1] != root:
        folders.append(folders[-1].parent)
    return folders


class InProcess:
    """Every item in this process, one after another."""

    name = "in-process"

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        for item in items:
            yield fn(item)

    def close(self) -> None:
        return None


class LocalProcesses:
    """A pool of forked processes per map (``workers``: default one per core); one worker, one
    item or no ``fork`` on this platform runs in this process instead."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = cores() if workers is None else max(1, workers)
        self.name = f"local processes ({self.workers})"

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        workers = min(self.workers, len(items))
        if workers <= 1 or "fork" not in get_all_start_methods():
            yield from InProcess().map(fn, items)
            return
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as pool:
            yield from pool.map(fn, items)

    def close(self) -> None:
        return None


# A Dask worker runs its event loop in one thread and the task in another: at CPython's
# default 5 ms switch interval the loop takes the GIL back ~200 times a second, and on this
# VM that doubled the worker's CPU for the same task (docs/dask.md, "Why Dask costs more
# CPU here"). While a task runs, the worker hands the GIL over at most every 50 ms instead;
# the loop's own timers (heartbeats every second or more) tolerate that delay.
TASK_SWITCH_INTERVAL_S = 0.05
# The settings of the LocalCluster that ``--dask-workers`` starts, its scheduler's and its
# workers' (and, as configs/dask.yaml, what docs/dask.md advises for a cluster you run).
# Without a dashboard nothing reads the statistical profile (sampled every 10 ms from the
# loop's thread, competing with the task for the GIL) nor the system monitor's history; the
# loop's 20 ms lag tick, the memory monitor's 100 ms psutil reads and the system monitor's
# 500 ms ones cost an idle cluster of a scheduler and two workers 5.4% of a core here, 1.2%
# with these. A loop blocked past the tick's 3 s limit is still reported; a worker still
# checks its memory limits every second and whenever data is stored. And no
# MALLOC_TRIM_THRESHOLD_ in the workers' environment (Dask sets 64 KiB to hand freed memory
# back sooner): setting it at all fixes glibc's mmap threshold at 128 KiB, so every larger
# buffer of a decode is mapped and faulted in again, ~7% of a task's CPU here (docs/dask.md,
# "Why Dask costs more CPU here"); our tasks' memory is bounded by the file's blocks.
QUIET_CLUSTER: dict[str, object] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
}
_switch_lock = threading.Lock()
_switch_state: dict[str, float] = {"running": 0, "previous": 0.0}


def run_task(fn: Callable[[T], R], item: T) -> R:
    """``fn(item)`` with the interpreter's switch interval raised to
    :data:`TASK_SWITCH_INTERVAL_S` while any task of this process runs (counted, so that
    tasks on several threads of one worker restore it once, when the last one ends)."""
    with _switch_lock:
        if _switch_state["running"] == 0:
            _switch_state["previous"] = sys.getswitchinterval()
            sys.setswitchinterval(max(_switch_state["previous"], TASK_SWITCH_INTERVAL_S))
        _switch_state["running"] += 1
    try:
        return fn(item)
    finally:
        with _switch_lock:
            _switch_state["running"] -= 1
            if _switch_state["running"] == 0:
                sys.setswitchinterval(_switch_state["previous"])


class DaskExecutor:
    """Tasks on a ``dask.distributed`` cluster through ``client``; closes the client (and the
    ``LocalCluster`` it started, if any) on :meth:`close` when it owns them."""

    def __init__(
        self, client: Any, *, retries: int = 3, owned: Sequence[Any] = (), name: str = "dask"
    ) -> None:
        self.client = client
        self.retries = retries
        self._owned = list(owned)
        self.name = name

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        if not items:
            return
        # pure=False: no hashing of the arguments; every call is a task of its own.
        from dask.utils import funcname

        # keys named after ``fn``, not the wrapper: what a dashboard or a log shows
        task, name = partial(run_task, fn), funcname(fn)
        futures = self.client.map(task, list(items), key=name, retries=self.retries, pure=False)
        try:
            for index, future in enumerate(futures):
                result: R = future.result()
                futures[index] = None  # the cluster may forget what was read
                future.release()
                yield result
        finally:
            remaining = [f for f in futures if f is not None]
            if remaining:
                self.client.cancel(remaining)

    def close(self) -> None:
        for thing in self._owned:
            thing.close()
        self._owned.clear()


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise DaskUnavailable(DASK_MISSING) from exc
    # Its INFO lines (every worker's start and stop) would drown a command's own output.
    quiet = max(logging.getLogger().getEffectiveLevel(), logging.WARNING)
    logging.getLogger("distributed").setLevel(quiet)
    return distributed


def open_executor(
    scheduler: str | None = None,
    dask_workers: int | None = None,
    *,
    workers: int | None = None,
    retries: int = 3,
    connect_timeout_s: float = 30.0,
) -> Executor:
    """The backend the options ask for: a Dask scheduler at ``scheduler``
    (``tcp://host:8786``), else a ``LocalCluster`` of ``dask_workers`` processes, else local
    processes (``workers``, default one per core). Raises :class:`DaskUnavailable` with one
    line when Dask is not installed or the scheduler does not answer."""
    if scheduler is None and dask_workers is None:
        return LocalProcesses(workers)
    distributed = _distributed()
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout=connect_timeout_s)
        except (OSError, TimeoutError) as exc:
            raise DaskUnavailable(
                f"no Dask scheduler answered at {scheduler} within {connect_timeout_s:g} s ({exc})"
            ) from exc
        return DaskExecutor(client, retries=retries, owned=[client], name=f"dask {scheduler}")
    n = max(1, dask_workers or 1)
    import dask.config

    # The scheduler (in this process) reads it now; the nannies hand it to the workers.
    with dask.config.set(QUIET_CLUSTER):
        cluster = distributed.LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # the scheduler serves HTTP (/health, /metrics) even without a dashboard, on 8787
            # unless told otherwise: a second cluster on the box would warn and move
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        )
    client = distributed.Client(cluster)
    return DaskExecutor(
        client, retries=retries, owned=[client, cluster], name=f"dask LocalCluster ({n})"
    )


def executor_for(
    dask: DaskConfig, scheduler: str | None = None, dask_workers: int | None = None
) -> Executor:
    """The backend of a batch command: ``--scheduler``/``--dask-workers`` (``scheduler``,
    ``dask_workers``) if given, else ``analyzer.dask``'s, else local processes. The caller
    closes it."""
    if scheduler is None and dask_workers is None:
        scheduler, dask_workers = dask.scheduler, dask.workers
    return open_executor(
        scheduler,
        dask_workers,
        retries=dask.retries,
        connect_timeout_s=dask.connect_timeout_s,
    )
