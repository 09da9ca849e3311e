"""``modelmon status``: the analyzer's ``/monitor/status`` document, readable in a terminal.

The document is fetched from the proxy (which forwards ``/monitor/*``) or from the analyzer
itself, with a bearer token from the environment when one is set. When the proxy answers its
own ``/monitor/proxy/health`` (at the URL given, else at the config's proxy address), a line
says whether the proxy reaches the model (``upstream``). Rendering is tolerant: any field may
be missing (an analyzer that has not run yet), and fields it does not know are ignored, so a
newer analyzer never breaks an older ``status``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from modelmon.cli.status_model_quality import (
    SEVERITY,
    as_dict,
    model_quality_summary,
    render_model_quality,
    violation_lines,
)
from modelmon.config import ModelmonConfig, parse_listen

__all__ = [
    "alerting_features",
    "default_url",
    "drifting_features",
    "fetch_proxy_health",
    "fetch_status",
    "render_status",
    "run_status",
    "summary_line",
]

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TOKEN_ENV = "MODELMON_TOKEN"
_COLOURS = {"alert": "31", "warning": "33", "ok": "32"}


class StatusError(Exception):
    """The status could not be fetched; the message is one line for the user."""


def default_url(config: ModelmonConfig | None) -> str:
    """The proxy's address from the config (``0.0.0.0`` becomes loopback), else the default."""
    if config is None:
        return DEFAULT_URL
    host, port = parse_listen(config.proxy.listen)
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _token(config: ModelmonConfig | None) -> str | None:
    name = (config.analyzer.auth_token_env if config else None) or DEFAULT_TOKEN_ENV
    return os.environ.get(name) or None


def fetch_status(url: str, token: str | None = None, timeout_s: float = 10.0) -> dict[str, Any]:
    """GET ``{url}/monitor/status``; raises :class:`StatusError` with a one-line reason."""
    target = url.rstrip("/") + "/monitor/status"
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        response = httpx.get(target, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise StatusError(f"cannot reach {target}: {exc or type(exc).__name__}") from exc
    if response.status_code != 200:
        hint = " (set MODELMON_TOKEN)" if response.status_code in (401, 403) else ""
        message = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
        raise StatusError(f"{target} answered {response.status_code}{hint}: {message}".rstrip(": "))
    try:
        document = response.json()
    except ValueError as exc:
        raise StatusError(f"{target} did not answer JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise StatusError(f"{target} answered {type(document).__name__}, not a status object")
    return document


def fetch_proxy_health(url: str, timeout_s: float = 3.0) -> dict[str, Any] | None:
    """The proxy's ``/monitor/proxy/health`` document, or None when ``url`` is not a proxy."""
    try:
        response = httpx.get(url.rstrip("/") + "/monitor/proxy/health", timeout=timeout_s)
        document = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None  # not a proxy (the analyzer itself, or down): status says nothing of it
    return document if isinstance(document, dict) else None


def upstream_line(health: dict[str, Any], colour: bool = False) -> str | None:
    """``upstream: URL reachable (0.4 ms connect)`` from a proxy health document."""
    upstream = as_dict(health.get("upstream"))
    if "reachable" not in upstream:
        return None
    parts = urlsplit(str(upstream.get("url") or "?"))
    shown = (
        f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}" if parts.scheme else "?"
    )
    if upstream["reachable"] is True:
        connect = upstream.get("connect_ms")
        took = f" ({connect:.1f} ms to connect)" if isinstance(connect, int | float) else ""
        return f"upstream: {shown} reachable{took}"
    down = "\x1b[31mNOT REACHABLE\x1b[0m" if colour else "NOT REACHABLE"
    return f"upstream: {shown} {down} from the proxy (requests get 502)"


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _state(value: Any, colour: bool) -> str:
    text = str(value or "unknown")
    code = _COLOURS.get(text)
    shown = text.upper() if text in ("alert", "warning") else text
    return f"\x1b[{code}m{shown}\x1b[0m" if colour and code else shown


def _age(stamp: Any) -> str:
    if not isinstance(stamp, str):
        return ""
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return ""
    if moment.tzinfo is None:
        return ""
    seconds = (datetime.now(moment.tzinfo) - moment).total_seconds()
    return f" ({seconds:.0f}s ago)"


def _feature_order(item: tuple[str, Any]) -> tuple[int, float, str]:
    name, feature = item
    feature = as_dict(feature)
    distance = feature.get("distance")
    score = float(distance) if isinstance(distance, int | float) else -1.0
    return (SEVERITY.get(str(feature.get("state")), 5), -score, name)


def drifting_features(monitor: dict[str, Any]) -> list[str]:
    """Names of the features in ``alert``, worst distance first."""
    features = sorted(as_dict(monitor.get("features")).items(), key=_feature_order)
    return [name for name, feature in features if as_dict(feature).get("state") == "alert"]


def alerting_features(document: dict[str, Any]) -> list[str]:
    """Features in ``alert`` in the data-quality monitor, then any others its violations name."""
    monitor = as_dict(as_dict(document.get("monitors")).get("data_quality"))
    names = drifting_features(monitor)
    for violation in monitor.get("violations") or []:
        name = as_dict(violation).get("feature_name")
        if isinstance(name, str) and name not in names:
            names.append(name)
    return names


def _render_monitor(name: str, monitor: dict[str, Any], colour: bool) -> list[str]:
    window = as_dict(monitor.get("window"))
    lines = [
        f"{name}: {_state(monitor.get('state'), colour)}"
        f"   window {window.get('start', '?')} → {window.get('end', '?')}"
        f"   samples {_num(monitor.get('samples'))}"
        + (f" (min {_num(monitor['min_samples'])})" if "min_samples" in monitor else "")
    ]
    baseline_error = as_dict(monitor.get("baseline")).get("error")
    if baseline_error:
        lines.append(f"  baseline: {baseline_error}")
    note = monitor.get("column_mapping_note")
    if isinstance(note, str) and note:
        lines.append(f"  columns: {note}")
    features = sorted(
        (item for item in as_dict(monitor.get("features")).items() if not _is_output(item[1])),
        key=_feature_order,
    )
    if features:
        width = max(7, *(len(name) for name, _ in features))
        lines.append(
            f"  {'feature':<{width}}  {'state':<15}  {'distance':>9}  {'threshold':>9}"
            f"  {'margin':>7}"
        )
        for feature_name, raw in features:
            feature = as_dict(raw)
            state = str(feature.get("state") or "-")
            shown = _state(state, colour) + " " * max(0, 15 - len(_state(state, False)))
            lines.append(
                f"  {feature_name:<{width}}  {shown}  {_num(feature.get('distance')):>9}"
                f"  {_num(feature.get('threshold')):>9}  {_num(feature.get('margin')):>7}"
            )
        if any(isinstance(as_dict(f).get("margin"), int | float) for _, f in features):
            lines.append(
                "  (a feature drifts when distance − margin > threshold; the margin is the "
                "noise the rule allows for)"
            )
    lines.extend(_render_predictions(as_dict(monitor.get("predictions")), colour))
    lines.extend(violation_lines(monitor.get("violations"), "feature_name"))
    return lines


def _is_output(feature: Any) -> bool:
    return as_dict(feature).get("role") == "output"


def _described(entry: dict[str, Any]) -> str:
    data = as_dict(entry.get("data"))
    parts = [f"n {_num(data.get('count'))}"] if data.get("count") else []
    if isinstance(data.get("mean"), int | float):
        parts.append(f"mean {_num(data['mean'])}")
    quantiles = as_dict(entry.get("quantiles"))
    parts += [f"{q} {_num(quantiles[q])}" for q in ("p05", "p50", "p95") if q in quantiles]
    top = as_dict(entry.get("top"))
    if top:
        parts.append("top " + ", ".join(f"{k} {float(v):.0%}" for k, v in list(top.items())[:3]))
    return ", ".join(parts)


def _render_predictions(predictions: dict[str, Any], colour: bool) -> list[str]:
    """Output columns: compared with the baseline (drift) or only described."""
    if not predictions:
        return []
    lines = ["  predictions (model outputs):"]
    width = max(10, *(len(name) for name in predictions))
    for name, raw in sorted(predictions.items()):
        entry = as_dict(raw)
        if entry.get("compared"):
            lines.append(
                f"    {name:<{width}}  compared with the baseline: "
                f"{_state(entry.get('state'), colour)} distance {_num(entry.get('distance'))}"
                f" / threshold {_num(entry.get('threshold'))} (margin {_num(entry.get('margin'))})"
            )
        else:
            lines.append(
                f"    {name:<{width}}  described only (not in the baseline): " + _described(entry)
            )
    return lines


def _render_ingest(ingest: dict[str, Any]) -> str:
    parts = [f"{_num(ingest.get('records'))} records", f"{_num(ingest.get('bad_records'))} bad"]
    parts.append(f"{_num(ingest.get('files'))} files")
    for key, value in ingest.items():
        if key in ("records", "bad_records", "files"):
            continue
        if isinstance(value, dict) and value:
            inner = ", ".join(f"{k}={_num(v)}" for k, v in value.items())
            parts.append(f"{key}: {inner}")
        elif isinstance(value, int | float | str) and not isinstance(value, bool):
            parts.append(f"{key} {_num(value)}")
    return "ingest: " + ", ".join(parts)


def _render_decode_process(process: dict[str, Any]) -> str:
    """Where the chunks were decoded (``analyzer.decode_process``)."""
    line = (
        f"decoding process: {_num(process.get('chunks'))} chunks, "
        f"{_num(process.get('here'))} on the ingest thread beside it, "
        f"{_num(process.get('fallbacks'))} fallbacks, worker deaths {_num(process.get('restarts'))}"
    )
    given_up = " (given up: every chunk on the ingest thread)" if process.get("given_up") else ""
    return line + given_up


def render_status(
    document: dict[str, Any],
    source: str = "",
    colour: bool = False,
    proxy_health: dict[str, Any] | None = None,
) -> str:
    """The status document as terminal text: state, monitors, features, ingest, freshness."""
    lines = [
        f"state: {_state(document.get('state'), colour)}" + (f"   ({source})" if source else "")
    ]
    upstream = upstream_line(proxy_health, colour) if proxy_health is not None else None
    if upstream is not None:
        lines.append(upstream)
    last_run = document.get("last_run")
    stale = document.get("stale_s")
    lines.append(
        f"last run: {last_run or 'never'}{_age(last_run)}"
        + (f"   stale_s: {_num(stale, 1)}" if stale is not None else "")
    )
    lines.append(_render_ingest(as_dict(document.get("ingest"))))
    process = as_dict(as_dict(document.get("analyzer")).get("decode_process"))
    if process:
        lines.append(_render_decode_process(process))
    alerts = as_dict(document.get("alerts"))
    if alerts.get("webhooks") or alerts.get("sent") or alerts.get("failed"):
        lines.append(
            f"alerts: {_num(alerts.get('sent'))} sent, {_num(alerts.get('failed'))} failed, "
            f"{_num(alerts.get('pending'))} pending to {_num(alerts.get('webhooks'))} webhook(s)"
            + (f"; last error: {alerts['last_error']}" if alerts.get("last_error") else "")
        )
    analyzer_error = as_dict(document.get("analyzer")).get("last_error")
    if analyzer_error:
        lines.append(f"analyzer error: {analyzer_error}")
    monitors = as_dict(document.get("monitors"))
    if not monitors:
        lines.append("no monitors reported yet")
    for name, monitor in sorted(monitors.items()):
        lines.append("")
        if name == "model_quality":
            lines.extend(render_model_quality(as_dict(monitor), lambda s: _state(s, colour)))
        else:
            lines.extend(_render_monitor(name, as_dict(monitor), colour))
    return "\n".join(lines)


def summary_line(document: dict[str, Any]) -> str:
    """One line: the overall state, samples and the drifting (or closest) features."""
    monitor = as_dict(as_dict(document.get("monitors")).get("data_quality"))
    parts = [f"state {document.get('state', 'unknown')}"]
    if "samples" in monitor:
        parts.append(f"samples {_num(monitor.get('samples'))}")
    features = sorted(as_dict(monitor.get("features")).items(), key=_feature_order)
    drifting = [item for item in features if as_dict(item[1]).get("state") == "alert"]
    shown = drifting or features[:1]
    if shown:
        label = "drifting" if drifting else "closest"
        described = ", ".join(
            f"{name} {_num(as_dict(f).get('distance'), 3)}/{_num(as_dict(f).get('threshold'), 2)}"
            for name, f in shown
        )
        parts.append(f"{label}: {described}")
    quality = model_quality_summary(as_dict(as_dict(document.get("monitors")).get("model_quality")))
    return "  ".join([*parts, quality] if quality else parts)


def run_status(url: str | None, config: ModelmonConfig | None, raw: bool) -> int:
    """Print the status from ``url`` (default: the config's proxy); 1 when it cannot be read."""
    base = (url or default_url(config)).rstrip("/")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # no per-request INFO line
    try:
        document = fetch_status(base, _token(config))
    except StatusError as exc:
        print(f"modelmon status: {exc}", file=sys.stderr)
        return 1
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    if raw:
        text = json.dumps(document, indent=2, sort_keys=True)
    else:
        health = fetch_proxy_health(base)
        proxy = default_url(config) if config is not None else None
        if health is None and proxy is not None and proxy != base:
            health = fetch_proxy_health(proxy)
        text = render_status(document, base, colour, health)
    try:
        print(text, flush=True)
    except BrokenPipeError:  # `modelmon status | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
