"""The in-memory join of predictions and labels for batch runs: a sort-merge on hashed keys.

Pure numpy. ``modelmon baseline --model-quality`` (capture folder + ground-truth folder) and
``modelmon analyze --once --ground-truth`` hold no database: the readers turn each record into
a few numbers (the 64-bit hash of its join key and its values) in numpy columns grown chunk by
chunk (:class:`Columns`: 8 bytes a value, no Python object per row), and :func:`join` matches
them with one sort of each side and a binary search. The service's durable join (SQLite,
exactly once across restarts) is ``joins.py``; this one counts the same things:

- ``matched``: keys with both a prediction and a label (each key counted once);
- ``unmatched``: labels with no prediction (a prediction that was not sampled, or an id
  that is wrong), counted rather than dropped silently;
- ``unlabelled``: predictions with no label;
- ``duplicate_labels`` / ``duplicate_predictions``: repeats of a key. As in the service, the
  first label for a key stands (the first in file order, then line order) and a repeat is
  counted, not applied; likewise the first prediction.

The key's hash is Python's 64-bit ``hash`` of the string (random per process, fixed within
one run): two distinct keys collide with probability about ``n² / 2⁶⁵`` (5 · 10⁻⁸ for a
million of each), which would pair one label with the wrong prediction; we accept that for a
join that holds 8 bytes per key instead of the key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Columns", "JoinCounts", "Joined", "join", "key_hashes"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def key_hashes(keys: Iterable[str]) -> IntArray:
    """The 64-bit hashes of join keys."""
    return np.fromiter(map(hash, keys), dtype=np.int64)


class Columns:
    """Named numpy columns appended chunk by chunk, concatenated once when read."""

    def __init__(self, dtypes: dict[str, type[np.generic]]) -> None:
        self.dtypes = dtypes
        self._chunks: dict[str, list[npt.NDArray[np.generic]]] = {name: [] for name in dtypes}
        self.rows = 0

    def append(self, **columns: Iterable[object] | npt.NDArray[np.generic]) -> None:
        arrays = {
            name: np.asarray(
                values if isinstance(values, np.ndarray) else list(values), self.dtypes[name]
            )
            for name, values in columns.items()
        }
        sizes = {a.size for a in arrays.values()}
        if len(sizes) != 1 or arrays.keys() != self.dtypes.keys():
            raise ValueError(f"one chunk of every column, of one length: got {sizes}")
        for name, array in arrays.items():
            self._chunks[name].append(array)
        self.rows += sizes.pop()

    def column(self, name: str) -> npt.NDArray[np.generic]:
        chunks = self._chunks[name]
        if len(chunks) != 1:
            joined = np.concatenate(chunks) if chunks else np.zeros(0, dtype=self.dtypes[name])
            self._chunks[name] = [joined]
        return self._chunks[name][0]


@dataclass(frozen=True)
class JoinCounts:
    """What a join found (see the module docstring)."""

    matched: int
    unmatched: int
    unlabelled: int
    duplicate_labels: int
    duplicate_predictions: int

    def to_json(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Joined:
    """Row numbers into the prediction and label columns, pair by pair, in prediction order."""

    prediction_rows: IntArray
    label_rows: IntArray
    counts: JoinCounts


def _first_of_each(keys: IntArray) -> tuple[IntArray, IntArray]:
    """The distinct keys, sorted, and the row of each one's first occurrence."""
    if keys.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    order = np.argsort(keys)  # unstable (fast): the first row of a key is found below
    ordered = keys[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    first_rows = np.minimum.reduceat(order, starts).astype(np.int64)
    return ordered[starts], first_rows


def join(prediction_keys: IntArray, label_keys: IntArray) -> Joined:
    """Match each distinct prediction key to its first label (sort-merge, no Python loop).

    Examples
    --------
    >>> p = key_hashes(["a", "b", "c", "c"])
    >>> l = key_hashes(["c", "x", "a", "a"])
    >>> j = join(p, l)
    >>> j.prediction_rows.tolist(), j.label_rows.tolist()
    ([0, 2], [2, 0])
    >>> j.counts
    JoinCounts(matched=2, unmatched=1, unlabelled=1, duplicate_labels=1, duplicate_predictions=1)
    """
    predictions, prediction_rows = _first_of_each(np.asarray(prediction_keys, dtype=np.int64))
    labels, label_rows = _first_of_each(np.asarray(label_keys, dtype=np.int64))
    at = np.searchsorted(labels, predictions)
    at[at == labels.size] = 0  # past the end: no match (checked below)
    hit = labels[at] == predictions if labels.size else np.zeros(predictions.size, np.bool_)
    # in prediction order without a sort: the rows are distinct, each marks its label's row
    label_of = np.full(np.size(prediction_keys), -1, dtype=np.int64)
    label_of[prediction_rows[hit]] = label_rows[at[hit]]
    pairs_p = np.flatnonzero(label_of >= 0)
    matched = int(hit.sum())
    counts = JoinCounts(
        matched=matched,
        unmatched=labels.size - matched,
        unlabelled=predictions.size - matched,
        duplicate_labels=int(np.size(label_keys)) - labels.size,
        duplicate_predictions=int(np.size(prediction_keys)) - predictions.size,
    )
    return Joined(pairs_p, label_of[pairs_p], counts)
