"""The analyzer's HTTP API on a real server: auth, ground truth, metrics, runs, report,
health and JSON errors."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from analyzer.service.app import create_app, monitor_of
from tests.analyzer.service_helpers import T0, Clock, make_config, write_baseline, write_traffic

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
TOKEN_ENV = "MODELMON_TEST_TOKEN_WEB"
GROUND_TRUTH = (
    b'{"groundTruthData": {"data": "1", "encoding": "CSV"}, '
    b'"eventMetadata": {"eventId": "e-1", "inferenceTime": "2026-11-27T07:00:00Z"}, '
    b'"eventVersion": "0"}\n'
    b"not json\n"
    b'{"groundTruthData": {"data": 1}, "eventMetadata": {"eventId": "e-2"}}\n'
    b"\n"
    b'{"groundTruthData": {"data": "0", "encoding": "csv"}, '
    b'"eventMetadata": {"eventId": "e-3", "inferenceId": "i-3"}, "eventVersion": "0"}\n'
)
GOOD = {"Authorization": "Bearer s3cret-token"}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_baseline(tmp_path_factory.mktemp("baseline"))


@pytest.fixture
async def running(
    aiohttp_client: Client,
    tmp_path: Path,
    baseline: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[TestClient[Any, Any], web.Application, int]:
    """A served analyzer with a token, drifted traffic ingested and one closed hour reported."""
    monkeypatch.setenv(TOKEN_ENV, "s3cret-token")
    config = make_config(tmp_path, baseline, auth_token_env=TOKEN_ENV)
    clock = Clock(T0 + timedelta(minutes=59))
    app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
    client = await aiohttp_client(app)
    n = write_traffic(config.capture.dir, "current_covariate.csv", 1000, T0 + timedelta(minutes=5))
    await monitor_of(app).tick()
    clock.set(T0 + timedelta(hours=1, minutes=1))
    await monitor_of(app).tick()
    return client, app, n


async def test_everything_but_health_status_and_metrics_needs_the_token(
    running: tuple[TestClient[Any, Any], web.Application, int],
) -> None:
    client, _, _ = running
    run_id = (await (await client.get("/monitor/runs", headers=GOOD)).json())["runs"][0]["id"]
    protected = ["/monitor/report", "/monitor/runs", f"/monitor/runs/{run_id}"]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-token"}):
        response = await client.post("/monitor/ground-truth", data=GROUND_TRUTH, headers=headers)
        assert response.status == 401
        assert "auth_token_env" in (await response.json())["error"]
        for path in protected:
            response = await client.get(path, headers=headers)
            assert response.status == 401, path
            assert "auth_token_env" in (await response.json())["error"]
    for path in ("/monitor/status", "/monitor/health", "/monitor/metrics", "/monitor/openapi.json"):
        assert (await client.get(path)).status == 200, path
    response = await client.get("/monitor/report", headers=GOOD)
    assert response.status == 200 and response.content_type == "text/html"
    assert "income" in await response.text()
    for path in protected[1:]:
        assert (await client.get(path, headers=GOOD)).status == 200


async def test_ground_truth_stores_good_lines_and_names_bad_ones(
    running: tuple[TestClient[Any, Any], web.Application, int],
) -> None:
    client, app, _ = running
    good = GOOD
    response = await client.post("/monitor/ground-truth", data=GROUND_TRUTH, headers=good)
    assert response.status == 200
    body = await response.json()
    assert body["stored"] == 2 and body["bad_line_count"] == 2 and body["lines"] == 5
    assert [b["line"] for b in body["bad_lines"]] == [2, 3]
    assert "groundTruthData.data" in body["bad_lines"][1]["error"]
    rows = monitor_of(app).store.read(
        lambda c: c.execute("SELECT event_id, inference_id, encoding FROM ground_truth").fetchall()
    )
    assert sorted(rows) == [("e-1", None, "CSV"), ("e-3", "i-3", "CSV")]
    empty = await client.post("/monitor/ground-truth", data=b"\n", headers=good)
    assert empty.status == 400 and "empty" in (await empty.json())["error"]


async def test_metrics_are_named_like_sagemaker_and_count_ingest(
    running: tuple[TestClient[Any, Any], web.Application, int],
) -> None:
    client, _, n = running
    response = await client.get("/monitor/metrics")
    assert response.status == 200
    text = await response.text()
    status = await (await client.get("/monitor/status")).json()
    income = status["monitors"]["data_quality"]["features"]["income"]
    drift = re.search(r"^feature_baseline_drift_income ([0-9.e+-]+)$", text, re.M)
    assert drift is not None and float(drift.group(1)) == pytest.approx(income["distance"])
    assert re.search(r'^feature_data_income\{stat="mean"\} [0-9.e+]+$', text, re.M)
    assert re.search(r"^feature_non_null_age 1\.0$", text, re.M)
    assert f"modelmon_ingest_records_total {float(n)}" in text
    assert re.search(r'^modelmon_violations\{check="baseline_drift_check"\} [1-9]', text, re.M)
    assert 'modelmon_monitor_state{monitor="data_quality",state="alert"} 1.0' in text


async def test_runs_list_and_detail_carry_the_three_reports(
    running: tuple[TestClient[Any, Any], web.Application, int],
) -> None:
    client, _, _ = running
    client.session.headers.update(GOOD)
    runs = (await (await client.get("/monitor/runs")).json())["runs"]
    kinds = [r["kind"] for r in runs]
    assert kinds.count("window") == 2 and kinds.count("hourly") == 1
    hourly = next(r for r in runs if r["kind"] == "hourly")
    detail = await (await client.get(f"/monitor/runs/{hourly['id']}")).json()
    assert set(detail["reports"]) == {
        "statistics.json",
        "constraints.json",
        "constraint_violations.json",
    }
    assert detail["reports"]["statistics.json"]["dataset"]["item_count"] == 1000
    assert detail["metrics"]["feature_baseline_drift_income"] > 0.1
    window = next(r for r in runs if r["kind"] == "window")
    detail = await (await client.get(f"/monitor/runs/{window['id']}")).json()
    violations = detail["reports"]["constraint_violations.json"]["violations"]
    assert len(violations) == window["violations"] > 0
    page = await (await client.get("/monitor/runs?limit=1")).json()
    assert len(page["runs"]) == 1 and page["next_before"] == page["runs"][0]["id"]


async def test_errors_are_json_and_say_what_to_fix(
    running: tuple[TestClient[Any, Any], web.Application, int],
) -> None:
    client, _, _ = running
    client.session.headers.update(GOOD)
    cases = {
        "/monitor/nope": (404, "openapi.json"),
        "/monitor/runs/abc": (400, "digits 0-9"),
        "/monitor/runs/1_0": (400, "digits 0-9"),
        "/monitor/runs/%D9%A1%D9%A2": (400, "digits 0-9"),  # Arabic-Indic ١٢
        "/monitor/runs/-1": (400, "digits 0-9"),
        "/monitor/runs/99999": (404, "/monitor/runs"),
        "/monitor/runs/999999999999999999": (404, "/monitor/runs"),  # 18 digits: looked up
        "/monitor/runs/99999999999999999999": (404, "/monitor/runs"),  # past SQLite's integers
        "/monitor/runs?limit=0": (400, "limit must be an integer from 1 to 1000"),
        "/monitor/runs?limit=1_0": (400, "limit must be an integer from 1 to 1000"),
        "/monitor/runs?before=%D9%A1": (400, "before must be an integer"),
        "/monitor/runs?kind=daily": (400, "window or hourly"),
    }
    for path, (status, words) in cases.items():
        response = await client.get(path)
        assert response.status == status, path
        body = await response.json()
        assert words in body["error"] and body["status"] == status
    response = await client.put("/monitor/status")
    assert response.status == 405 and "PUT" in (await response.json())["error"]


async def test_health_reports_a_failing_run(
    running: tuple[TestClient[Any, Any], web.Application, int],
) -> None:
    client, app, _ = running
    response = await client.get("/monitor/health")
    assert response.status == 200 and (await response.json())["ok"] is True
    monitor_of(app).last_error = "OSError: disk full"  # what the loop records when a run fails
    response = await client.get("/monitor/health")
    body = await response.json()
    assert response.status == 503 and "disk full" in body["problems"][0]


async def test_a_failure_inside_a_handler_is_a_json_500_and_logged(
    running: tuple[TestClient[Any, Any], web.Application, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, app, _ = running
    run_id = monitor_of(app).store.write(
        lambda db: db.table("runs").insert({"kind": "window", "features": "{not json"}).last_pk
    )
    response = await client.get(f"/monitor/runs/{run_id}", headers=GOOD)
    assert response.status == 500 and response.content_type == "application/json"
    assert "log" in (await response.json())["error"]
    assert any(f"/monitor/runs/{run_id} failed" in r.getMessage() for r in caplog.records)
