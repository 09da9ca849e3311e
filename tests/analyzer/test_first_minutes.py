"""A new user's first minutes, through the real service: a config with only
``proxy.upstream``, a baseline from a headered training CSV, headerless captured traffic."""

from __future__ import annotations

import asyncio
import csv
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient

from analyzer.service.app import create_app, monitor_of
from modelmon.cli.baseline import run_baseline
from modelmon.cli.status import render_status
from modelmon.config import ModelmonConfig, load_config
from tests.analyzer.service_helpers import (
    DATA,
    FEATURES,
    T0,
    Clock,
    make_config,
    write_baseline,
    write_traffic,
)

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
TRAIN_ROWS = 5000


def new_user(tmp_path: Path, with_prediction: bool = False) -> ModelmonConfig:
    """``modelmon.yaml`` with only the upstream, and ``train.csv`` with a header (the
    features, and with ``with_prediction`` the model's score as ``prediction``)."""
    (tmp_path / "modelmon.yaml").write_text("proxy:\n  upstream: http://127.0.0.1:9\n")
    with open(DATA / "baseline.csv", newline="") as source:
        rows = list(csv.DictReader(source))[:TRAIN_ROWS]
    extra = ["prediction"] if with_prediction else []
    with open(tmp_path / "train.csv", "w", newline="") as target:
        writer = csv.writer(target)
        writer.writerow(FEATURES + extra)
        writer.writerows([row[f] for f in FEATURES] + [row["score"]][: len(extra)] for row in rows)
    return load_config(tmp_path / "modelmon.yaml")


async def test_headered_baseline_and_headerless_traffic_are_matched_by_position(
    aiohttp_client: Client,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = new_user(tmp_path)
    assert config.analyzer.payload.input.columns == []
    assert run_baseline(config, tmp_path / "train.csv", None, None) == 0
    err = capsys.readouterr().err
    assert "matched to the baseline's 11 features by position" in err
    assert "small baseline" not in err  # 5,000 rows are enough for 0.1

    caplog.set_level(logging.INFO, logger="modelmon.analyzer")
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
    shown = render_status(doc)
    assert "matched to the baseline's 11 features by position" in shown
    # The model's output is described from the start, though the baseline does not have it.
    prediction = quality["predictions"]["prediction"]
    assert prediction["compared"] is False and prediction["role"] == "output"
    assert prediction["data"]["count"] == 1500 and prediction["type"] == "Fractional"
    assert 0 < prediction["quantiles"]["p05"] < prediction["quantiles"]["p95"] < 1
    assert "prediction" not in quality["features"]
    assert "described only (not in the baseline): n 1500, mean 0." in shown
    report = await (await client.get("/monitor/report")).text()
    assert "<h2>Predictions (1)</h2>" in report and "described only: prediction" in report

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
    said = [r for r in caplog.records if "by position" in r.getMessage()]
    assert len(said) == 1  # once in the log, not at every tick


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


async def test_a_baseline_written_while_the_service_runs_is_used_without_a_restart(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    folder = tmp_path / "bl"
    config = make_config(tmp_path, (folder / "statistics.json", folder / "constraints.json"))
    clock = Clock(T0 + timedelta(minutes=30))
    app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
    client = await aiohttp_client(app)
    write_traffic(config.capture.dir, "current_nodrift.csv", 1500, T0 + timedelta(minutes=5))
    monitor = monitor_of(app)

    await monitor.tick()
    quality = (await (await client.get("/monitor/status")).json())["monitors"]["data_quality"]
    assert quality["state"] == "no_baseline"
    error = quality["baseline"]["error"]
    assert str(folder / "statistics.json") in error and "picks the files up" in error

    write_baseline(folder)
    await monitor.tick()
    quality = (await (await client.get("/monitor/status")).json())["monitors"]["data_quality"]
    assert quality["state"] == "ok", quality["violations"]
    assert quality["baseline"]["error"] is None and quality["baseline"]["reload_error"] is None
    assert quality["baseline"]["loaded_at"] == "2026-11-27T07:30:00Z"
    assert monitor.baseline_files.reloads == 1

    # A half-written statistics file: the baseline in use stays, the error is reported.
    good = (folder / "statistics.json").read_bytes()
    (folder / "statistics.json").write_bytes(good[: len(good) // 2])
    clock.set(T0 + timedelta(minutes=31))
    await monitor.tick()
    quality = (await (await client.get("/monitor/status")).json())["monitors"]["data_quality"]
    assert quality["state"] == "ok" and set(quality["features"]) >= set(FEATURES)
    assert "cannot use" in quality["baseline"]["reload_error"]
    assert quality["baseline"]["loaded_at"] == "2026-11-27T07:30:00Z"

    # Constraints that do not parse: kept as well; then a whole file is picked up again.
    (folder / "statistics.json").write_bytes(good)
    (folder / "constraints.json").write_text('{"features": 3}')
    await monitor.tick()
    quality = (await (await client.get("/monitor/status")).json())["monitors"]["data_quality"]
    assert quality["state"] == "ok" and "constraints.json" in quality["baseline"]["reload_error"]
    write_baseline(folder)
    clock.set(T0 + timedelta(minutes=32))
    await monitor.tick()
    quality = (await (await client.get("/monitor/status")).json())["monitors"]["data_quality"]
    assert quality["baseline"]["reload_error"] is None
    assert quality["baseline"]["loaded_at"] == "2026-11-27T07:32:00Z"
    assert monitor.baseline_files.reloads == 2


async def _read_until(stream: asyncio.StreamReader, needle: str, seen: list[str]) -> None:
    while True:
        line = (await stream.readline()).decode()
        assert line, "the analyzer exited:\n" + "".join(seen)
        seen.append(line)
        if needle in line:
            return


async def test_sighup_re_reads_the_baseline(tmp_path: Path) -> None:
    folder = tmp_path / "bl"
    config_path = tmp_path / "modelmon.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "proxy": {"upstream": "http://127.0.0.1:9"},
                "analyzer": {
                    "listen": "127.0.0.1:0",
                    "db": "m.db",
                    "schedule_interval_s": 3600,
                    "baseline": {
                        "statistics": str(folder / "statistics.json"),
                        "constraints": str(folder / "constraints.json"),
                    },
                },
            }
        )
    )
    command = [sys.executable, "-m", "modelmon", "analyzer", "--config", str(config_path)]
    proc = await asyncio.create_subprocess_exec(*command, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    seen: list[str] = []
    try:
        await asyncio.wait_for(_read_until(proc.stderr, "on SIGHUP", seen), 30)
        write_baseline(folder)
        proc.send_signal(signal.SIGHUP)
        await asyncio.wait_for(_read_until(proc.stderr, "SIGHUP: re-reading", seen), 30)
        await asyncio.wait_for(_read_until(proc.stderr, "loaded from", seen), 30)
        assert proc.returncode is None  # SIGHUP did not stop it
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, "".join(seen)


async def test_predictions_are_compared_when_the_baseline_has_them(
    aiohttp_client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = new_user(tmp_path, with_prediction=True)
    assert run_baseline(config, tmp_path / "train.csv", None, None) == 0
    assert "baseline's 11 features by position" in capsys.readouterr().err
    clock = Clock(T0 + timedelta(minutes=30))
    app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
    client = await aiohttp_client(app)
    write_traffic(
        config.capture.dir,
        "current_nodrift.csv",
        1500,
        T0 + timedelta(minutes=5),
        endpoint="endpoint",
    )
    await monitor_of(app).tick()
    doc = await (await client.get("/monitor/status")).json()
    quality = doc["monitors"]["data_quality"]
    assert doc["state"] == "ok", quality["violations"]
    prediction = quality["predictions"]["prediction"]
    assert prediction["compared"] is True and prediction["state"] == "ok"
    assert 0 <= prediction["distance"] < prediction["threshold"] == 0.1
    assert quality["features"]["prediction"]["role"] == "output"
    assert quality["features"]["prediction"]["data"]["count"] == 1500
    assert set(quality["features"]) == {*FEATURES, "prediction"}
    assert "prediction  compared with the baseline: ok distance" in render_status(doc)
