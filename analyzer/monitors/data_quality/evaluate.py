"""From a window's check result to monitor states and the status document (no I/O).

States, from best to worst: ``ok``, ``no_data``, ``not_enough_data``, ``warning``,
``no_baseline``, ``alert``. A monitor is ``alert`` on any violation, ``warning`` when no
check fails but some drift distance is at 80% or more of its threshold. A window below
``min_samples`` gives ``not_enough_data`` and no verdict (no violations are reported). The
overall state is the worst over the configured monitors.

Examples
--------
>>> worst(["ok", "warning", "no_data"])
'warning'
>>> feature_state(distance=0.09, threshold=0.1, violated=False)
'warning'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from analyzer.monitors.contract import STATES, iso, worst

__all__ = [
    "MAX_VIOLATIONS",
    "STATES",
    "WARNING_FRACTION",
    "WindowVerdict",
    "describe_predictions",
    "feature_state",
    "iso",
    "monitor_doc",
    "verdict",
    "worst",
]

WARNING_FRACTION = 0.8
# A run stores at most this many violations (``violations_total`` says how many there were).
MAX_VIOLATIONS = 1000


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def feature_state(*, distance: float | None, threshold: float | None, violated: bool) -> str:
    """``alert`` on a violation, ``warning`` at ≥80% of the threshold, else ``ok``."""
    if violated:
        return "alert"
    if distance is not None and threshold and distance >= WARNING_FRACTION * threshold:
        return "warning"
    return "ok"


@dataclass
class WindowVerdict:
    """One evaluation of one monitor over one window."""

    state: str
    samples: int
    violations: list[dict[str, Any]]
    features: dict[str, dict[str, Any]]
    violations_total: int = 0  # before the list was cut at MAX_VIOLATIONS


def _data(profile: Any, name: str) -> dict[str, Any]:
    """Completeness and the ``feature_data`` statistics of one feature of a live profile."""
    feature = getattr(profile, "features", {}).get(name) if profile is not None else None
    if feature is None and profile is not None:
        feature = (getattr(profile, "predictions", None) or {}).get(name)
    return _feature_data(feature) if feature is not None else {}


def _feature_data(feature: Any) -> dict[str, Any]:
    present, missing = int(feature.num_present), int(feature.num_missing)
    count = int(getattr(feature, "count", 0) or 0)
    numeric = {
        "min": _number(feature.min) if count else None,
        "max": _number(feature.max) if count else None,
        "sum": _number(feature.sum) if count else None,
        "count": count,
        "mean": _number(feature.mean) if count else None,
    }
    total = present + missing
    return {"non_null": present / total if total else None, "data": numeric}


def verdict(
    result: Any | None, samples: int, min_samples: int, profile: Any | None = None
) -> WindowVerdict:
    """Turn ``checks.run_checks``'s result (None: no baseline) into states.

    ``profile`` (the window's live profile) adds each feature's completeness (``non_null``)
    and ``data`` statistics (min, max, sum, count, mean) for the metrics.
    """
    if result is None:
        return WindowVerdict("no_baseline", samples, [], {})
    if samples == 0:
        return WindowVerdict("no_data", 0, [], {})
    enough = samples >= min_samples
    violations = [dict(v) for v in result.violations[:MAX_VIOLATIONS]] if enough else []
    total = len(result.violations) if enough else 0
    violated = {v.get("feature_name") for v in violations}
    features: dict[str, dict[str, Any]] = {}
    for name, fr in result.features.items():
        distance, threshold = _number(fr.distance), _number(fr.threshold)
        state = feature_state(distance=distance, threshold=threshold, violated=name in violated)
        features[name] = {
            "state": state if enough else "not_enough_data",
            "distance": distance,
            "threshold": threshold,
            "margin": _number(getattr(fr, "decision_margin", None)),
            "psi": _number(getattr(fr, "psi", None)),
            "js": _number(getattr(fr, "js", None)),
            "wasserstein": _number(getattr(fr, "wasserstein", None)),
            "method": getattr(fr, "method", None),
            "p_value": _number(getattr(fr, "p_value", None)),
            "n_baseline": _number(getattr(fr, "n_baseline", None)),
            "n_current": _number(getattr(fr, "n_current", None)),
            **_data(profile, name),
        }
    for name in getattr(profile, "predictions", None) or {}:
        if name in features and name not in getattr(profile, "features", {}):
            features[name]["role"] = "output"
    if not enough:
        state = "not_enough_data"
    elif violations:
        state = "alert"
    else:
        state = worst(["ok", *(f["state"] for f in features.values())])
    return WindowVerdict(state, samples, violations, features, total)


QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
TOP_VALUES = 10


def _describe(feature: Any) -> dict[str, Any]:
    """What a column's values look like: type, completeness, moments, quantiles or top values."""
    entry: dict[str, Any] = {"type": feature.inferred_type, **_feature_data(feature)}
    kll = feature.kll
    if kll is not None and not kll.is_empty():
        entry["quantiles"] = {
            f"p{round(q * 100):02d}": _number(kll.get_quantile(q)) for q in QUANTILES
        }
    counts = feature.category_counts()
    if counts:
        total = float(sum(counts.values()))
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:TOP_VALUES]
        entry["top"] = {str(value): count / total for value, count in top}
    return entry


def describe_predictions(
    profile: Any | None, features: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """``monitors.data_quality.predictions``: every output column of the window, described,
    and ``compared`` (with its drift figures) when the baseline has a column of that name."""
    out: dict[str, dict[str, Any]] = {}
    for name, feature in (getattr(profile, "predictions", None) or {}).items():
        entry: dict[str, Any] = {"role": "output", "compared": False, **_describe(feature)}
        checked = features.get(name)
        if checked is not None and name not in getattr(profile, "features", {}):
            entry["compared"] = True
            for key in ("state", "distance", "threshold", "margin", "method"):
                entry[key] = checked.get(key)
        else:
            entry["note"] = (
                f"described only: the baseline has no column {name!r} (a baseline built from "
                "captured traffic, `modelmon baseline --data CAPTURE_DIR`, includes it)"
            )
        out[str(name)] = entry
    return out


def monitor_doc(
    window_verdict: WindowVerdict,
    *,
    window_start: float,
    window_end: float,
    run_id: int | None,
    min_samples: int,
    baseline: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``monitors.data_quality`` part of the status document."""
    return {
        "state": window_verdict.state,
        "window": {"start": iso(window_start), "end": iso(window_end)},
        "samples": window_verdict.samples,
        "min_samples": min_samples,
        "violations": window_verdict.violations,
        "violations_total": max(window_verdict.violations_total, len(window_verdict.violations)),
        "features": window_verdict.features,
        "run_id": run_id,
        "baseline": dict(baseline),
    }
