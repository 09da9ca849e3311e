"""The pieces of the spill path's metrics against the whole-array ones (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from analyzer.monitors.model_quality.metrics import _subsample_masks
from analyzer.monitors.model_quality.ranking import (
    AucWalk,
    CurveWalk,
    run_count,
    sorted_auc,
    sorted_curve_points,
    tie_blocks,
)
from analyzer.monitors.model_quality.streaming import SubsampleFlags


@pytest.mark.parametrize("n", [200, 70_001])
def test_the_subsamples_drawn_per_block_are_the_masks(n: int) -> None:
    flags = SubsampleFlags(n, seed=3)
    sizes = [1, 65_535, 3, n]  # blocks of any size, in order
    drawn, left = [], n
    for size in sizes:
        take = min(size, left)
        if take:
            block = flags.next(take)
            assert block is not None
            drawn.append(block)
        left -= take
    every = np.concatenate(drawn)
    for j, mask in enumerate(_subsample_masks(n, 3)):
        assert np.array_equal((every >> j) & 1 == 1, mask)


def test_no_subsamples_below_200_pairs() -> None:
    assert SubsampleFlags(199, seed=0).next(199) is None


def test_a_run_by_its_counts_is_the_run_of_rows() -> None:
    rng = np.random.default_rng(0)
    score = np.sort(rng.integers(0, 50, 5000).astype(np.float64))[::-1].copy()
    hit = (rng.random(5000) < 0.3).astype(np.int8)
    blocks = tie_blocks(score.size, lambda lo, hi: score[lo:hi])
    runs = sum(run_count(score[lo:hi]) for lo, hi in blocks)
    auc, curve = AucWalk(), CurveWalk(runs, 20)
    starts = np.flatnonzero(np.r_[True, score[1:] != score[:-1]])
    for lo, hi in zip(starts, np.r_[starts[1:], score.size], strict=True):
        if lo % 2:  # every other run by its counts alone
            auc.run(int(hi - lo), int(hit[lo:hi].sum()))
            curve.run(int(hi - lo), int(hit[lo:hi].sum()))
        else:
            auc.block(hit[lo:hi], score[lo:hi])
            curve.block(hit[lo:hi], score[lo:hi])
    assert auc.value() == sorted_auc(hit, score, blocks)  # the same bits
    cut, tps = curve.points()
    expected = sorted_curve_points(hit, score, blocks, 20)
    assert cut.tolist() == expected[0].tolist() and tps.tolist() == expected[1].tolist()
