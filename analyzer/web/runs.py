"""``GET /monitor/runs``, ``/monitor/runs/{id}`` and the HTML ``/monitor/report``.

Runs are of three kinds: ``window`` (every tick, the rolling window) and ``hourly`` (a closed
hour, with SageMaker's three report files stored alongside) for data quality, and
``model_quality`` (every tick, when it is configured: its metrics, estimate and violations).
A window run's statistics are recomputed from the stored buckets of its window when asked
for.

All three reveal the data's values (a run's ``statistics.json`` holds category values and
their counts), so with a token they need it: the bearer header or a browser's session cookie
(:func:`analyzer.web.auth.need_reader`). A run id is ``[0-9]{1,18}`` in ASCII digits;
anything else is a 400, and a longer number a 404 (no run has it).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import web

from analyzer.decoding.inference_time import parse_inference_time
from analyzer.monitors.data_quality.statistics_format import statistics_json
from analyzer.monitors.registry import section_gauges
from analyzer.store.buckets import merge_buckets
from analyzer.store.hourly import read_report
from analyzer.store.model_quality_history import KIND as MODEL_QUALITY
from analyzer.store.model_quality_history import read_model_quality_history
from analyzer.store.queries import read_history, read_run, read_runs, read_snapshot
from analyzer.web.auth import need_reader
from analyzer.web.prom import metric_name
from analyzer.web.report_data import distributions
from analyzer.web.routes import STATE_KEY, ApiError, json_error, json_ok
from analyzer.web.status_doc import full_status

__all__ = ["get_run", "list_runs", "report", "setup_run_routes"]

MAX_LIMIT = 1000
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
MAX_ID_DIGITS = 18  # below 2**63, SQLite's largest integer


def _int_param(
    request: web.Request, name: str, default: int | None, lo: int, hi: int
) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    value = int(raw) if _DIGITS.fullmatch(raw) and len(raw) <= MAX_ID_DIGITS else lo - 1
    if not lo <= value <= hi:
        raise ApiError(400, f"{name} must be an integer from {lo} to {hi}")
    return value


async def list_runs(request: web.Request) -> web.Response:
    """Newest first; ``?kind=window|hourly``, ``?limit=`` (≤1000), ``?before=<id>`` to page."""
    need_reader(request)
    kind = request.query.get("kind")
    if kind not in (None, "window", "hourly", MODEL_QUALITY):
        return json_error(400, f"kind must be window or hourly (data quality) or {MODEL_QUALITY}")
    limit = _int_param(request, "limit", 100, 1, MAX_LIMIT)
    before = _int_param(request, "before", None, 1, 2**62)
    runs = await request.app[STATE_KEY].monitor.store.aread(
        lambda conn: read_runs(conn, kind, before, limit)
    )
    next_before = runs[-1]["id"] if limit is not None and len(runs) == limit else None
    return json_ok({"runs": runs, "next_before": next_before})


def _metrics(features: dict[str, Any]) -> dict[str, float]:
    """The run's values under SageMaker's CloudWatch metric names."""
    out: dict[str, float] = {}
    for name, info in features.items():
        if info.get("distance") is not None:
            out[metric_name("feature_baseline_drift_", name)] = info["distance"]
        if info.get("non_null") is not None:
            out[metric_name("feature_non_null_", name)] = info["non_null"]
        for stat, value in (info.get("data") or {}).items():
            if value is not None:
                out[metric_name("feature_data_", name) + f"_{stat}"] = value
    return out


def _quality_metrics(detail: dict[str, Any]) -> dict[str, float]:
    """A model-quality run's values under the names of its gauges (``auc``,
    ``auc_standard_deviation``, ``auc_threshold``, ``auc_estimated_low`` …)."""
    return {
        "_".join([gauge.name, *(value for _, value in gauge.labels)]): gauge.value
        for gauge in section_gauges(MODEL_QUALITY, detail)
    }


async def get_run(request: web.Request) -> web.Response:
    """One run: its verdict, its three reports and its metrics."""
    need_reader(request)
    raw = request.match_info["id"]
    if not _DIGITS.fullmatch(raw):
        return json_error(
            400, "a run id is a whole number in digits 0-9; list them at /monitor/runs"
        )
    if len(raw) > MAX_ID_DIGITS:
        return json_error(404, f"no run {raw}; list them at /monitor/runs")
    run_id = int(raw)
    monitor = request.app[STATE_KEY].monitor
    found = await monitor.store.aread(lambda conn: read_run(conn, run_id))
    if found is None:
        return json_error(404, f"no run {run_id}; list them at /monitor/runs")
    run = dict(found.summary)
    features = found.features
    reports = {name: read_report(body) for name, body in found.reports}
    if run["kind"] == MODEL_QUALITY:
        detail = {key: features.get(key) or {} for key in ("metrics", "estimated")}
        run.update(
            features={},
            model_quality=detail,
            reports={"constraint_violations.json": {"violations": found.violations}},
            metrics=_quality_metrics(detail),
        )
        return json_ok(run)
    if run["kind"] == "window":
        start = parse_inference_time(run["window"]["start"]).timestamp()
        end = parse_inference_time(run["window"]["end"]).timestamp()
        profile = await monitor.store.aread(
            lambda c: merge_buckets(c, start, end + 1, None, monitor.limit)
        )
        if profile is not None:
            reports["statistics.json"] = await asyncio.to_thread(statistics_json, profile)
        if monitor.baseline.constraints_doc is not None:
            reports["constraints.json"] = monitor.baseline.constraints_doc
        reports["constraint_violations.json"] = {"violations": found.violations}
    run.update(features=features, reports=reports, metrics=_metrics(features))
    return json_ok(run)


async def report(request: web.Request) -> web.StreamResponse:
    """A self-contained HTML page (no network needed to view it)."""
    need_reader(request)
    from analyzer.web.report_html import render_report

    state = request.app[STATE_KEY]
    monitor = state.monitor
    doc, counters = await monitor.store.aread(read_snapshot)
    stats = state.alerts_stats() if state.alerts_stats is not None else None
    status = full_status(monitor, doc, counters, stats)
    history = await monitor.store.aread(read_history)
    histories = {}
    if monitor.model_quality is not None:
        span_s = monitor.config.analyzer.retention_days * 86400  # runs keep its numbers so long
        histories[MODEL_QUALITY] = await monitor.store.aread(
            lambda conn: read_model_quality_history(conn, span_s=span_s)
        )
    now = monitor.clock()
    profile = await asyncio.to_thread(monitor.window_profile, now)
    dists = await asyncio.to_thread(distributions, monitor.baseline.statistics, profile)
    html = await asyncio.to_thread(render_report, status, history, dists, histories)
    return web.Response(text=html, content_type="text/html", charset="utf-8")


def setup_run_routes(app: web.Application) -> None:
    """Mount the runs and the report page."""
    app.router.add_get("/monitor/runs", list_runs)
    app.router.add_get("/monitor/runs/{id}", get_run)
    app.router.add_get("/monitor/report", report)
