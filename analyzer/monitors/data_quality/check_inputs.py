"""What the checks read from the baseline, the constraints and a live profile.

The checks are written against these small structural types (``Protocol``), so that the
baseline parsed from SageMaker's files and a live
:class:`analyzer.monitors.data_quality.profile.DatasetProfile`
both fit, and the effective per-feature settings (global ``monitoring_config`` with the
feature's overrides on top). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from analyzer.monitors.data_quality.drift import kll_epsilon

__all__ = [
    "Baseline",
    "BaselineColumn",
    "ConstraintsLike",
    "CurrentColumn",
    "CurrentProfile",
    "Settings",
    "baseline_kll_epsilon",
    "current_categories",
    "current_items",
    "effective_settings",
]

SAGEMAKER_KLL_K = 2048  # used when a baseline does not say its k


class BaselineColumn(Protocol):
    @property
    def inferred_type(self) -> str: ...
    @property
    def num_present(self) -> float: ...
    @property
    def std_dev(self) -> float | None: ...
    @property
    def cdf_values(self) -> Any: ...
    @property
    def cdf_weights(self) -> Any: ...
    @property
    def categories(self) -> Mapping[str, float]: ...


class Baseline(Protocol):
    @property
    def features(self) -> Mapping[str, BaselineColumn]: ...


class ConstraintLike(Protocol):
    @property
    def inferred_type(self) -> str: ...
    @property
    def completeness(self) -> float | None: ...
    @property
    def domains(self) -> Sequence[str] | None: ...
    @property
    def overrides(self) -> Mapping[str, Any] | None: ...


class ConstraintsLike(Protocol):
    @property
    def features(self) -> Mapping[str, ConstraintLike]: ...
    @property
    def monitoring(self) -> Any: ...


class CurrentColumn(Protocol):
    @property
    def num_present(self) -> int: ...
    @property
    def num_missing(self) -> int: ...
    @property
    def type_counts(self) -> Mapping[str, int]: ...
    @property
    def kll(self) -> Any: ...
    @property
    def frequent(self) -> Any: ...
    def category_counts(self) -> Mapping[str, float]: ...


class CurrentProfile(Protocol):
    @property
    def features(self) -> Mapping[str, CurrentColumn]: ...


@dataclass(frozen=True)
class Settings:
    """The monitoring settings in force for one feature."""

    evaluate: bool = True
    compare: bool = True
    datatype_check_threshold: float = 1.0
    domain_content_threshold: float = 1.0
    comparison_threshold: float = 0.1
    comparison_method: str = "Robust"
    categorical_comparison_threshold: float = 0.1
    categorical_drift_method: str = "LInfinity"


def _enabled(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in ("disabled", "false", "0", "no", "off")


def _lookup(monitoring: Any, key: str) -> Any:
    if isinstance(monitoring, Mapping):
        if key in monitoring:
            return monitoring[key]
        nested = monitoring.get("distribution_constraints")
        return nested.get(key) if isinstance(nested, Mapping) else None
    return getattr(monitoring, key, None)


def effective_settings(monitoring: Any, overrides: Mapping[str, Any]) -> Settings:
    """Global ``monitoring_config`` (object or mapping) with one feature's overrides on top."""
    base = Settings()
    values: dict[str, Any] = {}
    keys = {
        "evaluate_constraints": "evaluate",
        "perform_comparison": "compare",
        "datatype_check_threshold": "datatype_check_threshold",
        "domain_content_threshold": "domain_content_threshold",
        "comparison_threshold": "comparison_threshold",
        "comparison_method": "comparison_method",
        "categorical_comparison_threshold": "categorical_comparison_threshold",
        "categorical_drift_method": "categorical_drift_method",
    }
    for source in (monitoring, overrides):
        for key, attr in keys.items():
            value = _lookup(source, key)
            if value is not None:
                values[attr] = value
    if "categorical_comparison_threshold" not in values and "comparison_threshold" in values:
        values["categorical_comparison_threshold"] = values["comparison_threshold"]
    return Settings(
        evaluate=_enabled(values.get("evaluate", base.evaluate)),
        compare=_enabled(values.get("compare", base.compare)),
        datatype_check_threshold=float(
            values.get("datatype_check_threshold", base.datatype_check_threshold)
        ),
        domain_content_threshold=float(
            values.get("domain_content_threshold", base.domain_content_threshold)
        ),
        comparison_threshold=float(values.get("comparison_threshold", base.comparison_threshold)),
        comparison_method=str(values.get("comparison_method", base.comparison_method)),
        categorical_comparison_threshold=float(
            values.get("categorical_comparison_threshold", base.categorical_comparison_threshold)
        ),
        categorical_drift_method=str(
            values.get("categorical_drift_method", base.categorical_drift_method)
        ),
    )


def baseline_kll_epsilon(column: BaselineColumn) -> float:
    """The baseline sketch's rank error: 0 when every item weighs 1 (the sketch is exact)."""
    weights = np.asarray(column.cdf_weights, dtype=np.float64)
    if weights.size == 0 or float(weights.max()) <= 1.0:
        return 0.0
    k = getattr(column, "kll_k", None) or getattr(column, "k", None) or SAGEMAKER_KLL_K
    return kll_epsilon(int(k), True)


def current_items(
    column: CurrentColumn,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float] | None:
    """(items, weights, ε) of a live KLL sketch, or None when it holds nothing."""
    sketch = column.kll
    if sketch is None or sketch.is_empty():
        return None
    pairs = np.array(list(iter(sketch)), dtype=np.float64).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1], kll_epsilon(sketch.k, sketch.is_estimation_mode())


def current_categories(column: CurrentColumn) -> tuple[dict[str, float], float] | None:
    """(value → count, the frequent-items sketch's share error), or None without strings."""
    counts = {str(k): float(v) for k, v in column.category_counts().items()}
    if not counts:
        return None
    eps = 0.0
    sketch = column.frequent
    if sketch is not None and not sketch.is_empty():
        from datasketches import frequent_items_error_type

        items = sketch.get_frequent_items(frequent_items_error_type.NO_FALSE_NEGATIVES)
        total = float(sketch.total_weight) or 1.0
        eps = max((float(ub) - float(lb) for _, _, lb, ub in items), default=0.0) / total
    return counts, eps
