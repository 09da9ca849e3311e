"""The data behind the HTML report: drift history and distributions against the baseline.

The drift history is read from the store (:func:`analyzer.store.queries.read_history`).
``distributions`` gives, per feature, histogram counts over shared edges for numbers (from
the baseline's KLL items and the window's KLL sketch) or value shares for strings.

Examples
--------
>>> shares({"a": 3.0, "b": 1.0})
{'a': 0.75, 'b': 0.25}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["distributions", "shares"]

BINS = 10
TOP_CATEGORIES = 20


def shares(counts: Mapping[str, float], top: int = TOP_CATEGORIES) -> dict[str, float]:
    """Counts to shares of the total, the ``top`` largest kept."""
    total = float(sum(counts.values()))
    if total <= 0:
        return {}
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    return {str(value): count / total for value, count in ranked}


def _numeric(base: Any | None, cur: Any) -> dict[str, Any] | None:
    values = np.asarray(getattr(base, "cdf_values", []), dtype=float)
    weights = np.asarray(getattr(base, "cdf_weights", []), dtype=float)
    lows = [v for v in (getattr(base, "min", None), getattr(cur, "min", None)) if v is not None]
    highs = [v for v in (getattr(base, "max", None), getattr(cur, "max", None)) if v is not None]
    if not lows or not highs:
        return None
    low, high = float(min(lows)), float(max(highs))
    if high <= low:
        high = low + 1.0
    edges = np.linspace(low, high, BINS + 1)
    baseline = (
        np.histogram(values, bins=edges, weights=weights)[0] if values.size else np.zeros(BINS)
    )
    current = np.zeros(BINS)
    kll = getattr(cur, "kll", None) if cur is not None else None
    if kll is not None and not kll.is_empty():
        pmf = np.asarray(kll.get_pmf(list(edges[1:-1])), dtype=float)
        current = pmf * float(kll.n)
    return {
        "type": "numeric",
        "edges": [float(e) for e in edges],
        "baseline": [float(c) for c in baseline],
        "current": [float(c) for c in current],
    }


def _current_only(cur: Any) -> dict[str, Any] | None:
    """A column the baseline does not have (a prediction): its window distribution alone."""
    if cur.inferred_type == "String":
        return {"type": "categorical", "baseline": {}, "current": shares(cur.category_counts())}
    numeric = _numeric(None, cur)
    if numeric is not None:
        numeric["baseline"] = []
    return numeric


def distributions(baseline: Any | None, profile: Any | None) -> dict[str, dict[str, Any]]:
    """Per feature (and prediction column), its distribution in the baseline and in the
    current window; a prediction column the baseline lacks has the window's alone."""
    out: dict[str, dict[str, Any]] = {}
    predictions = (getattr(profile, "predictions", None) or {}) if profile is not None else {}
    known = baseline.features if baseline is not None else {}
    for name, cur in predictions.items():
        if name not in known:
            only = _current_only(cur)
            if only is not None:
                out[name] = only
    if baseline is None:
        return out
    live = {**predictions, **profile.features} if profile is not None else {}
    for name, base in baseline.features.items():
        cur = live.get(name)
        if base.inferred_type == "String":
            current = shares(cur.category_counts()) if cur is not None else {}
            out[name] = {
                "type": "categorical",
                "baseline": shares(getattr(base, "categories", {}) or {}),
                "current": current,
            }
        else:
            numeric = _numeric(base, cur)
            if numeric is not None:
                out[name] = numeric
    return out
