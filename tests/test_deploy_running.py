"""The deployment artefacts against real processes: the Kubernetes sidecar's two modelmon
containers are started with their own commands and the ConfigMap's config (only addresses and
folders moved onto this machine), their probes must answer 200, and every metric named by a
PromQL expression of deploy/grafana/modelmon-dashboard.json must be exported by them after
traffic (the analyzer's /monitor/metrics and the proxy's /monitor/proxy/metrics)."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import promql_parser
import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from analyzer.monitors.data_quality.profile import profile_rows
from analyzer.monitors.data_quality.statistics_format import statistics_json, suggest_constraints
from tests.shared_data import DATA
from tests.test_deploy_manifest import config_path, config_text, containers

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "modelmon-dashboard.json"
# Grafana replaces these before the query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$job": "modelmon"}
_LABEL_VALUES = re.compile(r"^label_values\((.+),\s*\w+\)$")
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum")}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and the variables' queries."""
    board = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            inner = _LABEL_VALUES.match(variable["query"]["query"])
            assert inner, variable["query"]
            queries.append(inner.group(1))
    for name, value in GRAFANA_VARIABLES.items():
        queries = [q.replace(name, value) for q in queries]
    return queries


def selectors(node: Any) -> Iterator[Any]:
    """The vector selectors of a parsed PromQL expression."""
    if isinstance(node, promql_parser.VectorSelector):
        yield node
    elif isinstance(node, promql_parser.MatrixSelector):
        yield node.vector_selector
    elif isinstance(node, promql_parser.BinaryExpr):
        yield from selectors(node.lhs)
        yield from selectors(node.rhs)
    elif isinstance(node, promql_parser.Call):
        for arg in node.args:
            yield from selectors(arg)
    elif isinstance(
        node,
        promql_parser.AggregateExpr
        | promql_parser.ParenExpr
        | promql_parser.UnaryExpr
        | promql_parser.SubqueryExpr,
    ):
        yield from selectors(node.expr)


def missing_metrics(queries: list[str], exported: set[str]) -> list[str]:
    """What the queries name that ``exported`` lacks (a name, or a ``__name__`` regex that
    matches nothing); a selector without any metric name is reported too."""
    missing = []
    for query in queries:
        for selector in selectors(promql_parser.parse(query)):
            if selector.name:
                if selector.name not in exported:
                    missing.append(selector.name)
                continue
            names = [m for m in selector.matchers.matchers if m.name == "__name__"]
            if not names:
                missing.append(f"(no metric name in {query})")
            for matcher in names:
                if matcher.op == promql_parser.MatchOp.Re:
                    pattern = re.compile(matcher.value)
                    if not any(pattern.fullmatch(name) for name in exported):
                        missing.append(f"~{matcher.value}")
                elif matcher.value not in exported:
                    missing.append(matcher.value)
    return missing


def exported_names(text: str) -> set[str]:
    """Sample names of a Prometheus exposition, with those a family of no samples yet would
    have (a labelled counter before its first increment)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(sample.name for sample in family.samples)
        suffixes = _SUFFIXES.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
    return names


def test_the_checker_finds_what_is_not_exported() -> None:
    exported = {"modelmon_proxy_requests_total", "feature_baseline_drift_age"}
    fine = [
        "sum by (status) (rate(modelmon_proxy_requests_total[1m]))",
        '{__name__=~"feature_baseline_drift_.+", job="x"}',
    ]
    assert missing_metrics(fine, exported) == []
    wrong = [
        "rate(modelmon_proxy_requests[1m])",
        'time() - {__name__=~"feature_non_null_.+"}',
        'up{job="x"} + on() {job="y"}',
    ]
    assert missing_metrics(wrong, exported) == [
        "modelmon_proxy_requests",
        "~feature_non_null_.+",
        "up",
        '(no metric name in up{job="x"} + on() {job="y"})',
    ]


def test_dashboard_has_queries_for_each_part() -> None:
    queries = " ".join(dashboard_queries())
    for part in (
        "modelmon_monitor_state",
        "feature_baseline_drift_",
        "modelmon_ingest_records_total",
        "modelmon_ingest_bad_by_reason_total",
        "modelmon_capture_dropped_total",
        "modelmon_proxy_requests_total",
        "modelmon_proxy_upstream_latency_seconds_bucket",
    ):
        assert part in queries, part


def _write_baseline(folder: Path, columns: list[str]) -> None:
    with (DATA / "baseline.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    profile = profile_rows({c: [row[c] for row in rows] for c in columns})
    folder.mkdir(parents=True)
    (folder / "statistics.json").write_bytes(orjson.dumps(statistics_json(profile)))
    (folder / "constraints.json").write_bytes(orjson.dumps(suggest_constraints(profile)))


def _local_config(tmp: Path, model_url: str) -> tuple[dict[str, Any], int, int]:
    """The ConfigMap's config with its addresses on 127.0.0.1 and its folders under ``tmp``;
    faster clocks so that a run with drift distances happens within seconds."""
    config = yaml.safe_load(config_text())
    proxy_port, analyzer_port = _free_port(), _free_port()
    config["proxy"].update(
        listen=f"127.0.0.1:{proxy_port}",
        upstream=model_url,
        analyzer_url=f"http://127.0.0.1:{analyzer_port}",
    )
    config["capture"].update(dir=str(tmp / "capture"), sampling_percentage=100, rotate_interval_s=1)
    config["capture"]["flush_interval_s"] = 0.2
    analyzer = config["analyzer"]
    analyzer.update(
        listen=f"127.0.0.1:{analyzer_port}",
        db=str(tmp / "modelmon.db"),
        reports_dir=str(tmp / "reports"),
        schedule_interval_s=1,
        bucket_s=5,
        window_s=60,
        min_samples=50,
        baseline={
            "statistics": str(tmp / "baseline" / "statistics.json"),
            "constraints": str(tmp / "baseline" / "constraints.json"),
        },
    )
    _write_baseline(tmp / "baseline", analyzer["payload"]["input"]["columns"])
    return config, proxy_port, analyzer_port


@pytest.fixture
async def model() -> AsyncIterator[str]:
    """A model server: one score per CSV line."""

    async def invocations(request: web.Request) -> web.Response:
        lines = (await request.text()).splitlines()
        return web.Response(text="\n".join("0.25" for _ in lines), content_type="text/csv")

    app = web.Application()
    app.router.add_post("/invocations", invocations)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def _pause(seconds: float) -> None:
    """A bounded wait on an event nobody sets: the pacing between polls of live processes."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.Event().wait(), seconds)


async def _get_until_ok(
    session: aiohttp.ClientSession,
    url: str,
    procs: list[asyncio.subprocess.Process],
    within_s: float,
    want: str = "",
) -> str:
    """GET ``url`` until it answers 200 (and contains ``want``); the body."""
    deadline = asyncio.get_running_loop().time() + within_s
    last = ""
    while asyncio.get_running_loop().time() < deadline:
        assert all(proc.returncode is None for proc in procs), "a modelmon process exited"
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(url) as response:
                last = f"{response.status} {await response.text()}"
                if response.status == 200 and want in last:
                    return last
        await _pause(0.2)
    raise AssertionError(f"{url} never answered 200 with {want!r}; last: {last[:300]}")


async def test_sidecar_containers_answer_their_probes_and_export_the_dashboard_metrics(
    tmp_path: Path, model: str
) -> None:
    config, proxy_port, analyzer_port = _local_config(tmp_path, model)
    config_file = tmp_path / "modelmon.yaml"
    config_file.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k != "MODELMON_TOKEN"}
    pods = containers()
    ports = {"modelmon-proxy": proxy_port, "modelmon-analyzer": analyzer_port}
    procs: list[asyncio.subprocess.Process] = []
    logs = contextlib.ExitStack()
    for name in ports:
        args = [str(config_file) if a == config_path(pods[name]) else a for a in pods[name]["args"]]
        log = logs.enter_context((tmp_path / f"{name}.log").open("wb"))
        procs.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "modelmon",
                *args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        )
    try:
        async with aiohttp.ClientSession() as session:
            for name, port in ports.items():
                for kind in ("readinessProbe", "livenessProbe"):
                    if kind in pods[name]:
                        # the probe's port is the listen port (test_deploy_manifest.py), moved here
                        probe = pods[name][kind]["httpGet"]
                        url = f"http://127.0.0.1:{port}{probe['path']}"
                        await _get_until_ok(session, url, procs, 30)
            proxy = f"http://127.0.0.1:{proxy_port}"
            columns = config["analyzer"]["payload"]["input"]["columns"]
            with (DATA / "current_nodrift.csv").open(newline="") as handle:
                rows = [",".join(r[c] for c in columns) for r in csv.DictReader(handle)][:400]
            for start in range(0, len(rows), 10):
                body = "\n".join(rows[start : start + 10])
                headers = {"Content-Type": "text/csv"}
                async with session.post(f"{proxy}/invocations", data=body, headers=headers) as r:
                    assert r.status == 200
            analyzer_text = await _get_until_ok(
                session,
                f"http://127.0.0.1:{analyzer_port}/monitor/metrics",
                procs,
                45,
                want="feature_baseline_drift_",
            )
            proxy_text = await _get_until_ok(session, f"{proxy}/monitor/proxy/metrics", procs, 5)
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            await asyncio.wait_for(proc.wait(), 30)
        logs.close()
    exported = exported_names(analyzer_text.split(" ", 1)[1]) | exported_names(
        proxy_text.split(" ", 1)[1]
    )
    assert missing_metrics(dashboard_queries(), exported) == []
    assert all(proc.returncode == 0 for proc in procs), [p.returncode for p in procs]
