"""The data-quality monitor's part of the HTML report: its predictions and feature cards.

Per feature (worst first): its drift distance over time against the threshold and its
distribution against the baseline; per output column: compared with the baseline or only
described. Pure; every string from the data is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from analyzer.web.report_common import badge, color, count, mapping, num, text, time_ticks, x_of
from analyzer.web.svg_charts import Point, fmt, grouped_bars, histogram_overlay, line_chart

__all__ = ["STATE_ORDER", "data_quality_part"]

STATE_ORDER = ("alert", "warning", "not_enough_data", "no_baseline", "no_data", "ok")
_CORE_KEYS = {"state", "distance", "threshold"}
_COUNT_KEYS = {"n_baseline", "n_current", "samples", "count"}


def _features(section: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    features = mapping(section.get("features"))
    return {str(n): e for n, e in features.items() if isinstance(e, Mapping)}


def _drift_chart(name: str, history: Sequence[Mapping[str, Any]]) -> str:
    runs = [
        (run, run["features"][name])
        for run in history
        if isinstance(run.get("features"), Mapping)
        and isinstance(run["features"].get(name), Mapping)
    ]
    if not runs:
        return '<p class="empty">No runs with this feature yet.</p>'
    xs = [x_of(run.get("time"), i) for i, (run, _) in enumerate(runs)]
    use_index = any(x is None for x in xs)
    points = [
        Point(
            x=float(i) if use_index else (xs[i] or 0.0),
            distance=num(entry.get("distance")),
            threshold=num(entry.get("threshold")),
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
        x_ticks=time_ticks(points[0].x, points[-1].x),
        x_title="time (UTC)",
    )


def _distribution_chart(name: str, dist: Any) -> str:
    if not isinstance(dist, Mapping):
        return '<p class="empty">No distribution yet.</p>'
    title = f"distribution of {name} against the baseline"
    if dist.get("type") == "categorical":
        base, cur = mapping(dist.get("baseline")), mapping(dist.get("current"))
        return grouped_bars(
            {str(k): num(v) or 0.0 for k, v in base.items()},
            {str(k): num(v) or 0.0 for k, v in cur.items()},
            title=title,
        )
    return histogram_overlay(
        [num(e) or 0.0 for e in dist.get("edges") or []],
        [num(c) or 0.0 for c in dist.get("baseline") or []],
        [num(c) or 0.0 for c in dist.get("current") or []],
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
        f"{escape(str(k))} {count(v) if k in _COUNT_KEYS else fmt(num(v))}"
        for k, v in sorted(entry.items())
        if k not in _CORE_KEYS and num(v) is not None
    )
    distance, threshold = num(entry.get("distance")), num(entry.get("threshold"))
    meta = f"distance {fmt(distance)} · threshold {fmt(threshold)}"
    if others:
        meta += f" · {others}"
    return (
        f'<section class="card" id="feature-{index}"><header><h3>{text(name)}</h3>'
        f"{badge(entry.get('state'))}</header><p class='meta'>{meta}</p>"
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
    data = mapping(entry.get("data"))
    facts = [f"rows {count(data.get('count'))}"] if data.get("count") is not None else []
    if num(data.get("mean")) is not None:
        facts.append(f"mean {fmt(num(data.get('mean')))}")
    quantiles = mapping(entry.get("quantiles"))
    facts += [f"{q} {fmt(num(quantiles[q]))}" for q in ("p05", "p50", "p95") if q in quantiles]
    if entry.get("compared"):
        how = (
            f"compared with the baseline: distance {fmt(num(entry.get('distance')))} · "
            f"threshold {fmt(num(entry.get('threshold')))}"
        )
        state_badge = badge(entry.get("state"))
        drift = (
            '<div class="chart-title">Drift distance over time (dashed: threshold)</div>'
            + _drift_chart(name, history)
        )
        title = "Distribution: baseline vs current window"
    else:
        how = text(entry.get("note") or "described only: the baseline has no such column")
        state_badge = '<span class="badge" style="background:#5b6570">described</span>'
        drift, title = "", "Distribution in the current window"
    return (
        f'<section class="card" id="prediction-{index}"><header><h3>{text(name)}</h3>'
        f"{state_badge}</header><p class='note'>{how}</p><p class='meta'>{' · '.join(facts)}</p>"
        f'{drift}<div class="chart-title">{title}</div>{_distribution_chart(name, dist)}</section>'
    )


def _predictions(
    section: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    distributions: Mapping[str, Any],
) -> str:
    found = {
        str(n): e for n, e in mapping(section.get("predictions")).items() if isinstance(e, Mapping)
    }
    if not found:
        return ""
    compared = [n for n, e in found.items() if e.get("compared")]
    described = [n for n in found if n not in compared]
    summary = []
    if compared:
        summary.append("compared with the baseline: " + ", ".join(text(n) for n in compared))
    if described:
        summary.append("described only: " + ", ".join(text(n) for n in described))
    cards = "".join(
        _prediction_card(i, n, found[n], history, distributions.get(n))
        for i, n in enumerate(sorted(found))
    )
    return (
        f"<h2>Predictions ({len(found)})</h2><p class='note'>{'; '.join(summary)}</p>"
        f"<div class='grid'>{cards}</div>"
    )


def data_quality_part(
    section: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    distributions: Mapping[str, Any],
) -> str:
    """The model's outputs, then every feature's card, worst state first."""
    outputs = {str(n) for n in mapping(section.get("predictions"))}
    current = {n: e for n, e in _features(section).items() if n not in outputs}
    names = set(current) | {str(n) for n in distributions}
    for run in history:
        names.update(str(n) for n in mapping(run.get("features")))
    names -= outputs
    rank = {s: i for i, s in enumerate(STATE_ORDER)}
    ordered = sorted(
        names, key=lambda n: (rank.get(str(current.get(n, {}).get("state")), len(rank)), n)
    )
    nav = "".join(
        f'<a href="#feature-{i}"><span class="dot" style="background:'
        f'{color(current.get(n, {}).get("state"))}"></span>{text(n)}</a>'
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
    return _predictions(section, history, distributions) + features
