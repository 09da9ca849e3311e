"""The sorted scores in blocks (ranking.py) equal the whole-array formulas to the last bit."""

from __future__ import annotations

import doctest
import itertools
import math
from typing import Any

import numpy as np
import pytest
from scipy.stats import rankdata

from analyzer.monitors.model_quality import ranking
from analyzer.monitors.model_quality.ranking import (
    BLOCK,
    average_ranks,
    sorted_auc,
    sorted_curve_points,
    tie_blocks,
)


def test_doctests_run() -> None:
    failed, attempted = doctest.testmod(ranking)  # type: ignore[arg-type]
    assert attempted > 0 and failed == 0


def whole_auc(hit: Any, score: Any) -> float:
    """The whole-array Mann–Whitney AUC the blocks replace (rows sorted descending)."""
    positives = int(np.count_nonzero(hit))
    negatives = hit.size - positives
    if positives == 0 or negatives == 0:
        return math.nan
    ends = np.append(np.flatnonzero(np.diff(score) != 0), score.size - 1)
    tps = np.cumsum(hit)[ends].astype(np.float64)
    fps = (ends + 1).astype(np.float64) - tps
    new_tp = np.diff(tps, prepend=0.0)
    new_fp = np.diff(fps, prepend=0.0)
    pairs = float(np.dot(new_fp, 2 * (tps - new_tp) + new_tp)) / 2
    return pairs / (positives * negatives)


def whole_curve(hit: Any, score: Any, most: int) -> tuple[list[int], list[int]]:
    ends = np.append(np.flatnonzero(np.diff(score) != 0), score.size - 1)
    if ends.size > most:
        ends = ends[np.unique(np.linspace(0, ends.size - 1, most).round().astype(np.int64))]
    return ends.tolist(), np.cumsum(hit)[ends].tolist()


def rows(seed: int, n: int, digits: int) -> tuple[Any, Any]:
    """Scores with ties (rounded), one run of equal scores longer than a block."""
    rng = np.random.default_rng(seed)
    score = rng.random(n).round(digits)
    score[: BLOCK + 1000] = 0.5  # a run longer than a block, cut nowhere inside
    hit = (rng.random(n) < score).astype(np.int8)
    order = np.argsort(-score)
    return hit[order], score[order]


@pytest.mark.parametrize(("seed", "digits"), [(0, 2), (1, 4), (2, 12)])
def test_blocks_equal_the_whole_array(seed: int, digits: int) -> None:
    hit, score = rows(seed, 5 * BLOCK + 123, digits)
    blocks = tie_blocks(score.size, lambda lo, hi: score[lo:hi])
    assert len(blocks) > 2 and blocks[0][0] == 0 and blocks[-1][1] == score.size
    for (_, hi), (lo, _) in itertools.pairwise(blocks):
        assert hi == lo and score[hi - 1] != score[hi]  # cut only between unequal scores
    assert sorted_auc(hit, score, blocks) == whole_auc(hit, score)
    keep = np.random.default_rng(seed).random(score.size) < 0.8
    subset = sorted_auc(hit, score, blocks, lambda lo, hi: keep[lo:hi])
    assert subset == whole_auc(hit[keep], score[keep])
    for most in (1000, 10**9):
        cut, tps = sorted_curve_points(hit, score, blocks, most)
        assert (cut.tolist(), tps.tolist()) == whole_curve(hit, score, most)


def test_one_class_and_nothing() -> None:
    score = np.full(10, 0.3)
    blocks = tie_blocks(10, lambda lo, hi: score[lo:hi])
    assert math.isnan(sorted_auc(np.ones(10, np.int8), score, blocks))
    assert math.isnan(sorted_auc(np.ones(10, np.int8), score, blocks, lambda lo, hi: []))
    assert tie_blocks(0, lambda lo, hi: score[lo:hi]) == []


@pytest.mark.parametrize("digits", [1, 3, 9])
def test_average_ranks_are_scipys(digits: int) -> None:
    values = np.random.default_rng(digits).random(2 * BLOCK + 77).round(digits)
    values[:BLOCK] = 0.25
    assert average_ranks(values).tolist() == rankdata(values).tolist()
