"""The analyzer service with its baseline files and its ground-truth folder behind storage URLs
(moto's S3 server on 127.0.0.1, tests/s3_support.py; real app, real SQLite, injected clock).

The baselines on ``s3://`` give the same status as local copies of the same bytes; a missing
object or an unreachable store is one line naming the key and the URL; a replaced object is
reloaded. The ground-truth folder on ``s3://`` is joined exactly once across a restart and
across the store going away and coming back (counted, nothing lost).
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from analyzer.ingest.remote_files import CaptureFile
from analyzer.ingest.remote_ground_truth import RemoteGroundTruthFolder
from analyzer.service.app import create_app, monitor_of
from analyzer.store.database import Store, read_counters
from modelmon.config import BaselineConfig, ModelmonConfig
from tests.analyzer.service_helpers import (
    T0,
    Clock,
    make_config,
    write_baseline,
    write_capture_file,
    write_traffic,
)
from tests.analyzer.test_model_quality_join import capture, label
from tests.analyzer.test_openapi import _validator
from tests.analyzer.test_service_model_quality import (
    BINARY,
    _capture,
    _post_labels,
    write_quality_baseline,
)
from tests.s3_support import S3Server, aws_environment

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
BUCKET = "monitoring"
DQ_URL = f"s3://{BUCKET}/baseline"
MQ_URL = f"s3://{BUCKET}/baseline/model_quality"
GT_URL = f"s3://{BUCKET}/groundtruth"


def _quality(stats: str, cons: str, **extra: Any) -> dict[str, Any]:
    return {
        "problem_type": BINARY,
        "probability_attribute": "0",
        "min_labels": 100,
        "window_s": 3600,
        "baseline": {"statistics": stats, "constraints": cons},
        **extra,
    }


def _config(tmp: Path, dq: tuple[str, str], mq: tuple[str, str]) -> ModelmonConfig:
    config = make_config(tmp, None, model_quality=_quality(*mq))
    baseline = BaselineConfig(statistics=dq[0], constraints=dq[1])
    return config.model_copy(
        update={"analyzer": config.analyzer.model_copy(update={"baseline": baseline})}
    )


def _upload_baselines(s3: S3Server, local: Path) -> None:
    """The local baseline files' bytes, as objects (the same names under the prefixes)."""
    for name in ("statistics.json", "constraints.json"):
        s3.put(f"{BUCKET}/baseline/{name}", (local / "dq" / name).read_bytes())
        s3.put(f"{BUCKET}/baseline/model_quality/{name}", (local / "mq" / name).read_bytes())


async def _service_on_urls(
    aiohttp_client: Client, tmp: Path
) -> tuple[web.Application, TestClient[Any, Any]]:
    """The service (no loop, clock at T0) with all four baseline files at DQ_URL / MQ_URL."""
    config = _config(
        tmp,
        (f"{DQ_URL}/statistics.json", f"{DQ_URL}/constraints.json"),
        (f"{MQ_URL}/statistics.json", f"{MQ_URL}/constraints.json"),
    )
    app = create_app(config, clock=Clock(T0), run_loop=False, report_grace_s=0)
    return app, await aiohttp_client(app)


async def _status(client: TestClient[Any, Any]) -> dict[str, Any]:
    response = await client.get("/monitor/status")
    assert response.status == 200
    doc: dict[str, Any] = await response.json()
    return doc


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """The status without what names the files or times the run (the rest must be equal)."""
    out = {k: v for k, v in doc.items() if k != "analyzer"}
    out["monitors"] = {
        name: {k: v for k, v in section.items() if k != "baseline"}
        for name, section in doc["monitors"].items()
    }
    return out


async def _run(aiohttp_client: Client, config: ModelmonConfig) -> dict[str, Any]:
    """Start the service on ``config``, ingest the capture, post the labels, evaluate."""
    clock = Clock(T0 + timedelta(minutes=20))
    app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
    client = await aiohttp_client(app)
    await _post_labels(client, "current_concept.csv", 600, "c")
    await monitor_of(app).tick()
    status = await _status(client)
    document = await (await client.get("/monitor/openapi.json")).json()
    _validator(document, "Status").validate(status)
    await client.close()
    return status


async def test_baselines_on_s3_give_the_status_of_local_copies(
    aiohttp_client: Client, tmp_path: Path, s3: S3Server
) -> None:
    stats, cons = write_baseline(tmp_path / "files" / "dq")
    mq_stats, mq_cons = write_quality_baseline(tmp_path / "files" / "mq")
    s3.make_bucket(BUCKET)
    _upload_baselines(s3, tmp_path / "files")
    local = _config(tmp_path / "local", (str(stats), str(cons)), (str(mq_stats), str(mq_cons)))
    remote = _config(
        tmp_path / "remote",
        (f"{DQ_URL}/statistics.json", f"{DQ_URL}/constraints.json"),
        (f"{MQ_URL}/statistics.json", f"{MQ_URL}/constraints.json"),
    )
    assert remote.analyzer.baseline.statistics == f"{DQ_URL}/statistics.json"  # not resolved
    write_traffic(local.capture.dir, "current_covariate.csv", 600, T0)
    _capture(local, "current_concept.csv", T0.timestamp(), 600, "c")
    shutil.copytree(local.capture.dir, remote.capture.dir)  # the same files, byte for byte

    expected = await _run(aiohttp_client, local)
    got = await _run(aiohttp_client, remote)
    assert expected["monitors"]["data_quality"]["state"] == "alert"  # drift: something to compare
    assert expected["monitors"]["model_quality"]["state"] == "alert"
    assert _comparable(got) == _comparable(expected)
    dq, mq = (
        got["monitors"]["data_quality"]["baseline"],
        got["monitors"]["model_quality"]["baseline"],
    )
    assert dq["statistics"] == f"{DQ_URL}/statistics.json" and dq["error"] is None
    assert mq["constraints"] == f"{MQ_URL}/constraints.json" and mq["error"] is None


async def test_a_missing_object_is_one_line_naming_the_key_and_the_url(
    aiohttp_client: Client, tmp_path: Path, s3: S3Server
) -> None:
    s3.make_bucket(BUCKET)
    app, client = await _service_on_urls(aiohttp_client, tmp_path)
    status = await _status(client)
    dq = status["monitors"]["data_quality"]
    assert dq["state"] == "no_baseline"
    assert dq["baseline"]["error"] == (
        f"no baseline statistics at {DQ_URL}/statistics.json: run `modelmon baseline --data "
        "TRAINING.csv` (or set analyzer.baseline.statistics); the running service picks the "
        "files up when they appear, no restart needed"
    )
    mq = status["monitors"]["model_quality"]
    assert mq["state"] == "no_baseline"
    assert mq["baseline"]["error"] == (
        f"no model-quality constraints at {MQ_URL}/constraints.json (make them with "
        "`modelmon baseline --model-quality`)"
    )

    # the objects appear: the next run picks them up, no restart
    write_baseline(tmp_path / "files" / "dq")
    write_quality_baseline(tmp_path / "files" / "mq")
    _upload_baselines(s3, tmp_path / "files")
    await monitor_of(app).tick()
    status = await _status(client)
    assert status["monitors"]["data_quality"]["baseline"]["error"] is None
    assert status["monitors"]["data_quality"]["state"] == "no_data"
    assert status["monitors"]["model_quality"]["baseline"]["error"] is None
    assert status["monitors"]["model_quality"]["state"] == "no_data"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_store_is_one_line_and_the_service_answers(
    aiohttp_client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    for name, value in aws_environment(endpoint, tmp_path).items():
        monkeypatch.setenv(name, value)
    _app, client = await _service_on_urls(aiohttp_client, tmp_path)
    status = await _status(client)
    for name, key in (("data_quality", "statistics"), ("model_quality", "constraints")):
        section = status["monitors"][name]
        assert section["state"] == "no_baseline"
        where = f"{DQ_URL if name == 'data_quality' else MQ_URL}/{key}.json"
        prefix = (
            "analyzer.baseline" if name == "data_quality" else "analyzer.model_quality.baseline"
        )
        error = section["baseline"]["error"]
        assert error.startswith(
            f"{prefix}.{key} {where}: cannot read the store: "
            f'Could not connect to the endpoint URL: "{endpoint}/'
        )
        assert "\n" not in error


async def test_a_replaced_object_is_reloaded_and_an_outage_keeps_the_baseline(
    aiohttp_client: Client, tmp_path: Path, s3: S3Server
) -> None:
    write_baseline(tmp_path / "files" / "dq")
    write_quality_baseline(tmp_path / "files" / "mq")
    s3.make_bucket(BUCKET)
    _upload_baselines(s3, tmp_path / "files")
    app, client = await _service_on_urls(aiohttp_client, tmp_path)
    monitor = monitor_of(app)
    assert monitor.baseline.statistics is not None
    features = len(monitor.baseline.statistics.features)
    await monitor.tick()
    assert monitor.baseline_files.reloads == 0  # nothing changed: not read again

    # a new statistics object with one feature fewer: reloaded at the next run
    doc = orjson.loads((tmp_path / "files" / "dq" / "statistics.json").read_bytes())
    doc["features"] = doc["features"][1:]
    s3.put(f"{BUCKET}/baseline/statistics.json", orjson.dumps(doc))
    await monitor.tick()
    assert monitor.baseline_files.reloads == 1
    assert len(monitor.baseline.statistics.features) == features - 1

    # the store goes away: the baseline in use stays, the reason is shown; back: cleared
    s3.stop()
    await monitor.tick()
    info = (await _status(client))["monitors"]["data_quality"]["baseline"]
    assert info["error"] is None
    assert info["reload_error"].startswith(
        f"analyzer.baseline.statistics {DQ_URL}/statistics.json: cannot read the store: "
    )
    assert monitor.baseline.statistics is not None
    assert monitor.model_quality is not None
    assert monitor.model_quality.files.current.constraints is not None
    s3.start()
    await monitor.tick()
    info = (await _status(client))["monitors"]["data_quality"]["baseline"]
    assert info["reload_error"] is None
    assert len(monitor.baseline.statistics.features) == features - 1


def _labels(s3: S3Server, moment: datetime, name: str, keys: list[str]) -> None:
    s3.put(f"{BUCKET}/groundtruth/{moment:%Y/%m/%d/%H}/{name}", b"".join(map(label, keys)))


async def _join_counters(client: TestClient[Any, Any]) -> dict[str, int]:
    found = await monitor_of(client.app).store.aread(read_counters)
    return {k: v for k, v in found.items() if k.startswith(("model_quality:", "ground_truth:"))}


async def test_ground_truth_on_s3_is_joined_exactly_once_across_restarts_and_outages(
    aiohttp_client: Client, tmp_path: Path, s3: S3Server
) -> None:
    s3.make_bucket(BUCKET)
    config = make_config(
        tmp_path,
        None,
        model_quality={
            "problem_type": BINARY,
            "probability_attribute": "0",
            "window_s": 3600,
            "label_delay_s": 3600,
            "ground_truth": {"dir": GT_URL},
        },
    )
    assert config.analyzer.model_quality is not None
    assert config.analyzer.model_quality.ground_truth.dir == GT_URL
    ids = [f"e{i}" for i in range(60)]
    write_capture_file(config.capture.dir, capture(ids, T0), T0)
    _labels(s3, T0, "a.jsonl", ids[:20])
    _labels(s3, T0 + timedelta(hours=1), "b.jsonl", ids[20:30])
    s3.put(f"{BUCKET}/groundtruth/{T0:%Y/%m/%d/%H}/notes.txt", b"not in the layout\n")
    s3.put(f"{BUCKET}/groundtruth/{T0:%Y/%m/%d/%H}/c.jsonl.part", label("e59"))  # unsealed
    clock = Clock(T0 + timedelta(hours=1, minutes=10))
    client = await aiohttp_client(create_app(config, clock=clock, run_loop=False))
    await monitor_of(client.app).tick()
    first = await _join_counters(client)
    assert first["model_quality:labels"] == 30
    assert first["model_quality:ground_truth_files"] == 2
    assert first.get("ground_truth:source_errors", 0) == 0
    status = await _status(client)
    assert status["ground_truth_source"] == {
        "url": GT_URL,
        "errors": 0,
        "last_error": None,
        "source_errors": 0,
    }
    await client.close()

    # a restart on the same database reads nothing again; a new object is read once
    client = await aiohttp_client(create_app(config, clock=clock, run_loop=False))
    monitor = monitor_of(client.app)
    await monitor.tick()
    assert await _join_counters(client) == first
    _labels(s3, T0 + timedelta(hours=1), "c.jsonl", ids[30:40])
    await monitor.tick()
    assert (await _join_counters(client))["model_quality:labels"] == 40

    # the store goes away: counted, the status answers; back: nothing lost, nothing twice
    _labels(s3, T0 + timedelta(hours=1), "d.jsonl", ids[40:50])
    s3.stop()
    await monitor.tick()
    status = await _status(client)
    source = status["ground_truth_source"]
    assert source["errors"] == 1 and source["source_errors"] == 1
    assert source["last_error"].startswith(f"listing {GT_URL}: ")
    document = await (await client.get("/monitor/openapi.json")).json()
    _validator(document, "Status").validate(status)
    metrics = await (await client.get("/monitor/metrics")).text()
    assert "modelmon_ground_truth_source_errors_total 1.0" in metrics
    assert (await _join_counters(client))["model_quality:labels"] == 40
    s3.start()
    await monitor.tick()
    again = await _join_counters(client)
    assert again["model_quality:labels"] == 50
    assert again.get("model_quality:label_duplicates", 0) == 0
    assert again["model_quality:ground_truth_files"] == 4
    assert again["ground_truth:source_errors"] == 1
    await client.close()

    client = await aiohttp_client(create_app(config, clock=clock, run_loop=False))
    await monitor_of(client.app).tick()
    assert await _join_counters(client) == again
    assert (await _status(client))["ground_truth_source"]["errors"] == 0  # since start


class StopsTheStore(RemoteGroundTruthFolder):
    """The folder reader that takes the store down once the listing is done (the first run)."""

    def __init__(self, s3: S3Server, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self.s3 = s3

    def _read_file(self, path: CaptureFile, *args: Any) -> None:
        self.s3.stop()
        super()._read_file(path, *args)


def _gt_config(tmp: Path) -> ModelmonConfig:
    quality = {
        "problem_type": BINARY,
        "probability_attribute": "0",
        "ground_truth": {"dir": GT_URL},
    }
    return make_config(tmp, None, model_quality=quality)


def test_a_read_that_fails_is_counted_and_done_at_the_next_run(
    tmp_path: Path, s3: S3Server
) -> None:
    s3.make_bucket(BUCKET)
    _labels(s3, T0, "a.jsonl", [f"e{i}" for i in range(20)])
    config = _gt_config(tmp_path)
    store = Store(config.analyzer.db)
    store.start()
    try:
        folder = StopsTheStore(s3, store, config, GT_URL, clock=Clock(T0 + timedelta(hours=1)))
        assert folder.run_once().labels == 0
        assert folder.errors == 1 and folder.last_error is not None
        assert folder.last_error.startswith(f"reading {GT_URL}: ")
        s3.start()
        again = RemoteGroundTruthFolder(store, config, GT_URL, clock=Clock(T0 + timedelta(hours=1)))
        assert again.run_once().labels == 20
        assert again.run_once().labels == 0
        counters = store.read(read_counters)
        assert counters["model_quality:labels"] == 20
        assert counters["ground_truth:source_errors"] == 1
    finally:
        store.close()


def test_a_listing_cut_at_max_files_goes_on_and_old_hours_are_not_listed(
    tmp_path: Path, s3: S3Server
) -> None:
    s3.make_bucket(BUCKET)
    _labels(s3, T0 - timedelta(days=40), "old.jsonl", ["old"])  # past retention_days (30)
    for hour in range(3):
        for name in ("a", "b"):
            _labels(s3, T0 + timedelta(hours=hour), f"{name}.jsonl", [f"{name}{hour}"])
    config = _gt_config(tmp_path)
    store = Store(config.analyzer.db)
    store.start()
    try:
        clock = Clock(T0 + timedelta(hours=4))
        folder = RemoteGroundTruthFolder(store, config, GT_URL, clock=clock, max_files=3)
        read = [folder.run_once().files for _ in range(4)]
        assert sum(read) == 6 and read[-1] == 0
        assert store.read(read_counters)["model_quality:labels"] == 6
    finally:
        store.close()
