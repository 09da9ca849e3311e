"""Model quality end to end, with real processes: client → ``modelmon up`` → model, labels late.

A real model (an aiohttp app in this test) answers each CSV row with the reference tables'
``score`` for that row; clients send one row per request through the proxy with an
``X-Inference-Id``. Labels arrive afterwards both ways a user has: ``POST
/monitor/ground-truth`` through the proxy's ``/monitor`` route, and SageMaker ground-truth
files moved into ``analyzer.model_quality.ground_truth.dir``
(``{yyyy}/{mm}/{dd}/{hh}/*.jsonl``). Unchanged traffic (``current_nodrift.csv``) must leave
``monitors.model_quality`` ``ok``; concept drift (``current_concept.csv``: inputs unchanged,
AUC 0.73 → 0.41) must turn it to ``alert`` on the realized AUC while data quality stays
quiet, and the webhook receiver must get exactly one model-quality alert.
"""

from __future__ import annotations

import asyncio
import csv
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiohttp import web

from tests.analyzer.service_helpers import write_baseline
from tests.analyzer.test_service_model_quality import write_quality_baseline
from tests.e2e_helpers import free_port, modelmon_up, monitor, serving, status_until
from tests.shared_data import DATA, REQUEST_COLUMNS

FEATURES = REQUEST_COLUMNS
NODRIFT, CONCEPT = 400, 1000  # predictions (and labels) per phase
PARALLEL = 8  # requests in flight at once


def _table(name: str) -> list[tuple[str, str, str]]:
    """(feature row as the endpoint receives it, score, label) of a reference CSV."""
    with (DATA / name).open(newline="") as handle:
        return [
            (",".join(row[f] for f in FEATURES), row["score"], row["label"])
            for row in csv.DictReader(handle)
        ]


class Servers:
    """The model (the reference score of each CSV row it is sent) and a webhook receiver."""

    def __init__(self) -> None:
        self.scores = {
            row: score
            for name in ("current_nodrift.csv", "current_concept.csv")
            for row, score, _ in _table(name)
        }
        self.hooks: list[dict[str, Any]] = []
        self.unknown_rows = 0

    async def invocations(self, request: web.Request) -> web.Response:
        lines = (await request.text()).splitlines()
        scores = []
        for line in lines:
            if line not in self.scores:
                self.unknown_rows += 1
            scores.append(self.scores.get(line, "0.5"))
        return web.Response(text="\n".join(scores), content_type="text/csv")

    async def hook(self, request: web.Request) -> web.Response:
        self.hooks.append(await request.json())
        return web.json_response({"ok": True})


@pytest.fixture
async def servers() -> AsyncIterator[tuple[Servers, int]]:
    state = Servers()
    async with serving(state) as port:
        yield state, port


def _write_config(tmp: Path, model_port: int) -> tuple[Path, str]:
    proxy_port, analyzer_port = free_port(), free_port()
    statistics, constraints = write_baseline(tmp / "baseline")
    mq_statistics, mq_constraints = write_quality_baseline(tmp / "baseline" / "model_quality")
    config = {
        "endpoint": {"name": "e2e-mq"},
        "proxy": {
            "listen": f"127.0.0.1:{proxy_port}",
            "upstream": f"http://127.0.0.1:{model_port}",
        },
        "capture": {
            "dir": str(tmp / "capture"),
            "sampling_percentage": 100,
            "rotate_interval_s": 1,
            "flush_interval_s": 0.2,
        },
        "analyzer": {
            "listen": f"127.0.0.1:{analyzer_port}",
            "db": str(tmp / "modelmon.db"),
            "reports_dir": str(tmp / "reports"),
            "schedule_interval_s": 1,
            "bucket_s": 5,
            "window_s": 30,
            "min_samples": 300,
            "false_alarm_rate": 0.001,  # per window, and this test judges one every second
            "baseline": {"statistics": str(statistics), "constraints": str(constraints)},
            "payload": {
                "input": {"format": "csv", "columns": FEATURES},
                "output": {"format": "csv", "columns": ["score"]},
            },
            "alerts": {"webhooks": [{"url": f"http://127.0.0.1:{model_port}/hook"}]},
            "model_quality": {
                "problem_type": "BinaryClassification",
                "probability_attribute": "0",
                "ground_truth_attribute": "0",
                "window_s": 60,  # the smallest allowed: both phases fit in it
                "min_labels": 200,
                "label_delay_s": 600,
                "baseline": {
                    "statistics": str(mq_statistics),
                    "constraints": str(mq_constraints),
                },
                "ground_truth": {"dir": str(tmp / "ground-truth")},
            },
        },
    }
    path = tmp / "modelmon.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, f"http://127.0.0.1:{proxy_port}"


def _label_record(inference_id: str, label: str) -> bytes:
    """One line of SageMaker's ground-truth format."""
    return orjson.dumps(
        {
            "groundTruthData": {"data": label, "encoding": "CSV"},
            "eventMetadata": {"eventId": inference_id},
            "eventVersion": "0",
        }
    )


def _drop_label_file(folder: Path, name: str, records: list[bytes]) -> None:
    """A ground-truth file written beside the folder and moved in whole (as a user should)."""
    hour = folder / datetime.now(UTC).strftime("%Y/%m/%d/%H")
    hour.mkdir(parents=True, exist_ok=True)
    staged = folder.parent / f"{name}.partial"
    staged.write_bytes(b"".join(line + b"\n" for line in records))
    os.replace(staged, hour / f"{name}.jsonl")


async def _predict(
    session: aiohttp.ClientSession, url: str, rows: list[tuple[str, str, str]], prefix: str
) -> None:
    """One row per request (a ground-truth record labels one inference), PARALLEL at once."""

    async def one(i: int) -> None:
        async with session.post(
            f"{url}/invocations",
            data=rows[i][0],
            headers={"Content-Type": "text/csv", "X-Inference-Id": f"{prefix}{i}"},
        ) as response:
            assert response.status == 200
            assert (await response.text()) == rows[i][1]

    for first in range(0, len(rows), PARALLEL):
        await asyncio.gather(*(one(i) for i in range(first, min(first + PARALLEL, len(rows)))))


async def _label(
    session: aiohttp.ClientSession,
    url: str,
    folder: Path,
    rows: list[tuple[str, str, str]],
    prefix: str,
) -> None:
    """The first half of the labels by POST through the proxy, the second half by a file."""
    records = [_label_record(f"{prefix}{i}", label) for i, (_, _, label) in enumerate(rows)]
    half = len(records) // 2
    async with session.post(
        f"{url}/monitor/ground-truth", data=b"\n".join(records[:half]) + b"\n"
    ) as response:
        assert response.status == 200, await response.text()
    _drop_label_file(folder, f"labels-{prefix}", records[half:])


def _mq(status: dict[str, Any]) -> dict[str, Any]:
    return monitor(status, "model_quality")


def _dq(status: dict[str, Any]) -> dict[str, Any]:
    return monitor(status, "data_quality")


async def test_concept_drift_through_up_alerts_model_quality_once(
    tmp_path: Path, servers: tuple[Servers, int]
) -> None:
    state, model_port = servers
    config, url = _write_config(tmp_path, model_port)
    folder = tmp_path / "ground-truth"
    async with modelmon_up(config, tmp_path / "up.log") as proc, aiohttp.ClientSession() as session:
        await status_until(session, url, lambda s: "state" in s, proc, 30)
        normal = _table("current_nodrift.csv")[:NODRIFT]
        await _predict(session, url, normal, "n")
        await _label(session, url, folder, normal, "n")
        ok = await status_until(
            session,
            url,
            lambda s: _mq(s).get("labels", {}).get("matched", 0) >= NODRIFT,
            proc,
            30,
        )
        quality = _mq(ok)
        assert quality["labels"]["matched"] == NODRIFT and quality["samples"] == NODRIFT
        assert quality["labels"]["unmatched"] == 0
        assert quality["state"] == "ok", quality
        assert quality["metrics"]["auc"]["value"] > 0.65
        assert quality["estimate"]["trusted"] is True
        assert _dq(ok)["state"] != "alert"
        assert not state.hooks

        concept = _table("current_concept.csv")[:CONCEPT]
        await _predict(session, url, concept, "c")
        await _label(session, url, folder, concept, "c")
        alert = await status_until(
            session,
            url,
            lambda s: _mq(s).get("labels", {}).get("matched", 0) >= NODRIFT + CONCEPT,
            proc,
            30,
        )
        quality = _mq(alert)
        assert quality["labels"]["matched"] == NODRIFT + CONCEPT
        assert quality["samples"] == NODRIFT + CONCEPT  # both phases in the 60 s window
        assert quality["state"] == "alert", quality
        assert quality["metrics"]["auc"]["state"] == "alert"
        assert quality["metrics"]["auc"]["value"] < 0.55
        assert "auc" in {v["metric_name"] for v in quality["violations"]}
        # inputs unchanged: data quality is quiet, and the estimate (from the inputs'
        # scores alone) is contradicted by the realized AUC
        assert _dq(alert)["state"] != "alert", _dq(alert)
        assert _dq(alert)["samples"] > 0
        assert quality["estimated"]["auc"]["agrees_with_realized"] is False
        assert alert["state"] == "alert"

        hooks = await status_until(
            session,
            url,
            lambda s: any(h.get("monitor") == "model_quality" for h in state.hooks),
            proc,
            20,
        )
        # Two more runs in alert must not send the alert again.
        seen: str = hooks["last_run"]
        for _ in range(2):

            def newer(s: dict[str, Any], seen: str = seen) -> bool:
                return s.get("last_run") != seen

            later = await status_until(session, url, newer, proc, 20)
            assert _mq(later)["state"] == "alert" and _dq(later)["state"] != "alert"
            seen = later["last_run"]
        alerts = [h for h in state.hooks if h.get("state") == "alert"]
        assert len(alerts) == 1, state.hooks
        assert alerts[0]["monitor"] == "model_quality"
        assert alerts[0]["previous_state"] in ("ok", "warning")
        assert "auc" in {v["metric_name"] for v in alerts[0]["violations"]}
        assert state.unknown_rows == 0
