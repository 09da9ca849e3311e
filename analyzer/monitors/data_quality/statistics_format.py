"""SageMaker's ``statistics.json`` and ``constraints.json``: written from profiles, read back.

Writing follows AWS's analyzer container (Deequ underneath): 10 equal-width KLL buckets over
``[min, max]`` with Deequ's edges ``min + (max - min) * i / 10`` and counts from the sketch's
ranks (exclusive, the last bucket inclusive); ``sketch.data`` holds the compactor levels (level
``i`` weighs ``2**i``). The KLL here is Apache DataSketches', not Deequ's own: below ``k``
values both keep every value and agree exactly; above, each is within its own rank error.

Constraint suggestions follow Deequ's rules (see :func:`suggest_constraints`). The readers accept
AWS's own files unchanged: both override spellings, and missing categorical keys take the real
container's defaults.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from analyzer.decoding.value_types import FRACTIONAL, INTEGRAL, STRING
from analyzer.monitors.data_quality.profile import DatasetProfile, FeatureProfile
from analyzer.monitors.data_quality.sketches import (
    frequent_is_exact,
    kll_levels,
    kll_weighted_items,
    weighted_rank_counts,
)
from analyzer.monitors.data_quality.statistics_readers import (
    BaselineFeature,
    BaselineFormatError,
    BaselineStatistics,
    Constraints,
    FeatureConstraint,
    MonitoringConfig,
    parse_constraints,
    parse_statistics,
)

__all__ = [
    "BaselineFeature",
    "BaselineFormatError",
    "BaselineStatistics",
    "Constraints",
    "FeatureConstraint",
    "MonitoringConfig",
    "baseline_from_profile",
    "feature_from_profile",
    "kll_buckets",
    "parse_constraints",
    "parse_statistics",
    "statistics_json",
    "suggest_constraints",
]

NUM_BUCKETS = 10
KLL_SHRINKING_FACTOR = 0.64  # Deequ's c, written for compatibility
MAX_CATEGORICAL_BUCKETS = 10_000
# Deequ: histograms (hence domains) only for columns with at most this many distinct values.
DOMAIN_MAX_DISTINCT = 120
DOMAIN_MAX_SINGLETON_RATIO = 0.1
COMPLETENESS_Z = 1.96


# ---------------------------------------------------------------------------- writing


def kll_buckets(values: np.ndarray, weights: np.ndarray, low: float, high: float) -> list[Any]:
    """Deequ's 10 equal-width buckets over [low, high]; ``values`` sorted with weights."""
    width = high - low
    if math.isfinite(width):
        edges = [low + width * i / NUM_BUCKETS for i in range(NUM_BUCKETS + 1)]
    else:  # a range wider than the largest float (e.g. -1e308 to 1e308): the same edges
        edges = [low + (high / NUM_BUCKETS - low / NUM_BUCKETS) * i for i in range(NUM_BUCKETS)]
        edges.append(high)
    points = np.array(edges, dtype=np.float64)
    below = weighted_rank_counts(values, weights, points, inclusive=False)
    last = weighted_rank_counts(values, weights, points[-1:], inclusive=True)[0]
    buckets = []
    for i in range(NUM_BUCKETS):
        upper = last if i == NUM_BUCKETS - 1 else below[i + 1]
        buckets.append(
            {
                "lower_bound": float(edges[i]),
                "upper_bound": float(edges[i + 1]),
                "count": float(upper - below[i]),
            }
        )
    return buckets


def _common(feature: FeatureProfile) -> dict[str, int]:
    return {"num_present": feature.num_present, "num_missing": feature.num_missing}


def _feature_statistics(feature: FeatureProfile) -> dict[str, Any]:
    kind = feature.inferred_type
    out: dict[str, Any] = {"name": feature.name, "inferred_type": kind}
    if kind in (INTEGRAL, FRACTIONAL) and feature.count and feature.kll is not None:
        assert feature.min is not None and feature.max is not None
        values, weights = kll_weighted_items(feature.kll)
        out["numerical_statistics"] = {
            "common": _common(feature),
            "mean": float(feature.mean or 0.0),
            "sum": float(feature.sum),
            "std_dev": float(feature.std or 0.0),
            "min": float(feature.min),
            "max": float(feature.max),
            "distribution": {
                "kll": {
                    "buckets": kll_buckets(values, weights, feature.min, feature.max),
                    "sketch": {
                        "parameters": {"c": KLL_SHRINKING_FACTOR, "k": float(feature.k)},
                        "data": kll_levels(feature.kll),
                    },
                }
            },
        }
        return out
    strings: dict[str, Any] = {"common": _common(feature), "distinct_count": 0.0}
    if feature.frequent is not None:
        strings["distinct_count"] = feature.distinct_count()
        counts = list(feature.category_counts().items())[:MAX_CATEGORICAL_BUCKETS]
        strings["distribution"] = {
            "categorical": {"buckets": [{"value": v, "count": int(c)} for v, c in counts]}
        }
    out["string_statistics"] = strings
    return out


def statistics_json(profile: DatasetProfile, include_predictions: bool = False) -> dict[str, Any]:
    """SageMaker's statistics.json for a profile (predictions first when included, as AWS)."""
    features = list(profile.features.values())
    if include_predictions:
        features = [p for n, p in profile.predictions.items() if n not in profile.features] + (
            features
        )
    return {
        "version": 0.0,
        "dataset": {"item_count": profile.item_count},
        "features": [_feature_statistics(f) for f in features],
    }


def _completeness(feature: FeatureProfile, item_count: int) -> float:
    """Deequ: 1.0 when complete; a Wald lower bound (2 decimals, down) when 0.2 < p < 1."""
    total = feature.num_present + feature.num_missing
    if total == 0 or item_count == 0:
        return 0.0
    p = feature.num_present / total
    if p >= 1.0:
        return 1.0
    if p > 0.2:
        p = p - COMPLETENESS_Z * math.sqrt(p * (1 - p) / item_count)
    return math.floor(round(p * 100, 9)) / 100


def _domains(feature: FeatureProfile) -> list[str] | None:
    """Deequ's CategoricalRangeRule: few distinct values, at most 10% of them seen once.

    A column that mixes numbers into its strings gets none: its numbers are not counted as
    categories, so a domain of its strings alone would reject every number.
    """
    if feature.frequent is None or feature.count or not frequent_is_exact(feature.frequent):
        return None
    counts = feature.category_counts()
    if not counts or len(counts) > DOMAIN_MAX_DISTINCT:
        return None
    singletons = sum(1 for c in counts.values() if c == 1)
    if singletons / len(counts) > DOMAIN_MAX_SINGLETON_RATIO:
        return None
    return sorted(counts, key=lambda v: -counts[v])


def suggest_constraints(
    profile: DatasetProfile, include_predictions: bool = False
) -> dict[str, Any]:
    """SageMaker's constraints.json with Deequ's suggestions and the container's defaults.

    Per feature: the inferred type; ``completeness`` (1.0, or Deequ's lower confidence bound
    ``floor2(p - 1.96 sqrt(p(1-p)/n))`` when 0.2 < p < 1, else ``floor2(p)``);
    ``is_non_negative`` (min >= 0) for numbers; ``domains`` for strings when the column has at
    most 120 distinct values of which at most 10% occur once.
    """
    features = list(profile.features.values())
    if include_predictions:
        features = [p for n, p in profile.predictions.items() if n not in profile.features] + (
            features
        )
    out = []
    has_strings = False
    for feature in features:
        kind = feature.inferred_type
        entry: dict[str, Any] = {
            "name": feature.name,
            "inferred_type": kind,
            "completeness": _completeness(feature, profile.item_count),
        }
        if kind in (INTEGRAL, FRACTIONAL) and feature.min is not None:
            entry["num_constraints"] = {"is_non_negative": bool(feature.min >= 0.0)}
        elif kind == STRING:
            has_strings = True
            domains = _domains(feature)
            if domains is not None:
                entry["string_constraints"] = {"domains": domains}
        out.append(entry)
    distribution: dict[str, Any] = {
        "perform_comparison": "Enabled",
        "comparison_threshold": 0.1,
        "comparison_method": "Robust",
    }
    if has_strings:
        distribution["categorical_comparison_threshold"] = 0.1
        distribution["categorical_drift_method"] = "LInfinity"
    return {
        "version": 0.0,
        "features": out,
        "monitoring_config": {
            "evaluate_constraints": "Enabled",
            "emit_metrics": "Enabled",
            "datatype_check_threshold": 1.0,
            "domain_content_threshold": 1.0,
            "distribution_constraints": distribution,
        },
    }


def feature_from_profile(feature: FeatureProfile) -> BaselineFeature:
    """A live feature profile in the shape of a baseline feature."""
    kind = feature.inferred_type
    out = BaselineFeature(feature.name, kind, feature.num_present, feature.num_missing)
    if feature.count:
        out.mean, out.sum, out.std_dev = feature.mean, feature.sum, feature.std
        out.min, out.max = feature.min, feature.max
    if feature.kll is not None:
        out.cdf_values, out.cdf_weights = kll_weighted_items(feature.kll)
        out.kll_k = float(feature.k)
    if feature.frequent is not None:
        out.categories = feature.category_counts()
        out.distinct_count = feature.distinct_count()
    return out


def baseline_from_profile(
    profile: DatasetProfile, include_predictions: bool = False
) -> BaselineStatistics:
    """A live profile as :class:`BaselineStatistics` (no JSON round trip)."""
    features = {name: feature_from_profile(f) for name, f in profile.features.items()}
    if include_predictions:
        for name, f in profile.predictions.items():
            features.setdefault(name, feature_from_profile(f))
    return BaselineStatistics(profile.item_count, features)
