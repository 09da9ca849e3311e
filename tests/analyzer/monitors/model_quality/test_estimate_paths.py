"""The large-window estimate (normal law of the sums) agrees with the per-row Bernoulli draws."""

from __future__ import annotations

import numpy as np
import pytest

import analyzer.monitors.model_quality.estimate as estimate


def test_normal_draws_agree_with_bernoulli_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    n = 30_000
    scores = rng.beta(2, 3, n)
    labels = (rng.random(n) < scores).astype(np.int64)
    predicted = (scores >= 0.5).astype(np.int64)
    calibrator = estimate.fit_calibrator(scores[:20_000], labels[:20_000])
    assert n > estimate.NORMAL_ABOVE  # the normal path
    normal = estimate.estimate_binary(scores, predicted, calibrator)
    monkeypatch.setattr(estimate, "NORMAL_ABOVE", 10**9)  # the Bernoulli path, same window
    bernoulli = estimate.estimate_binary(scores, predicted, calibrator)
    for name in estimate.ESTIMATED:
        a, b = normal[name], bernoulli[name]
        width = b.high - b.low
        assert width > 0, name
        assert abs(a.value - b.value) < 0.02 * width, name
        assert abs(a.low - b.low) < 0.15 * width and abs(a.high - b.high) < 0.15 * width, name


def test_one_class_window_does_not_crash() -> None:
    rng = np.random.default_rng(1)
    scores = rng.random(5000)
    labels = (rng.random(5000) < scores).astype(np.int64)
    calibrator = estimate.fit_calibrator(scores, labels)
    big = np.full(estimate.NORMAL_ABOVE + 1, 0.9)
    out = estimate.estimate_binary(big, np.ones(big.size, np.int64), calibrator)
    assert set(out) == set(estimate.ESTIMATED)
    one = estimate.estimate_binary(np.array([0.3]), np.array([0]), calibrator)
    assert set(out) == set(one)
