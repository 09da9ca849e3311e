"""SageMaker's model-quality files: ``statistics.json``, ``constraints.json`` and violations.

Pure: dictionaries in, dictionaries out; the caller reads and writes the files. The schema is
SageMaker's (SAGEMAKER_FORMATS section 5): one section per problem type, each metric
``{"value", "standard_deviation"}`` with NaN written as the string ``"NaN"``; constraints
``{"threshold", "comparison_operator"}`` with error metrics ``GreaterThanThreshold`` and
scores ``LessThanThreshold``; a violation says ``Metric f1 with 0.55 +/- 0.01 was
LessThanThreshold 0.8``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

__all__ = [
    "PROBLEM_TYPES",
    "ProblemType",
    "constraint_section",
    "metric_section",
    "parse_constraints",
    "statistics_document",
    "suggest_constraints",
    "violation",
    "worse_than",
]

ProblemType = Literal["BinaryClassification", "MulticlassClassification", "Regression"]
PROBLEM_TYPES: tuple[ProblemType, ...] = (
    "BinaryClassification",
    "MulticlassClassification",
    "Regression",
)
_SECTION = {
    "BinaryClassification": "binary_classification",
    "MulticlassClassification": "multiclass_classification",
    "Regression": "regression",
}
# Metrics where a larger value is worse: their constraint is GreaterThanThreshold.
ERRORS = frozenset({"mae", "mse", "rmse", "false_positive_rate", "false_negative_rate"})
OPERATORS = ("LessThanThreshold", "GreaterThanThreshold")


def metric_section(problem_type: ProblemType) -> str:
    """``binary_classification_metrics`` and so on."""
    return f"{_SECTION[problem_type]}_metrics"


def constraint_section(problem_type: ProblemType) -> str:
    """``binary_classification_constraints`` and so on."""
    return f"{_SECTION[problem_type]}_constraints"


def _json_number(value: float) -> float | str:
    return "NaN" if math.isnan(value) else value


def _json_metric(entry: Any) -> Any:
    if isinstance(entry, Mapping) and "value" in entry:
        return {key: _json_number(float(v)) for key, v in entry.items()}
    return entry


def statistics_document(
    problem_type: ProblemType, metrics: Mapping[str, Any], item_count: int
) -> dict[str, Any]:
    """``statistics.json`` from :func:`~.metrics.with_standard_deviation`'s output.

    Examples
    --------
    >>> statistics_document("Regression", {"mae": {"value": 0.5, "standard_deviation": math.nan}}, 3)
    {'version': 0.0, 'dataset': {'item_count': 3}, 'regression_metrics': {'mae': {'value': 0.5, 'standard_deviation': 'NaN'}}}
    """  # noqa: E501
    body = {name: _json_metric(entry) for name, entry in metrics.items()}
    return {
        "version": 0.0,
        "dataset": {"item_count": item_count},
        metric_section(problem_type): body,
    }


def _scalar_value(entry: Any) -> float | None:
    if not (isinstance(entry, Mapping) and "value" in entry):
        return None
    value = entry["value"]
    if isinstance(value, str):
        return math.nan if value == "NaN" else None
    return float(value)


def suggest_constraints(problem_type: ProblemType, statistics: Mapping[str, Any]) -> dict[str, Any]:
    """SageMaker's suggestion: each scalar metric's baseline value is its threshold.

    The best-constant-classifier variants describe a trivial model and get no constraint;
    a metric that is NaN on the baseline (say, AUC on one class) cannot be checked and gets
    none either.
    """
    body = statistics.get(metric_section(problem_type), {})
    section: dict[str, Any] = {}
    for name, entry in body.items():
        value = _scalar_value(entry)
        if value is None or math.isnan(value) or name.endswith("_best_constant_classifier"):
            continue
        operator = "GreaterThanThreshold" if name in ERRORS else "LessThanThreshold"
        section[name] = {"threshold": value, "comparison_operator": operator}
    return {"version": 0.0, constraint_section(problem_type): section}


class ConstraintsError(ValueError):
    """A constraints file that does not say what to check."""


def parse_constraints(
    problem_type: ProblemType, document: Mapping[str, Any]
) -> dict[str, tuple[float, str]]:
    """``{metric: (threshold, operator)}`` from a constraints file, checked.

    Raises :class:`ConstraintsError` naming the metric for a missing or non-numeric
    threshold or an operator other than SageMaker's two.
    """
    section = document.get(constraint_section(problem_type))
    if not isinstance(section, Mapping):
        raise ConstraintsError(
            f"constraints have no {constraint_section(problem_type)!r} section "
            f"(problem_type {problem_type})"
        )
    out: dict[str, tuple[float, str]] = {}
    for name, entry in section.items():
        threshold = entry.get("threshold") if isinstance(entry, Mapping) else None
        operator = entry.get("comparison_operator") if isinstance(entry, Mapping) else None
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise ConstraintsError(f"constraint {name!r}: threshold must be a number")
        if not math.isfinite(threshold):
            raise ConstraintsError(f"constraint {name!r}: threshold must be finite")
        if operator not in OPERATORS:
            raise ConstraintsError(
                f"constraint {name!r}: comparison_operator must be one of {OPERATORS}"
            )
        out[str(name)] = (float(threshold), str(operator))
    return out


def worse_than(value: float, threshold: float, operator: str) -> float:
    """How far ``value`` is on the wrong side of ``threshold`` (negative: on the right side)."""
    return threshold - value if operator == "LessThanThreshold" else value - threshold


def violation(
    name: str, value: float, standard_deviation: float, threshold: float, operator: str
) -> dict[str, str]:
    """One entry of ``constraint_violations.json``, in SageMaker's words.

    Examples
    --------
    >>> violation("f1", 0.55, 0.01, 0.8, "LessThanThreshold")["description"]
    'Metric f1 with 0.55 +/- 0.01 was LessThanThreshold 0.8'
    """
    deviation = "NaN" if math.isnan(standard_deviation) else repr(standard_deviation)
    return {
        "metric_name": name,
        "constraint_check_type": operator,
        "description": (
            f"Metric {name} with {value!r} +/- {deviation} was {operator} {threshold!r}"
        ),
    }
