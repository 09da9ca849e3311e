"""The model-quality monitor's part of the HTML report: "is my model still right?".

From ``monitors.model_quality`` of the status document and the model-quality runs over time
(:func:`analyzer.store.model_quality_history.read_model_quality_history`): the state, the
window and where the labels stand; whether the label-free estimate can be trusted; per
metric its value now against its threshold and estimate; per metric a chart over time
(realized, estimated with its band, threshold; gaps where a run had no value); the current
confusion matrix with counts and shares. Pure; every string from the data is escaped (a
class label comes from traffic).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from analyzer.monitors.model_quality.monitor import other_name
from analyzer.web.report_common import badge, count, mapping, num, text, time_ticks, x_of
from analyzer.web.svg_charts import NO_VERDICT, fmt
from analyzer.web.svg_metric_chart import MetricPoint, metric_chart

__all__ = ["MAX_CLASSES", "model_quality_part"]

MAX_CLASSES = 12  # confusion-matrix rows and columns shown; the rest are summed in "other"
_RANK = {"alert": 0, "warning": 1, "not_enough_data": 2, "no_baseline": 3, "no_data": 4, "ok": 5}
_LABELS = {  # as analyzer.store.model_quality counts them; other keys are shown as they come
    "matched": "labels joined to a captured prediction",
    "unmatched": "labels with no captured prediction after the label wait (not sampled?)",
    "pending": "labels whose prediction may still come (within the label wait)",
    "awaiting": "predictions waiting for their label (within the label wait)",
    "unlabeled": "predictions whose label did not come within the label wait",
}
_OPERATORS = {"LessThanThreshold": "≥", "GreaterThanThreshold": "≤"}


def _number(value: Any) -> float | None:
    found = num(value)
    return found if found is not None and math.isfinite(found) else None


def _charted(section: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> list[str]:
    """Metrics with a threshold or an estimate, now or in a past run; worst state first."""
    metrics, estimated = mapping(section.get("metrics")), mapping(section.get("estimated"))
    names = {str(n) for n, e in metrics.items() if mapping(e).get("threshold") is not None}
    names |= {str(n) for n in estimated}
    for run in history:
        names |= {
            str(n) for n, e in mapping(run.get("metrics")).items() if mapping(e).get("threshold")
        }
        names |= {str(n) for n in mapping(run.get("estimated"))}
    return sorted(names, key=lambda n: (_RANK.get(str(mapping(metrics.get(n)).get("state")), 6), n))


def _points(name: str, history: Sequence[Mapping[str, Any]]) -> tuple[list[MetricPoint], bool]:
    xs = [x_of(run.get("time"), i) for i, run in enumerate(history)]
    use_index = any(x is None for x in xs)
    points = []
    for i, run in enumerate(history):
        metric = mapping(mapping(run.get("metrics")).get(name))
        estimate = mapping(mapping(run.get("estimated")).get(name))
        state = metric.get("state")
        value = _number(metric.get("value")) if state not in NO_VERDICT else None
        points.append(
            MetricPoint(
                x=float(i) if use_index else (xs[i] or 0.0),
                value=value,
                estimate=_number(estimate.get("value")),
                low=_number(estimate.get("low")),
                high=_number(estimate.get("high")),
                threshold=_number(metric.get("threshold")),
                state=str(state) if state is not None else None,
                label=str(run.get("time") or run.get("run_id") or i),
            )
        )
    return points, use_index


def _chart(name: str, history: Sequence[Mapping[str, Any]]) -> str:
    points, use_index = _points(name, history)
    if not points:
        return '<p class="empty">No model-quality run yet.</p>'
    ticks = [] if use_index else time_ticks(points[0].x, points[-1].x)
    return metric_chart(
        points,
        title=f"{name} over time: realized, estimated and threshold",
        name=name,
        x_ticks=ticks,
        x_title="run" if use_index else "time (UTC)",
    )


def _value_sd(entry: Mapping[str, Any]) -> str:
    value, sd = _number(entry.get("value")), _number(entry.get("standard_deviation"))
    if value is None:
        return "–"
    return fmt(value) + (f" ± {fmt(sd)}" if sd is not None else "")


def _threshold(entry: Mapping[str, Any]) -> str:
    threshold = _number(entry.get("threshold"))
    if threshold is None:
        return "–"
    operator = _OPERATORS.get(str(entry.get("comparison_operator")), "")
    return f"{operator} {fmt(threshold)}".strip()


def _estimate(entry: Mapping[str, Any]) -> str:
    value = _number(entry.get("value"))
    if value is None:
        return "–"
    band = f" [{fmt(_number(entry.get('low')))}, {fmt(_number(entry.get('high')))}]"
    disagree = " (contradicted by the labels)" if entry.get("agrees_with_realized") is False else ""
    return fmt(value) + band + disagree


def _card(index: int, name: str, section: Mapping[str, Any], history: Sequence[Any]) -> str:
    metric = mapping(mapping(section.get("metrics")).get(name))
    estimate = mapping(mapping(section.get("estimated")).get(name))
    facts = [f"realized {_value_sd(metric)}", f"threshold {_threshold(metric)}"]
    if _number(metric.get("margin")) is not None:
        facts.append(f"margin {fmt(_number(metric.get('margin')))}")
    if estimate:
        facts.append(f"estimated {_estimate(estimate)}")
    state = metric.get("state") if metric else "no_data"
    return (
        f'<section class="card" id="mq-metric-{index}"><header><h3>{text(name)}</h3>'
        f"{badge(state)}</header><p class='meta'>{text(' · '.join(facts))}</p>"
        '<div class="chart-title">Realized and estimated over time</div>'
        f"{_chart(name, history)}</section>"
    )


def _labels(section: Mapping[str, Any]) -> str:
    counts = mapping(section.get("labels")) or dict.fromkeys(_LABELS, 0)
    keys = [k for k in _LABELS if k in counts] + [str(k) for k in counts if k not in _LABELS]
    rows = "".join(
        f"<tr><td>{text(key)}</td><td class='num'>{count(counts.get(key))}</td>"
        f"<td>{_LABELS.get(key, '')}</td></tr>"
        for key in keys
    )
    return (
        "<div class='card'><h3>Labels</h3><table class='compact'><tr><th>labels</th>"
        f"<th>count</th><th>meaning</th></tr>{rows}</table></div>"
    )


def _estimate_note(section: Mapping[str, Any]) -> str:
    estimate = mapping(section.get("estimate"))
    if not estimate:
        return ""
    if not mapping(section.get("estimated")):
        reason = text(estimate.get("note") or "none in this window")
        return f"<p class='note'><strong>Estimated performance</strong>: {reason}.</p>"
    trusted = estimate.get("trusted") is True and not estimate.get("note")
    shown = "trusted" if trusted else "not trusted"
    note = f": {text(estimate.get('note'))}" if estimate.get("note") else ""
    cls = "note" if trusted else "note warn"
    return (
        f"<p class='{cls}'><strong>Label-free estimate {shown}</strong>{note}. The estimate "
        "comes from the calibrated probabilities of every prediction in the window, labelled "
        "or not; realized values replace it as labels arrive.</p>"
    )


def _classes(matrix: Mapping[str, Mapping[str, Any]]) -> list[str]:
    support: dict[str, float] = {}
    for actual, row in matrix.items():
        support[str(actual)] = support.get(str(actual), 0.0) + sum(
            num(v) or 0.0 for v in mapping(row).values()
        )
        for predicted in mapping(row):
            support.setdefault(str(predicted), 0.0)
    return sorted(support, key=lambda c: (-support[c], c))


def _confusion(section: Mapping[str, Any]) -> str:
    matrix = {str(k): mapping(v) for k, v in mapping(section.get("confusion_matrix")).items()}
    if not matrix:
        return ""
    # the status's own rest (its matrix folded past 50 classes) is this table's rest too
    rest = section.get("confusion_matrix_other")
    rest = rest if isinstance(rest, str) and rest in matrix else None
    classes = [name for name in _classes(matrix) if name != rest]
    shown = sorted(classes[:MAX_CLASSES])
    folded = rest is not None or len(classes) > MAX_CLASSES
    other = rest if rest is not None else other_name(classes)  # OTHER unless a class has it
    columns = shown + [other] * folded
    cells: dict[tuple[str, str], float] = {}
    for actual, row in matrix.items():
        for predicted, value in row.items():
            key = (
                actual if actual in shown else other,
                str(predicted) if str(predicted) in shown else other,
            )
            cells[key] = cells.get(key, 0.0) + (num(value) or 0.0)
    total = sum(cells.values())
    head = "".join(f"<th>{text(c)}</th>" for c in columns)
    rows = []
    for actual in columns:
        line = []
        for predicted in columns:
            n = cells.get((actual, predicted), 0.0)
            share = f"<br><small>{n / total:.1%}</small>" if total and n else ""
            cls = "num diag" if actual == predicted and actual != other else "num"
            line.append(f"<td class='{cls}'>{count(n)}{share}</td>")
        rows.append(f"<tr><th>{text(actual)}</th>{''.join(line)}</tr>")
    everything = int(num(section.get("confusion_matrix_classes")) or len(classes))
    note = (
        f"<p class='note'>{everything - len(shown)} more classes summed in {text(other)}.</p>"
        if folded
        else ""
    )
    wide = " style='grid-column: 1 / -1'" if len(columns) > 4 else ""
    return (
        f"<div class='card'{wide}><h3>Confusion matrix (current window)</h3>"
        f"<p class='meta'>rows: actual label; columns: predicted; {count(total)} labelled "
        f"pairs, shares of all of them</p>{note}<div class='scroll'><table class='compact'>"
        f"<tr><th>actual \\ predicted</th>{head}</tr>{''.join(rows)}</table></div></div>"
    )


def _metrics_table(section: Mapping[str, Any], names: Sequence[str]) -> str:
    metrics, estimated = mapping(section.get("metrics")), mapping(section.get("estimated"))
    rows = "".join(
        f"<tr><td><a href='#mq-metric-{i}'>{text(name)}</a></td>"
        f"<td class='nowrap'>{badge(mapping(metrics.get(name)).get('state'))}</td>"
        f"<td class='num'>{text(_value_sd(mapping(metrics.get(name))))}</td>"
        f"<td class='num'>{text(_threshold(mapping(metrics.get(name))))}</td>"
        f"<td class='num'>{text(fmt(_number(mapping(metrics.get(name)).get('margin'))))}</td>"
        f"<td class='num'>{text(_estimate(mapping(estimated.get(name))))}</td></tr>"
        for i, name in enumerate(names)
    )
    if not rows:
        return '<p class="empty">No metric with a threshold or an estimate yet.</p>'
    return (
        "<div class='scroll'><table><tr><th>metric</th><th>state</th><th>realized ± sd</th>"
        "<th>threshold</th><th>margin</th><th>estimated [band]</th></tr>"
        f"{rows}</table></div>"
    )


def model_quality_part(
    section: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    distributions: Mapping[str, Any] | None = None,
) -> str:
    """The whole model-quality section (``distributions`` is the data-quality part's)."""
    window = mapping(section.get("window"))
    facts = [
        text(section.get("problem_type") or "problem type unknown"),
        f"window (by inference time) {text(window.get('start'))} → {text(window.get('end'))}",
        f"{count(section.get('samples', 0))} labelled pairs (min_labels "
        f"{count(section.get('min_labels'))})",
    ]
    problems = [
        f"<p class='note warn'>{text(message)}</p>"
        for message in (section.get("error"), mapping(section.get("baseline")).get("error"))
        if message
    ]
    names = _charted(section, history)
    cards = "".join(_card(i, n, section, history) for i, n in enumerate(names))
    return (
        f"<h2 id='model-quality'>Model quality {badge(section.get('state'))}</h2>"
        f"<p class='meta'>{' · '.join(facts)}</p>{''.join(problems)}"
        f"{_estimate_note(section)}{_metrics_table(section, names)}"
        f"<div class='grid' style='margin-top:12px'>{_labels(section)}{_confusion(section)}"
        f"{cards}</div>"
    )
