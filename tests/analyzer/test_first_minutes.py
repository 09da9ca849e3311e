"""A new user's first minutes, through the real service: a config with only
``proxy.upstream``, a baseline from a headered training CSV, headerless captured traffic."""

from __future__ import annotations

import csv
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from analyzer.baseline_cli import run_baseline
from analyzer.service import create_app, monitor_of
from modelmon.config import ModelmonConfig, load_config
from modelmon.status_cli import render_status
from tests.analyzer.service_helpers import DATA, FEATURES, T0, Clock, write_traffic

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
TRAIN_ROWS = 5000


def new_user(tmp_path: Path) -> ModelmonConfig:
    """``modelmon.yaml`` with only the upstream, and ``train.csv`` with a header."""
    (tmp_path / "modelmon.yaml").write_text("proxy:\n  upstream: http://127.0.0.1:9\n")
    with open(DATA / "baseline.csv", newline="") as source:
        rows = list(csv.DictReader(source))[:TRAIN_ROWS]
    with open(tmp_path / "train.csv", "w", newline="") as target:
        writer = csv.writer(target)
        writer.writerow(FEATURES)
        writer.writerows([row[f] for f in FEATURES] for row in rows)
    return load_config(tmp_path / "modelmon.yaml")


async def test_headered_baseline_and_headerless_traffic_are_matched_by_position(
    aiohttp_client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = new_user(tmp_path)
    assert config.analyzer.payload.input.columns == []
    assert run_baseline(config, tmp_path / "train.csv", None, None) == 0
    err = capsys.readouterr().err
    assert "matched to the baseline's 11 features by position" in err
    assert "small baseline" not in err  # 5,000 rows are enough for 0.1

    clock = Clock(T0 + timedelta(minutes=30))
    app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
    client = await aiohttp_client(app)
    capture = config.capture.dir
    write_traffic(
        capture, "current_nodrift.csv", 1500, T0 + timedelta(minutes=5), endpoint="endpoint"
    )
    await monitor_of(app).tick()
    doc = await (await client.get("/monitor/status")).json()
    quality = doc["monitors"]["data_quality"]
    assert doc["state"] == "ok", quality["violations"]
    assert quality["column_mapping"] == "by_position"
    assert "_c0 → age" in quality["column_mapping_note"]
    assert set(quality["features"]) == set(FEATURES)
    assert "matched to the baseline's 11 features by position" in render_status(doc)

    clock.set(T0 + timedelta(hours=1, minutes=40))
    write_traffic(
        capture,
        "current_covariate.csv",
        2000,
        T0 + timedelta(hours=1, minutes=2),
        endpoint="endpoint",
    )
    await monitor_of(app).tick()
    doc = await (await client.get("/monitor/status")).json()
    quality = doc["monitors"]["data_quality"]
    assert doc["state"] == "alert"
    drifted = {v["feature_name"] for v in quality["violations"]}
    assert "income" in drifted and not any(name.startswith("_c") for name in drifted)
    checks = {v["constraint_check_type"] for v in quality["violations"]}
    assert checks == {"baseline_drift_check"}


def test_baseline_warns_when_the_config_names_other_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new_user(tmp_path)
    (tmp_path / "modelmon.yaml").write_text(
        "proxy:\n  upstream: http://127.0.0.1:9\nanalyzer:\n  payload:\n"
        "    input: {format: csv, columns: [age, income, zip]}\n"
    )
    config = load_config(tmp_path / "modelmon.yaml")
    assert run_baseline(config, tmp_path / "train.csv", None, tmp_path / "b") == 0
    err = capsys.readouterr().err
    assert "warning: analyzer.payload.input.columns names zip" in err
    assert "the baseline has balance" in err and "missing columns" in err
    assert "by position" not in err


def test_baseline_warns_when_it_is_too_small_for_its_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new_user(tmp_path)
    lines = (tmp_path / "train.csv").read_text().splitlines()[:179]  # the wine table's size
    (tmp_path / "small.csv").write_text("\n".join(lines) + "\n")
    config = load_config(tmp_path / "modelmon.yaml")
    assert run_baseline(config, tmp_path / "small.csv", None, tmp_path / "b") == 0
    err = capsys.readouterr().err
    # 11 features, α = 0.01: sqrt(ln(2·11/0.01)/(2·178)) ≈ 0.147
    assert "178 rows is a small baseline for the drift threshold 0.1" in err
    assert "drift smaller than ≈0.147 cannot be told from noise" in err
    assert "margin ≈0.047" in err
