"""The model-quality monitor in the analyzer service (real app, real SQLite, injected clock):
status section, Prometheus gauges, hourly reports re-written when late labels arrive."""

from __future__ import annotations

import csv
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from analyzer.monitors.model_quality.documents import suggest_constraints
from analyzer.monitors.model_quality.estimate import fit_calibrator
from analyzer.monitors.model_quality.evaluate import evaluate_window
from analyzer.service.app import create_app, monitor_of
from analyzer.service.model_quality import REPORT_SUBDIR, ModelQualityTenant
from analyzer.store.hourly import hour_dir
from modelmon.capture_record import CaptureSide, build_record
from tests.analyzer.service_helpers import (
    DATA,
    FEATURES,
    T0,
    Clock,
    make_config,
    write_capture_file,
)
from tests.analyzer.test_alerts import Receiver
from tests.analyzer.test_openapi import _validator

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
BINARY = "BinaryClassification"


@cache
def scored(name: str) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """(score, label) columns of a reference CSV."""
    with open(DATA / name, newline="") as handle:
        rows = [(float(r["score"]), int(r["label"])) for r in csv.DictReader(handle)]
    return tuple(s for s, _ in rows), tuple(y for _, y in rows)


def write_quality_baseline(folder: Path) -> tuple[Path, Path]:
    scores, labels = scored("baseline.csv")
    s, y = np.array(scores), np.array(labels, dtype=np.int64)
    p = (s >= 0.5).astype(np.int64)
    result = evaluate_window(BINARY, y, p, s, {}, None, false_alarm_rate=0.01, min_labels=1)
    statistics = result.statistics()
    statistics["modelmon"] = {"calibration": fit_calibrator(s, y).to_json()}
    constraints = suggest_constraints(BINARY, statistics)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "statistics.json").write_bytes(orjson.dumps(statistics))
    (folder / "constraints.json").write_bytes(orjson.dumps(constraints))
    return folder / "statistics.json", folder / "constraints.json"


def _config(tmp: Path, alerts: dict[str, Any] | None = None, **quality: Any) -> Any:
    stats, cons = write_quality_baseline(tmp / "mq")
    section = {
        "problem_type": BINARY,
        "probability_attribute": "0",
        "min_labels": 100,
        "window_s": 3600,
        "baseline": {"statistics": str(stats), "constraints": str(cons)},
        **quality,
    }
    return make_config(tmp, None, model_quality=section, alerts=alerts or {})


def _capture(config: Any, name: str, start: float, n: int, prefix: str) -> None:
    """``n`` captured predictions of a reference CSV, one every 0.5 s from ``start``, as a
    sealed capture file that the analyzer's own ingest reads (eventId = prefix + row)."""
    scores, _ = scored(name)
    moment = datetime.fromtimestamp(start, UTC)
    lines = [
        build_record(
            event_id=f"{prefix}{i}",
            inference_time=moment + timedelta(seconds=i * 0.5),
            request=CaptureSide("text/csv", ",".join(["1"] * len(FEATURES)), "CSV"),
            response=CaptureSide("text/csv", repr(scores[i]), "CSV"),
        )
        for i in range(n)
    ]
    write_capture_file(config.capture.dir, lines, moment)


async def _post_labels(
    client: TestClient[Any, Any], name: str, n: int, prefix: str, first: int = 0
) -> None:
    """Labels of rows ``first..n`` in SageMaker's ground-truth format, by the real API."""
    _, labels = scored(name)
    body = b"".join(
        orjson.dumps(
            {
                "groundTruthData": {"data": str(labels[i]), "encoding": "CSV"},
                "eventMetadata": {"eventId": f"{prefix}{i}"},
                "eventVersion": "0",
            }
        )
        + b"\n"
        for i in range(first, n)
    )
    response = await client.post("/monitor/ground-truth", data=body)
    assert response.status == 200, await response.text()


async def _status(client: TestClient[Any, Any]) -> dict[str, Any]:
    response = await client.get("/monitor/status")
    assert response.status == 200
    doc: dict[str, Any] = await response.json()
    return doc


async def test_concept_drift_is_an_alert_with_the_estimate_contradicted(
    aiohttp_client: Client, aiohttp_server: Any, tmp_path: Path
) -> None:
    receiver = Receiver()
    hook = await aiohttp_server(receiver.app())
    clock = Clock(T0)
    config = _config(tmp_path, {"webhooks": [{"url": str(hook.make_url("/hook/secret-token"))}]})
    app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
    client = await aiohttp_client(app)
    monitor = monitor_of(app)
    start = T0.timestamp()
    _capture(config, "current_concept.csv", start, 1000, "c")
    clock.now = start + 1200
    await monitor.tick()
    section = (await _status(client))["monitors"]["model_quality"]
    assert section["state"] == "no_data" and section["labels"]["awaiting"] == 1000
    assert section["estimated"]["auc"]["value"] > 0.6  # inputs unchanged: the estimate holds

    await _post_labels(client, "current_concept.csv", 1000, "c")
    clock.now += 60
    doc = await monitor.tick()
    section = (await _status(client))["monitors"]["model_quality"]
    assert section == doc["monitors"]["model_quality"] | {"run_id": section["run_id"]}
    assert section["state"] == "alert" and doc["state"] == "alert"
    assert section["metrics"]["auc"]["value"] < 0.5
    assert section["metrics"]["auc"]["state"] == "alert"
    assert section["labels"]["matched"] == 1000 and section["labels"]["awaiting"] == 0
    assert section["estimate"]["trusted"] is False
    assert {"metric_name": "auc"}.items() <= next(
        v for v in section["violations"] if v["metric_name"] == "auc"
    ).items()

    document = await (await client.get("/monitor/openapi.json")).json()
    schema = _validator(document, "Status")
    schema.validate(await _status(client))
    assert not schema.is_valid(
        {**doc, "monitors": {"model_quality": {**section, "state": "sideways"}}}
    )
    metrics = await (await client.get("/monitor/metrics")).text()
    assert f"\nauc {section['metrics']['auc']['value']}\n" in metrics
    assert 'modelmon_monitor_state{monitor="model_quality",state="alert"} 1.0' in metrics
    assert 'modelmon_model_quality_labels{kind="matched"} 1000.0' in metrics

    _, payload = await receiver.next()  # only entering or leaving alert is sent
    assert payload["monitor"] == "model_quality"
    assert payload["event"] == "alert" and payload["previous_state"] == "no_data"
    assert payload["metrics"]["auc"]["state"] == "alert" and payload["features"] == {}
    assert "auc" in {v["metric_name"] for v in payload["violations"]}
    assert receiver.requests.empty()

    folder = hour_dir(config, int(start)) / REPORT_SUBDIR
    assert not folder.exists()  # the hour is still open: SageMaker reports past hours
    clock.now = start + 3600
    await monitor.tick()
    violations = orjson.loads((folder / "constraint_violations.json").read_bytes())
    assert "auc" in {v["metric_name"] for v in violations["violations"]}
    statistics = orjson.loads((folder / "statistics.json").read_bytes())
    assert statistics["dataset"]["item_count"] == 1000
    assert (folder / "constraints.json").exists()


async def test_late_labels_rewrite_the_hours_report_and_nodrift_stays_ok(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    clock = Clock(T0)
    config = _config(tmp_path)
    app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
    client = await aiohttp_client(app)
    monitor = monitor_of(app)
    start = T0.timestamp()
    _capture(config, "current_nodrift.csv", start, 1500, "n")
    await _post_labels(client, "current_nodrift.csv", 500, "n")
    clock.now = start + 3600 + 800  # the predictions span 750 s from start
    doc = await monitor.tick()
    folder = hour_dir(config, int(start)) / REPORT_SUBDIR
    assert orjson.loads((folder / "statistics.json").read_bytes())["dataset"]["item_count"] == 500
    await _post_labels(client, "current_nodrift.csv", 1500, "n", first=500)
    clock.now += 60
    doc = await monitor.tick()
    assert orjson.loads((folder / "statistics.json").read_bytes())["dataset"]["item_count"] == 1500
    section = doc["monitors"]["model_quality"]
    # the rolling window (last hour of inference time) holds none of these predictions now
    assert section["samples"] == 0 and section["labels"]["matched"] == 1500
    assert monitor.model_quality is not None and monitor.model_quality.reports_written == 2
    clock.now = start + 1000
    evaluation = monitor.model_quality.evaluate(clock.now)
    assert evaluation.state in ("ok", "warning") and evaluation.samples == 1500


async def test_a_missing_model_quality_baseline_is_no_baseline_not_a_failure(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    clock = Clock(T0)
    config = make_config(
        tmp_path,
        None,
        model_quality={"problem_type": BINARY, "baseline": {"constraints": "absent.json"}},
    )
    app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
    client = await aiohttp_client(app)
    before = (await _status(client))["monitors"]["model_quality"]
    assert before["state"] == "no_baseline" and before["run_id"] is None
    await monitor_of(app).tick()
    section = (await _status(client))["monitors"]["model_quality"]
    assert section["state"] == "no_baseline"
    assert "modelmon baseline --model-quality" in section["baseline"]["error"]
    health = await client.get("/monitor/health")
    assert health.status == 200


@pytest.mark.parametrize(
    "body", [b"{", b"[]", b'{"binary_classification_constraints": {"auc": {}}}']
)
async def test_a_bad_constraints_file_is_reported_by_name(
    aiohttp_client: Client, tmp_path: Path, body: bytes
) -> None:
    (tmp_path / "bad.json").write_bytes(body)
    config = make_config(
        tmp_path,
        None,
        model_quality={"problem_type": BINARY, "baseline": {"constraints": "bad.json"}},
    )
    app = create_app(config, clock=Clock(T0), run_loop=False, report_grace_s=0)
    client = await aiohttp_client(app)
    await monitor_of(app).tick()
    section = (await _status(client))["monitors"]["model_quality"]
    assert section["state"] == "no_baseline"
    assert str(tmp_path / "bad.json") in section["baseline"]["error"]


async def test_an_unchanged_window_stands_and_a_late_label_is_evaluated_and_reported_once(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    """A tick whose window holds what it held is not evaluated again (the label counts still
    move with the clock); a closed hour is reported once per change, not at every tick while
    its window stays open; a late label re-evaluates the window and rewrites the hour."""
    clock = Clock(T0 + timedelta(minutes=10))  # 07:10
    config = _config(tmp_path, window_s=7200, label_delay_s=4300)
    app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
    client = await aiohttp_client(app)
    monitor = monitor_of(app)
    tenant = monitor.model_quality
    assert tenant is not None
    start = T0.timestamp() - 3600  # 06:00: its window (06:00–08:00) stays open until 08:00
    _capture(config, "current_nodrift.csv", start, 400, "n")  # 06:00:00–06:03:20
    await _post_labels(client, "current_nodrift.csv", 300, "n")
    first = (await monitor.tick())["monitors"]["model_quality"]
    assert tenant.evaluations == 1 and first["samples"] == 300
    assert first["labels"]["awaiting"] == 100  # still within the label wait
    folder = hour_dir(config, int(start)) / REPORT_SUBDIR
    statistics = folder / "statistics.json"
    assert orjson.loads(statistics.read_bytes())["dataset"]["item_count"] == 300
    assert tenant.reports_written == 1

    clock.now += 600  # 07:20: the window's edges passed no prediction, nothing was stored
    second = (await monitor.tick())["monitors"]["model_quality"]
    assert tenant.evaluations == 1 and tenant.reports_written == 1
    assert second["labels"]["awaiting"] == 0 and second["labels"]["unlabeled"] == 100
    assert second["window"]["end"] != first["window"]["end"]
    fresh = type(tenant)(config, tenant.quality, monitor.store).evaluate(clock.now)
    assert {k: v for k, v in second.items() if k != "run_id"} == fresh.section

    await _post_labels(client, "current_nodrift.csv", 400, "n", first=300)  # late labels
    clock.now += 60
    third = (await monitor.tick())["monitors"]["model_quality"]
    assert tenant.evaluations == 2 and third["samples"] == 400
    assert third["labels"]["matched"] == 400 and third["labels"]["unlabeled"] == 0
    assert tenant.reports_written == 2
    assert orjson.loads(statistics.read_bytes())["dataset"]["item_count"] == 400

    clock.now += 60  # a prediction the window's end passes is evaluated with it
    _capture(config, "current_nodrift.csv", clock.now + 30, 1, "later")
    await monitor.tick()
    assert tenant.evaluations == 3  # stored: the join changed
    clock.now += 60
    fourth = (await monitor.tick())["monitors"]["model_quality"]
    assert tenant.evaluations == 4 and fourth["labels"]["awaiting"] == 1  # the end passed it
    assert tenant.reports_written == 2


async def test_a_long_evaluation_waits_three_times_its_length_however_often_the_join_changes(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    """After an evaluation that took d seconds, a changed window is evaluated again only
    once 3 d has passed (a quarter of the time at most); meanwhile the status keeps the last
    evaluation with its own window, the live label counts and a ``deferred`` note. The
    timer steps 4 s at every reading: each evaluation "takes" 4 s."""
    clock = Clock(T0 + timedelta(minutes=10))
    config = _config(tmp_path, window_s=7200, label_delay_s=4300)
    app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
    client = await aiohttp_client(app)
    monitor = monitor_of(app)
    assert monitor.model_quality is not None
    _capture(config, "current_nodrift.csv", T0.timestamp() - 3600, 400, "n")
    await _post_labels(client, "current_nodrift.csv", 300, "n")
    await monitor.tick()
    readings = iter(range(0, 1000, 4))
    tenant = ModelQualityTenant(
        config, monitor.model_quality.quality, monitor.store, timer=lambda: next(readings)
    )
    first = tenant.evaluate(clock.now)  # read at 0 and 4: took 4 s
    assert tenant.evaluations == 1 and "deferred" not in first.section

    await _post_labels(client, "current_nodrift.csv", 400, "n", first=300)  # the join changed
    second = tenant.evaluate(clock.now)  # at 8: 12 s must pass after 4, 8 s left
    assert (tenant.evaluations, tenant.deferred) == (1, 1)
    assert second.section["samples"] == 300 and second.section["labels"]["matched"] == 400
    assert second.section["window"] == first.section["window"]
    assert second.section["deferred"]["evaluation_s"] == 4
    assert second.section["deferred"]["next_in_s"] == 8
    assert "25%" in second.section["deferred"]["reason"]
    document = await (await client.get("/monitor/openapi.json")).json()
    schema = _validator(document, "ModelQualityMonitor")
    schema.validate(second.section)
    assert not schema.is_valid({**second.section, "deferred": {"reason": "x"}})
    third = tenant.evaluate(clock.now)  # at 12: 4 s left
    assert (tenant.evaluations, tenant.deferred) == (1, 2) and third.section["samples"] == 300
    fourth = tenant.evaluate(clock.now)  # at 16: 12 s have passed
    assert (tenant.evaluations, tenant.deferred) == (2, 2)
    assert fourth.section["samples"] == 400 and "deferred" not in fourth.section
