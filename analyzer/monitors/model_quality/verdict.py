"""The model-quality verdict: SageMaker's rule, less the windows that are worse only by noise.

SageMaker calls a violation whenever a window's metric is on the wrong side of its threshold,
and its suggested thresholds *are* the baseline's values: about half of all windows of an
unchanged model are a hair worse than the baseline on any one metric. We keep the meaning
(a violation is a metric worse than its threshold, with SageMaker's operators and words) and
add a noise margin ``M`` per metric: a metric is in ``alert`` when it is worse than its
threshold by more than ``M``, in ``warning`` when by more than the margin at a ten times
looser rate, ``ok`` otherwise. ``docs/model-quality.md`` derives it; in short:

- **Null hypothesis**: the model performs as it did on the baseline. Its confusion-matrix
  cell probabilities are the baseline's (``baseline_matrix``), so a window of ``n`` labels
  is a multinomial draw of ``n`` from them, and the threshold itself, when it is the
  baseline's value, was a draw of the baseline's ``n_b``.
- **Confusion-matrix metrics** (everything but AUC and the regression errors): a parametric
  bootstrap of both draws gives, per resample, each metric's excess over its threshold in
  units of its own spread; the (1 − α) quantile of the *largest* such excess over all
  checked metrics is the common factor ``q``, and ``M_m = q · sd_m``. The family-wise false
  alarm rate of the window is α (up to Monte Carlo error), with the metrics' correlation
  taken into account instead of a Bonferroni split.
- **AUC** (Hanley–McNeil standard error) and **regression metrics** (standard errors of the
  mean absolute and squared error, delta method for RMSE and r2): normal margins at a
  Bonferroni share of α. Asymptotic; the benchmarks measure what they give at 100 labels.
- When the threshold equals the baseline's value, the baseline's own sampling noise is in
  the margin (the window's per-row variance stands for both: the same model under the null).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

from analyzer.monitors.model_quality.documents import worse_than
from analyzer.monitors.model_quality.metrics import binary_scalars, weighted_scalars

__all__ = [
    "WARNING_FACTOR",
    "MetricDecision",
    "decide",
    "matrix_margins",
    "normal_margin",
    "regression_errors",
]

FloatArray = npt.NDArray[np.float64]
WARNING_FACTOR = 10.0  # warning at a ten times looser false-alarm rate than alert
RESAMPLES = 4000
SMOOTHING = 0.5  # pseudo-count per cell: an empty cell still varies in the resamples


@dataclass(frozen=True)
class MetricDecision:
    """One metric of one window against its threshold."""

    value: float
    threshold: float
    operator: str
    margin: float  # worse than the threshold by more than this: alert
    warning_margin: float  # by more than this: warning
    state: str  # ok | warning | alert | not_enough_data

    @property
    def sagemaker_violation(self) -> bool:
        """What SageMaker's rule alone says: on the wrong side of the threshold at all."""
        return (
            not math.isnan(self.value) and worse_than(self.value, self.threshold, self.operator) > 0
        )


def _state(value: float, threshold: float, operator: str, margin: float, warn: float) -> str:
    if math.isnan(value) or math.isnan(margin):
        return "not_enough_data"
    excess = worse_than(value, threshold, operator)
    if excess > margin:
        return "alert"
    return "warning" if excess > warn else "ok"


def _z(rate: float) -> float:
    # The standard library's normal quantile (Wichura's AS 241, ~1e-16): scipy.stats would
    # cost ``analyze --once`` seconds of import for one number.
    return -NormalDist().inv_cdf(min(rate, 0.5))


def normal_margin(standard_error: float, rate: float) -> float:
    """One-sided normal margin ``z_{rate} · se`` (0 when the rate reaches one half)."""
    return _z(rate) * standard_error


MatrixMetrics = Callable[[FloatArray], Mapping[str, Any]]


def _binary_from_cells(cells: FloatArray) -> Mapping[str, Any]:
    tn, fp, fn, tp = (cells[..., i] for i in range(4))
    return binary_scalars(tp, fp, tn, fn)


def _multiclass_from_cells(cells: FloatArray) -> Mapping[str, Any]:
    k = math.isqrt(cells.shape[-1])
    return weighted_scalars(cells.reshape(*cells.shape[:-1], k, k))


def matrix_margins(
    baseline_cells: FloatArray,
    window_n: int,
    checks: Mapping[str, tuple[float, str, bool]],
    rate: float,
    *,
    multiclass: bool = False,
    baseline_n: int | None = None,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """``{metric: (margin, warning_margin)}`` for confusion-matrix metrics.

    ``baseline_cells`` are the baseline's confusion-matrix counts, flattened
    (binary: TN, FP, FN, TP; multiclass: row-major ``[actual][predicted]``); ``checks``
    maps each checked metric to ``(threshold, operator, threshold_is_baseline_value)``.
    ``baseline_n`` is the number of baseline rows behind the threshold (defaults to the
    sum of the cells).

    Examples
    --------
    >>> cells = np.array([800.0, 50.0, 50.0, 100.0])  # TN FP FN TP of a 1,000-row baseline
    >>> m = matrix_margins(cells, 10_000, {"accuracy": (0.9, "LessThanThreshold", True)}, 0.01)
    >>> 0.005 < m["accuracy"][0] < 0.03
    True
    """
    if not checks or window_n <= 0:
        return {name: (math.nan, math.nan) for name in checks}
    compute: MatrixMetrics = _multiclass_from_cells if multiclass else _binary_from_cells
    probabilities = (baseline_cells + SMOOTHING) / (baseline_cells + SMOOTHING).sum()
    rng = np.random.default_rng(seed)
    window = compute(rng.multinomial(window_n, probabilities, size=RESAMPLES).astype(float))
    n_b = int(baseline_n if baseline_n is not None else baseline_cells.sum())
    paired = n_b > 0 and any(is_baseline for _, _, is_baseline in checks.values())
    base = (
        compute(rng.multinomial(n_b, probabilities, size=RESAMPLES).astype(float))
        if paired
        else None
    )
    expected = compute(probabilities * window_n)
    names = list(checks)
    excess = np.empty((RESAMPLES, len(names)))
    for j, name in enumerate(names):
        _, operator, is_baseline = checks[name]
        reference = base[name] if (base is not None and is_baseline) else expected[name]
        drawn = np.asarray(window[name], dtype=np.float64)
        excess[:, j] = reference - drawn if operator == "LessThanThreshold" else drawn - reference
    spread = np.nanstd(excess, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.where(spread > 0, excess / spread, 0.0)
    worst = np.max(np.nan_to_num(scaled, nan=-np.inf), axis=1)
    factor = float(np.quantile(worst, 1.0 - rate))
    warn_factor = float(np.quantile(worst, 1.0 - min(0.5, rate * WARNING_FACTOR)))
    return {
        name: (factor * float(spread[j]), max(0.0, warn_factor) * float(spread[j]))
        for j, name in enumerate(names)
    }


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil (1982): the standard error of an AUC from P positives, N negatives."""
    if positives == 0 or negatives == 0 or math.isnan(auc):
        return math.nan
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    variance = (
        auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)
    ) / (positives * negatives)
    return math.sqrt(max(variance, 0.0))


def regression_standard_errors(
    y_true: FloatArray, y_pred: FloatArray, metrics: Mapping[str, float], r2_spread: float
) -> dict[str, float]:
    """Standard errors of ``mae, mse, rmse, r2`` for one window (normal approximation).

    ``r2_spread`` is the variance that r2 divides by (the labels', or under SageMaker's
    convention the predictions'); its own noise is left out.
    """
    n = y_true.size
    if n < 2:
        return dict.fromkeys(("mae", "mse", "rmse", "r2"), math.nan)
    error = y_true - y_pred
    se_mae = float(np.std(np.abs(error), ddof=1)) / math.sqrt(n)
    se_mse = float(np.std(error * error, ddof=1)) / math.sqrt(n)
    return regression_errors(se_mae, se_mse, metrics["rmse"], r2_spread)


def regression_errors(se_mae: float, se_mse: float, rmse: float, spread: float) -> dict[str, float]:
    """Each regression metric's standard error from those of the absolute and squared
    errors (the delta method for rmse; r2 = 1 − mse / ``spread``)."""
    return {
        "mae": se_mae,
        "mse": se_mse,
        "rmse": se_mse / (2 * rmse) if rmse > 0 else math.nan,
        "r2": se_mse / spread if spread > 0 else math.nan,
    }


def decide(
    values: Mapping[str, float],
    constraints: Mapping[str, tuple[float, str]],
    margins: Mapping[str, tuple[float, float]],
) -> dict[str, MetricDecision]:
    """Each constrained metric's decision from its value and its two margins."""
    out: dict[str, MetricDecision] = {}
    for name, (threshold, operator) in constraints.items():
        value = float(values.get(name, math.nan))
        margin, warn = margins.get(name, (math.nan, math.nan))
        out[name] = MetricDecision(
            value=value,
            threshold=threshold,
            operator=operator,
            margin=margin,
            warning_margin=warn,
            state=_state(value, threshold, operator, margin, warn),
        )
    return out
