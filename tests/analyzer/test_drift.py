"""Drift maths: distances against scipy on raw samples, and verdicts that do not cry wolf."""

from __future__ import annotations

import doctest
import math
from statistics import NormalDist

import numpy as np
import pytest
from datasketches import kll_doubles_sketch
from scipy import stats
from scipy.spatial.distance import jensenshannon

from analyzer.monitors.data_quality import drift, drift_scores
from analyzer.monitors.data_quality.drift import (
    VERDICTS,
    categorical_drift,
    chi_squared_p_value,
    kll_epsilon,
    linf_categorical,
    linf_numeric,
    numeric_drift,
    sagemaker_robust,
    sampling_margin,
    share_margin,
)
from analyzer.monitors.data_quality.drift_scores import categorical_scores, numeric_scores


def _sketch(values: np.ndarray, k: int = 2048) -> tuple[np.ndarray, np.ndarray, float]:
    sk = kll_doubles_sketch(k)
    sk.update(values)
    pairs = np.array(list(iter(sk)), dtype=np.float64)
    return pairs[:, 0], pairs[:, 1], kll_epsilon(k, sk.is_estimation_mode())


@pytest.mark.parametrize("module", [drift, drift_scores])
def test_docstring_examples_run(module: object) -> None:
    failed, attempted = doctest.testmod(module)  # type: ignore[arg-type]
    assert attempted > 0 and failed == 0


def test_linf_equals_scipy_ks_statistic_on_raw_samples() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=3000), rng.normal(0.2, 1.3, size=1700)
    assert linf_numeric(a, None, b, None) == pytest.approx(stats.ks_2samp(a, b).statistic)


def test_linf_with_ties_and_weights_equals_repetition() -> None:
    a = np.array([1.0, 2.0, 2.0, 3.0, 3.0, 3.0])
    b = np.array([1.0, 1.0, 1.0, 2.0, 3.0])
    weighted = linf_numeric([1.0, 2.0, 3.0], [1, 2, 3], [1.0, 2.0, 3.0], [3, 1, 1])
    assert weighted == pytest.approx(linf_numeric(a, None, b, None))
    assert weighted == pytest.approx(stats.ks_2samp(a, b).statistic)


def test_sagemaker_robust_formula() -> None:
    n, m = 1000.0, 400.0
    expected = 0.3 - 1.8 * math.sqrt((n + m) / (n * m))
    assert sagemaker_robust(0.3, n, m) == pytest.approx(expected)
    assert sagemaker_robust(0.01, n, m) == 0.0


def test_margin_shrinks_with_both_sample_sizes() -> None:
    alpha = 0.01 / 20
    small = sampling_margin(1e6, 1_000, alpha)
    assert sampling_margin(1e6, 100_000, alpha) < small
    assert sampling_margin(1e4, 1_000, alpha) > small
    assert small == pytest.approx(math.sqrt(math.log(2 / alpha) / 2 * (1e-6 + 1e-3)))


def test_kll_epsilon_zero_while_exact() -> None:
    assert kll_epsilon(2048, False) == 0.0
    assert kll_epsilon(1024, True) > kll_epsilon(2048, True) > 0


def test_same_distribution_sketched_does_not_alarm_at_small_threshold() -> None:
    # A tiny effect size (0.002) with 100,000 rows: the plain L∞ of two same-distribution
    # sketches (sampling noise ~0.003 plus sketch error) exceeds it; the corrected rule must not.
    rng = np.random.default_rng(5)
    bv, bw, be = _sketch(rng.gamma(2.0, size=400_000))
    alarms_ours = alarms_simple = 0
    for _ in range(5):
        cv, cw, ce = _sketch(rng.gamma(2.0, size=100_000))
        kw = {"threshold": 0.002, "alpha": 0.01 / 20, "eps_base": be, "eps_cur": ce}
        alarms_ours += numeric_drift((bv, bw), (cv, cw), method="Robust", **kw).violation
        alarms_simple += numeric_drift((bv, bw), (cv, cw), method="Simple", **kw).violation
    assert alarms_ours == 0
    assert alarms_simple > 0  # the uncorrected rule does cry wolf at this effect size


def test_shifted_data_alarms_with_pinned_distance() -> None:
    rng = np.random.default_rng(9)
    delta = 0.5
    true_d = 2 * NormalDist().cdf(delta / 2) - 1  # KS distance of a location shift of N(0,1)
    bv, bw, be = _sketch(rng.normal(size=200_000))
    cv, cw, ce = _sketch(rng.normal(delta, size=20_000))
    decision = numeric_drift(
        (bv, bw), (cv, cw), threshold=0.1, alpha=0.01 / 20, eps_base=be, eps_cur=ce
    )
    assert decision.violation
    # tolerance: KS sampling sd at 20k rows (~0.004) ×3 plus both sketches' ε
    assert decision.distance == pytest.approx(true_d, abs=0.012 + be + ce)
    assert decision.distance - decision.margin > decision.threshold


def test_verdicts_on_exact_samples() -> None:
    # Exact (unsketched) samples, so every number is deterministic: D̂ ≈ 0.05.
    base = (np.linspace(0.0, 1.0, 10_000, endpoint=False), None)
    alpha = 0.01 / 20

    def decide(m: int, tau: float, verdict: str) -> tuple[bool, float]:
        cur = (np.linspace(0.05, 1.05, m, endpoint=False), None)
        d = numeric_drift(base, cur, threshold=tau, alpha=alpha, verdict=verdict)
        assert d.distance == pytest.approx(0.05, abs=2e-4)  # steps of the grids
        assert d.violation == (d.distance - d.margin > tau)  # the reported margin explains it
        return d.violation, d.margin

    small_m = sampling_margin(10_000, 100, alpha)  # 0.2: noise at 100 rows
    assert decide(100, 0.02, "significant") == (False, pytest.approx(small_m - 0.02))
    assert decide(100, 0.02, "confident") == (False, pytest.approx(small_m))
    big_m = sampling_margin(10_000, 10_000, alpha)  # 0.029 < 0.03 < 0.05 < 0.03 + 0.029
    assert decide(10_000, 0.03, "significant") == (True, 0.0)
    assert decide(10_000, 0.03, "confident") == (False, pytest.approx(big_m))


def test_significant_detects_1_5_tau_at_10k_rows_where_confident_cannot() -> None:
    # Issue 3's hardest detection cell: τ = 0.02, true L∞ = 0.03, 10,000-row windows,
    # α = 0.01 over 20 features. The margin (≈ 0.023) is above τ: `significant` calls a
    # drift when D̂ clears it (≈ 99% of windows), `confident` needs D̂ > τ + margin ≈ 0.043.
    rng = np.random.default_rng(21)
    bv, bw, be = _sketch(rng.normal(size=400_000))
    delta = 2 * NormalDist().inv_cdf(1.03 / 2)  # location shift with KS distance 0.03
    hits = dict.fromkeys(VERDICTS, 0)
    for _ in range(6):
        cv, cw, ce = _sketch(rng.normal(delta, size=10_000))
        for verdict in VERDICTS:
            kw = {"threshold": 0.02, "alpha": 0.01 / 20, "eps_base": be, "eps_cur": ce}
            hits[verdict] += numeric_drift((bv, bw), (cv, cw), verdict=verdict, **kw).violation
    assert hits["significant"] >= 5
    assert hits["confident"] == 0


def test_categorical_verdicts_differ_as_documented() -> None:
    probs = np.array([0.35, 0.25, 0.2, 0.12, 0.08])
    moved = probs + np.array([-0.03, 0, 0, 0, 0.03])  # L∞ 0.03 = 1.5 τ
    base = dict(zip("abcde", (probs * 1_000_000).tolist(), strict=True))
    cur = dict(zip("abcde", (moved * 10_000).tolist(), strict=True))
    kw = {"threshold": 0.02, "alpha": 0.01 / 20}
    sig = categorical_drift(base, cur, verdict="significant", **kw)
    conf = categorical_drift(base, cur, verdict="confident", **kw)
    assert sig.distance == conf.distance == pytest.approx(0.03)
    assert sig.violation and not conf.violation  # corrected share difference ≈ 0.011 < τ
    for d in (sig, conf):
        assert d.violation == (d.distance - d.margin > d.threshold)
    same = dict(zip("abcde", (probs * 20_000).tolist(), strict=True))
    assert not categorical_drift(base, same, verdict="significant", **kw).violation


def test_unknown_verdict_is_refused() -> None:
    with pytest.raises(ValueError, match="drift verdict"):
        numeric_drift(([1.0, 2.0], None), ([1.0, 3.0], None), threshold=0.1, verdict="strict")
    with pytest.raises(ValueError, match="drift verdict"):
        categorical_drift({"a": 1.0}, {"b": 1.0}, threshold=0.1, verdict="strict")


def test_simple_is_sagemaker_literal_rule() -> None:
    rng = np.random.default_rng(2)
    base, cur = (rng.normal(size=300), None), (rng.normal(size=300), None)
    decision = numeric_drift(base, cur, threshold=0.01, method="Simple")
    assert decision.margin == 0.0
    assert decision.violation == (decision.distance > 0.01)


def test_categorical_noise_at_200_rows_is_not_drift() -> None:
    rng = np.random.default_rng(11)
    cats = ["CA", "TX", "NY", "FL", "WA"]
    probs = [0.3, 0.25, 0.2, 0.15, 0.1]
    base = dict(zip(cats, (rng.multinomial(100_000, probs)).astype(float), strict=True))
    plain = robust = 0
    for _ in range(20):
        cur = dict(zip(cats, rng.multinomial(200, probs).astype(float), strict=True))
        plain += categorical_drift(base, cur, threshold=0.02, comparison="Simple").violation
        robust += categorical_drift(base, cur, threshold=0.02, alpha=0.01 / 20).violation
    assert plain >= 15  # L∞ over shares at 200 rows is pure noise at 0.02
    assert robust == 0


def test_categorical_real_shift_fires() -> None:
    rng = np.random.default_rng(12)
    cats = ["TX", "CA", "other"]
    base = dict(zip(cats, rng.multinomial(20_000, [0.15, 0.22, 0.63]).astype(float), strict=True))
    cur = dict(zip(cats, rng.multinomial(5_000, [0.30, 0.10, 0.60]).astype(float), strict=True))
    decision = categorical_drift(base, cur, threshold=0.1, alpha=0.01 / 10)
    assert decision.violation
    assert decision.distance == pytest.approx(0.15, abs=0.02)
    assert decision.distance - decision.margin > 0.1


def test_linf_categorical_counts_unseen_categories() -> None:
    assert linf_categorical({"a": 10}, {"a": 8, "new": 2}) == pytest.approx(0.2)


def test_chi_squared_matches_scipy_without_merging() -> None:
    base = {"a": 400.0, "b": 350.0, "c": 250.0}
    cur = {"a": 90.0, "b": 60.0, "c": 50.0}
    expected = stats.chisquare([90, 60, 50], [80, 70, 50]).pvalue
    assert chi_squared_p_value(base, cur) == pytest.approx(expected)


def test_chi_squared_merges_small_expected_counts() -> None:
    base = {"a": 5000.0, "b": 4900.0, "rare1": 50.0, "rare2": 50.0}
    cur = {"a": 48.0, "b": 50.0, "rare1": 1.0, "rare2": 1.0}
    # rare1+rare2 expected 1.0 < 5: merged into b's group, so the test keeps one dof
    merged = stats.chisquare([48, 52], [50.0, 50.0]).pvalue
    assert chi_squared_p_value(base, cur) == pytest.approx(merged)


def test_chi_squared_verdict_reads_threshold_as_significance() -> None:
    base = {"a": 5000.0, "b": 5000.0}
    cur = {"a": 700.0, "b": 300.0}
    decision = categorical_drift(base, cur, threshold=0.05, drift_method="ChiSquared")
    assert decision.method == "ChiSquared" and decision.violation
    assert decision.p_value is not None and decision.p_value < 1e-10


def test_scores_match_scipy() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=20_000), rng.normal(0.3, size=20_000)
    psi, js, wasser = numeric_scores((a, None), (b, None), float(np.std(a)))
    assert wasser == pytest.approx(stats.wasserstein_distance(a, b) / np.std(a), rel=1e-6)
    edges = np.quantile(a, np.arange(1, 10) / 10)
    hb = np.histogram(a, np.concatenate(([-np.inf], edges, [np.inf])))[0] / a.size
    hc = np.histogram(b, np.concatenate(([-np.inf], edges, [np.inf])))[0] / b.size
    assert js == pytest.approx(jensenshannon(hb, hc, base=2), abs=0.01)
    assert psi == pytest.approx(float(np.sum((hc - hb) * np.log(hc / hb))), abs=0.01)
    cat_psi, cat_js = categorical_scores({"x": 60.0, "y": 40.0}, {"x": 40.0, "y": 60.0})
    assert cat_js == pytest.approx(jensenshannon([0.6, 0.4], [0.4, 0.6], base=2))
    assert cat_psi == pytest.approx(2 * 0.2 * math.log(1.5))


@pytest.mark.parametrize("total", [20, 100, 1_000])
def test_share_margin_covers_exactly_at_every_size(total: int) -> None:
    # The exact binomial probability that a share lands outside its margin, for true shares
    # from rare to even, must stay under delta: no normal approximation hides in the tails.
    delta = 5e-5
    counts = np.arange(total + 1)
    margins = share_margin(counts / total, total, delta)
    for p in (0.001, 0.01, 0.08, 0.2, 0.5):
        outside = np.abs(counts / total - p) > margins
        assert float(stats.binom.pmf(counts[outside], total, p).sum()) <= delta
    # and a normal z-margin at the same level does not cover for a rare share
    z = NormalDist().inv_cdf(1 - delta / 2)
    normal = z * np.sqrt(0.01 * 0.99 / total)
    assert stats.binom.sf(np.floor((0.01 + normal) * total), total, 0.01) > delta
