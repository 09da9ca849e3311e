"""A window's metrics from its pairs in blocks: the batch's spill path (flat memory in rows).

Pure numpy. ``analyze --once`` over more rows than ``batch_memory_rows`` joins on disk
(``analyzer/ingest/model_quality_spill.py``) and hands the pairs here a block at a time, in
prediction order (the order of the in-memory path's pairs), then, for the binary AUC and
curves, the labelled scores in sorted blocks from an external sort. What comes out is what
:func:`~.metrics.binary_metrics_with_deviation`, :func:`~.multiclass.multiclass_metrics_of_codes`
and ``with_standard_deviation(regression_metrics, …)`` give on the whole arrays:

- the 5 subsamples are the same draws: pair ``i`` is in subsample ``j`` when the
  ``(j·n + i)``-th number of the seeded stream is below 0.8 (:func:`~.metrics._subsample_masks`
  draws the masks one after another from one generator); here each subsample's generator
  is advanced to ``j·n`` once (:class:`SubsampleFlags`), so a block's flags cost its rows;
- confusion counts and matrices are integers: equal in any order;
- AUC and the curve points are sums of integers below 2⁵³ (:class:`~.ranking.AucWalk`): the
  same bits whatever the blocks;
- regression's MAE and MSE are running sums in row order, carried from block to block (the
  same additions as ``np.cumsum`` of the whole array: the same bits), and SageMaker's r2
  spread (Welford) likewise; the labels' mean and spread (standard r2, the verdict's standard
  errors) are sums in blocks, equal to the whole-array values to ~1e-15 relative, not to
  the bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from analyzer.monitors.model_quality.metrics import (
    MIN_ROWS_FOR_DEVIATION,
    SUBSAMPLE_FRACTION,
    SUBSAMPLES,
    _binary_rates,
    curve_documents,
    multiclass_from_matrix,
    with_standard_deviation,
)
from analyzer.monitors.model_quality.ranking import CurveWalk
from analyzer.monitors.model_quality.verdict import regression_errors

__all__ = [
    "BinaryStream",
    "MulticlassStream",
    "RegressionStream",
    "SubsampleFlags",
    "curves_of",
]

Flags = npt.NDArray[np.uint8]


class SubsampleFlags:
    """Each pair's subsamples (bit ``j`` for the ``j``-th) for ``n`` pairs taken in order, a
    block at a time; None below 200 pairs (no standard deviation)."""

    def __init__(self, n: int, seed: int) -> None:
        self.active = n >= MIN_ROWS_FOR_DEVIATION
        self._generators = []
        if self.active:
            for j in range(SUBSAMPLES):
                bits = np.random.PCG64(seed)  # default_rng(seed)'s
                bits.advance(j * n)  # one 64-bit draw a double
                self._generators.append(np.random.Generator(bits))

    def next(self, size: int) -> Flags | None:
        if not self.active:
            return None
        flags = np.zeros(size, dtype=np.uint8)
        for j, rng in enumerate(self._generators):
            flags |= (rng.random(size) < SUBSAMPLE_FRACTION).view(np.uint8) << np.uint8(j)
        return flags


def _kept(flags: Flags | None, subsample: int) -> Any:
    assert flags is not None
    return (flags & np.uint8(1 << subsample)) != 0


class BinaryStream:
    """The binary section: confusion counts of the window and of each subsample."""

    def __init__(self) -> None:
        self.counts = np.zeros((SUBSAMPLES + 1, 4), dtype=np.int64)  # TN FP FN TP

    def add(self, y_true: Any, y_pred: Any, flags: Flags | None) -> None:
        cell = 2 * y_true.astype(np.int8) + y_pred.astype(np.int8)
        self.counts[0] += np.bincount(cell, minlength=4)
        if flags is not None:
            for j in range(SUBSAMPLES):
                self.counts[j + 1] += np.bincount(cell[_kept(flags, j)], minlength=4)

    @property
    def n(self) -> int:
        return int(self.counts[0].sum())

    @property
    def positives(self) -> int:
        return int(self.counts[0, 2] + self.counts[0, 3])

    def metrics(
        self,
        auc: Sequence[float] | None,
        curves: tuple[dict[str, list[float]], dict[str, list[float]]] | None,
    ) -> dict[str, Any]:
        """``binary_metrics_with_deviation``'s document; ``auc``: the window's and each
        subsample's (None: no probability attribute), ``curves``: ROC and PR (None: none)."""
        tn, fp, fn, tp = (int(v) for v in self.counts[0])
        full: dict[str, Any] = {"confusion_matrix": {"0": {"0": tn, "1": fp},
                                                     "1": {"0": fn, "1": tp}}}  # fmt: skip
        full.update(_binary_rates(tp, fp, tn, fn))
        if auc is not None:
            full["auc"] = auc[0]
            if curves is not None:
                full["receiver_operating_characteristic_curve"] = curves[0]
                full["precision_recall_curve"] = curves[1]

        def scalars(subsample: int) -> dict[str, Any]:
            stn, sfp, sfn, stp = (int(v) for v in self.counts[subsample + 1])
            out = _binary_rates(stp, sfp, stn, sfn)
            if auc is not None:
                out["auc"] = auc[subsample + 1]
            return out

        return with_standard_deviation(
            lambda *_: full, [range(self.n)], scalars=scalars, subsamples=range(SUBSAMPLES)
        )


def curves_of(walk: CurveWalk) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """ROC and precision–recall points from a curve walk (``metrics._curves``' formulas)."""
    return curve_documents(*walk.points())


class MulticlassStream:
    """Confusion matrices over the run's class codes, of the window and each subsample,
    grown to the largest code seen (a few classes: a few cells)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.k = 0
        self.matrices = np.zeros((SUBSAMPLES + 1, 0, 0), dtype=np.int64)
        self.n = 0

    def add(self, y_true: Any, y_pred: Any, flags: Flags | None) -> None:
        truth, guess = y_true.astype(np.int64), y_pred.astype(np.int64)
        if truth.size == 0:
            return
        k = max(self.k, int(truth.max()) + 1, int(guess.max()) + 1)
        if k > self.k:
            grown = np.zeros((SUBSAMPLES + 1, k, k), dtype=np.int64)
            grown[:, : self.k, : self.k] = self.matrices
            self.matrices, self.k = grown, k
        cells = truth * k + guess
        self.matrices[0] += np.bincount(cells, minlength=k * k).reshape(k, k)
        if flags is not None:
            for j in range(SUBSAMPLES):
                kept = cells[_kept(flags, j)]
                self.matrices[j + 1] += np.bincount(kept, minlength=k * k).reshape(k, k)
        self.n += truth.size

    def _metrics(self, index: int) -> dict[str, Any]:
        """``multiclass._metrics`` from the codes' matrix: the classes seen, sorted as
        strings, and their confusion matrix."""
        matrix = self.matrices[index]
        present = np.flatnonzero((matrix.sum(axis=0) + matrix.sum(axis=1)) > 0)
        order = sorted(present.tolist(), key=lambda code: self.names[code])
        reordered = matrix[np.ix_(order, order)]
        return multiclass_from_matrix(reordered, [self.names[code] for code in order])

    def metrics(self) -> dict[str, Any]:
        """``multiclass_metrics_of_codes``' document."""
        full = self._metrics(0)
        return with_standard_deviation(
            lambda *_: full,
            [range(self.n)],
            scalars=lambda j: self._metrics(j + 1),
            subsamples=range(SUBSAMPLES),
        )


class _RegressionSums:
    """One subsample's (or the window's) running sums."""

    def __init__(self) -> None:
        self.n = 0
        self.abs = self.sq = 0.0  # running sums in row order (np.cumsum's additions)
        self.mean = self.m2 = 0.0  # Welford over the predictions (SageMaker's r2)
        self.truth_sum = self.truth_m2 = 0.0  # the labels' sum, then their squared spread

    def add(self, truth: Any, guess: Any, welford: bool) -> None:
        if not truth.size:
            return
        error = truth - guess
        self.abs = float(np.cumsum(np.r_[self.abs, np.abs(error)])[-1])
        self.sq = float(np.cumsum(np.r_[self.sq, error * error])[-1])
        self.truth_sum += float(np.sum(truth))
        if welford:
            mean, m2, count = self.mean, self.m2, self.n
            for value in guess.tolist():
                count += 1
                delta = value - mean
                mean += delta / count
                m2 += (value - mean) * delta
            self.mean, self.m2 = mean, m2
        self.n += truth.size

    def spread(self, truth: Any) -> None:
        """The second pass: the labels' squared deviations from their mean."""
        if truth.size:
            centred = truth - self.truth_sum / self.n
            self.truth_m2 += float(np.dot(centred, centred))

    def metrics(self, r2_convention: str) -> dict[str, float]:
        """``regression_metrics``' values from the sums."""
        if self.n == 0:
            return dict.fromkeys(("mae", "mse", "rmse", "r2"), math.nan)
        ss_err = math.sqrt(self.sq) ** 2
        mse = ss_err / self.n
        ss_tot = self.m2 if r2_convention == "sagemaker" else self.truth_m2
        return {
            "mae": self.abs / self.n,
            "mse": mse,
            "rmse": math.sqrt(mse),
            "r2": 1.0 - ss_err / ss_tot if ss_tot > 0 else math.nan,
        }


class RegressionStream:
    """Regression's metrics in two passes over the pairs in prediction order (the second
    for the labels' spread around their mean), and the verdict's standard errors."""

    def __init__(self, r2_convention: str) -> None:
        self.r2_convention = r2_convention
        self.sums = [_RegressionSums() for _ in range(SUBSAMPLES + 1)]
        # the verdict's spreads: |e|, e² and the r2 spread's variable (second pass)
        self.guess_sum = 0.0
        self.deviations = [0.0, 0.0, 0.0]

    def _each(self, truth: Any, guess: Any, flags: Flags | None) -> Iterable[Any]:
        yield self.sums[0], truth, guess
        if flags is not None:
            for j in range(SUBSAMPLES):
                kept = _kept(flags, j)
                yield self.sums[j + 1], truth[kept], guess[kept]

    def add(self, y_true: Any, y_pred: Any, flags: Flags | None) -> None:
        """The first pass, a block of pairs in prediction order."""
        truth = np.asarray(y_true, dtype=np.float64)
        guess = np.asarray(y_pred, dtype=np.float64)
        welford = self.r2_convention == "sagemaker"
        for sums, t, g in self._each(truth, guess, flags):
            sums.add(t, g, welford)
        self.guess_sum += float(np.sum(guess))

    def second(self, y_true: Any, y_pred: Any, flags: Flags | None) -> None:
        """The second pass over the same blocks, in the same order."""
        truth = np.asarray(y_true, dtype=np.float64)
        guess = np.asarray(y_pred, dtype=np.float64)
        for sums, t, _ in self._each(truth, guess, flags):
            sums.spread(t)
        full = self.sums[0]
        if full.n:
            error = truth - guess
            spread_of = guess if self.r2_convention == "sagemaker" else truth
            means = (full.abs / full.n, full.sq / full.n,
                     (self.guess_sum if self.r2_convention == "sagemaker" else full.truth_sum)
                     / full.n)  # fmt: skip
            for i, values in enumerate((np.abs(error), error * error, spread_of)):
                centred = values - means[i]
                self.deviations[i] += float(np.dot(centred, centred))

    @property
    def n(self) -> int:
        return self.sums[0].n

    def metrics(self) -> dict[str, Any]:
        """``with_standard_deviation(regression_metrics, …)``'s document."""
        full = self.sums[0].metrics(self.r2_convention)
        return with_standard_deviation(
            lambda *_: full,
            [range(self.n)],
            scalars=lambda j: self.sums[j + 1].metrics(self.r2_convention),
            subsamples=range(SUBSAMPLES),
        )

    def standard_errors(self, values: Mapping[str, float]) -> dict[str, float]:
        """``verdict.regression_standard_errors`` from the sums."""
        n = self.n
        if n < 2:
            return dict.fromkeys(("mae", "mse", "rmse", "r2"), math.nan)
        se_mae = math.sqrt(self.deviations[0] / (n - 1)) / math.sqrt(n)
        se_mse = math.sqrt(self.deviations[1] / (n - 1)) / math.sqrt(n)
        return regression_errors(se_mae, se_mse, values["rmse"], self.deviations[2] / n)
