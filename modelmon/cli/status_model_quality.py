"""``modelmon status``: the ``monitors.model_quality`` section, readable in a terminal.

The state and window, where the labels stand, each metric that has a threshold (or an
estimate) with its realized value ± standard deviation against the threshold and its state,
the label-free estimate with its band, whether that estimate can be trusted, and the
violations in SageMaker's words. Tolerant like the rest of ``status``: any field may be
missing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = [
    "SEVERITY",
    "as_dict",
    "model_quality_summary",
    "render_model_quality",
    "violation_lines",
]

SEVERITY = {"alert": 0, "warning": 1, "not_enough_data": 2, "no_baseline": 3, "no_data": 4}
_OPERATORS = {"LessThanThreshold": ">=", "GreaterThanThreshold": "<="}
# as the analyzer counts them (docs/model-quality.md); other keys are printed as they come
_LABELS = ("matched", "unmatched", "pending", "awaiting", "unlabeled")


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one (a status field may be anything)."""
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _fixed(value: Any) -> str:
    number = _number(value)
    return "-" if number is None else f"{number:.4f}"


def _realized(entry: dict[str, Any]) -> str:
    value, sd = _number(entry.get("value")), _number(entry.get("standard_deviation"))
    if value is None:
        return "-"
    return f"{value:.4f}" + (f" ± {sd:.4f}" if sd is not None else "")


def _threshold(entry: dict[str, Any]) -> str:
    threshold = _number(entry.get("threshold"))
    if threshold is None:
        return "-"
    operator = _OPERATORS.get(str(entry.get("comparison_operator")), "")
    return f"{operator} {threshold:.4f}".strip()


def _estimate(entry: dict[str, Any]) -> str:
    if _number(entry.get("value")) is None:
        return "-"
    shown = (
        f"{_fixed(entry.get('value'))} [{_fixed(entry.get('low'))}, {_fixed(entry.get('high'))}]"
    )
    if entry.get("agrees_with_realized") is False:
        shown += " contradicted"
    return shown


def _names(section: dict[str, Any]) -> list[str]:
    metrics, estimated = as_dict(section.get("metrics")), as_dict(section.get("estimated"))
    names = {n for n, e in metrics.items() if as_dict(e).get("threshold") is not None}
    names |= set(estimated)
    return sorted(
        names, key=lambda n: (SEVERITY.get(str(as_dict(metrics.get(n)).get("state")), 5), n)
    )


def render_model_quality(section: dict[str, Any], state: Callable[[Any], str]) -> list[str]:
    """The section as lines; ``state`` writes a state (in colour on a terminal)."""
    window = as_dict(section.get("window"))
    lines = [
        f"model_quality: {state(section.get('state'))}"
        f"   window {window.get('start', '?')} → {window.get('end', '?')}"
        f"   labelled pairs {section.get('samples', '-')} (min {section.get('min_labels', '-')})"
        + (f"   {section['problem_type']}" if section.get("problem_type") else "")
    ]
    for problem in (section.get("error"), as_dict(section.get("baseline")).get("error")):
        if problem:
            lines.append(f"  problem: {problem}")
    deferred = as_dict(section.get("deferred"))
    if deferred:
        lines.append(
            f"  metrics of the window above, not yet of the changed one: {deferred.get('reason')}"
            f" (again in {_number(deferred.get('next_in_s')) or 0:.0f} s)"
        )
    labels = as_dict(section.get("labels"))
    if labels:
        keys = [k for k in _LABELS if k in labels] + [k for k in labels if k not in _LABELS]
        lines.append("  labels: " + ", ".join(f"{labels[k]} {k}" for k in keys))
    metrics, estimated = as_dict(section.get("metrics")), as_dict(section.get("estimated"))
    names = _names(section)
    if names:
        width = max(6, *(len(n) for n in names))
        lines.append(
            f"  {'metric':<{width}}  {'state':<15}  {'realized ± sd':>17}  {'threshold':>11}"
            "  estimated [band]"
        )
        for name in names:
            metric = as_dict(metrics.get(name))
            raw = str(metric.get("state") or "-")
            shown = state(raw) + " " * max(0, 15 - len(raw))
            lines.append(
                f"  {name:<{width}}  {shown}  {_realized(metric):>17}  {_threshold(metric):>11}"
                f"  {_estimate(as_dict(estimated.get(name)))}"
            )
    estimate = as_dict(section.get("estimate"))
    if estimate:
        note = estimate.get("note")
        if not estimated:
            lines.append(f"  estimate: none ({note or 'no predictions in the window'})")
        elif estimate.get("trusted") is True and not note:
            lines.append("  estimate: trusted (from calibrated probabilities, before the labels)")
        else:
            lines.append(f"  estimate: NOT TRUSTED: {note or 'no reason given'}")
    lines.extend(violation_lines(section.get("violations"), "metric_name"))
    return lines


def violation_lines(violations: Any, name_key: str) -> list[str]:
    """A monitor's violations, one line each under a count (none: no line); ``name_key``:
    the field that names what is violated (``feature_name``, ``metric_name``)."""
    if not isinstance(violations, list) or not violations:
        return []
    lines = [f"  violations ({len(violations)}):"]
    for raw in violations:
        violation = as_dict(raw)
        lines.append(
            f"    {violation.get(name_key, '?')}: "
            f"{violation.get('constraint_check_type', '?')}: {violation.get('description', '')}"
        )
    return lines


def model_quality_summary(section: dict[str, Any]) -> str:
    """``model quality alert: auc 0.340/0.728`` (the worst constrained metric), or ``""``."""
    if not section:
        return ""
    names = _names(section)
    metrics = as_dict(section.get("metrics"))
    shown = ""
    if names and _number(as_dict(metrics.get(names[0])).get("value")) is not None:  # the worst
        metric = as_dict(metrics[names[0]])
        value, threshold = _number(metric.get("value")), _number(metric.get("threshold"))
        shown = f": {names[0]} {value:.3f}" + (f"/{threshold:.3f}" if threshold is not None else "")
    return f"model quality {section.get('state', 'unknown')}{shown}"
