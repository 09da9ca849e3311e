"""The self-contained HTML report served at ``GET /monitor/report``.

One page, inline CSS and inline SVG only (no script, font or image is fetched, so it opens
offline and can be mailed as a file): the overall state, each monitor's state, the
violations, then each configured monitor type's own part, found by the monitor's name in
:data:`PARTS` (data quality: per feature its drift over time and its distribution against
the baseline; model quality: its metrics over time, realized and estimated, and the
confusion matrix). Pure: no I/O. Every string from the data is escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import Any

from analyzer.monitors.data_quality.monitor import DataQuality
from analyzer.monitors.model_quality.monitor import ModelQuality
from analyzer.web.report_common import (
    alert_since,
    badge,
    count,
    mapping,
    text,
    utc,
)
from analyzer.web.report_data_quality import STATE_ORDER, data_quality_part
from analyzer.web.report_model_quality import model_quality_part

__all__ = ["PARTS", "ReportPart", "render_report"]

# A monitor type's part of the page: (its status section, its runs oldest first, the
# data-quality distributions) -> HTML.
ReportPart = Callable[[Mapping[str, Any], Sequence[Mapping[str, Any]], Mapping[str, Any]], str]
# In page order: the compact model-quality part before the long grid of feature cards.
PARTS: dict[str, ReportPart] = {
    ModelQuality.name: model_quality_part,
    DataQuality.name: data_quality_part,
}

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
.note.warn { color: #8a4b00; background: #fff4e0; border-radius: 6px; padding: 6px 10px; }
table.compact th, table.compact td { padding: 4px 8px; }
td.diag { background: #eef6ee; }
"""


def _monitors(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    monitors = status.get("monitors")
    if not isinstance(monitors, Mapping):
        return {}
    return {str(k): v for k, v in monitors.items() if isinstance(v, Mapping)}


def _window(doc: Mapping[str, Any]) -> str:
    window = doc.get("window")
    if not isinstance(window, Mapping):
        return ""
    return f"{text(window.get('start'))} → {text(window.get('end'))}"


def _header(status: Mapping[str, Any]) -> str:
    endpoint = status.get("endpoint")
    name = f" — {text(endpoint)}" if isinstance(endpoint, str) else ""
    ingest = mapping(status.get("ingest"))
    facts = [
        f"last run {text(status.get('last_run') or 'never')}",
        f"stale {text(status.get('stale_s'))} s" if status.get("stale_s") is not None else "",
        f"{count(ingest.get('records', 0))} records ingested",
        f"{count(ingest.get('bad_records', 0))} bad",
        f"{count(ingest.get('files', 0))} files",
    ]
    alerts = status.get("alerts")
    if isinstance(alerts, Mapping):
        facts.append(
            f"webhooks: {count(alerts.get('sent', 0))} sent, "
            f"{count(alerts.get('failed', 0))} failed"
        )
    return (
        f"<h1>modelmon report{name} {badge(status.get('state'), big=True)}</h1>"
        f'<p class="meta">{" · ".join(f for f in facts if f)}</p>'
    )


def _checks(doc: Mapping[str, Any]) -> str:
    """How many features (data quality) or metrics (model quality) are in each state."""
    items = mapping(doc.get("features")) or mapping(doc.get("metrics"))
    states = [mapping(e).get("state") for e in items.values()]
    return ", ".join(
        f"{states.count(s)} {escape(s.replace('_', ' '))}" for s in STATE_ORDER if s in states
    )


def _monitor_table(
    monitors: Mapping[str, Mapping[str, Any]],
    histories: Mapping[str, Sequence[Mapping[str, Any]]],
) -> str:
    if not monitors:
        return '<h2>Monitors</h2><p class="empty">No monitor has run yet.</p>'
    rows = []
    for name, doc in monitors.items():
        violations = doc.get("violations") or []
        history = histories.get(name, ())
        since = alert_since(history) if doc.get("state") == "alert" else None
        began = f"<br><small>since {utc(since)}</small>" if since else ""
        rows.append(
            f"<tr><td>{text(name)}</td><td class='nowrap'>{badge(doc.get('state'))}{began}</td>"
            f"<td class='nowrap'>{_window(doc)}</td><td class='num'>{count(doc.get('samples'))}"
            f"</td><td class='num'>{len(violations)}</td><td>{_checks(doc)}</td></tr>"
        )
    return (
        "<h2>Monitors</h2><div class='scroll'><table><tr><th>monitor</th><th>state</th>"
        "<th>window (UTC)</th><th>samples</th><th>violations</th>"
        "<th>features / metrics</th></tr>" + "".join(rows) + "</table></div>"
    )


def _violations_table(monitors: Mapping[str, Mapping[str, Any]]) -> str:
    rows = [
        f"<tr><td>{text(name)}</td><td>{text(v.get('feature_name', v.get('metric_name')))}</td>"
        f"<td>{text(v.get('constraint_check_type'))}</td><td>{text(v.get('description'))}</td></tr>"
        for name, doc in monitors.items()
        for v in doc.get("violations") or []
        if isinstance(v, Mapping)
    ]
    if not rows:
        return '<h2>Violations</h2><p class="empty">No violations.</p>'
    return (
        f"<h2>Violations ({len(rows)})</h2><div class='scroll'><table><tr><th>monitor</th>"
        "<th>feature / metric</th><th>check</th><th>description</th></tr>"
        + "".join(rows)
        + "</table></div>"
    )


def render_report(
    status: dict[str, Any],
    history: list[dict[str, Any]],
    distributions: dict[str, dict[str, Any]],
    histories: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> str:
    """The whole report page as one HTML string (see the module docstring).

    ``history`` is the data-quality runs (oldest first); ``histories`` the runs of other
    monitor types by name (``model_quality``: :mod:`analyzer.store.model_quality_history`).
    """
    monitors = _monitors(status)
    runs: dict[str, Sequence[Mapping[str, Any]]] = {DataQuality.name: history, **(histories or {})}
    # data quality is always on: its part says "nothing profiled yet" before the first run
    sections = {DataQuality.name: {}, **monitors}
    parts = "".join(
        part(sections[name], runs.get(name, ()), distributions)
        for name, part in PARTS.items()
        if name in sections
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>modelmon report: {text(status.get('state'))}</title><style>{_CSS}</style>"
        f"</head><body><main>{_header(status)}{_monitor_table(monitors, runs)}"
        f"{_violations_table(monitors)}{parts}</main></body></html>"
    )
