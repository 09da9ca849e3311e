"""The calibrator's sample past the budget (``calibration_sample.PairSample``): bounded,
uniform without replacement, in the pairs' order, and the same however the pairs are cut."""

from __future__ import annotations

import numpy as np
import pytest

from analyzer.monitors.model_quality.calibration_sample import PairSample, sample_pairs


def fed(size: int, scores: np.ndarray, labels: np.ndarray, cut: int, seed: int = 1) -> PairSample:
    sample = PairSample(size, seed)
    for lo in range(0, scores.size, cut):
        sample.add(scores[lo : lo + cut], labels[lo : lo + cut])
    return sample


def test_the_sample_is_the_same_however_the_pairs_are_cut() -> None:
    scores = np.arange(10_000) / 10_000
    labels = np.arange(10_000) % 2
    samples = [fed(700, scores, labels, cut).pairs() for cut in (1, 97, 700, 701, 4096, 10_000)]
    for got_scores, got_labels in samples[1:]:
        assert np.array_equal(got_scores, samples[0][0])
        assert np.array_equal(got_labels, samples[0][1])
    got, got_labels = samples[0]
    assert got.size == 700 and np.unique(got).size == 700  # distinct pairs, not repeats
    assert np.all(np.diff(got) > 0)  # in the pairs' order
    assert np.array_equal(got_labels, (got * 10_000).round().astype(np.int64) % 2)  # pairs kept
    other = fed(700, scores, labels, 97, seed=2).pairs()[0]
    assert not np.array_equal(other, got)  # the seed chooses it


def test_at_most_its_size_the_sample_is_the_pairs_themselves() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random(500).round(2)
    labels = (rng.random(500) < scores).astype(np.int8)
    for size in (500, 501, 10_000):
        got_scores, got_labels = fed(size, scores, labels, 64).pairs()
        assert np.array_equal(got_scores, scores) and got_labels.dtype == np.int64
        assert np.array_equal(got_labels, labels)
    empty = PairSample(3)
    assert empty.pairs()[0].size == 0 and empty.seen == 0
    with pytest.raises(ValueError, match="a sample of 0 pairs"):
        PairSample(0)


def test_each_pair_is_as_likely_to_be_kept() -> None:
    """Uniform: over 400 seeds, each of 40 pairs is kept ~ size/n of the time (binomial:
    400 · 0.25 = 100 ± 8.7; 5 standard deviations either side); the first and last pairs
    too (a reservoir that favoured early or late pairs would not be)."""
    n, size, seeds = 40, 10, 400
    scores = np.arange(n, dtype=np.float64)
    kept = np.zeros(n)
    for seed in range(seeds):
        got, _ = fed(size, scores, np.zeros(n, np.int64), 7, seed=seed).pairs()
        kept[got.astype(np.int64)] += 1
    expected = seeds * size / n
    spread = np.sqrt(seeds * (size / n) * (1 - size / n))
    assert np.all(np.abs(kept - expected) < 5 * spread), kept


def test_the_sample_is_half_the_budget_of_rows() -> None:
    assert sample_pairs(500_000) == 250_000  # a pair is a prediction and a label
    assert sample_pairs(16) == 8 and sample_pairs(1) == 1
