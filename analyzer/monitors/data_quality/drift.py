"""Drift maths: distances between a baseline and a window, and verdicts that do not cry wolf.

Pure numpy (scipy only for the chi-squared p-value, imported lazily). The distances are
SageMaker's: L∞ between the two CDFs for numbers (read from KLL sketches at the union of
their items), L∞ between category shares for strings, or a chi-squared test. The verdict
keeps SageMaker's meaning (the distance exceeds ``comparison_threshold``, an effect size)
but, under ``comparison_method: Robust``, adds a statistical guard whose margin covers both
samples' noise (DKW–Massart), the sketches' own rank error (KLL ε), and the number of
features tested (Bonferroni). Two verdicts (``analyzer.drift_verdict``):

- ``significant`` (default): the observed distance exceeds the threshold *and* exceeds the
  margin, i.e. the two samples differ beyond noise: ``D̂ > max(τ, M)``. Same-distribution
  windows raise a false violation with probability at most α.
- ``confident``: the observed distance exceeds the threshold by the margin, ``D̂ − M > τ``:
  a violation only when the *true* distance is above τ at level α (no violation for a true
  distance just under τ), at the price of needing a larger drift or a larger window.

``docs/drift.md`` derives both.

PSI, Jensen–Shannon and Wasserstein (reported beside it, never deciding) live in
:mod:`analyzer.monitors.data_quality.drift_scores`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "VERDICTS",
    "DriftDecision",
    "categorical_drift",
    "categorical_margins",
    "chi_squared_p_value",
    "kll_epsilon",
    "linf_categorical",
    "linf_numeric",
    "numeric_drift",
    "sagemaker_robust",
    "sampling_margin",
    "share_margin",
    "weighted_cdf",
]

FloatArray = npt.NDArray[np.float64]
SAGEMAKER_ROBUST_C = 1.8  # SageMaker's Robust constant: the KS critical value at α ≈ 0.003
VERDICTS = ("significant", "confident")


def _decide(
    distance: float, threshold: float, corrected: float, verdict: str
) -> tuple[float, bool]:
    """(reported margin, violation) from the distance left once the noise is taken off.

    ``corrected`` is the observed distance minus the noise margin (numbers: ``D̂ − M``).
    ``significant``: violation iff ``distance > threshold`` and ``corrected > 0``;
    ``confident``: iff ``corrected > threshold``. The margin reported is what the rule takes
    off the distance, so that ``distance − margin > threshold`` is the verdict.

    Examples
    --------
    >>> [_decide(0.05, 0.03, 0.05 - 0.029, v) for v in VERDICTS]  # D̂ 0.05, M 0.029, τ 0.03
    [(0.0, True), (0.029, False)]
    """
    if verdict == "confident":
        excess = corrected - threshold
    elif verdict == "significant":
        excess = min(distance - threshold, corrected)
    else:
        raise ValueError(f"drift verdict must be one of {VERDICTS}, not {verdict!r}")
    return distance - threshold - excess, excess > 0


@dataclass(frozen=True)
class DriftDecision:
    """One feature's drift verdict.

    ``distance`` is the raw observed distance (what SageMaker reports), ``margin`` what the
    rule subtracts before comparing with ``threshold``, ``robust`` SageMaker's Robust value.
    """

    distance: float
    threshold: float
    margin: float
    violation: bool
    robust: float
    method: str
    p_value: float | None = None


def weighted_cdf(
    values: npt.ArrayLike, weights: npt.ArrayLike | None = None
) -> tuple[FloatArray, FloatArray]:
    """Distinct sorted values and the CDF ``P(X <= x)`` at each of them.

    Examples
    --------
    >>> xs, cdf = weighted_cdf([3.0, 1.0, 2.0, 1.0], [1, 2, 1, 1])
    >>> xs.tolist(), cdf.tolist()
    ([1.0, 2.0, 3.0], [0.6, 0.8, 1.0])
    """
    x = np.asarray(values, dtype=np.float64)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    x, w = x[order], w[order]
    distinct, starts = np.unique(x, return_index=True)
    summed = np.add.reduceat(w, starts) if len(x) else np.zeros(0)
    total = float(summed.sum())
    cdf = np.cumsum(summed) / total if total > 0 else np.zeros_like(summed)
    return distinct, cdf


def _cdf_at(xs: FloatArray, cdf: FloatArray, points: FloatArray) -> FloatArray:
    idx = np.searchsorted(xs, points, side="right")
    padded = np.concatenate(([0.0], cdf))
    return padded[idx]


def linf_numeric(
    base_values: npt.ArrayLike,
    base_weights: npt.ArrayLike | None,
    cur_values: npt.ArrayLike,
    cur_weights: npt.ArrayLike | None,
) -> float:
    """L∞ between two weighted empirical CDFs, evaluated at the union of their items.

    Examples
    --------
    >>> rng = np.random.default_rng(7)
    >>> d = linf_numeric(rng.normal(size=5000), None, rng.normal(0.5, size=5000), None)
    >>> round(d, 2)
    0.22
    """
    bx, bc = weighted_cdf(base_values, base_weights)
    cx, cc = weighted_cdf(cur_values, cur_weights)
    if not len(bx) or not len(cx):
        return 0.0
    grid = np.union1d(bx, cx)
    return float(np.max(np.abs(_cdf_at(bx, bc, grid) - _cdf_at(cx, cc, grid))))


def sagemaker_robust(distance: float, n: float, m: float) -> float:
    """SageMaker's Robust distance: ``max(0, L∞ − 1.8·√((n+m)/(n·m)))``."""
    if n <= 0 or m <= 0:
        return 0.0
    return max(0.0, distance - SAGEMAKER_ROBUST_C * math.sqrt((n + m) / (n * m)))


def sampling_margin(n: float, m: float, alpha: float) -> float:
    """Two-sided DKW–Massart margin for the sup of the two samples' CDF noise at level α.

    ``sqrt(ln(2/α)/2 · (1/n + 1/m))``: with probability ≥ 1 − α the sampling noise moves
    the observed L∞ by less than this (see ``docs/drift.md``).

    Examples
    --------
    >>> round(sampling_margin(1_000_000, 10_000, 0.01 / 20), 4)
    0.0205
    """
    if n <= 0 or m <= 0:
        return math.inf
    return math.sqrt(math.log(2.0 / alpha) / 2.0 * (1.0 / n + 1.0 / m))


def kll_epsilon(k: int, estimation_mode: bool) -> float:
    """KLL's normalized rank error for ``k`` (99% confidence); 0 while the sketch is exact."""
    if not estimation_mode:
        return 0.0
    from datasketches import kll_doubles_sketch

    return float(kll_doubles_sketch.get_normalized_rank_error(int(k), False))


def numeric_drift(
    base: tuple[npt.ArrayLike, npt.ArrayLike | None],
    cur: tuple[npt.ArrayLike, npt.ArrayLike | None],
    *,
    threshold: float,
    method: str = "Robust",
    alpha: float = 0.01,
    eps_base: float = 0.0,
    eps_cur: float = 0.0,
    n_base: float | None = None,
    n_cur: float | None = None,
    verdict: str = "significant",
) -> DriftDecision:
    """Numeric drift verdict from two weighted samples (sketch items and weights).

    ``alpha`` is this feature's share of the window's false-alarm rate (already divided by
    the number of features); ``M = sampling_margin(n, m, alpha) + eps_base + eps_cur``.
    ``Robust`` with ``verdict="significant"``: violation iff ``D > max(threshold, M)``
    (reported margin ``max(0, M − threshold)``); with ``verdict="confident"``: violation iff
    ``D − M > threshold`` (reported margin ``M``). ``Simple``: ``D > threshold``
    (SageMaker's literal rule, no correction).

    Examples
    --------
    >>> rng = np.random.default_rng(3)
    >>> base = (rng.normal(size=20_000), None)
    >>> same = numeric_drift(base, (rng.normal(size=2_000), None), threshold=0.02)
    >>> same.violation, round(same.distance, 3), round(same.margin, 3)  # D̂ > τ, but noise
    (False, 0.021, 0.018)
    >>> moved = (rng.normal(0.2, size=2_000), None)
    >>> [numeric_drift(base, moved, threshold=0.07, verdict=v).violation for v in VERDICTS]
    [True, False]
    """
    bv, bw = base
    cv, cw = cur
    n = float(n_base if n_base is not None else _total(bv, bw))
    m = float(n_cur if n_cur is not None else _total(cv, cw))
    distance = linf_numeric(bv, bw, cv, cw)
    robust = sagemaker_robust(distance, n, m)
    if method == "Simple":
        return DriftDecision(distance, threshold, 0.0, distance > threshold, robust, method)
    noise = sampling_margin(n, m, alpha) + eps_base + eps_cur
    margin, violation = _decide(distance, threshold, distance - noise, verdict)
    return DriftDecision(distance, threshold, margin, violation, robust, method)


def _total(values: npt.ArrayLike, weights: npt.ArrayLike | None) -> float:
    if weights is None:
        return float(np.asarray(values).size)
    return float(np.sum(np.asarray(weights, dtype=np.float64)))


def _shares(
    base: Mapping[str, float], cur: Mapping[str, float]
) -> tuple[list[str], FloatArray, FloatArray, float, float]:
    keys = sorted(set(base) | set(cur))
    b = np.array([float(base.get(k, 0.0)) for k in keys])
    c = np.array([float(cur.get(k, 0.0)) for k in keys])
    n, m = float(b.sum()), float(c.sum())
    return keys, b / max(n, 1e-300), c / max(m, 1e-300), n, m


def linf_categorical(base: Mapping[str, float], cur: Mapping[str, float]) -> float:
    """L∞ between category shares (probabilities, not CDFs).

    Examples
    --------
    >>> linf_categorical({"a": 50, "b": 50}, {"a": 30, "b": 60, "c": 10})
    0.2
    """
    _, pb, pc, n, m = _shares(base, cur)
    if n <= 0 or m <= 0:
        return 0.0
    return float(np.max(np.abs(pb - pc)))


def share_margin(share: FloatArray, total: float, delta: float) -> FloatArray:
    """Empirical-Bernstein bound on how far a sample share can sit from its true share.

    Maurer & Pontil (2009), two-sided: with probability at least ``1 − delta`` the share of
    ``total`` i.i.d. draws lies within ``sqrt(2·V·L/N) + 7·L/(3(N − 1))`` of its expectation,
    ``L = ln(4/delta)``, ``V = p(1 − p)·N/(N − 1)`` the sample variance. Valid for every N
    and every true share (no normal approximation), and never zero, so a rare or absent
    category still gets a margin.

    Examples
    --------
    >>> [round(float(t), 3) for t in share_margin(np.array([0.5, 0.0]), 10_000, 1e-4)]
    [0.025, 0.002]
    """
    if total <= 1:
        return np.full_like(share, math.inf)
    log_term = math.log(4.0 / delta)
    variance = share * (1.0 - share) * total / (total - 1.0)
    return np.sqrt(2.0 * variance * log_term / total) + 7.0 * log_term / (3.0 * (total - 1.0))


def categorical_margins(
    base: Mapping[str, float], cur: Mapping[str, float], alpha: float
) -> dict[str, float]:
    """Per-category margin of the share difference at family level ``alpha``.

    The K categories and the two samples share ``alpha`` (union bound): each share gets
    :func:`share_margin` at ``delta = alpha / (2K)``, and a category's margin is the sum of
    its baseline and window margins, so that under "nothing changed" no share difference
    exceeds its margin, with probability at least ``1 − alpha``.

    Examples
    --------
    >>> m = categorical_margins({"a": 500_000, "b": 500_000}, {"a": 40, "b": 60}, 0.01)
    >>> round(m["a"], 2), m["a"] == m["b"]
    (0.36, True)
    """
    keys, pb, pc, n, m = _shares(base, cur)
    if n <= 0 or m <= 0:
        return {k: math.inf for k in keys}
    delta = alpha / (2.0 * len(keys))
    margins = share_margin(pb, n, delta) + share_margin(pc, m, delta)
    return dict(zip(keys, margins.tolist(), strict=True))


def chi_squared_p_value(base: Mapping[str, float], cur: Mapping[str, float]) -> float:
    """Goodness-of-fit p-value of the window's counts against the baseline's proportions.

    Expected = baseline share × window count; the smallest expected categories are merged
    until every expected count is ≥ 5 (Cochran's rule), with at least two groups.

    Examples
    --------
    >>> round(chi_squared_p_value({"a": 500, "b": 500}, {"a": 40, "b": 60}), 3)
    0.046
    """
    from scipy.stats import chi2

    _, pb, pc, n, m = _shares(base, cur)
    if n <= 0 or m <= 0:
        return 1.0
    expected, observed = pb * m, pc * m
    order = np.argsort(expected)
    exp_s, obs_s = list(expected[order]), list(observed[order])
    while len(exp_s) > 2 and exp_s[0] < 5.0:
        e, o = exp_s.pop(0), obs_s.pop(0)
        exp_s[0] += e
        obs_s[0] += o
        paired = sorted(zip(exp_s, obs_s, strict=True))
        exp_s, obs_s = [p[0] for p in paired], [p[1] for p in paired]
    e_arr, o_arr = np.array(exp_s), np.array(obs_s)
    if len(e_arr) < 2:
        return 1.0
    if np.any(e_arr <= 0):
        return 0.0 if np.any(o_arr[e_arr <= 0] > 0) else 1.0
    stat = float(np.sum((o_arr - e_arr) ** 2 / e_arr))
    return float(chi2.sf(stat, len(e_arr) - 1))


def categorical_drift(
    base: Mapping[str, float],
    cur: Mapping[str, float],
    *,
    threshold: float,
    drift_method: str = "LInfinity",
    comparison: str = "Robust",
    alpha: float = 0.01,
    eps_base: float = 0.0,
    eps_cur: float = 0.0,
    verdict: str = "significant",
) -> DriftDecision:
    """Categorical drift verdict from category counts.

    ``LInfinity`` + ``Robust``: with ``c = max_k(|Δ_k| − margin_k) − ε`` (the distance left
    once every category's noise is taken off), ``verdict="significant"`` calls a violation
    iff ``distance > threshold`` and ``c > 0`` (some share moved beyond noise);
    ``verdict="confident"`` iff ``c > threshold``. The reported margin is what the rule takes
    off the distance, so that ``distance − margin > threshold`` is the verdict. ``Simple``: the
    plain ``max_k |Δ_k| > threshold``. ``ChiSquared``: the p-value decides, the threshold
    read as a significance level: violation iff ``p < threshold`` under ``Simple`` and
    ``p < min(threshold, alpha)`` under ``Robust`` (``alpha`` is already divided by the
    number of features).

    Examples
    --------
    >>> noisy = categorical_drift({"a": 1e5, "b": 1e5}, {"a": 110, "b": 90}, threshold=0.02)
    >>> round(noisy.distance, 2), noisy.violation
    (0.05, False)
    >>> moved = categorical_drift({"a": 1e5, "b": 1e5}, {"a": 7000, "b": 3000}, threshold=0.1)
    >>> round(moved.distance, 2), moved.violation
    (0.2, True)
    """
    distance = linf_categorical(base, cur)
    n, m = float(sum(base.values())), float(sum(cur.values()))
    robust = sagemaker_robust(distance, n, m)
    if drift_method == "ChiSquared":
        p = chi_squared_p_value(base, cur)
        level = threshold if comparison == "Simple" else min(threshold, alpha)
        return DriftDecision(distance, threshold, 0.0, p < level, robust, "ChiSquared", p)
    if comparison == "Simple":
        return DriftDecision(distance, threshold, 0.0, distance > threshold, robust, "Simple")
    margins = categorical_margins(base, cur, alpha)
    _, pb, pc, _, _ = _shares(base, cur)
    diffs = np.abs(pb - pc) - np.array(list(margins.values()))
    corrected = (float(np.max(diffs)) if len(diffs) else 0.0) - eps_base - eps_cur
    margin, violation = _decide(distance, threshold, corrected, verdict)
    return DriftDecision(distance, threshold, margin, violation, robust, comparison)
