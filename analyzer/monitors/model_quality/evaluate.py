"""One model-quality window, evaluated: joined arrays + baseline in → metrics, states, violations.

Pure. The caller (the service, ``analyze --once``, the baseline command) does the join and
reads the files; this module only counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from analyzer.monitors.model_quality.documents import (
    ProblemType,
    metric_section,
    statistics_document,
    violation,
)
from analyzer.monitors.model_quality.metrics import (
    binary_metrics_with_deviation,
    multiclass_metrics,
    regression_metrics,
    with_standard_deviation,
)
from analyzer.monitors.model_quality.multiclass import multiclass_metrics_of_codes
from analyzer.monitors.model_quality.verdict import (
    MetricDecision,
    auc_standard_error,
    decide,
    matrix_margins,
    normal_margin,
    regression_standard_errors,
)

__all__ = [
    "Baseline",
    "WindowResult",
    "baseline_from_statistics",
    "evaluate_window",
    "judge",
]

FloatArray = npt.NDArray[np.float64]
_STATE_ORDER = ("ok", "not_enough_data", "warning", "alert")


@dataclass(frozen=True)
class Baseline:
    """What the verdict needs of a model-quality baseline ``statistics.json``."""

    values: Mapping[str, float]
    item_count: int
    cells: FloatArray | None = None  # confusion matrix, flattened [actual][predicted]
    classes: tuple[str, ...] = ()


def _number(value: Any) -> float:
    if isinstance(value, str):
        return math.nan
    return float(value)


def baseline_from_statistics(problem_type: ProblemType, statistics: Mapping[str, Any]) -> Baseline:
    """Read a model-quality ``statistics.json`` (ours or SageMaker's)."""
    section = statistics.get(metric_section(problem_type)) or {}
    values = {
        name: _number(entry["value"])
        for name, entry in section.items()
        if isinstance(entry, Mapping) and "value" in entry
    }
    count = int(statistics.get("dataset", {}).get("item_count", 0))
    matrix = section.get("confusion_matrix")
    if not isinstance(matrix, Mapping) or not matrix:
        return Baseline(values, count)
    classes = tuple(
        sorted({str(k) for k in matrix} | {str(p) for row in matrix.values() for p in row})
    )
    if problem_type == "BinaryClassification":
        classes = ("0", "1")
    cells = np.array(
        [float(matrix.get(a, {}).get(p, 0)) for a in classes for p in classes], dtype=np.float64
    )
    return Baseline(values, count, cells, classes)


@dataclass(frozen=True)
class WindowResult:
    """A window's metrics (SageMaker's statistics body), decisions and violations."""

    problem_type: ProblemType
    labels: int
    metrics: dict[str, Any]
    decisions: dict[str, MetricDecision] = field(default_factory=dict)
    state: str = "ok"

    @property
    def violations(self) -> list[dict[str, str]]:
        """Our violations: the metrics in ``alert``, in SageMaker's words."""
        return [
            violation(
                name,
                d.value,
                _deviation(self.metrics.get(name)),
                d.threshold,
                d.operator,
            )
            for name, d in self.decisions.items()
            if d.state == "alert"
        ]

    def statistics(self) -> dict[str, Any]:
        """The window's ``statistics.json``."""
        return statistics_document(self.problem_type, self.metrics, self.labels)


def _deviation(entry: Any) -> float:
    if isinstance(entry, Mapping):
        return _number(entry.get("standard_deviation", math.nan))
    return math.nan


def _values(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {
        name: _number(entry["value"])
        for name, entry in metrics.items()
        if isinstance(entry, Mapping) and "value" in entry
    }


def _checks(
    constraints: Mapping[str, tuple[float, str]], baseline: Baseline | None
) -> dict[str, tuple[float, str, bool]]:
    """Each check with whether its threshold is the baseline's own (noisy) value."""
    out: dict[str, tuple[float, str, bool]] = {}
    for name, (threshold, operator) in constraints.items():
        base = baseline.values.get(name) if baseline is not None else None
        is_baseline = base is not None and math.isclose(
            base, threshold, rel_tol=1e-12, abs_tol=1e-15
        )
        out[name] = (threshold, operator, is_baseline)
    return out


def _paired_factor(n: int, baseline: Baseline | None, is_baseline: bool) -> float:
    if not is_baseline or baseline is None or baseline.item_count <= 0:
        return 1.0
    return math.sqrt(1.0 + n / baseline.item_count)


def _zero_one(values: Sequence[Any] | FloatArray) -> Any:
    """Binary labels or predictions as a numeric array (0/1 texts parsed, numbers as they
    are): counting the positives (``count_nonzero``) would count every text."""
    array = np.asarray(values)
    return array if array.dtype.kind in "biuf" else array.astype(np.int64)


def evaluate_window(
    problem_type: ProblemType,
    y_true: Sequence[Any] | FloatArray,
    y_pred: Sequence[Any] | FloatArray,
    y_score: FloatArray | None,
    constraints: Mapping[str, tuple[float, str]],
    baseline: Baseline | None,
    *,
    false_alarm_rate: float,
    min_labels: int,
    r2_convention: str = "standard",
    seed: int = 0,
    classes: Sequence[str] | None = None,
) -> WindowResult:
    """Metrics of the joined pairs of one window and each constrained metric's state.

    ``classes`` (multiclass only): ``y_true`` and ``y_pred`` are integer codes into these
    class names instead of the labels themselves (the same metrics, no object a row).

    Below ``min_labels`` the metrics are still computed and shown, but every state is
    ``not_enough_data`` and nothing is a violation.
    """
    n = len(y_true)
    if problem_type == "BinaryClassification":  # 0/1 numbers from here on (texts parsed once)
        y_true, y_pred = _zero_one(y_true), _zero_one(y_pred)
    if problem_type == "Regression":
        truth = np.asarray(y_true, dtype=np.float64)
        guess = np.asarray(y_pred, dtype=np.float64)
        metrics = with_standard_deviation(
            lambda t, p: regression_metrics(t, p, r2_convention),  # type: ignore[arg-type]
            [truth, guess],
            seed=seed,
        )
    elif problem_type == "BinaryClassification":
        metrics = binary_metrics_with_deviation(
            np.asarray(y_true),  # 0/1 (_zero_one above), taken as int8 there
            np.asarray(y_pred),
            y_score,
            seed=seed,
        )
    elif classes is not None:  # codes into the class names (the batch readers')
        metrics = multiclass_metrics_of_codes(y_true, y_pred, classes, seed=seed)
    else:
        metrics = with_standard_deviation(
            multiclass_metrics, [[str(v) for v in y_true], [str(v) for v in y_pred]], seed=seed
        )
    return judge(
        problem_type,
        n,
        metrics,
        constraints,
        baseline,
        false_alarm_rate=false_alarm_rate,
        min_labels=min_labels,
        seed=seed,
        positives=lambda: int(np.count_nonzero(np.asarray(y_true))),  # 0/1
        regression_errors=lambda values: _regression_errors(y_true, y_pred, values, r2_convention),
    )


def _regression_errors(
    y_true: Any, y_pred: Any, values: Mapping[str, float], r2_convention: str
) -> dict[str, float]:
    truth = np.asarray(y_true, dtype=np.float64)
    guess = np.asarray(y_pred, dtype=np.float64)
    spread_of = guess if r2_convention == "sagemaker" else truth
    return regression_standard_errors(truth, guess, values, float(np.var(spread_of)))


def judge(
    problem_type: ProblemType,
    n: int,
    metrics: dict[str, Any],
    constraints: Mapping[str, tuple[float, str]],
    baseline: Baseline | None,
    *,
    false_alarm_rate: float,
    min_labels: int,
    seed: int = 0,
    positives: Callable[[], int],
    regression_errors: Callable[[Mapping[str, float]], dict[str, float]],
) -> WindowResult:
    """The verdict on a window's ``metrics`` (of ``n`` labelled rows): what
    :func:`evaluate_window` does once it has them, for a caller that computed them in
    another way (the batch's spill path, ``streaming.py``). ``positives``: the labels' count
    of 1 (binary); ``regression_errors``: the regression metrics' standard errors."""
    values = _values(metrics)
    if n < max(min_labels, 1):
        decisions = {
            name: MetricDecision(
                values.get(name, math.nan), t, op, math.nan, math.nan, "not_enough_data"
            )
            for name, (t, op) in constraints.items()
        }
        return WindowResult(
            problem_type, n, metrics, decisions, "not_enough_data" if constraints else "ok"
        )
    checks = _checks(constraints, baseline)
    margins = _margins(
        problem_type, checks, values, baseline, n, false_alarm_rate, positives,
        regression_errors, seed,
    )  # fmt: skip
    decisions = decide(values, constraints, margins)
    states = [d.state for d in decisions.values()] or ["ok"]
    worst = max(states, key=_STATE_ORDER.index)
    return WindowResult(problem_type, n, metrics, decisions, worst)


def _margins(
    problem_type: ProblemType,
    checks: Mapping[str, tuple[float, str, bool]],
    values: Mapping[str, float],
    baseline: Baseline | None,
    n: int,
    rate: float,
    positives_of: Callable[[], int],
    regression_errors: Callable[[Mapping[str, float]], dict[str, float]],
    seed: int,
) -> dict[str, tuple[float, float]]:
    if problem_type == "Regression":
        errors = regression_errors(values)
        share = rate / max(len(checks), 1)
        out = {}
        for name, (_, _, is_baseline) in checks.items():
            se = errors.get(name, math.nan) * _paired_factor(n, baseline, is_baseline)
            out[name] = (normal_margin(se, share), normal_margin(se, share * 10))
        return out
    matrix_checks = {k: v for k, v in checks.items() if k != "auc"}
    groups = int(bool(matrix_checks)) + int("auc" in checks)
    share = rate / max(groups, 1)
    out = {}
    cells = baseline.cells if baseline is not None else None
    if matrix_checks and cells is not None:
        out.update(
            matrix_margins(
                cells,
                n,
                matrix_checks,
                share,
                multiclass=problem_type == "MulticlassClassification",
                baseline_n=baseline.item_count if baseline is not None else None,
                seed=seed,
            )
        )
    if "auc" in checks and problem_type == "BinaryClassification":
        positives = positives_of()
        se = auc_standard_error(values.get("auc", math.nan), positives, n - positives)
        se *= _paired_factor(n, baseline, checks["auc"][2])
        out["auc"] = (normal_margin(se, share), normal_margin(se, share * 10))
    return out
