"""A bounded, seeded sample of labelled pairs: what the calibrator is fitted on past the budget.

``modelmon baseline --model-quality`` fits the label-free estimate's calibrator
(:func:`~.estimate.fit_calibrator`: isotonic regression and a held-out check) on the
labelled scores. When the baseline's pairs are joined on disk (past
``analyzer.model_quality.batch_memory_rows``), it is fitted on a uniform sample of at most
:func:`sample_pairs` of them instead (docs/model-quality.md, "Baseline"), drawn here as the
pairs stream by in blocks.

The sample is *bottom-k* (a reservoir by another name): each pair gets the next number of a
seeded stream of uniform doubles, drawn in the pairs' order, and the ``size`` pairs with the
smallest numbers are kept. PCG64 draws one 64-bit word a double, so the numbers, and the
sample, are the same however the pairs are cut into blocks; a re-run gives the same pairs,
and the same calibrator to the bit. The sample comes back in the pairs' order: with at most
``size`` pairs it *is* the pairs, and the calibrator the one fitted on all of them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["SEED", "PairSample", "sample_pairs"]

SEED = 1  # not 0: the subsample masks of the metrics draw from seed 0 (the same numbers)


def sample_pairs(budget_rows: int) -> int:
    """The sample's size for a budget of rows (predictions and labels together): the pairs
    the in-memory path holds at most (a pair is a prediction and a label)."""
    return max(1, budget_rows // 2)


class PairSample:
    """At most ``size`` (score, label) pairs, uniform without replacement over the pairs seen.

    Examples
    --------
    >>> sample = PairSample(3, seed=0)
    >>> for lo in range(0, 10, 4):
    ...     sample.add(np.arange(lo, min(lo + 4, 10)) / 10, np.arange(lo, min(lo + 4, 10)) % 2)
    >>> scores, labels = sample.pairs()
    >>> sample.seen, scores.size, bool(np.all(np.diff(scores) > 0))
    (10, 3, True)
    """

    def __init__(self, size: int, seed: int = SEED) -> None:
        if size < 1:
            raise ValueError(f"a sample of {size} pairs")
        self.size = size
        self.seen = 0
        self._rng = np.random.default_rng(seed)
        self._keys = np.zeros(0, np.float64)
        self._rows = np.zeros(0, np.int64)
        self._scores = np.zeros(0, np.float64)
        self._labels: npt.NDArray[Any] = np.zeros(0, np.int64)

    def add(self, scores: npt.NDArray[Any], labels: npt.NDArray[Any]) -> None:
        """The next pairs, in order."""
        n = int(scores.size)
        keys = self._rng.random(n)  # one number a pair, whatever the block: drawn first
        rows = np.arange(self.seen, self.seen + n, dtype=np.int64)
        self.seen += n
        if self._keys.size == self.size:  # full: only a number below the largest kept enters
            enter = keys < self._keys.max()
            keys, rows = keys[enter], rows[enter]
            scores, labels = scores[enter], labels[enter]
        keys = np.concatenate((self._keys, keys))
        rows = np.concatenate((self._rows, rows))
        scores = np.concatenate((self._scores, np.asarray(scores, np.float64)))
        labels = np.concatenate((self._labels, np.asarray(labels, np.int64)))
        if keys.size > self.size:
            kept = np.argpartition(keys, self.size - 1)[: self.size]
            keys, rows, scores, labels = keys[kept], rows[kept], scores[kept], labels[kept]
        self._keys, self._rows, self._scores, self._labels = keys, rows, scores, labels

    def pairs(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        """The sampled scores and labels (int64), in the order the pairs came."""
        order = np.argsort(self._rows, kind="stable")
        return self._scores[order], self._labels[order]
