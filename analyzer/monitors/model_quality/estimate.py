"""Performance before labels arrive: confidence-based estimation for binary classifiers.

The idea is NannyML's CBPE (confidence-based performance estimation): if the model's
probability of class 1 is *calibrated*, a window's confusion matrix has a known expectation
without a single label. Calibration comes from the baseline (isotonic regression of the
labels on the scores, ``scipy.optimize.isotonic_regression``); in a window each row with
calibrated probability ``q`` and prediction ``ŷ`` adds ``q·ŷ`` to TP, ``(1−q)·ŷ`` to FP,
``q·(1−ŷ)`` to FN and ``(1−q)(1−ŷ)`` to TN. The band is the spread of the metric when each
label is drawn from its ``q`` (Monte Carlo): what the realized metric would scatter over if
the calibration holds, widened by the calibration's own error (learned from ``n_b`` baseline
labels, it is of the size of the metric's sampling error at ``n_b``: ``× √(1 + n/n_b)``).

When it cannot be trusted, it says so (:attr:`Calibrator.trusted`, :func:`agreement`):

- the baseline is too small, or one class is too rare, to calibrate (fewer than
  ``MIN_PER_CLASS`` labels of a class);
- the scores are not calibrated and calibration does not carry to held-out baseline rows
  (cross-fitted check: fit on half the baseline, estimate accuracy on the other half);
- concept drift: the inputs may look unchanged while the relation between inputs and labels
  moved. No label-free method can see that; once labels arrive, a realized metric outside
  the estimate's band marks the estimate as contradicted.

Regression gets no estimate: without labels the error of a regressor has no expectation
that its own outputs determine (NannyML's DLE trains a second model on the baseline's
errors; that is a model of ours to maintain, not a formula), so we say so instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from analyzer.monitors.model_quality.metrics import average_ranks, binary_scalars

__all__ = [
    "ESTIMATED",
    "Calibrator",
    "Estimate",
    "SumsWalk",
    "agreement",
    "estimate_binary",
    "estimate_from_sums",
    "fit_calibrator",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ESTIMATED = ("accuracy", "precision", "recall", "f1", "auc")
MIN_PER_CLASS = 50
DRAWS = 200
# draws × rows held at once for the Bernoulli draws (the same numbers in any block size: the
# stream is drawn row by row); 250,000: two float arrays of 2 MB (it was 2,000,000: 34 MB at
# the peak of a baseline's held-out check, and no faster)
MAX_ROWS_PER_DRAW_BLOCK = 250_000
NORMAL_ABOVE = 20_000  # rows: above, the draws are of the sums' normal law (_normal_draws)
NORMAL_DRAWS = 2000


@dataclass(frozen=True)
class Calibrator:
    """A monotone map from score to the probability of class 1, fitted on the baseline."""

    knots: tuple[float, ...]  # increasing scores
    values: tuple[float, ...]  # calibrated probability at each knot
    trusted: bool
    reason: str  # why not trusted, or "" when trusted
    rows: int = 0  # baseline rows it was fitted on: its own error is of their sampling size

    def __call__(self, scores: FloatArray) -> FloatArray:
        if not self.knots:
            return np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
        return np.interp(scores, self.knots, self.values)

    def to_json(self) -> dict[str, Any]:
        return {
            "knots": list(self.knots),
            "values": list(self.values),
            "trusted": self.trusted,
            "reason": self.reason,
            "rows": self.rows,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Calibrator:
        return cls(
            tuple(float(v) for v in data["knots"]),
            tuple(float(v) for v in data["values"]),
            bool(data["trusted"]),
            str(data["reason"]),
            int(data.get("rows", 0)),
        )


def _isotonic(scores: FloatArray, labels: IntArray) -> tuple[FloatArray, FloatArray]:
    from scipy.optimize import isotonic_regression

    order = np.argsort(scores, kind="mergesort")
    x = scores[order]
    fitted = isotonic_regression(labels[order].astype(np.float64), increasing=True).x
    unique, first = np.unique(x, return_index=True)
    last = np.append(first[1:], x.size) - 1
    # Equal scores share one calibrated value: the mean of the fit over the tie.
    level = np.add.reduceat(fitted, first) / (last - first + 1)
    # A step function needs only the two ends of each flat run: a small calibrator to store.
    change = np.flatnonzero(np.diff(level) != 0)
    keep = np.unique(np.concatenate(([0, unique.size - 1], change, change + 1)))
    return unique[keep], level[keep]


def fit_calibrator(scores: FloatArray, labels: IntArray, *, seed: int = 0) -> Calibrator:
    """Fit on the baseline's scores and labels, and check it on held-out baseline rows.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s = rng.random(5000)
    >>> c = fit_calibrator(s, (rng.random(5000) < s).astype(np.int64))
    >>> c.trusted, abs(float(c(np.array([0.8]))[0]) - 0.8) < 0.08
    (True, True)
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    positives = int(labels.sum())
    if min(positives, labels.size - positives) < MIN_PER_CLASS:
        return Calibrator(
            (),
            (),
            False,
            f"fewer than {MIN_PER_CLASS} baseline labels of a class to calibrate on",
            labels.size,
        )
    knots, values = _isotonic(scores, labels)
    half = np.random.default_rng(seed).permutation(labels.size)
    fit_rows, check_rows = half[: labels.size // 2], half[labels.size // 2 :]
    k, v = _isotonic(scores[fit_rows], labels[fit_rows])
    held_out = Calibrator(tuple(k), tuple(v), True, "", fit_rows.size)
    predicted = (scores[check_rows] >= 0.5).astype(np.int64)
    estimate = estimate_binary(scores[check_rows], predicted, held_out, seed=seed)
    realized = binary_scalars(*_counts(labels[check_rows], predicted))["accuracy"]
    low, high = estimate["accuracy"].low, estimate["accuracy"].high
    slack = 0.5 * (high - low)
    if not (low - slack <= realized <= high + slack):
        return Calibrator(
            tuple(knots),
            tuple(values),
            False,
            f"calibration does not hold on held-out baseline rows (estimated accuracy "
            f"{estimate['accuracy'].value:.3f}, realized {realized:.3f})",
            labels.size,
        )
    return Calibrator(tuple(knots.tolist()), tuple(values.tolist()), True, "", labels.size)


def _counts(y: IntArray, p: IntArray) -> tuple[float, float, float, float]:
    tp = float(np.count_nonzero(y & p))
    fp = float(np.count_nonzero(p)) - tp
    fn = float(np.count_nonzero(y)) - tp
    return tp, fp, float(y.size) - tp - fp - fn, fn


@dataclass(frozen=True)
class Estimate:
    """An estimated metric and the band the realized metric should fall in."""

    value: float
    low: float
    high: float


def _auc_draws(ranks: FloatArray, draws: npt.NDArray[np.bool_]) -> FloatArray:
    positives = draws.sum(axis=1).astype(np.float64)
    negatives = draws.shape[1] - positives
    rank_sums = draws @ ranks
    with np.errstate(divide="ignore", invalid="ignore"):
        auc: FloatArray = (rank_sums - positives * (positives + 1) / 2) / (positives * negatives)
    return auc


def _bernoulli_draws(
    q: FloatArray, yhat: FloatArray, ranks: FloatArray, seed: int
) -> dict[str, Any]:
    """The metrics over ``DRAWS`` label sets, each label drawn from its calibrated ``q``."""
    n = q.size
    rng = np.random.default_rng(seed)
    per_block = max(1, MAX_ROWS_PER_DRAW_BLOCK // n)
    tp: list[FloatArray] = []
    fp: list[FloatArray] = []
    fn: list[FloatArray] = []
    auc: list[FloatArray] = []
    done = 0
    while done < DRAWS:
        size = min(per_block, DRAWS - done)
        draws = rng.random((size, n)) < q
        hits = draws.astype(np.float64)
        tp.append(hits @ yhat)
        fp.append(yhat.sum() - tp[-1])
        fn.append(hits.sum(axis=1) - tp[-1])
        auc.append(_auc_draws(ranks, draws))
        done += size
    tps, fps, fns = np.concatenate(tp), np.concatenate(fp), np.concatenate(fn)
    drawn = binary_scalars(tps, fps, n - tps - fps - fns, fns)
    drawn["auc"] = np.concatenate(auc)
    return drawn


def _normal_draws(sums: _Sums, n: int, seed: int) -> dict[str, Any]:
    """As :func:`_bernoulli_draws` for a large window, from the sums the metrics depend on.

    With independent labels ``B ~ Bernoulli(q)``, every estimated metric is a function of
    three sums: TP = Σ ŷB, FN = Σ (1−ŷ)B and the positives' rank sum R = Σ rB (AUC is
    Mann–Whitney's ``(R − P(P+1)/2) / (P·N)``). Each is a sum of many independent terms, so
    (TP, FN, R) is close to normal with the exact mean and covariance below (central limit;
    above ``NORMAL_ABOVE`` rows the difference from the Bernoulli draws is far below their
    Monte Carlo error), and drawing it costs nothing per row.
    """
    mean = np.array([sums.q_yhat, sums.q_no, sums.q_ranks])
    cov = np.array(
        [
            [sums.v_yhat, 0.0, sums.vr_yhat],
            [0.0, sums.v_no, sums.vr_no],
            [sums.vr_yhat, sums.vr_no, sums.vr_ranks],
        ]
    )
    rng = np.random.default_rng(seed)
    tps, fns, rank_sums = rng.multivariate_normal(
        mean, cov, size=NORMAL_DRAWS, check_valid="ignore", method="eigh"
    ).T
    predicted = sums.predicted
    fps = predicted - tps
    drawn = binary_scalars(tps, fps, n - tps - fps - fns, fns)
    positives = tps + fns
    with np.errstate(divide="ignore", invalid="ignore"):
        drawn["auc"] = (rank_sums - positives * (positives + 1) / 2) / (positives * (n - positives))
    return drawn


@dataclass(frozen=True)
class _Sums:
    """The dot products a large window's estimate needs (q calibrated, ŷ predicted, no =
    1 − ŷ, nq = 1 − q, v = q(1 − q), r the ranks, vr = v·r)."""

    q_yhat: float
    nq_yhat: float
    nq_no: float
    q_no: float
    q_ranks: float
    v_yhat: float
    v_no: float
    vr_yhat: float
    vr_no: float
    vr_ranks: float
    predicted: float


def _sums(rows: list[Any], calibrator: Calibrator) -> _Sums:
    """The sums of :class:`_Sums` from ``rows`` = [scores, predicted], holding at most four
    float arrays of a row at once (whole vectors, as before: ``np.dot`` on the same vectors
    gives the same bits). The scores are taken out of ``rows`` and dropped once the
    calibrated probabilities and the ranks are made: at a million predictions this is the
    batch pass's peak of memory."""
    scores: FloatArray = rows.pop(0)
    predicted = rows[0]
    ranks = average_ranks(scores)
    q = calibrator(scores)
    del scores

    def yhat() -> FloatArray:
        return np.asarray(predicted, dtype=np.float64)  # 0/1: exact

    def no() -> FloatArray:
        y = yhat()
        return np.subtract(1, y, out=y)  # 1 − ŷ without a second array

    y = yhat()
    q_yhat, q_ranks = float(q @ y), float(q @ ranks)
    nq = 1 - q
    nq_yhat = float(nq @ y)
    del y
    n_ = no()
    q_no, nq_no = float(q @ n_), float(nq @ n_)
    np.multiply(q, nq, out=q)  # v = q(1 − q), in q's place
    v = q
    del nq
    v_no = float(v @ n_)
    del n_
    y = yhat()
    v_yhat = float(v @ y)
    vr = v * ranks
    del v, q
    vr_ranks, vr_yhat = float(vr @ ranks), float(vr @ y)
    del ranks, y
    vr_no = float(vr @ no())
    return _Sums(
        q_yhat, nq_yhat, nq_no, q_no, q_ranks, v_yhat, v_no, vr_yhat, vr_no, vr_ranks,
        float(np.count_nonzero(predicted)),
    )  # fmt: skip


def estimate_binary(
    scores: FloatArray,
    predicted: IntArray,
    calibrator: Calibrator,
    *,
    band: float = 0.95,
    seed: int = 0,
) -> dict[str, Estimate]:
    """Label-free estimates of :data:`ESTIMATED` for one window, with their bands."""
    n = int(np.size(scores))
    if n == 0:
        return {name: Estimate(math.nan, math.nan, math.nan) for name in ESTIMATED}
    if n > NORMAL_ABOVE:
        rows: list[Any] = [np.asarray(scores, dtype=np.float64), predicted]
        del scores, predicted  # the caller's temporaries go once used (see _sums)
        sums = _sums(rows, calibrator)
        expected = binary_scalars(sums.q_yhat, sums.nq_yhat, sums.nq_no, sums.q_no)
        drawn = _normal_draws(sums, n, seed)
    else:
        q = calibrator(np.asarray(scores, dtype=np.float64))
        yhat = np.asarray(predicted, dtype=np.float64)
        expected = binary_scalars(
            float(q @ yhat),
            float((1 - q) @ yhat),
            float((1 - q) @ (1 - yhat)),
            float(q @ (1 - yhat)),
        )
        ranks = average_ranks(np.asarray(scores, dtype=np.float64))
        drawn = _bernoulli_draws(q, yhat, ranks, seed)
    return _bands(expected, drawn, n, calibrator, band)


def _bands(
    expected: dict[str, Any], drawn: dict[str, Any], n: int, calibrator: Calibrator, band: float
) -> dict[str, Estimate]:
    aucs = np.asarray(drawn["auc"], dtype=np.float64)
    defined = aucs[~np.isnan(aucs)]  # a draw of one class has no AUC (n = 1: none has)
    expected["auc"] = float(defined.mean()) if defined.size else math.nan
    tail = (1 - band) / 2
    # The calibration map was learned from ``rows`` labels: its error in a window's metric is
    # of the size of that metric's sampling error at ``rows``, added to the window's own.
    widen = math.sqrt(1 + n / calibrator.rows) if calibrator.rows > 0 else 1.0
    out = {}
    for name in ESTIMATED:
        values = np.asarray(drawn[name], dtype=np.float64)
        values = values[~np.isnan(values)]
        if values.size == 0:
            out[name] = Estimate(float(expected[name]), math.nan, math.nan)
            continue
        low, high = np.quantile(values, [tail, 1 - tail])
        centre = float(expected[name])
        out[name] = Estimate(
            centre, centre - (centre - float(low)) * widen, centre + (float(high) - centre) * widen
        )
    return out


def estimate_from_sums(
    sums: SumsWalk, calibrator: Calibrator, *, band: float = 0.95, seed: int = 0
) -> dict[str, Estimate]:
    """:func:`estimate_binary` of a window of more than ``NORMAL_ABOVE`` predictions from
    its sums taken in blocks (the batch's spill path): the same formulas, the sums added
    block by block instead of by one ``np.dot`` each (equal to ~1e-15 relative)."""
    n = sums.rows
    if n <= NORMAL_ABOVE:
        raise ValueError(f"{n} rows: the Bernoulli draws of estimate_binary need the rows")
    totals = sums.totals()
    expected = binary_scalars(totals.q_yhat, totals.nq_yhat, totals.nq_no, totals.q_no)
    return _bands(expected, _normal_draws(totals, n, seed), n, calibrator, band)


class SumsWalk:
    """The sums of :class:`_Sums` over scores in ascending order, a block at a time: each
    block's rows with their average ranks (:meth:`block`), or a run of one score by its
    counts (:meth:`run`)."""

    def __init__(self, calibrator: Calibrator) -> None:
        self.calibrator = calibrator
        self.sums = np.zeros(11)
        self.rows = 0

    def block(self, scores: FloatArray, predicted: Any, ranks: FloatArray) -> None:
        q = self.calibrator(scores)
        y = np.asarray(predicted, dtype=np.float64)
        no = 1 - y
        nq = 1 - q
        v = q * nq
        vr = v * ranks
        self.sums += np.array([q @ y, nq @ y, nq @ no, q @ no, q @ ranks, v @ y, v @ no,
                               vr @ y, vr @ no, vr @ ranks, np.count_nonzero(predicted)],
                              dtype=np.float64)  # fmt: skip
        self.rows += scores.size

    def run(self, score: float, rows: int, predicted: int, rank: float) -> None:
        q = float(self.calibrator(np.array([score]))[0])
        nq, no = 1 - q, rows - predicted
        v = q * nq
        vr = v * rank
        self.sums += [q * predicted, nq * predicted, nq * no, q * no, q * rank * rows,
                      v * predicted, v * no, vr * predicted, vr * no, vr * rank * rows,
                      predicted]  # fmt: skip
        self.rows += rows

    def totals(self) -> _Sums:
        return _Sums(*(float(v) for v in self.sums))


def agreement(estimate: Estimate, realized: float, realized_standard_error: float) -> bool:
    """Whether a realized metric is consistent with its estimate (band widened by its noise).

    ``False`` is the label-arrived sign that the estimate cannot be trusted for this window:
    the inputs' relation to the labels moved (concept drift) or calibration broke.
    """
    if math.isnan(realized) or math.isnan(estimate.low):
        return True
    slack = 2 * realized_standard_error if not math.isnan(realized_standard_error) else 0.0
    return estimate.low - slack <= realized <= estimate.high + slack
