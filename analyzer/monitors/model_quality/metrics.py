"""Model-quality metrics as SageMaker's model-quality monitor lists them, from plain arrays.

Pure numpy. Three problem types, each a function from the
joined arrays of one window to ``{metric: value}``:

- :func:`regression_metrics`: ``mae, mse, rmse, r2``;
- :func:`binary_metrics`: the confusion matrix, recall, precision, accuracy, the four rates,
  ROC and precision–recall curves, AUC, F0.5/F1/F2 and the best-constant-classifier
  variants (the classifier that always answers the positive class);
- :func:`multiclass_metrics`: the confusion matrix, accuracy and the support-weighted
  recall, precision and F-scores, with the best-constant variants (always the most frequent
  true class).

Conventions, where SageMaker's container and scikit-learn could differ:

- A ratio whose denominator is zero (precision with no predicted positive, recall with no
  actual positive, AUC with one class) is NaN, written ``"NaN"`` as SageMaker writes it;
  inside a weighted multiclass average a class's 0/0 precision or F-score counts as 0
  (Spark's ``MulticlassMetrics`` and scikit-learn's ``zero_division=0`` agree on that).
- Confusion matrices are ``{actual: {predicted: count}}``, as in SageMaker's example.
- ``r2`` is the coefficient of determination, ``1 − SS_res / SS_tot`` with ``SS_tot`` around
  the mean of the *labels* (scikit-learn's). SageMaker's container divides by the spread of
  the *predictions* instead (Spark's ``RegressionMetrics`` fed its pairs the other way round:
  its own example file shows it); ``r2_convention="sagemaker"`` reproduces that number, so
  that thresholds taken from a SageMaker-made baseline keep their meaning.
- Curves are cut to at most ``max_curve_points`` thresholds (evenly by rank, keeping both
  ends), so that a report stays small on a window of a million labels; AUC is exact.
- ``standard_deviation`` (:func:`with_standard_deviation`): SageMaker's recipe, the metric on
  5 subsamples of 80% (each row kept with probability 0.8, as Spark's ``sample``), seeded,
  when n ≥ 200; else NaN. The sample
  standard deviation (ddof 1, as Spark's ``stddev``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from analyzer.monitors.model_quality.ranking import (
    average_ranks,
    sorted_auc,
    sorted_curve_points,
    tie_blocks,
)

__all__ = [
    "BETAS",
    "BINARY_SCALARS",
    "MULTICLASS_SCALARS",
    "REGRESSION_SCALARS",
    "average_ranks",
    "binary_metrics",
    "binary_metrics_with_deviation",
    "binary_scalars",
    "curve_documents",
    "multiclass_from_matrix",
    "multiclass_metrics",
    "regression_metrics",
    "weighted_scalars",
    "with_standard_deviation",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
R2Convention = Literal["standard", "sagemaker"]

BETAS: dict[str, float] = {"f0_5": 0.5, "f1": 1.0, "f2": 2.0}
REGRESSION_SCALARS = ("mae", "mse", "rmse", "r2")
_BINARY_RATES = (
    "recall",
    "precision",
    "accuracy",
    "true_positive_rate",
    "true_negative_rate",
    "false_positive_rate",
    "false_negative_rate",
)
_BEST_CONSTANT = ("recall", "precision", "accuracy", *BETAS)
BINARY_SCALARS = (
    *_BINARY_RATES,
    "auc",
    *BETAS,
    *(f"{name}_best_constant_classifier" for name in _BEST_CONSTANT),
)
_WEIGHTED = ("weighted_recall", "weighted_precision", *(f"weighted_{b}" for b in BETAS))
MULTICLASS_SCALARS = (
    "accuracy",
    *_WEIGHTED,
    *(f"{name}_best_constant_classifier" for name in ("accuracy", *_WEIGHTED)),
)
SUBSAMPLES = 5
SUBSAMPLE_FRACTION = 0.8
MIN_ROWS_FOR_DEVIATION = 200
MAX_CURVE_POINTS = 1001
_MASK_CHUNK = 1 << 16


def _ratio(numerator: Any, denominator: Any) -> Any:
    """``numerator / denominator``, NaN where the denominator is 0; scalars or arrays."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    out = np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den != 0)
    return float(out) if out.ndim == 0 else out


def _f_beta(tp: Any, fp: Any, fn: Any, beta: float) -> Any:
    """F-beta from counts: ``(1+β²)TP / ((1+β²)TP + β²FN + FP)``; NaN when all three are 0."""
    b2 = beta * beta
    return _ratio((1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp)


def regression_metrics(
    y_true: FloatArray, y_pred: FloatArray, r2_convention: R2Convention = "standard"
) -> dict[str, float]:
    """``mae, mse, rmse, r2`` of one window; all NaN on an empty one.

    Examples
    --------
    >>> m = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
    >>> round(m["mae"], 4), round(m["mse"], 4), round(m["r2"], 4)
    (0.3333, 0.3333, 0.5)
    """
    if y_true.size == 0:
        return dict.fromkeys(REGRESSION_SCALARS, math.nan)
    n = y_true.size
    error = y_true - y_pred
    # Sums in row order (cumsum is sequential), as Spark's summarizer adds, and the squared
    # error through its L2 norm: SageMaker's example file is reproduced to the last digit.
    ss_err = math.sqrt(float(np.cumsum(error * error)[-1])) ** 2
    mse = ss_err / n
    if r2_convention == "sagemaker":
        ss_tot = _welford_m2(y_pred)
    else:
        centred = y_true - np.mean(y_true)
        ss_tot = float(np.dot(centred, centred))
    r2 = 1.0 - ss_err / ss_tot if ss_tot > 0 else math.nan
    return {
        "mae": float(np.cumsum(np.abs(error))[-1]) / n,
        "mse": mse,
        "rmse": math.sqrt(mse),
        "r2": r2,
    }


def _welford_m2(values: FloatArray) -> float:
    """The sum of squared deviations from the mean, updated row by row as Spark's
    ``MultivariateOnlineSummarizer`` does (its ``variance · (n − 1)``)."""
    mean = m2 = 0.0
    for count, value in enumerate(values.tolist(), start=1):
        delta = value - mean
        mean += delta / count
        m2 += (value - mean) * delta
    return m2


class _Ranked:
    """The rows sorted by descending score once: AUC and curves of any subset without a sort.

    A subsample keeps its order when taken from the sorted rows, so the 5 subsamples of
    :func:`with_standard_deviation` get their AUC in linear time: each row's subsample
    memberships (``flags``, bit ``j`` for subsample ``j``) are sorted with it, and the
    sorted rows are walked in blocks (:mod:`.ranking`). Held per row: the sorted score (8
    bytes), label (1) and flags (1); the order is dropped once used.
    """

    def __init__(self, y_true: Any, y_score: FloatArray, flags: Any = None) -> None:
        score = np.negative(y_score)
        order = np.argsort(score)
        np.take(y_score, order, out=score, mode="clip")  # descending, same buffer (no copy)
        self.score = score
        self.hit = y_true[order]
        self.flags = flags[order] if flags is not None else None
        self.blocks = tie_blocks(score.size, lambda lo, hi: score[lo:hi])

    def auc(self, subsample: int | None = None) -> float:
        flags, bit = self.flags, 1 << (subsample or 0)
        keep = None
        if subsample is not None and flags is not None:
            keep = lambda lo, hi: (flags[lo:hi] & bit) != 0  # noqa: E731
        return sorted_auc(self.hit, self.score, self.blocks, keep)


def _curves(ranked: _Ranked, most: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """ROC and precision–recall points at every distinct score, highest first (thinned to
    ``most`` points with the origin)."""
    return curve_documents(*sorted_curve_points(ranked.hit, ranked.score, ranked.blocks, most - 1))


def curve_documents(cut: Any, hits: Any) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """The ROC and precision–recall sections from the curve's points: each point's last
    row (``cut``, from 0) and the positives up to it (``hits``), highest score first."""
    tps = hits.astype(np.float64)
    fps = (cut + 1).astype(np.float64) - tps
    positives, negatives = float(tps[-1]), float(fps[-1])
    tpr = tps / positives if positives else np.full_like(tps, np.nan)
    fpr = fps / negatives if negatives else np.full_like(fps, np.nan)
    precision = tps / (tps + fps)
    roc = {
        "false_positive_rates": [0.0, *fpr.tolist()],
        "true_positive_rates": [0.0, *tpr.tolist()],
    }
    pr = {"precisions": [1.0, *precision.tolist()], "recalls": [0.0, *tpr.tolist()]}
    return roc, pr


def _codes(values: Any) -> Any:
    """Binary labels or predictions as int8 (0/1): 1 byte a row, exact for 0/1."""
    array = np.asarray(values)
    return array if array.dtype == np.int8 else array.astype(np.int8)


def _binary_counts(y_true: IntArray, y_pred: IntArray) -> tuple[int, int, int, int]:
    tp = int(np.count_nonzero(y_true & y_pred))
    fp = int(np.count_nonzero(y_pred)) - tp
    fn = int(np.count_nonzero(y_true)) - tp
    return tp, fp, y_true.size - tp - fp - fn, fn


def binary_scalars(tp: Any, fp: Any, tn: Any, fn: Any) -> dict[str, Any]:
    """The confusion-matrix metrics of the binary section from its four counts.

    Counts may be numbers or equal-shaped arrays (one value per resampled matrix).
    """
    tpr = _ratio(tp, tp + fn)
    fpr = _ratio(fp, fp + tn)
    out = {
        "recall": tpr,
        "precision": _ratio(tp, tp + fp),
        "accuracy": _ratio(tp + tn, tp + fp + tn + fn),
        "true_positive_rate": tpr,
        "true_negative_rate": 1.0 - fpr,
        "false_positive_rate": fpr,
        "false_negative_rate": 1.0 - tpr,
    }
    out.update({name: _f_beta(tp, fp, fn, beta) for name, beta in BETAS.items()})
    return out


def binary_metrics(
    y_true: IntArray,
    y_pred: IntArray,
    y_score: FloatArray | None = None,
    *,
    max_curve_points: int = MAX_CURVE_POINTS,
) -> dict[str, Any]:
    """SageMaker's ``binary_classification_metrics`` of one window (values only).

    ``y_true`` and ``y_pred`` hold 0/1; ``y_score`` the probability of class 1 (without it,
    AUC and the curves are absent, as in SageMaker when no probability attribute is set).

    Examples
    --------
    >>> m = binary_metrics(np.array([0, 0, 0, 1]), np.array([0, 1, 1, 1]))
    >>> m["confusion_matrix"], round(m["precision"], 4), m["accuracy_best_constant_classifier"]
    ({'0': {'0': 1, '1': 2}, '1': {'0': 0, '1': 1}}, 0.3333, 0.25)
    """
    y_true = _codes(y_true)
    y_pred = _codes(y_pred)
    ranked = _ranked(y_true, y_score)
    return _binary(y_true, y_pred, y_score, ranked, max_curve_points)


def _ranked(y_true: Any, y_score: FloatArray | None, flags: Any = None) -> _Ranked | None:
    if y_score is None or not y_true.size:
        return None
    return _Ranked(y_true, np.asarray(y_score, dtype=np.float64), flags)


def _binary(
    y_true: IntArray,
    y_pred: IntArray,
    y_score: FloatArray | None,
    ranked: _Ranked | None,
    max_curve_points: int,
) -> dict[str, Any]:
    tp, fp, tn, fn = _binary_counts(y_true, y_pred)
    out: dict[str, Any] = {"confusion_matrix": {"0": {"0": tn, "1": fp}, "1": {"0": fn, "1": tp}}}
    out.update(_binary_rates(tp, fp, tn, fn))
    if ranked is not None:
        out["auc"] = ranked.auc()
        roc, pr = _curves(ranked, max_curve_points)
        out["receiver_operating_characteristic_curve"] = roc
        out["precision_recall_curve"] = pr
    elif y_score is not None:
        out["auc"] = math.nan
    return out


def _binary_rates(tp: int, fp: int, tn: int, fn: int) -> dict[str, Any]:
    out = binary_scalars(tp, fp, tn, fn)
    positives, negatives = tp + fn, tn + fp
    constant = binary_scalars(positives, negatives, 0, 0)  # always answers "1"
    out.update({f"{name}_best_constant_classifier": constant[name] for name in _BEST_CONSTANT})
    return out


def binary_metrics_with_deviation(
    y_true: IntArray,
    y_pred: IntArray,
    y_score: FloatArray | None = None,
    *,
    seed: int = 0,
    max_curve_points: int = MAX_CURVE_POINTS,
) -> dict[str, Any]:
    """``with_standard_deviation(binary_metrics, …)``, the same values, one sort in all.

    The subsamples need only the scalars: their confusion counts come from one ``bincount``
    and their AUC from the full window's sort (a subset keeps its order), so a window of a
    million labels costs one sort instead of six, and no curve is drawn for a subsample.
    """
    y_true = _codes(y_true)
    y_pred = _codes(y_pred)
    cell = 2 * y_true + y_pred  # 0 TN, 1 FP, 2 FN, 3 TP (int8: a byte a row)
    n = y_true.size
    flags = None  # each row's subsamples, bit j for the j-th (the masks' same draws)
    if n >= MIN_ROWS_FOR_DEVIATION:
        flags = np.zeros(n, dtype=np.uint8)
        for j, mask in enumerate(_subsample_masks(n, seed)):
            flags |= mask.view(np.uint8) << np.uint8(j)
    ranked = _ranked(y_true, y_score, flags)
    full = _binary(y_true, y_pred, y_score, ranked, max_curve_points)
    del y_true, y_pred

    def scalars(subsample: int) -> dict[str, Any]:
        assert flags is not None
        kept = cell[(flags & np.uint8(1 << subsample)) != 0]
        tn, fp, fn, tp = (int(np.count_nonzero(kept == c)) for c in range(4))
        out = _binary_rates(tp, fp, tn, fn)
        if ranked is not None:
            out["auc"] = ranked.auc(subsample)
        return out

    return with_standard_deviation(
        lambda *_: full, [cell], seed=seed, scalars=scalars, subsamples=range(SUBSAMPLES)
    )


def weighted_scalars(matrix: Any) -> dict[str, Any]:
    """Accuracy and the support-weighted recall, precision and F-scores of a confusion matrix.

    ``matrix[..., actual, predicted]``: one matrix, or a stack of them (one value each).
    A class's 0/0 precision or F-score counts as 0 inside the average.
    """
    counts = np.asarray(matrix, dtype=np.float64)
    tp = np.diagonal(counts, axis1=-2, axis2=-1)
    support = counts.sum(axis=-1)
    predicted = counts.sum(axis=-2)
    n = support.sum(axis=-1, keepdims=True)
    weight = _ratio(support, n)

    def average(numerator: Any, denominator: Any) -> Any:
        per_class = np.nan_to_num(_ratio(numerator, denominator), nan=0.0)
        total = np.sum(weight * per_class, axis=-1)
        return float(total) if np.ndim(total) == 0 else total

    out = {
        "accuracy": _ratio(tp.sum(axis=-1), n[..., 0]),
        "weighted_recall": average(tp, support),
        "weighted_precision": average(tp, predicted),
    }
    for name, beta in BETAS.items():
        b2 = beta * beta
        denominator = (1 + b2) * tp + b2 * (support - tp) + (predicted - tp)
        out[f"weighted_{name}"] = average((1 + b2) * tp, denominator)
    return out


def multiclass_metrics(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, Any]:
    """SageMaker's ``multiclass_classification_metrics`` of one window (values only).

    Labels are compared as strings; the classes are those seen in either array, sorted.

    Examples
    --------
    >>> m = multiclass_metrics(["a", "b", "b", "c"], ["a", "b", "c", "c"])
    >>> m["accuracy"], round(m["weighted_precision"], 4), m["accuracy_best_constant_classifier"]
    (0.75, 0.875, 0.5)
    """
    n = len(y_true)
    classes = sorted(set(y_true) | set(y_pred))
    if n == 0:
        return multiclass_from_matrix(np.zeros((0, 0), dtype=np.int64), [])
    where = {label: i for i, label in enumerate(classes)}
    truth = np.fromiter((where[v] for v in y_true), np.int64, n)
    guess = np.fromiter((where[v] for v in y_pred), np.int64, n)
    k = len(classes)
    matrix = np.bincount(truth * k + guess, minlength=k * k).reshape(k, k)
    return multiclass_from_matrix(matrix, classes)


def multiclass_from_matrix(
    matrix: Any, classes: Sequence[str], *, scalars_only: bool = False
) -> dict[str, Any]:
    """:func:`multiclass_metrics` from the confusion matrix of ``classes`` (sorted, those
    seen in the window): ``matrix[actual, predicted]``; an empty one is an empty window.
    ``scalars_only``: without the matrix as a mapping (k² entries: a subsample's
    deviation needs only the scalars)."""
    if not len(classes):
        nan = dict.fromkeys(MULTICLASS_SCALARS, math.nan)
        return nan if scalars_only else {"confusion_matrix": {}, **nan}
    support = matrix.sum(axis=1)
    out: dict[str, Any] = {}
    if not scalars_only:
        out["confusion_matrix"] = {
            actual: dict(zip(classes, map(int, row), strict=True))
            for actual, row in zip(classes, matrix.tolist(), strict=True)
        }
    out.update(weighted_scalars(matrix))
    top = int(np.argmax(support))  # the most frequent true class; ties: the first in order
    constant = np.zeros_like(matrix)
    constant[:, top] = support
    best = weighted_scalars(constant)
    out.update({f"{name}_best_constant_classifier": value for name, value in best.items()})
    return out


def _is_scalar(value: object) -> bool:
    return isinstance(value, float)


def with_standard_deviation(
    compute: Callable[..., Mapping[str, Any]],
    arrays: Sequence[Any],
    *,
    seed: int = 0,
    scalars: Callable[[Any], Mapping[str, Any]] | None = None,
    subsamples: Iterable[Any] | None = None,
) -> dict[str, Any]:
    """``compute(*arrays)`` with each scalar as ``{"value", "standard_deviation"}``.

    The deviation is SageMaker's: the metric over ``SUBSAMPLES`` subsamples of 80% of the
    rows (each row kept with probability 0.8, as Spark's ``sample(false, 0.8)``; seeded), when
    there are at least 200 rows; else NaN.
    Non-scalar entries (confusion matrix, curves) pass through unchanged. ``scalars``, when
    given, computes a subsample's scalar metrics from its row mask (faster than ``compute``
    on copies; the same values), or from each item of ``subsamples`` when given instead of
    the masks (the caller drew them: see :func:`binary_metrics_with_deviation`).

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> y = rng.normal(size=300)
    >>> out = with_standard_deviation(regression_metrics, [y, y + rng.normal(size=300)])
    >>> 0 < out["mae"]["standard_deviation"] < 0.1
    True
    """
    full = compute(*arrays)
    n = len(arrays[0])
    deviations: dict[str, float] = {}
    if n >= MIN_ROWS_FOR_DEVIATION:
        runs: list[Mapping[str, Any]] = []
        masks = subsamples if subsamples is not None else _subsample_masks(n, seed)
        for mask in masks:
            if scalars is not None:
                runs.append(scalars(mask))
            else:
                runs.append(compute(*(_take(a, np.flatnonzero(mask)) for a in arrays)))
        for name, value in full.items():
            if _is_scalar(value):
                values = np.array([run[name] for run in runs], dtype=np.float64)
                deviations[name] = float(np.std(values, ddof=1))
    return {
        name: (
            {"value": value, "standard_deviation": deviations.get(name, math.nan)}
            if _is_scalar(value)
            else value
        )
        for name, value in full.items()
    }


def _subsample_masks(n: int, seed: int) -> Iterator[npt.NDArray[np.bool_]]:
    """The ``SUBSAMPLES`` row masks, one at a time: ``rng.random(n) < 0.8`` each, drawn in
    chunks into the mask (the same stream of numbers: 1 byte a row instead of 9)."""
    rng = np.random.default_rng(seed)
    for _ in range(SUBSAMPLES):
        mask = np.empty(n, dtype=np.bool_)
        for lo in range(0, n, _MASK_CHUNK):
            hi = min(n, lo + _MASK_CHUNK)
            np.less(rng.random(hi - lo), SUBSAMPLE_FRACTION, out=mask[lo:hi])
        yield mask


def _take(array: Any, pick: IntArray) -> Any:
    if isinstance(array, np.ndarray):
        return array[pick]
    if array is None:
        return None
    return [array[i] for i in pick]
