"""Readers of SageMaker's ``statistics.json`` and ``constraints.json`` into typed objects.

They accept the files AWS's container writes, unchanged (re-exported by
:mod:`analyzer.monitors.data_quality.statistics_format`): per-feature overrides under
``monitoringConfigOverrides`` or
``monitoring_config_overrides``; when the categorical keys are absent,
``categorical_comparison_threshold`` is ``comparison_threshold`` and
``categorical_drift_method`` is ``LInfinity``. A document that cannot be read raises
:class:`BaselineFormatError` naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analyzer.decoding.value_types import FRACTIONAL, INTEGRAL, STRING, UNKNOWN

__all__ = [
    "BaselineFeature",
    "BaselineFormatError",
    "BaselineStatistics",
    "Constraints",
    "FeatureConstraint",
    "MonitoringConfig",
    "parse_constraints",
    "parse_statistics",
]

TYPES = (INTEGRAL, FRACTIONAL, STRING, UNKNOWN)


class BaselineFormatError(ValueError):
    """A statistics or constraints document that cannot be read; the message says where."""


@dataclass
class BaselineFeature:
    """One feature of a baseline (or of a live profile): what the checks compare against.

    ``cdf_values`` are the KLL sketch's items sorted ascending and ``cdf_weights`` their weights
    (level ``i`` items weigh ``2**i``): the empirical CDF at ``cdf_values[j]`` is
    ``cumsum(cdf_weights)[j] / cdf_weights.sum()``. ``categories`` maps a string value to its
    count. Numbers are ``None`` for string features.
    """

    name: str
    inferred_type: str
    num_present: int
    num_missing: int
    mean: float | None = None
    sum: float | None = None
    std_dev: float | None = None
    min: float | None = None
    max: float | None = None
    cdf_values: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    cdf_weights: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    categories: dict[str, float] = field(default_factory=dict)
    distinct_count: float | None = None
    buckets: list[dict[str, float]] = field(default_factory=list)
    kll_k: float | None = None

    @property
    def is_numeric(self) -> bool:
        return self.inferred_type in (INTEGRAL, FRACTIONAL)

    @property
    def count(self) -> float:
        """Total weight of the sketch (= numbers summarized), or the categories' total."""
        if len(self.cdf_weights):
            return float(self.cdf_weights.sum())
        return float(sum(self.categories.values()))


@dataclass
class BaselineStatistics:
    item_count: int
    features: dict[str, BaselineFeature]


@dataclass
class FeatureConstraint:
    name: str
    inferred_type: str
    completeness: float | None = None
    is_non_negative: bool | None = None
    domains: list[str] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class MonitoringConfig:
    """``monitoring_config`` with the real container's defaults."""

    evaluate_constraints: str = "Enabled"
    emit_metrics: str = "Enabled"
    datatype_check_threshold: float = 1.0
    domain_content_threshold: float = 1.0
    perform_comparison: str = "Enabled"
    comparison_threshold: float = 0.1
    comparison_method: str = "Robust"
    categorical_comparison_threshold: float = 0.1
    categorical_drift_method: str = "LInfinity"


@dataclass
class Constraints:
    features: dict[str, FeatureConstraint]
    monitoring: MonitoringConfig


def _number(value: Any, where: str, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BaselineFormatError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BaselineFormatError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _features(doc: Any, kind: str) -> list[dict[str, Any]]:
    if not isinstance(doc, dict):
        raise BaselineFormatError(f"{kind}: expected a JSON object at the top level")
    features = doc.get("features")
    if not isinstance(features, list):
        raise BaselineFormatError(f"{kind}: 'features' must be a list")
    for i, entry in enumerate(features):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise BaselineFormatError(f"{kind}: features[{i}] needs a string 'name'")
        if entry.get("inferred_type", UNKNOWN) not in TYPES:
            raise BaselineFormatError(
                f"{kind}: features[{i}].inferred_type must be one of {', '.join(TYPES)}, "
                f"got {entry.get('inferred_type')!r}"
            )
    return features


def _kll_items(sketch: dict[str, Any], where: str) -> tuple[np.ndarray, np.ndarray]:
    data = sketch.get("data") or []
    if not isinstance(data, list) or not all(isinstance(level, list) for level in data):
        raise BaselineFormatError(f"{where}.sketch.data: expected a list of lists")
    values = np.array([v for level in data for v in level], dtype=np.float64)
    weights = np.array([2.0**i for i, level in enumerate(data) for _ in level], dtype=np.float64)
    order = np.argsort(values, kind="stable")
    return values[order], weights[order]


def _numeric(feature: BaselineFeature, stats: dict[str, Any], where: str) -> None:
    for key in ("mean", "sum", "std_dev", "min", "max"):
        setattr(feature, key, _number(stats.get(key), f"{where}.{key}"))
    kll = _mapping(_mapping(stats.get("distribution"), where).get("kll"), where)
    feature.buckets = [dict(b) for b in kll.get("buckets") or [] if isinstance(b, dict)]
    sketch = _mapping(kll.get("sketch"), f"{where}.sketch")
    if sketch.get("data"):
        feature.cdf_values, feature.cdf_weights = _kll_items(sketch, where)
        feature.kll_k = _number(_mapping(sketch.get("parameters"), where).get("k"), where)
    elif feature.buckets:  # no sketch: the buckets' upper bounds stand in for the items
        feature.cdf_values = np.array([float(b["upper_bound"]) for b in feature.buckets])
        feature.cdf_weights = np.array([float(b["count"]) for b in feature.buckets])


def _strings(feature: BaselineFeature, stats: dict[str, Any], where: str) -> None:
    feature.distinct_count = _number(stats.get("distinct_count"), f"{where}.distinct_count")
    categorical = _mapping(_mapping(stats.get("distribution"), where).get("categorical"), where)
    for bucket in categorical.get("buckets") or []:
        if isinstance(bucket, dict) and "value" in bucket:
            count = _number(bucket.get("count", 0), f"{where}.buckets.count") or 0.0
            feature.categories[str(bucket["value"])] = count


def parse_statistics(doc: Any) -> BaselineStatistics:
    """Read a statistics.json document (ours or AWS's)."""
    features: dict[str, BaselineFeature] = {}
    for entry in _features(doc, "statistics"):
        name = entry["name"]
        where = f"statistics: feature {name!r}"
        numeric = entry.get("numerical_statistics")
        stats = _mapping(numeric if numeric is not None else entry.get("string_statistics"), where)
        common = _mapping(stats.get("common"), where)
        feature = BaselineFeature(
            name,
            entry.get("inferred_type", UNKNOWN),
            int(_number(common.get("num_present", 0), f"{where}.num_present") or 0),
            int(_number(common.get("num_missing", 0), f"{where}.num_missing") or 0),
        )
        if numeric is not None:
            _numeric(feature, stats, where)
        else:
            _strings(feature, stats, where)
        features[name] = feature
    dataset = _mapping(doc.get("dataset"), "statistics: dataset")
    item_count = _number(dataset.get("item_count"), "statistics: dataset.item_count")
    if item_count is None:
        item_count = max((f.num_present + f.num_missing for f in features.values()), default=0)
    return BaselineStatistics(int(item_count), features)


def _monitoring(doc: dict[str, Any]) -> MonitoringConfig:
    config = _mapping(doc.get("monitoring_config"), "constraints: monitoring_config")
    dist = _mapping(config.get("distribution_constraints"), "constraints: distribution_constraints")
    where = "constraints: monitoring_config"
    out = MonitoringConfig()
    for key in ("evaluate_constraints", "emit_metrics"):
        out.__setattr__(key, str(config.get(key, getattr(out, key))))
    for key in ("datatype_check_threshold", "domain_content_threshold"):
        value = _number(config.get(key, getattr(out, key)), f"{where}.{key}", False)
        if value is None or not 0.0 <= value <= 1.0:
            raise BaselineFormatError(f"{where}.{key}: must be in [0, 1], got {value}")
        setattr(out, key, value)
    out.perform_comparison = str(dist.get("perform_comparison", out.perform_comparison))
    out.comparison_method = str(dist.get("comparison_method", out.comparison_method))
    threshold = _number(dist.get("comparison_threshold", 0.1), f"{where}.comparison_threshold")
    out.comparison_threshold = 0.1 if threshold is None else threshold
    categorical = _number(
        dist.get("categorical_comparison_threshold", out.comparison_threshold),
        f"{where}.categorical_comparison_threshold",
    )
    out.categorical_comparison_threshold = (
        out.comparison_threshold if categorical is None else categorical
    )
    out.categorical_drift_method = str(dist.get("categorical_drift_method", "LInfinity"))
    return out


def parse_constraints(doc: Any) -> Constraints:
    """Read a constraints.json document (ours, AWS's, or one edited by hand)."""
    features: dict[str, FeatureConstraint] = {}
    for entry in _features(doc, "constraints"):
        name = entry["name"]
        where = f"constraints: feature {name!r}"
        numbers = _mapping(entry.get("num_constraints"), f"{where}.num_constraints")
        strings = _mapping(entry.get("string_constraints"), f"{where}.string_constraints")
        domains = strings.get("domains")
        if domains is not None and not isinstance(domains, list):
            raise BaselineFormatError(f"{where}.string_constraints.domains: expected a list")
        overrides = entry.get("monitoringConfigOverrides")
        if overrides is None:
            overrides = entry.get("monitoring_config_overrides")
        non_negative = numbers.get("is_non_negative")
        features[name] = FeatureConstraint(
            name=name,
            inferred_type=entry.get("inferred_type", UNKNOWN),
            completeness=_number(entry.get("completeness"), f"{where}.completeness"),
            is_non_negative=None if non_negative is None else bool(non_negative),
            domains=None if domains is None else [str(d) for d in domains],
            overrides=dict(_mapping(overrides, f"{where}.monitoringConfigOverrides")),
        )
    return Constraints(features, _monitoring(doc))
