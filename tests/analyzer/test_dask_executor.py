"""The executor seam: in-process, local processes and Dask give the same results.

A real ``dask.distributed.LocalCluster`` (2 worker processes on 127.0.0.1, its HTTP server on a
free port: ``tests/dask_support.py``) is started once for the module and closed after it; the
CLI runs are real subprocesses.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from distributed import Client

from analyzer.ingest.batch import run_analyze_once
from analyzer.ingest.executor import (
    QUIET_CLUSTER,
    TASK_SWITCH_INTERVAL_S,
    DaskExecutor,
    InProcess,
    LocalProcesses,
    open_executor,
    run_task,
)
from analyzer.ingest.parallel import FilesProfile, profile_capture_files
from analyzer.monitors.data_quality.sketches import kll_rank_error
from modelmon.capture_record import CaptureSide, build_record
from modelmon.cli.baseline import run_baseline
from modelmon.config import PayloadConfig, load_config
from tests.dask_support import local_cluster_client

HOUR = datetime(2026, 11, 27, 7, tzinfo=UTC)
REPORTS = ("constraint_violations.json", "constraints.json", "statistics.json")
PAYLOAD = PayloadConfig.model_validate(
    {"input": {"columns": ["n", "x", "s"]}, "output": {"columns": ["score"]}}
)


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    yield from local_cluster_client()


def write_tree(root: Path, files: int, per_file: int, shift: float = 0.0) -> list[Path]:
    """``files`` capture files in one hour folder of ``root``; every other one gzipped."""
    import gzip

    folder = root / "churn" / "AllTraffic" / HOUR.strftime("%Y/%m/%d/%H")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in range(files):
        lines = []
        for i in range(per_file):
            j = f * per_file + i
            value = (j * 7919) % 1000 / 10 + shift
            lines.append(
                build_record(
                    event_id=str(uuid.UUID(int=j)),
                    inference_time=HOUR + timedelta(seconds=j % 3600),
                    request=CaptureSide("text/csv", f"{j % 97},{value},{'abc'[j % 3]}", "CSV"),
                    response=CaptureSide("text/csv", f"0.{j % 10}", "CSV"),
                )
            )
        body = b"".join(lines) + b"{broken\n"
        name = f"{f:04d}-00-000-{uuid.UUID(int=f)}.jsonl"
        path = folder / (f"{name}.gz" if f % 2 else name)
        path.write_bytes(gzip.compress(body) if f % 2 else body)
        paths.append(path)
    return sorted(paths)


def config_file(tmp: Path, name: str, capture: Path) -> Path:
    doc = {
        "endpoint": {"name": "churn", "variant": "AllTraffic"},
        "proxy": {"upstream": "http://127.0.0.1:9"},
        "capture": {"dir": str(capture)},
        "analyzer": {
            "reports_dir": str(tmp / name / "reports"),
            "baseline": {
                "statistics": str(tmp / "base" / "statistics.json"),
                "constraints": str(tmp / "base" / "constraints.json"),
            },
            "payload": PAYLOAD.model_dump(),
        },
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def modelmon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelmon", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def report_bytes(tmp: Path, name: str) -> dict[str, bytes]:
    folders = list((tmp / name / "reports").rglob("statistics.json"))
    assert len(folders) == 1, folders
    return {n: (folders[0].parent / n).read_bytes() for n in REPORTS}


def exact_parts(result: FilesProfile) -> dict[str, Any]:
    """Every figure of a profile that is not a quantile sketch's."""
    out: dict[str, Any] = {
        "records": result.records,
        "files": result.files,
        "bad": dict(result.bad),
        "span": (result.first_time, result.last_time),
        "rows": result.profile.item_count,
    }
    features = {**result.profile.features, **result.profile.predictions}
    for name, f in features.items():
        out[name] = (f.count, f.sum, f.min, f.max, f.num_missing, dict(f.type_counts))
    return out


@pytest.mark.timeout(300)  # five commands, one starting a LocalCluster of its own
def test_cli_reports_are_byte_equal_on_every_backend(tmp_path: Path, client: Client) -> None:
    """Fewer values than the KLL sketch's k: the sketches are exact, so every byte is."""
    capture = tmp_path / "capture"
    write_tree(capture, files=4, per_file=250)
    local = config_file(tmp_path, "local", capture)
    proc = modelmon("baseline", "--config", str(local), "--data", str(capture))
    assert proc.returncode == 0, proc.stderr
    base = {p.name: p.read_bytes() for p in (tmp_path / "base").iterdir()}
    proc = modelmon(
        "baseline", "--config", str(local), "--data", str(capture), "--out",
        str(tmp_path / "base-dask"), "--dask-workers", "2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "base-dask").iterdir()} == base
    assert json.loads(base["statistics.json"])["dataset"]["item_count"] == 1000

    write_tree(capture, files=6, per_file=150, shift=30.0)  # drifted traffic, replacing it
    for name, extra in (
        ("local", ()),
        ("scheduler", ("--scheduler", str(client.scheduler_info()["address"]))),
    ):
        proc = modelmon("analyze", "--once", "--config", str(config_file(tmp_path, name, capture)),
                        *extra)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    cfg = load_config(config_file(tmp_path, "inprocess", capture))
    assert run_analyze_once(cfg, executor=InProcess()) == 0
    expected = report_bytes(tmp_path, "local")
    stats = json.loads(expected["statistics.json"])
    assert stats["dataset"]["item_count"] == 900
    assert json.loads(expected["constraint_violations.json"])["violations"]  # drift is seen
    for name in ("scheduler", "inprocess"):
        assert report_bytes(tmp_path, name) == expected, name


def test_sketch_parts_agree_within_the_stated_error(tmp_path: Path, client: Client) -> None:
    """More values than k: the exact parts are bit-identical on every backend; the quantiles
    within KLL's rank error (its compactions flip a coin, so no two runs share those bytes,
    even on one backend)."""
    files = write_tree(tmp_path, files=12, per_file=400)
    client.wait_for_workers(2)
    runs = [
        profile_capture_files(files, PAYLOAD, 2048, executor=executor)
        for executor in (InProcess(), LocalProcesses(2), DaskExecutor(client))
    ]
    expected = exact_parts(runs[0])
    assert expected["rows"] == 4800 and expected["bad"] == {"not_json": 12}
    eps = kll_rank_error(2048)
    values = sorted((j * 7919) % 1000 / 10 for j in range(4800))
    for run in runs:
        assert exact_parts(run) == expected
        kll = run.profile.features["x"].kll
        assert kll is not None and kll.is_estimation_mode()
        for q in (0.1, 0.25, 0.5, 0.75, 0.9):
            rank = sum(v <= kll.get_quantile(q) for v in values) / len(values)
            assert abs(rank - q) <= eps + 1 / 1000, (q, rank)


def test_a_dask_task_that_raises_reraises_here_after_its_retries(
    tmp_path: Path, client: Client
) -> None:
    files = write_tree(tmp_path, files=2, per_file=10)
    files[1].write_bytes(b"not gzip at all")  # a .gz by its name only
    for executor in (InProcess(), DaskExecutor(client, retries=1)):
        with pytest.raises(zlib.error, match="incorrect header check"):
            profile_capture_files(files, PAYLOAD, 2048, executor=executor)


def test_a_worker_killed_mid_run_is_retried(tmp_path: Path, client: Client) -> None:
    files = write_tree(tmp_path, files=40, per_file=120)
    expected = exact_parts(profile_capture_files(files, PAYLOAD, 2048, executor=InProcess()))
    client.wait_for_workers(2)
    pids: dict[str, int] = client.run(os.getpid)
    victim = sorted(pids.values())[0]
    killed: list[int] = []

    def kill_once(total: FilesProfile) -> None:  # the first file is in; 39 are not
        if not killed:
            os.kill(victim, signal.SIGKILL)
            killed.append(total.files)

    result = profile_capture_files(
        files, PAYLOAD, 2048, on_file=kill_once, executor=DaskExecutor(client)
    )
    assert killed == [1]
    assert exact_parts(result) == expected

    def runs_per_key(dask_scheduler: Any) -> dict[str, int]:
        counts: dict[str, int] = {}
        for key, _start, finish, *_ in dask_scheduler.transition_log:
            if finish == "processing" and str(key).startswith("_work-"):
                counts[str(key)] = counts.get(str(key), 0) + 1
        return counts

    assert max(client.run_on_scheduler(runs_per_key).values()) >= 2  # run again elsewhere
    client.wait_for_workers(2)  # the nanny started a new worker process
    assert victim not in client.run(os.getpid).values()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_scheduler_that_does_not_answer_is_one_line(tmp_path: Path) -> None:
    capture = tmp_path / "capture"
    write_tree(capture, files=1, per_file=5)
    path = config_file(tmp_path, "gone", capture)
    doc = yaml.safe_load(path.read_text())
    doc["analyzer"]["dask"] = {"scheduler": f"tcp://127.0.0.1:{_closed_port()}",
                               "connect_timeout_s": 1}  # fmt: skip
    path.write_text(yaml.safe_dump(doc))
    proc = modelmon("analyze", "--once", "--config", str(path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("modelmon: no Dask scheduler answered at tcp://127.0.0.1:")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("option", [["--dask-workers", "2"], ["--scheduler", "tcp://h:8786"]])
def test_without_dask_the_message_says_how_to_install_it(tmp_path: Path, option: list[str]) -> None:
    capture = tmp_path / "capture"
    write_tree(capture, files=1, per_file=5)
    argv = ["baseline", "--data", str(capture), "--out", str(tmp_path / "b"), *option]
    code = (
        "import sys; sys.modules['distributed'] = None\n"
        "from modelmon.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "modelmon: Dask is not installed: pip install 'modelmon[dask]'"
    assert not (tmp_path / "b").exists()


def test_a_capture_folder_with_a_bad_gz_is_one_line_from_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = write_tree(tmp_path / "capture", files=2, per_file=10)
    files[1].write_bytes(b"not gzip at all")
    code = run_baseline(None, tmp_path / "capture", None, tmp_path / "b", executor=InProcess())
    assert code == 2
    assert "cannot read" in capsys.readouterr().err and not (tmp_path / "b").exists()


def switch_interval(_: int) -> float:
    return sys.getswitchinterval()


def worker_settings(_: int) -> dict[str, object]:
    import dask.config

    return {key: dask.config.get(key) for key in QUIET_CLUSTER}


def test_a_dask_task_runs_with_the_longer_switch_interval_then_restores_it(
    client: Client,
) -> None:
    before = client.run(sys.getswitchinterval)
    seen = list(DaskExecutor(client).map(switch_interval, [1, 2, 3]))
    assert seen == [pytest.approx(TASK_SWITCH_INTERVAL_S)] * 3  # kept in whole µs
    assert client.run(sys.getswitchinterval) == before  # every worker back to its own


def test_overlapping_tasks_on_threads_restore_the_interval_once_the_last_ends() -> None:
    previous = sys.getswitchinterval()
    inside, release = threading.Barrier(3), threading.Event()

    def task(_: int) -> float:
        inside.wait(timeout=30)  # all three are running at once
        release.wait(timeout=30)
        return sys.getswitchinterval()

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(run_task, task, i) for i in range(3)]
        for future in futures[:2]:
            assert not future.done()
        assert sys.getswitchinterval() == pytest.approx(TASK_SWITCH_INTERVAL_S)
        release.set()
        raised = pytest.approx(TASK_SWITCH_INTERVAL_S)
        assert [f.result(timeout=30) for f in futures] == [raised] * 3
    assert sys.getswitchinterval() == previous


def scheduler_timers(dask_scheduler: Any) -> dict[str, float]:
    return {name: pc.callback_time for name, pc in dask_scheduler.periodic_callbacks.items()}


def test_our_local_cluster_runs_quiet_not_on_8787_and_leaves_the_callers_config_alone() -> None:
    import dask.config

    caller = {key: dask.config.get(key) for key in QUIET_CLUSTER}
    executor = open_executor(dask_workers=1)
    try:
        assert list(executor.map(worker_settings, [0])) == [QUIET_CLUSTER]
        assert isinstance(executor, DaskExecutor)
        timers = executor.client.run_on_scheduler(scheduler_timers)
        assert (timers["tick"], timers["monitor"]) == (1000, 5000)  # ms: 1 s and 5 s
        # the scheduler's HTTP server (health, metrics) on a free port, not Dask's default
        # 8787: a second cluster on the box (another command, another test process) would
        # warn and move
        services = executor.client.scheduler_info()["services"]
        assert set(services) == {"dashboard"} and services["dashboard"] != 8787
    finally:
        executor.close()
    assert caller == {
        "distributed.worker.profile.enabled": True,
        "distributed.admin.tick.interval": "20ms",
        "distributed.worker.memory.monitor-interval": "100ms",
        "distributed.admin.system-monitor.interval": "500ms",
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": 65536,
    }
    assert {key: dask.config.get(key) for key in QUIET_CLUSTER} == caller  # the caller's kept


def test_the_advised_dask_config_file_sets_what_our_local_cluster_sets() -> None:
    import dask.config

    folder = Path(__file__).resolve().parents[2] / "configs" / "dask"  # DASK_CONFIG
    read = dask.config.collect(paths=[str(folder)], env={})  # as a `dask worker` reads it
    dask.config.update_defaults({}, config=read)
    assert {key: dask.config.get(key, config=read) for key in QUIET_CLUSTER} == QUIET_CLUSTER


def environ(name: str) -> str | None:
    return os.environ.get(name)


def test_our_local_cluster_leaves_the_malloc_trim_threshold_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Dask's nanny sets it to 65536 by default (distributed.nanny.pre-spawn-environ), and
    # writes it into the environment of the process that starts a cluster: the module's
    # `client` cluster left it in this one, and spawned workers would inherit it from here.
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    executor = open_executor(dask_workers=1)
    try:
        assert isinstance(executor, DaskExecutor)
        assert list(executor.client.run(environ, "MALLOC_TRIM_THRESHOLD_").values()) == [None]
        assert list(executor.client.run(environ, "OMP_NUM_THREADS").values()) == ["1"]
    finally:
        executor.close()
