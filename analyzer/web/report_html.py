"""The self-contained HTML report served at ``GET /monitor/report``.

One page, inline CSS and inline SVG only (no script, font or image is fetched, so it opens
offline and can be mailed as a file): the overall state, each monitor's state, the
violations, and per feature its drift distance over time against the threshold and its
distribution against the baseline. Pure: no I/O. Every string from the data is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from analyzer.web.svg_charts import (
    STATE_COLORS,
    Point,
    fmt,
    grouped_bars,
    histogram_overlay,
    line_chart,
    worst_state,
)

__all__ = ["render_report"]

_STATE_ORDER = ("alert", "warning", "not_enough_data", "no_baseline", "no_data", "ok")
_CORE_KEYS = {"state", "distance", "threshold"}
_COUNT_KEYS = {"n_baseline", "n_current", "samples", "count"}

_CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2329;
  background: #f5f6f8; margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 20px 24px 40px; }
h1 { font-size: 22px; margin: 0 0 4px; display: flex; align-items: center; gap: 12px; }
h2 { font-size: 17px; margin: 28px 0 10px; }
h3 { font-size: 15px; margin: 0; overflow-wrap: normal; word-break: normal; }
.meta { color: #5b6570; margin: 0; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 999px; color: #fff;
  font-size: 12px; font-weight: 600; letter-spacing: .02em; white-space: nowrap; }
.badge.big { font-size: 15px; padding: 4px 14px; }
.scroll { overflow-x: auto; border-radius: 8px; box-shadow: 0 1px 2px rgba(0,0,0,.06); }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid #eceef1;
  vertical-align: top; overflow-wrap: normal; word-break: normal; hyphens: manual; }
td.nowrap, th { white-space: nowrap; }
th { background: #fafbfc; font-weight: 600; color: #46505a; font-size: 13px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
nav { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 8px; }
nav a { text-decoration: none; color: #1d2329; background: #fff; border: 1px solid #dde1e6;
  border-radius: 6px; padding: 2px 8px; font-size: 13px; display: inline-flex; gap: 6px;
  align-items: center; }
.dot { width: 9px; height: 9px; border-radius: 50%; display: inline-block; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 16px; }
.card { background: #fff; border-radius: 8px; padding: 14px 16px;
  box-shadow: 0 1px 2px rgba(0,0,0,.06); min-width: 0; }
.card header { display: flex; justify-content: space-between; align-items: center; gap: 8px; }
.card .meta { font-size: 13px; margin: 4px 0 8px; }
.chart-title { font-size: 12px; color: #5b6570; margin: 10px 0 2px; font-weight: 600; }
.empty { color: #8a8f98; font-style: italic; }
.note { color: #46505a; font-size: 13px; margin: 4px 0 8px; }
"""


def _color(state: str | None) -> str:
    return STATE_COLORS.get(state or "", "#8a8f98")


def _badge(state: Any, big: bool = False) -> str:
    text = str(state) if state is not None else "unknown"
    cls = "badge big" if big else "badge"
    return (
        f'<span class="{cls}" style="background:{_color(text)}">'
        f"{escape(text.replace('_', ' '))}</span>"
    )


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _t(value: Any) -> str:
    return escape("" if value is None else str(value))


def _count(value: Any) -> str:
    """A count as people write it: ``60,000`` (never ``6e+04``)."""
    number = _num(value)
    if number is None:
        return _t(value)
    return f"{number:,.0f}" if number == int(number) else escape(fmt(number))


def _utc(stamp: Any) -> str:
    """``2026-11-27T07:26:00Z`` → ``2026-11-27 07:26 UTC``."""
    x = _x(stamp, 0)
    if stamp is None or x is None:
        return _t(stamp)
    return datetime.fromtimestamp(x, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _alert_since(history: Sequence[Mapping[str, Any]]) -> str | None:
    """When the current run of ``alert`` states began (None when the last run is not alert)."""
    since = None
    for run in history:
        if run.get("state") == "alert":
            since = since or run.get("time")
        else:
            since = None
    return str(since) if since is not None else None


def _monitors(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    monitors = status.get("monitors")
    if not isinstance(monitors, Mapping):
        return {}
    return {str(k): v for k, v in monitors.items() if isinstance(v, Mapping)}


def _window(doc: Mapping[str, Any]) -> str:
    window = doc.get("window")
    if not isinstance(window, Mapping):
        return ""
    return f"{_t(window.get('start'))} → {_t(window.get('end'))}"


def _header(status: Mapping[str, Any]) -> str:
    endpoint = status.get("endpoint")
    name = f" — {_t(endpoint)}" if isinstance(endpoint, str) else ""
    ingest = _map(status.get("ingest"))
    facts = [
        f"last run {_t(status.get('last_run') or 'never')}",
        f"stale {_t(status.get('stale_s'))} s" if status.get("stale_s") is not None else "",
        f"{_count(ingest.get('records', 0))} records ingested",
        f"{_count(ingest.get('bad_records', 0))} bad",
        f"{_count(ingest.get('files', 0))} files",
    ]
    alerts = status.get("alerts")
    if isinstance(alerts, Mapping):
        facts.append(
            f"webhooks: {_count(alerts.get('sent', 0))} sent, "
            f"{_count(alerts.get('failed', 0))} failed"
        )
    return (
        f"<h1>modelmon report{name} {_badge(status.get('state'), big=True)}</h1>"
        f'<p class="meta">{" · ".join(f for f in facts if f)}</p>'
    )


def _monitor_table(
    monitors: Mapping[str, Mapping[str, Any]], history: Sequence[Mapping[str, Any]] = ()
) -> str:
    if not monitors:
        return '<h2>Monitors</h2><p class="empty">No monitor has run yet.</p>'
    rows = []
    for name, doc in monitors.items():
        features = _map(doc.get("features"))
        states = [f.get("state") for f in features.values() if isinstance(f, Mapping)]
        counts = ", ".join(
            f"{states.count(s)} {escape(s.replace('_', ' '))}" for s in _STATE_ORDER if s in states
        )
        violations = doc.get("violations") or []
        since = _alert_since(history) if doc.get("state") == "alert" else None
        began = f"<br><small>since {_utc(since)}</small>" if since else ""
        rows.append(
            f"<tr><td>{_t(name)}</td><td class='nowrap'>{_badge(doc.get('state'))}{began}</td>"
            f"<td class='nowrap'>{_window(doc)}</td><td class='num'>{_count(doc.get('samples'))}"
            f"</td><td class='num'>{len(violations)}</td><td>{counts}</td></tr>"
        )
    return (
        "<h2>Monitors</h2><div class='scroll'><table><tr><th>monitor</th><th>state</th>"
        "<th>window (UTC)</th><th>samples</th><th>violations</th><th>features</th></tr>"
        + "".join(rows)
        + "</table></div>"
    )


def _violations_table(monitors: Mapping[str, Mapping[str, Any]]) -> str:
    rows = [
        f"<tr><td>{_t(name)}</td><td>{_t(v.get('feature_name'))}</td>"
        f"<td>{_t(v.get('constraint_check_type'))}</td><td>{_t(v.get('description'))}</td></tr>"
        for name, doc in monitors.items()
        for v in doc.get("violations") or []
        if isinstance(v, Mapping)
    ]
    if not rows:
        return '<h2>Violations</h2><p class="empty">No violations.</p>'
    return (
        f"<h2>Violations ({len(rows)})</h2><div class='scroll'><table><tr><th>monitor</th>"
        "<th>feature</th><th>check</th><th>description</th></tr>" + "".join(rows) + "</table></div>"
    )


def _current_features(monitors: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Per feature name, its entry in the worst monitor that has it."""
    found: dict[str, Mapping[str, Any]] = {}
    for doc in monitors.values():
        features = doc.get("features")
        for name, entry in features.items() if isinstance(features, Mapping) else []:
            if not isinstance(entry, Mapping):
                continue
            old = found.get(str(name))
            if old is None or worst_state([old.get("state"), entry.get("state")]) != old.get(
                "state"
            ):
                found[str(name)] = entry
    return found


def _x(time_value: Any, index: int) -> float | None:
    try:
        return datetime.fromisoformat(str(time_value)).timestamp()
    except ValueError:
        return None if time_value is not None else float(index)


def _drift_chart(name: str, history: Sequence[Mapping[str, Any]]) -> str:
    runs = [
        (run, run["features"][name])
        for run in history
        if isinstance(run.get("features"), Mapping)
        and isinstance(run["features"].get(name), Mapping)
    ]
    if not runs:
        return '<p class="empty">No runs with this feature yet.</p>'
    xs = [_x(run.get("time"), i) for i, (run, _) in enumerate(runs)]
    use_index = any(x is None for x in xs)
    points = [
        Point(
            x=float(i) if use_index else (xs[i] or 0.0),
            distance=_num(entry.get("distance")),
            threshold=_num(entry.get("threshold")),
            state=str(entry.get("state")) if entry.get("state") is not None else None,
            label=str(run.get("time") or run.get("run_id") or i),
        )
        for i, (run, entry) in enumerate(runs)
    ]
    first, last = str(runs[0][0].get("time") or ""), str(runs[-1][0].get("time") or "")
    if use_index:
        return line_chart(
            points, title=f"drift distance of {name} over time", x_labels=(first[:16], last[:16])
        )
    return line_chart(
        points,
        title=f"drift distance of {name} over time",
        x_ticks=_time_ticks(points[0].x, points[-1].x),
        x_title="time (UTC)",
    )


def _time_ticks(lo: float, hi: float, n: int = 4) -> list[tuple[float, str]]:
    """``n`` labels from ``lo`` to ``hi`` (epoch seconds): the date on the first (and on any
    tick of another day), else ``HH:MM`` in UTC."""
    if hi <= lo:
        return [(lo, datetime.fromtimestamp(lo, UTC).strftime("%Y-%m-%d %H:%M"))]
    ticks: list[tuple[float, str]] = []
    day = ""
    for i in range(n):
        x = lo + (hi - lo) * i / (n - 1)
        moment = datetime.fromtimestamp(x, UTC)
        label = moment.strftime("%H:%M")
        if moment.strftime("%Y-%m-%d") != day:
            day = moment.strftime("%Y-%m-%d")
            label = moment.strftime("%Y-%m-%d %H:%M" if i == 0 else "%m-%d %H:%M")
        ticks.append((x, label))
    return ticks


def _distribution_chart(name: str, dist: Any) -> str:
    if not isinstance(dist, Mapping):
        return '<p class="empty">No distribution yet.</p>'
    title = f"distribution of {name} against the baseline"
    if dist.get("type") == "categorical":
        base, cur = dist.get("baseline"), dist.get("current")
        return grouped_bars(
            {
                str(k): _num(v) or 0.0
                for k, v in (base.items() if isinstance(base, Mapping) else [])
            },
            {str(k): _num(v) or 0.0 for k, v in (cur.items() if isinstance(cur, Mapping) else [])},
            title=title,
        )
    return histogram_overlay(
        [_num(e) or 0.0 for e in dist.get("edges") or []],
        [_num(c) or 0.0 for c in dist.get("baseline") or []],
        [_num(c) or 0.0 for c in dist.get("current") or []],
        title=title,
    )


def _feature_card(
    index: int,
    name: str,
    entry: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    dist: Any,
) -> str:
    others = ", ".join(
        f"{escape(str(k))} {_count(v) if k in _COUNT_KEYS else fmt(_num(v))}"
        for k, v in sorted(entry.items())
        if k not in _CORE_KEYS and _num(v) is not None
    )
    distance, threshold = _num(entry.get("distance")), _num(entry.get("threshold"))
    meta = f"distance {fmt(distance)} · threshold {fmt(threshold)}"
    if others:
        meta += f" · {others}"
    return (
        f'<section class="card" id="feature-{index}"><header><h3>{_t(name)}</h3>'
        f"{_badge(entry.get('state'))}</header><p class='meta'>{meta}</p>"
        f'<div class="chart-title">Drift distance over time (dashed: threshold)</div>'
        f"{_drift_chart(name, history)}"
        f'<div class="chart-title">Distribution: baseline vs current window</div>'
        f"{_distribution_chart(name, dist)}</section>"
    )


def _prediction_card(
    index: int,
    name: str,
    entry: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    dist: Any,
) -> str:
    """An output column: compared with the baseline (drift over time too) or described only."""
    data = _map(entry.get("data"))
    facts = [f"rows {_count(data.get('count'))}"] if data.get("count") is not None else []
    if _num(data.get("mean")) is not None:
        facts.append(f"mean {fmt(_num(data.get('mean')))}")
    quantiles = _map(entry.get("quantiles"))
    facts += [f"{q} {fmt(_num(quantiles[q]))}" for q in ("p05", "p50", "p95") if q in quantiles]
    if entry.get("compared"):
        how = (
            f"compared with the baseline: distance {fmt(_num(entry.get('distance')))} · "
            f"threshold {fmt(_num(entry.get('threshold')))}"
        )
        badge = _badge(entry.get("state"))
        drift = (
            '<div class="chart-title">Drift distance over time (dashed: threshold)</div>'
            + _drift_chart(name, history)
        )
        title = "Distribution: baseline vs current window"
    else:
        how = _t(entry.get("note") or "described only: the baseline has no such column")
        badge = '<span class="badge" style="background:#5b6570">described</span>'
        drift, title = "", "Distribution in the current window"
    return (
        f'<section class="card" id="prediction-{index}"><header><h3>{_t(name)}</h3>{badge}'
        f"</header><p class='note'>{how}</p><p class='meta'>{' · '.join(facts)}</p>{drift}"
        f'<div class="chart-title">{title}</div>{_distribution_chart(name, dist)}</section>'
    )


def _predictions(
    monitors: Mapping[str, Mapping[str, Any]],
    history: Sequence[Mapping[str, Any]],
    distributions: Mapping[str, Any],
) -> str:
    found: dict[str, Mapping[str, Any]] = {}
    for doc in monitors.values():
        for name, entry in _map(doc.get("predictions")).items():
            if isinstance(entry, Mapping):
                found.setdefault(str(name), entry)
    if not found:
        return ""
    compared = [n for n, e in found.items() if e.get("compared")]
    described = [n for n in found if n not in compared]
    summary = []
    if compared:
        summary.append("compared with the baseline: " + ", ".join(_t(n) for n in compared))
    if described:
        summary.append("described only: " + ", ".join(_t(n) for n in described))
    cards = "".join(
        _prediction_card(i, n, found[n], history, distributions.get(n))
        for i, n in enumerate(sorted(found))
    )
    return (
        f"<h2>Predictions ({len(found)})</h2><p class='note'>{'; '.join(summary)}</p>"
        f"<div class='grid'>{cards}</div>"
    )


def render_report(
    status: dict[str, Any], history: list[dict[str, Any]], distributions: dict[str, dict[str, Any]]
) -> str:
    """The whole report page as one HTML string (see the module docstring)."""
    monitors = _monitors(status)
    outputs = {
        str(n) for doc in monitors.values() for n in _map(doc.get("predictions")) if n is not None
    }
    current = {n: e for n, e in _current_features(monitors).items() if n not in outputs}
    names = set(current) | set(distributions)
    for run in history:
        if isinstance(run.get("features"), Mapping):
            names.update(str(n) for n in run["features"])
    names -= outputs
    rank = {s: i for i, s in enumerate(_STATE_ORDER)}
    ordered = sorted(
        names, key=lambda n: (rank.get(str(current.get(n, {}).get("state")), len(rank)), n)
    )
    nav = "".join(
        f'<a href="#feature-{i}"><span class="dot" style="background:'
        f'{_color(current.get(n, {}).get("state"))}"></span>{_t(n)}</a>'
        for i, n in enumerate(ordered)
    )
    cards = "".join(
        _feature_card(i, n, current.get(n, {}), history, distributions.get(n))
        for i, n in enumerate(ordered)
    )
    features = (
        f"<h2>Features ({len(ordered)})</h2><nav>{nav}</nav><div class='grid' "
        f"style='margin-top:12px'>{cards}</div>"
        if ordered
        else '<h2>Features</h2><p class="empty">No feature has been profiled yet.</p>'
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>modelmon report: {_t(status.get('state'))}</title><style>{_CSS}</style>"
        f"</head><body><main>{_header(status)}{_monitor_table(monitors, history)}"
        f"{_violations_table(monitors)}{_predictions(monitors, history, distributions)}"
        f"{features}</main></body></html>"
    )
