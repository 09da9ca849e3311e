"""``modelmon status`` (a real subprocess) against a real analyzer with model quality on: the
state, window, labels, each constrained metric (value ± sd against its threshold, state), the
estimate with its band and whether it is trusted, the violations."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from modelmon.cli.status import render_status, summary_line
from tests.analyzer.service_helpers import T0, Clock
from tests.analyzer.test_report_model_quality import drifting_history, served
from tests.analyzer.test_service_model_quality import _config
from tests.modelmon.test_status_cli import _status

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


def _row(out: str, metric: str) -> str:
    found = re.search(rf"^  {metric} +.*$", out, re.MULTILINE)
    assert found is not None, out
    return found.group(0)


async def test_status_prints_the_model_quality_section(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    clock, config = Clock(T0), _config(tmp_path)
    client = await served(aiohttp_client, config, clock)
    sections = await drifting_history(client, config, clock)
    section = sections[-1]
    url = str(client.server.make_url("")).rstrip("/")

    code, out, err = await _status("--url", url)
    assert code == 0, err
    window = section["window"]
    assert (
        f"model_quality: ALERT   window {window['start']} → {window['end']}   "
        "labelled pairs 1000 (min 100)   BinaryClassification" in out
    )
    labels = section["labels"]
    assert labels["matched"] == 2000
    assert "  labels: 2000 matched, 0 unmatched, 0 pending, 0 awaiting, 0 unlabeled" in out
    auc, estimated = section["metrics"]["auc"], section["estimated"]["auc"]
    assert _row(out, "auc").split() == [
        "auc",
        "ALERT",
        f"{auc['value']:.4f}",
        "±",
        f"{auc['standard_deviation']:.4f}",
        ">=",
        f"{auc['threshold']:.4f}",
        f"{estimated['value']:.4f}",
        f"[{estimated['low']:.4f},",
        f"{estimated['high']:.4f}]",
        "contradicted",
    ]
    fpr = section["metrics"]["false_positive_rate"]
    assert f"<= {fpr['threshold']:.4f}" in _row(out, "false_positive_rate")
    # every constrained metric has its row, the alerting ones first
    rows = re.findall(r"^  (\w+) +(ALERT|WARNING|ok|not_enough_data) ", out, re.MULTILINE)
    constrained = {n for n, m in section["metrics"].items() if m["threshold"] is not None}
    assert {name for name, _ in rows} == constrained
    assert [state for _, state in rows] == sorted(
        (state for _, state in rows), key=lambda s: s != "ALERT"
    )
    assert "  estimate: NOT TRUSTED: the realized metric is outside the estimate's band" in out
    assert f"  violations ({len(section['violations'])}):" in out
    auc_violation = next(v for v in section["violations"] if v["metric_name"] == "auc")
    assert f"    auc: LessThanThreshold: {auc_violation['description']}" in out

    document = await (await client.get("/monitor/status")).json()
    assert f"model quality alert: {rows[0][0]} " in summary_line(document)


def test_before_labels_the_estimate_is_shown_as_trusted_and_partial_sections_render() -> None:
    section = {
        "state": "no_data",
        "labels": {"awaiting": 5, "newer_kind": 2},
        "metrics": {},
        "estimated": {"auc": {"value": 0.73, "low": 0.7, "high": 0.76}},
        "estimate": {"trusted": True, "note": None},
    }
    out = render_status({"state": "no_data", "monitors": {"model_quality": section}})
    assert "model_quality: no_data   window ? → ?   labelled pairs - (min -)" in out
    assert "labels: 5 awaiting, 2 newer_kind" in out  # a key this build does not know, too
    assert _row(out, "auc").split() == ["auc", "-", "-", "-", "0.7300", "[0.7000,", "0.7600]"]
    assert "estimate: trusted" in out
    regression = {"state": "ok", "estimated": {}, "estimate": {"trusted": False, "note": "no"}}
    out = render_status({"monitors": {"model_quality": regression}})
    assert "estimate: none (no)" in out
    assert "model_quality: unknown" in render_status({"monitors": {"model_quality": []}})


def test_a_deferred_evaluation_is_said_with_when_it_comes() -> None:
    section = {
        "state": "ok",
        "window": {"start": "a", "end": "b"},
        "deferred": {"reason": "its last evaluation took 9.0 s", "next_in_s": 26.6},
    }
    out = render_status({"state": "ok", "monitors": {"model_quality": section}})
    assert (
        "  metrics of the window above, not yet of the changed one: its last evaluation took"
        " 9.0 s (again in 27 s)"
    ) in out
    assert "not yet of the changed one" not in render_status(
        {"monitors": {"model_quality": {**section, "deferred": None}}}
    )
