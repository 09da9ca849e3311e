"""The in-memory join of predictions and labels for batch runs: a sort-merge on hashed keys.

Pure numpy. ``modelmon baseline --model-quality`` (capture folder + ground-truth folder) and
``modelmon analyze --once --ground-truth`` hold no database: the readers turn each record into
a few numbers (the 64-bit hash of its join key and its values) in numpy columns grown chunk by
chunk (:class:`Columns`: 1 to 8 bytes a value, no Python object per row), and :func:`join`
matches them with one sort of the labels' keys and a binary search of the predictions' keys,
a chunk at a time (memory per row: docs/model-quality.md, "The batch join"). The service's
durable join (SQLite, exactly once across restarts) is ``joins.py``; this one counts the same
things:

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
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Columns", "JoinCounts", "Joined", "join", "key_hashes"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Rows = npt.NDArray[np.signedinteger[Any]]  # row numbers: int32 below 2³¹ rows
CHUNK = 1 << 16  # prediction keys matched at a time


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

    def take(self, name: str) -> npt.NDArray[np.generic]:
        """:meth:`column`, no longer held here: it lives as long as the caller keeps it."""
        array = self.column(name)
        self._chunks[name] = []
        return array


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

    prediction_rows: Rows
    label_rows: Rows
    counts: JoinCounts


def _first_of_each(keys: IntArray, *, in_place: bool = False) -> tuple[IntArray, Rows]:
    """The distinct keys, sorted, and the row of each one's first occurrence; ``in_place``:
    ``keys`` may be sorted where it is (no second array of keys)."""
    if keys.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32)
    order = np.argsort(keys)  # unstable (fast): the first row of a key is found below
    if in_place:
        keys.sort()  # the same values as keys[order]
        ordered = keys
    else:
        ordered = np.take(keys, order)
    new = np.empty(keys.size, dtype=np.bool_)
    new[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    if not new.all():
        starts = np.flatnonzero(new)
        del new
        ordered = ordered[starts]
        order = np.minimum.reduceat(order, starts)
    return ordered, order.astype(_row_type(keys.size))


def _row_type(rows: int) -> type[np.signedinteger[Any]]:
    return np.int32 if rows < 2**31 else np.int64


def _distinct_sorted(keys: IntArray) -> int:
    """How many distinct values a sorted array holds (no per-row temporary)."""
    count = int(keys.size > 0)
    for lo in range(1, keys.size, CHUNK):
        hi = min(lo + CHUNK, keys.size)
        count += int(np.count_nonzero(keys[lo:hi] != keys[lo - 1 : hi - 1]))
    return count


def join(prediction_keys: IntArray, label_keys: IntArray, *, consume: bool = False) -> Joined:
    """Match each distinct prediction key to its first label (sort-merge, no Python loop
    per row). The labels' distinct keys are sorted once; the predictions are matched
    ``CHUNK`` rows at a time, in row order, so the first prediction of a key is the one
    paired and the pairs come in prediction order. ``consume``: both arrays of keys may be
    sorted in place (the labels' to find their distinct keys, the predictions' to count
    theirs) instead of copies.

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
    predictions = np.asarray(prediction_keys, dtype=np.int64)
    labels, label_rows = _first_of_each(np.asarray(label_keys, dtype=np.int64), in_place=consume)
    duplicate_labels = int(np.size(label_keys)) - labels.size
    distinct_labels = labels.size
    del label_keys  # the caller's temporary (a column taken out) goes now
    row_type = _row_type(max(predictions.size, label_rows.size))
    claimed = np.zeros(labels.size, dtype=np.bool_)  # a label's key already paired
    prediction_out: list[Rows] = []
    label_out: list[Rows] = []
    for lo in range(0, predictions.size if labels.size else 0, CHUNK):
        keys = predictions[lo : lo + CHUNK]
        order = np.argsort(keys)  # a sorted search is cache-friendly
        ordered = keys[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        if starts.size < ordered.size:  # a key twice in this chunk: its first row only
            order, ordered = np.minimum.reduceat(order, starts), ordered[starts]
        at = np.searchsorted(labels, ordered)
        at[at == labels.size] = 0  # past the end: no match (checked next)
        hit = labels[at] == ordered
        hit[hit] = ~claimed[at[hit]]  # a key paired in an earlier chunk is a repeat
        claimed[at[hit]] = True
        label_of = np.full(keys.size, -1, dtype=np.int64)  # back to row order, no sort
        label_of[order[hit]] = at[hit]
        rows = np.flatnonzero(label_of >= 0)
        prediction_out.append((rows + lo).astype(row_type))
        label_out.append(label_rows[label_of[rows]].astype(row_type))
    matched = int(np.count_nonzero(claimed))
    del claimed, labels, label_rows
    keys_sorted = predictions if consume else predictions.copy()
    del predictions
    keys_sorted.sort()
    distinct = _distinct_sorted(keys_sorted)
    total = keys_sorted.size
    del keys_sorted, prediction_keys
    counts = JoinCounts(
        matched=matched,
        unmatched=distinct_labels - matched,
        unlabelled=distinct - matched,
        duplicate_labels=duplicate_labels,
        duplicate_predictions=total - distinct,
    )
    prediction_rows = _joined(prediction_out, row_type)
    return Joined(prediction_rows, _joined(label_out, row_type), counts)


def _joined(parts: list[Rows], row_type: type[np.signedinteger[Any]]) -> Rows:
    """The chunks' rows as one array; the list is emptied (one side's chunks at a time)."""
    joined = np.concatenate(parts) if parts else np.zeros(0, dtype=row_type)
    parts.clear()
    return joined
