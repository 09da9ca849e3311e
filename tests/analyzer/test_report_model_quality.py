"""The model-quality part of ``GET /monitor/report`` on a real app (real SQLite, injected
clock, the join filled by its own functions): metrics over time with the estimate's band and
gaps, the confusion matrix, the label counts, the estimate's trust note, the violations;
hostile class labels escaped; the report's parts found by monitor name; the model-quality
runs in ``/monitor/runs``."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient

from analyzer.monitors.model_quality.documents import suggest_constraints
from analyzer.monitors.model_quality.evaluate import evaluate_window
from analyzer.monitors.model_quality.monitor import OTHER, ModelQuality, ModelQualityWindow
from analyzer.monitors.registry import GAUGES
from analyzer.service.app import create_app, monitor_of
from analyzer.store.model_quality_history import read_model_quality_history
from analyzer.web.report_html import PARTS, render_report
from analyzer.web.report_model_quality import MAX_CLASSES, model_quality_part
from analyzer.web.svg_charts import fmt
from modelmon.capture_record import CaptureSide, build_record
from tests.analyzer.service_helpers import FEATURES, T0, Clock, make_config, write_capture_file
from tests.analyzer.test_openapi import _validator
from tests.analyzer.test_service_model_quality import _capture, _config, _post_labels

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
HOSTILE = '<script>alert("x")</script>'
HOUR = 3600.0


class Page(HTMLParser):
    """Tags with attributes, text, and the text of each table cell by table."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def card(html: str, card_id: str) -> str:
    """The HTML of one ``<section class="card" id=…>``."""
    start = html.index(f'id="{card_id}"')
    return html[start : html.index("</section>", start)]


async def report(client: TestClient[Any, Any]) -> str:
    response = await client.get("/monitor/report")
    assert response.status == 200 and response.content_type == "text/html"
    return await response.text()


async def drifting_history(client: TestClient[Any, Any], config: Any, clock: Clock) -> list[Any]:
    """Five ticks through the real ingest and ``POST /monitor/ground-truth``: an hour of
    unchanged traffic (estimate first, then labels), then an hour of concept drift (estimate
    only, then labels, ticked twice). Returns each tick's model-quality section."""
    monitor = monitor_of(client.app)
    start = T0.timestamp()
    sections = []

    async def tick() -> None:
        sections.append((await monitor.tick())["monitors"]["model_quality"])

    _capture(config, "current_nodrift.csv", start, 1000, "n")
    clock.now = start + 600
    await tick()  # labels not yet in: an estimate and no realized value
    await _post_labels(client, "current_nodrift.csv", 1000, "n")
    clock.now += 60
    await tick()
    _capture(config, "current_concept.csv", start + HOUR, 1000, "c")
    clock.now = start + HOUR + 1200
    await tick()  # the window holds only the drifted predictions, unlabelled
    await _post_labels(client, "current_concept.csv", 1000, "c")
    for _ in range(2):
        clock.now += 60
        await tick()
    return sections


async def served(aiohttp_client: Client, config: Any, clock: Clock) -> TestClient[Any, Any]:
    app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
    return await aiohttp_client(app)


async def test_the_report_shows_each_metric_over_time_with_band_gaps_and_matrix(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    clock, config = Clock(T0), _config(tmp_path)
    client = await served(aiohttp_client, config, clock)
    sections = await drifting_history(client, config, clock)
    assert [s["metrics"].get("auc", {}).get("state") for s in sections] == [
        None,
        "ok",
        None,
        "alert",
        "alert",
    ]
    html = await report(client)
    page = parse(html)
    text = " ".join(page.text)
    now = sections[-1]

    assert "Model quality" in text and "BinaryClassification" in text
    assert re.search(r"<h2 id='model-quality'>Model quality <span[^>]*>alert</span>", html)
    # the current values: realized ± sd, threshold, the estimate with its band
    auc = now["metrics"]["auc"]
    assert f"{fmt(auc['value'])} ± {fmt(auc['standard_deviation'])}" in text
    assert f"≥ {fmt(auc['threshold'])}" in text
    estimated = now["estimated"]["auc"]
    assert f"{fmt(estimated['value'])} [{fmt(estimated['low'])}, {fmt(estimated['high'])}]" in text
    # the auc chart: band and estimate over all five runs, threshold, realized with gaps
    chart = card(html, f"mq-metric-{_metric_index(html, 'auc')}")
    assert chart.count('class="band"') == 1  # one unbroken band: every run has an estimate
    assert chart.count('class="estimate"') == 1 and chart.count('class="threshold"') == 1
    assert chart.count("<circle") == 3  # three runs with a realized value
    assert chart.count('class="realized"') == 1  # ok | gap | alert, alert: one line of two
    assert chart.count('class="alert-start"') == 1
    assert "time (UTC)" in chart
    # every constrained metric has its card, the alerting ones first
    constrained = [n for n, m in now["metrics"].items() if m["threshold"] is not None]
    titles = re.findall(r'id="mq-metric-\d+"><header><h3>([^<]*)</h3>', html)
    assert sorted(titles) == sorted(constrained)
    assert now["metrics"][titles[0]]["state"] == "alert"
    # the label counts and the estimate's trust note
    assert re.search(r"<td>matched</td><td class='num'>2,000</td>", html)
    assert "Label-free estimate not trusted" in text and "concept drift" in text
    # the confusion matrix: counts and shares of the current window
    matrix = now["confusion_matrix"]
    total = sum(sum(row.values()) for row in matrix.values())
    assert total == 1000
    for actual, row in matrix.items():
        for predicted, n in row.items():
            assert n > 0  # so each cell shows its share
            assert f"{n:,.0f}<br><small>{n / total:.1%}</small>" in html, (actual, predicted)
    # the violations, by metric, in SageMaker's words
    for violation in now["violations"]:
        assert violation["description"] in text
    assert "http" not in html.lower() and "<script" not in html.lower()


def _metric_index(html: str, name: str) -> int:
    found = re.search(rf'id="mq-metric-(\d+)"><header><h3>{name}</h3>', html)
    assert found is not None
    return int(found.group(1))


async def test_the_history_is_read_from_the_model_quality_runs(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    clock, config = Clock(T0), _config(tmp_path)
    client = await served(aiohttp_client, config, clock)
    monitor = monitor_of(client.app)
    sections = await drifting_history(client, config, clock)
    history = monitor.store.read(read_model_quality_history)
    assert [run["run_id"] for run in history] == [s["run_id"] for s in sections]
    assert [run["state"] for run in history] == [s["state"] for s in sections]
    assert history[-1]["metrics"]["auc"]["value"] == sections[-1]["metrics"]["auc"]["value"]
    assert history[0]["estimated"]["auc"]["low"] == sections[0]["estimated"]["auc"]["low"]
    assert history[0]["metrics"] == {}  # no labels yet
    thinned = monitor.store.read(lambda conn: read_model_quality_history(conn, max_points=2))
    assert [run["run_id"] for run in thinned] == [history[i]["run_id"] for i in (0, 3, 4)]


def _csv_field(value: str) -> str:
    """One CSV field, quoted as CSV quotes it (a class label with quotes in it)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([value])
    return out.getvalue()


def _multiclass_config(tmp_path: Path, classes: list[str]) -> Any:
    rng = np.random.default_rng(3)
    truth = [classes[i] for i in rng.integers(0, len(classes), 2000)]
    guess = [t if rng.random() < 0.8 else classes[0] for t in truth]
    kind = "MulticlassClassification"
    result = evaluate_window(
        kind, truth, guess, None, {}, None, false_alarm_rate=0.01, min_labels=1
    )
    folder = tmp_path / "mq"
    folder.mkdir()
    (folder / "statistics.json").write_bytes(orjson.dumps(result.statistics()))
    constraints = suggest_constraints(kind, result.statistics())
    (folder / "constraints.json").write_bytes(orjson.dumps(constraints))
    section = {
        "problem_type": kind,
        "inference_attribute": "0",
        "min_labels": 50,
        "baseline": {
            "statistics": str(folder / "statistics.json"),
            "constraints": str(folder / "constraints.json"),
        },
    }
    return make_config(tmp_path, None, model_quality=section)


async def test_hostile_class_labels_are_escaped_and_many_classes_folded(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    classes = [HOSTILE, "a&b", '"quoted"', *(f"c{i:02d}" for i in range(MAX_CLASSES))]
    clock = Clock(T0)
    config = _multiclass_config(tmp_path, classes)
    app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
    client = await aiohttp_client(app)
    monitor = monitor_of(app)
    moment = T0
    lines = [
        build_record(
            event_id=f"m{i}",
            inference_time=moment + timedelta(seconds=i),
            request=CaptureSide("text/csv", ",".join(["1"] * len(FEATURES)), "CSV"),
            response=CaptureSide("text/csv", _csv_field(classes[i % len(classes)]), "CSV"),
        )
        for i in range(600)
    ]
    write_capture_file(config.capture.dir, lines, moment)
    truth = b"".join(
        orjson.dumps(
            {
                "groundTruthData": {"data": classes[(i * 7) % len(classes)], "encoding": "CSV"},
                "eventMetadata": {"eventId": f"m{i}"},
                "eventVersion": "0",
            }
        )
        + b"\n"
        for i in range(600)
    )
    assert (await client.post("/monitor/ground-truth", data=truth)).status == 200
    clock.now = T0.timestamp() + 700
    doc = await monitor.tick()
    assert HOSTILE in doc["monitors"]["model_quality"]["confusion_matrix"]

    html = await report(client)
    page = parse(html)
    assert "<script" not in html.lower() and page.tags.count(("script", {})) == 0
    assert HOSTILE in page.text and "a&b" in page.text and '"quoted"' in page.text
    assert OTHER in page.text and "3 more classes summed in (other)" in " ".join(page.text)
    header = html[html.index("actual \\ predicted") : html.index("</tr>", html.index("actual"))]
    assert header.count("<th>") == MAX_CLASSES + 1  # the shown classes and "(other)"
    assert "no label-free estimate for multiclass models yet" in " ".join(page.text)


def test_hostile_metric_names_and_missing_pieces_render() -> None:
    section = {
        "state": "warning",
        "metrics": {HOSTILE: {"value": 0.5, "threshold": 0.6, "state": "warning"}},
        "estimated": {HOSTILE: {"value": 0.55, "low": 0.5, "high": 0.6}},
        "estimate": {"trusted": True, "note": None},
        "labels": {"matched": 10, HOSTILE: 1},
        "confusion_matrix": {"0": {"1": "not a number"}},
    }
    history: list[dict[str, Any]] = [
        {"run_id": 1, "time": "not a time", "state": "warning", "metrics": section["metrics"]},
        {"run_id": 2, "time": None, "metrics": {HOSTILE: {"value": None}}, "estimated": []},
    ]
    html = model_quality_part(section, history)
    page = parse(html)
    assert "<script" not in html and HOSTILE in page.text
    assert html.count("<svg") == 1 and "Label-free estimate trusted" in " ".join(page.text)
    # an empty section, and none of the runs: still a page that says so
    empty = model_quality_part({}, [])
    assert "No metric with a threshold or an estimate yet." in empty


def test_each_monitor_type_renders_its_own_part_by_name() -> None:
    assert list(PARTS) == ["model_quality", "data_quality"]
    assert set(PARTS) == set(GAUGES)  # every monitor type the service knows draws its part
    status = {
        "state": "ok",
        "monitors": {
            "data_quality": {"state": "ok", "features": {"x": {"state": "ok"}}},
            "model_quality": {"state": "no_data", "metrics": {}},
            "bias": {"state": "ok", "violations": []},  # a type this build has no part for
        },
    }
    html = render_report(status, [], {}, {"model_quality": []})
    assert "<h2 id='model-quality'>" in html and "<h2>Features (1)</h2>" in html
    assert html.index("id='model-quality'") < html.index("Features (1)")
    assert "<td>bias</td>" in html  # listed among the monitors, without a part
    only_data = render_report({"state": "ok", "monitors": {}}, [], {})
    assert "model-quality" not in only_data and "No feature has been profiled yet." in only_data


async def test_no_model_quality_section_when_it_is_not_configured(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    app = create_app(make_config(tmp_path, None), clock=Clock(T0), run_loop=False)
    client = await aiohttp_client(app)
    await monitor_of(app).tick()
    html = await report(client)
    assert "Model quality" not in html and "Features" in html


def test_a_day_of_runs_keeps_the_page_small() -> None:
    """300 runs (what the store keeps at most), 11 metrics half of the day in alert: the
    thresholds collapse to one segment each and dense dots carry short tooltips."""
    names = ["auc", "f1", "f0_5", "f2", "precision", "recall", "accuracy", "tpr", "tnr", "a", "b"]
    rng = np.random.default_rng(1)
    history: list[dict[str, Any]] = []
    for i in range(301):
        state = "alert" if i > 150 else "ok"
        history.append(
            {
                "run_id": i,
                "time": f"2026-11-27T{i // 60:02d}:{i % 60:02d}:00Z",
                "state": state,
                "metrics": {
                    n: {"value": rng.random(), "threshold": 0.5, "state": state} for n in names
                },
                "estimated": {n: {"value": rng.random(), "low": 0.1, "high": 0.9} for n in names},
            }
        )
    section = {"state": "alert", **{k: history[-1][k] for k in ("metrics", "estimated")}}
    html = model_quality_part(section, history)
    assert html.count("<svg") == len(names) and html.count('class="threshold"') == len(names)
    assert html.count("<circle") == len(names) * 150  # the alert runs' dots (ok ones dropped)
    assert len(html) < 350_000


async def test_model_quality_runs_are_listed_detailed_and_true_to_the_schema(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    clock, config = Clock(T0), _config(tmp_path)
    client = await served(aiohttp_client, config, clock)
    sections = await drifting_history(client, config, clock)
    document = await (await client.get("/monitor/openapi.json")).json()
    listed = await (await client.get("/monitor/runs?kind=model_quality")).json()
    assert [run["id"] for run in listed["runs"]] == [s["run_id"] for s in reversed(sections)]
    for run in listed["runs"]:
        _validator(document, "RunSummary").validate(run)
        detail = await (await client.get(f"/monitor/runs/{run['id']}")).json()
        _validator(document, "Run").validate(detail)
    last = sections[-1]
    detail = await (await client.get(f"/monitor/runs/{last['run_id']}")).json()
    assert detail["kind"] == "model_quality" and detail["features"] == {}
    assert detail["model_quality"]["metrics"] == last["metrics"]
    assert detail["model_quality"]["estimated"] == last["estimated"]
    assert detail["reports"]["constraint_violations.json"]["violations"] == last["violations"]
    auc, estimated = last["metrics"]["auc"], last["estimated"]["auc"]
    assert detail["metrics"]["auc"] == auc["value"]
    assert detail["metrics"]["auc_threshold"] == auc["threshold"]
    assert detail["metrics"]["auc_estimated_low"] == estimated["low"]
    assert detail["violations"] == len(last["violations"])
    everything = (await (await client.get("/monitor/runs")).json())["runs"]
    assert {"window", "model_quality"} <= {run["kind"] for run in everything}
    for run in everything:
        _validator(document, "RunSummary").validate(run)


def test_a_matrix_the_status_folded_is_folded_into_the_same_rest() -> None:
    """80 classes: the status sums 31 of them under "(other)"; the page shows its 12 and one
    rest, "(other)", counting the 68 others of the window's 80 (the review found a second
    rest, "(other)*", and a count from the folded 50)."""
    names = [f"c{i:02d}" for i in range(80)]
    labels = [name for i, name in enumerate(names) for _ in range(80 - i)]
    monitor = ModelQuality("MulticlassClassification", None, None, {}, min_labels=1,
                           false_alarm_rate=0.01)  # fmt: skip
    window = ModelQualityWindow(labels, list(labels), np.zeros(len(labels)))
    section = monitor.evaluate(window, start=0.0, end=60.0).section
    assert section["confusion_matrix_other"] == OTHER
    html = model_quality_part(section, [])
    header = html[html.index("actual \\ predicted") : html.index("</tr>", html.index("actual"))]
    assert header.count("<th>") == MAX_CLASSES + 1  # the shown classes and one rest
    assert "(other)*" not in html
    assert "68 more classes summed in (other)" in html
