"""Sorted scores in blocks: exact AUC, curves and average ranks without per-row temporaries.

Pure numpy. The binary metrics (AUC, ROC and precision–recall curves) and the label-free
estimate (average ranks) walk the rows in score order. Done on whole arrays they allocate
several arrays of a row or of a distinct score each (``np.diff``, ``np.cumsum``, the tie
ends, their counts…): at a million labelled rows that was the batch pass's peak of memory.
Here the sorted rows go in blocks of about :data:`BLOCK` rows, cut only between two unequal
scores (:func:`tie_blocks`), so that no run of equal scores spans two blocks, and each block
carries the counts of the ones before it. The results are the whole-array formulas' to the
last bit: every sum is of integers below 2⁵³ (exact in float64 in any order), and every
other value is computed from the same integers by the same expression.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "BLOCK",
    "AucWalk",
    "CurveWalk",
    "average_ranks",
    "run_count",
    "sorted_auc",
    "sorted_curve_points",
    "tie_blocks",
]

BLOCK = 1 << 16
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Window = Callable[[int, int], Any]  # (lo, hi) -> the sorted values lo:hi


def _differs(values: Any, by_difference: bool) -> Any:
    """Where ``values[i + 1]`` starts a new run: ``np.diff(v) != 0`` (the metrics'
    predicate) or ``v[1:] != v[:-1]`` (the ranks'); they differ only for inf."""
    if by_difference:
        return np.diff(values) != 0
    return values[1:] != values[:-1]


def tie_blocks(size: int, window: Window, *, by_difference: bool = True) -> list[tuple[int, int]]:
    """``[lo, hi)`` blocks of about :data:`BLOCK` sorted rows covering ``0…size``, each cut
    where the next value differs from the last (a run of ties is never split).

    Examples
    --------
    >>> v = np.array([3.0, 2.0, 2.0, 2.0, 1.0])
    >>> tie_blocks(5, lambda lo, hi: v[lo:hi]), BLOCK
    ([(0, 5)], 65536)
    """
    blocks: list[tuple[int, int]] = []
    lo = 0
    while lo < size:
        hi = min(lo + BLOCK, size)
        reach = 64
        while hi < size:  # hi - 1 and hi equal: move hi to the end of their run
            look = window(hi - 1, min(hi - 1 + reach, size))
            change = np.flatnonzero(_differs(look, by_difference))
            if change.size:
                hi += int(change[0])
                break
            hi = min(hi - 1 + reach, size)
            reach = min(2 * reach, BLOCK)
        blocks.append((lo, hi))
        lo = hi
    return blocks


def _kept(
    hit: Any, score: Any, blocks: list[tuple[int, int]], keep: Window | None
) -> Iterator[tuple[Any, Any]]:
    """Each block's hits and scores, only the rows ``keep(lo, hi)`` marks when given."""
    for lo, hi in blocks:
        h, s = hit[lo:hi], score[lo:hi]
        if keep is not None:
            mask = keep(lo, hi)
            h, s = h[mask], s[mask]
        if s.size:
            yield h, s


def _ends(score: Any) -> IntArray:
    """The last position of each run of equal scores in a block (it ends on a run's end)."""
    return np.append(np.flatnonzero(np.diff(score) != 0), score.size - 1).astype(np.int64)


class AucWalk:
    """:func:`sorted_auc` carried across calls: feed it sorted blocks (:meth:`block`, each
    ending where a run of equal scores ends) or whole runs by their counts (:meth:`run`), in
    descending score order; the sums are of integers below 2⁵³, so any cut gives the same
    bits."""

    def __init__(self) -> None:
        self.total = 0.0
        self.tp_before = self.fp_before = self.rows = 0

    def block(self, h: Any, s: Any) -> None:
        ends = _ends(s)
        tps = (self.tp_before + np.cumsum(h, dtype=np.int64)[ends]).astype(np.float64)
        fps = (self.rows + ends + 1).astype(np.float64) - tps
        new_tp = np.diff(tps, prepend=float(self.tp_before))
        new_fp = np.diff(fps, prepend=float(self.fp_before))
        # each negative scores below the positives above its tie, and half of those in it
        self.total += float(np.dot(new_fp, 2 * (tps - new_tp) + new_tp))
        self.tp_before, self.fp_before, self.rows = int(tps[-1]), int(fps[-1]), self.rows + s.size

    def run(self, rows: int, hits: int) -> None:
        """One run of ``rows`` equal scores, ``hits`` of them positive."""
        if rows:
            new_fp = rows - hits
            self.total += float(new_fp * (2 * self.tp_before + hits))
            self.tp_before += hits
            self.fp_before += new_fp
            self.rows += rows

    def value(self) -> float:
        positives, negatives = self.tp_before, self.fp_before
        if positives == 0 or negatives == 0:
            return float("nan")
        pairs = self.total / 2
        return pairs / (positives * negatives)


def sorted_auc(
    hit: Any, score: Any, blocks: list[tuple[int, int]], keep: Window | None = None
) -> float:
    """Area under the ROC curve of rows sorted by descending score (``hit``: 0/1), the rows
    ``keep`` marks (all without it): the Mann–Whitney statistic, a tie between classes
    counting one half; NaN with one class. Exact: the sum of integers below 2⁵³.

    Examples
    --------
    >>> s = np.array([0.9, 0.8, 0.8, 0.1]); h = np.array([1, 1, 0, 0])
    >>> sorted_auc(h, s, tie_blocks(4, lambda lo, hi: s[lo:hi]))
    0.875
    """
    walk = AucWalk()
    for h, s in _kept(hit, score, blocks, keep):
        walk.block(h, s)
    return walk.value()


def run_count(score: Any) -> int:
    """How many runs of equal scores a block holds (it ends where a run ends)."""
    return int(np.count_nonzero(np.diff(score) != 0)) + 1


class CurveWalk:
    """:func:`sorted_curve_points` carried across calls, once the number of runs
    (``count``, :func:`run_count` summed) is known: sorted blocks or whole runs by counts."""

    def __init__(self, count: int, most: int) -> None:
        wanted: Any = np.arange(count, dtype=np.int64)
        if count > most:
            wanted = np.unique(np.linspace(0, count - 1, most).round().astype(np.int64))
        self.wanted = wanted
        self.cuts: list[IntArray] = []
        self.tps: list[IntArray] = []
        self.seen = self.tp_before = self.rows = 0

    def block(self, h: Any, s: Any) -> None:
        ends = _ends(s)
        wanted, seen = self.wanted, self.seen
        pick = wanted[(wanted >= seen) & (wanted < seen + ends.size)] - seen
        self.cuts.append(self.rows + ends[pick])
        self.tps.append(self.tp_before + np.cumsum(h, dtype=np.int64)[ends[pick]])
        self.seen += ends.size
        self.tp_before += int(np.count_nonzero(h))
        self.rows += s.size

    def run(self, rows: int, hits: int) -> None:
        """One run of ``rows`` equal scores, ``hits`` of them positive."""
        if not rows:
            return
        if np.any(self.wanted == self.seen):
            self.cuts.append(np.array([self.rows + rows - 1], np.int64))
            self.tps.append(np.array([self.tp_before + hits], np.int64))
        self.seen += 1
        self.tp_before += hits
        self.rows += rows

    def points(self) -> tuple[IntArray, IntArray]:
        if not self.cuts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(self.cuts), np.concatenate(self.tps)


def sorted_curve_points(
    hit: Any, score: Any, blocks: list[tuple[int, int]], most: int
) -> tuple[IntArray, IntArray]:
    """The positions and cumulative hits of the ends of the runs of equal scores, at most
    ``most`` of them, evenly by rank with the first and last kept (the curves' thresholds).

    Examples
    --------
    >>> s = np.array([0.9, 0.8, 0.8, 0.1]); h = np.array([1, 1, 0, 0])
    >>> cut, tps = sorted_curve_points(h, s, tie_blocks(4, lambda lo, hi: s[lo:hi]), 10)
    >>> cut.tolist(), tps.tolist()
    ([0, 2, 3], [1, 2, 2])
    """
    walk = CurveWalk(sum(run_count(score[lo:hi]) for lo, hi in blocks), most)
    for lo, hi in blocks:
        walk.block(hit[lo:hi], score[lo:hi])
    return walk.points()


def average_ranks(values: FloatArray) -> FloatArray:
    """Ranks 1…n, ties sharing their mean rank: ``scipy.stats.rankdata(values)``.

    Here because importing ``scipy.stats`` costs ``analyze --once`` seconds (tested equal);
    in blocks of the sorted order, so that only the order and the ranks are held per row.

    Examples
    --------
    >>> average_ranks(np.array([0.5, 0.1, 0.5, 0.9])).tolist()
    [2.5, 1.0, 2.5, 4.0]
    """
    order = np.argsort(values)  # ties share one rank: their order does not matter
    ranks = np.empty(values.size, dtype=np.float64)

    def window(lo: int, hi: int) -> Any:
        return values[order[lo:hi]]

    for lo, hi in tie_blocks(values.size, window, by_difference=False):
        ordered = window(lo, hi)
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) + lo
        ends = np.r_[starts[1:], hi]
        mean_rank = (starts + ends + 1) / 2.0  # ranks starts+1 … ends, averaged
        ranks[order[lo:hi]] = np.repeat(mean_rank, ends - starts)
    return ranks
