"""The batch model-quality join on disk: memory flat in rows past ``batch_memory_rows``.

``analyze --once --ground-truth`` keeps today's join in memory (``pairs.join``) while the
window's predictions and labels together hold at most ``analyzer.model_quality.
batch_memory_rows`` rows; past it, :class:`Sink` moves what it holds to a temporary folder
(``tempfile``'s: ``TMPDIR``) and goes on there (docs/model-quality.md, "The batch join"):

- **partitions**: each side's rows (the key's 64-bit hash and the values, numpy
  ``tofile``) go to one of 64 files by the hash's top 6 bits, so a key's every occurrence is
  in one partition; a partition pair above the budget is cut again by the next bits (into
  as few parts as bring each to about half the budget);
- **the join**, a partition at a time with ``pairs.join`` (first label and first prediction
  of a key in file order: a partition keeps its rows in that order), each prediction with
  its row number in the window; the counts add up (a key is in one partition);
- **the pairs in prediction order** (:meth:`Spilled.pair_blocks`): the in-memory path's
  order, merged from the partitions by ranges of row numbers (of the budget's rows, at
  most 262,144);
- **an external sort** (:func:`sorted_segments`) for what needs one sorted order (the binary
  AUC and curves, the estimate's ranks): the rows cut by ranges of the sort key chosen from
  quantiles of a sample, each range sorted in memory (equal keys stay in one range); a range
  still above the budget is cut again, and one of a single key is read in chunks by counts.

Everything is removed when the :class:`SpillDir` closes, also on error.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.ingest.model_quality_files import BadLines
from analyzer.monitors.model_quality.pairs import Columns, JoinCounts, join

__all__ = ["Segment", "Sink", "SpillDir", "Spilled", "on_disk_note", "sorted_segments"]


def on_disk_note(budget: int) -> str:
    """The line a command's summary says when its join went to disk."""
    return (
        f"  joined on disk: more than analyzer.model_quality.batch_memory_rows ({budget:,})"
        " predictions and labels"
    )


PART_BITS = 6  # 64 partitions first; one above the budget is cut in as few as it needs
PARTS = 1 << PART_BITS
SAMPLE = 256  # keys sampled a range when cutting a file into ranges (at most budget / 2)
MAX_RANGES = 1024  # ranges a file is cut into at once
CHUNK = 1 << 16  # rows written or read at a time where the budget does not say


def _prediction_type(values: type[np.generic]) -> np.dtype[Any]:
    return np.dtype([("key", "<i8"), ("row", "<i8"), ("prediction", values),
                     ("probability", "<f8")])  # fmt: skip


def _label_type(values: type[np.generic]) -> np.dtype[Any]:
    return np.dtype([("key", "<i8"), ("label", values)])


def pair_type(values: type[np.generic]) -> np.dtype[Any]:
    return np.dtype([("row", "<i8"), ("label", values), ("prediction", values),
                     ("probability", "<f8")])  # fmt: skip


SCORE_TYPE = np.dtype([("key", "<f8"), ("value", "<i1")])  # every prediction: score, ŷ
RANKED_TYPE = np.dtype([("key", "<f8"), ("hit", "<i1"), ("flags", "<u1")])  # −score


class SpillDir:
    """A temporary folder, removed on :meth:`close` (``with``: also on error)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        # the pairs come back in prediction order in blocks of this many rows of predictions
        self.range_rows = min(budget, 4 * CHUNK)
        self.path = Path(tempfile.mkdtemp(prefix="modelmon-model-quality-"))
        self._names = 0

    def file(self, stem: str) -> Path:
        self._names += 1
        return self.path / f"{stem}-{self._names}.bin"

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> SpillDir:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def append(path: Path, records: np.ndarray[Any, Any]) -> None:
    with open(path, "ab") as out:
        records.tofile(out)


def read(path: Path, dtype: np.dtype[Any], count: int = -1, start: int = 0) -> Any:
    """``count`` records from record ``start`` (all: -1)."""
    if count == 0:
        return np.zeros(0, dtype)
    return np.fromfile(path, dtype=dtype, count=count, offset=start * dtype.itemsize)


def chunks(path: Path, dtype: np.dtype[Any], rows: int, size: int) -> Iterator[Any]:
    for start in range(0, rows, size):
        yield read(path, dtype, min(size, rows - start), start)


class Partitioned:
    """Records spread over ``2**bits`` files by ``bits`` bits of their ``key``, below the
    ``used`` top bits that partitions above this one took; each file in the records' order."""

    def __init__(
        self, spill: SpillDir, stem: str, dtype: np.dtype[Any], used: int, bits: int
    ) -> None:
        self.dtype, self.used, self.bits = dtype, used + bits, bits
        self.paths = [spill.file(f"{stem}-{used}-{part}") for part in range(1 << bits)]
        self.rows = np.zeros(1 << bits, dtype=np.int64)

    def append(self, records: Any) -> None:
        shift = np.uint64(64 - self.used)
        part = (records["key"].view(np.uint64) >> shift) & np.uint64((1 << self.bits) - 1)
        part = part.astype(np.uint8)  # a stable sort of bytes is a radix sort
        order = np.argsort(part, kind="stable")  # each part keeps the records' order
        counts = np.bincount(part, minlength=self.rows.size)
        ordered = records[order]
        start = 0
        for index in np.flatnonzero(counts).tolist():
            append(self.paths[index], ordered[start : start + counts[index]])
            start += int(counts[index])
        self.rows += counts


@dataclass
class Leaf:
    """A joined partition: its pairs (in row order) and how many fall in each row range."""

    path: Path
    per_range: Any
    taken: int = 0


@dataclass
class Spilled:
    """The join's result on disk (what ``Pairs`` holds in memory)."""

    spill: SpillDir
    values: type[np.generic]
    leaves: list[Leaf]
    counts: JoinCounts
    predictions: int  # every prediction row read (labelled or not)
    bad: BadLines
    time_range: tuple[float, float] | None
    scores: Path | None  # every prediction's (score, ŷ): the estimate's rows
    ranges: int = 0

    def pair_blocks(self) -> Iterator[Any]:
        """The pairs in prediction order (``pair_type``), in blocks of the pairs of
        ``range_rows`` predictions (at most the budget)."""
        dtype = pair_type(self.values)
        for leaf in self.leaves:
            leaf.taken = 0
        for index in range(self.ranges):
            parts = []
            for leaf in self.leaves:
                count = int(leaf.per_range[index])
                if count:
                    parts.append(read(leaf.path, dtype, count, leaf.taken))
                    leaf.taken += count
            if parts:
                block = np.concatenate(parts)
                yield block[np.argsort(np.ascontiguousarray(block["row"]))]


class Sink:
    """The reduce's columns: in memory (``predictions``, ``labels``: today's path) until
    both sides hold more than ``budget`` rows together, then in partitions on disk."""

    def __init__(self, values: type[np.generic], budget: int | None, has_scores: bool) -> None:
        self.values, self.budget, self.has_scores = values, budget, has_scores
        self.predictions = Columns({"key": np.int64, "prediction": values,
                                    "probability": np.float64})  # fmt: skip
        self.labels = Columns({"key": np.int64, "label": values})
        self.spill: SpillDir | None = None
        self._sides: tuple[Partitioned, Partitioned] | None = None
        self._scores: Path | None = None
        self.prediction_rows = self.label_rows = 0

    def add_predictions(self, keys: Any, predictions: Any, probabilities: Any) -> None:
        self.prediction_rows += keys.size
        if self._sides is None:
            self.predictions.append(key=keys, prediction=predictions, probability=probabilities)
            self._maybe_spill()
            return
        records = np.empty(keys.size, _prediction_type(self.values))
        records["key"], records["prediction"] = keys, predictions
        records["probability"] = probabilities
        records["row"] = np.arange(self.prediction_rows - keys.size, self.prediction_rows)
        self._sides[0].append(records)
        if self._scores is not None:
            scores = np.empty(keys.size, SCORE_TYPE)
            scores["key"], scores["value"] = probabilities, predictions
            append(self._scores, scores)

    def add_labels(self, keys: Any, labels: Any) -> None:
        self.label_rows += keys.size
        if self._sides is None:
            self.labels.append(key=keys, label=labels)
            self._maybe_spill()
            return
        records = np.empty(keys.size, _label_type(self.values))
        records["key"], records["label"] = keys, labels
        self._sides[1].append(records)

    def _maybe_spill(self) -> None:
        if self.budget is None or self.prediction_rows + self.label_rows <= self.budget:
            return
        self.spill = SpillDir(self.budget)
        self._sides = (
            Partitioned(self.spill, "predictions", _prediction_type(self.values), 0, PART_BITS),
            Partitioned(self.spill, "labels", _label_type(self.values), 0, PART_BITS),
        )
        if self.has_scores:
            self._scores = self.spill.file("scores")
        held_predictions, held_labels = self.prediction_rows, self.label_rows
        self.prediction_rows = self.label_rows = 0
        p, labels = self.predictions, self.labels
        keys, values, scores = p.take("key"), p.take("prediction"), p.take("probability")
        for lo in range(0, keys.size, CHUNK):  # a chunk's records and order at a time
            hi = lo + CHUNK
            self.add_predictions(keys[lo:hi], values[lo:hi], scores[lo:hi])
        keys, values = labels.take("key"), labels.take("label")
        for lo in range(0, keys.size, CHUNK):
            self.add_labels(keys[lo : lo + CHUNK], values[lo : lo + CHUNK])
        assert (self.prediction_rows, self.label_rows) == (held_predictions, held_labels)

    def finish(self, bad: BadLines, span: tuple[float, float] | None) -> Spilled:
        """The join, a partition at a time (only once spilled)."""
        assert self.spill is not None and self._sides is not None
        spill = self.spill
        ranges = max(1, math.ceil(self.prediction_rows / spill.range_rows))
        leaves: list[Leaf] = []
        counts = np.zeros(5, dtype=np.int64)
        predictions, labels = self._sides
        for part in range(predictions.rows.size):
            _join_part(spill, predictions, labels, part, ranges, leaves, counts)
        return Spilled(spill, self.values, leaves, JoinCounts(*(int(c) for c in counts)),
                       self.prediction_rows, bad, span, self._scores, ranges)  # fmt: skip


def _join_part(
    spill: SpillDir,
    predictions: Partitioned,
    labels: Partitioned,
    part: int,
    ranges: int,
    leaves: list[Leaf],
    counts: Any,
    split: bool = True,
) -> None:
    """Join one partition (split again by the next bits while above the budget, unless a
    split left every row in one part: one key, repeated, read in chunks for its first rows)."""
    rows = int(predictions.rows[part]), int(labels.rows[part])
    paths = predictions.paths[part], labels.paths[part]
    if split and sum(rows) > spill.budget and predictions.used < 64:
        bits = min(PART_BITS, 64 - predictions.used,
                   max(1, math.ceil(math.log2(2 * sum(rows) / spill.budget))))  # fmt: skip
        sides = (
            Partitioned(spill, "predictions", predictions.dtype, predictions.used, bits),
            Partitioned(spill, "labels", labels.dtype, predictions.used, bits),
        )
        for side, path, count in zip(sides, paths, rows, strict=True):
            for chunk in chunks(path, side.dtype, count, spill.range_rows):
                side.append(chunk)
            path.unlink(missing_ok=True)
        for sub in range(1 << bits):
            whole = int(sides[0].rows[sub] + sides[1].rows[sub]) == sum(rows)
            _join_part(spill, sides[0], sides[1], sub, ranges, leaves, counts, not whole)
        return
    if rows[0] == 0 and rows[1] == 0:
        return
    if split:
        left = read(paths[0], predictions.dtype, rows[0])
        right = read(paths[1], labels.dtype, rows[1])
    else:  # past the budget and not split by a key bit: a key repeated, its first rows only
        left = first_of_each_key(paths[0], predictions.dtype, rows[0], spill.range_rows)
        right = first_of_each_key(paths[1], labels.dtype, rows[1], spill.range_rows)
    for path in paths:
        path.unlink(missing_ok=True)
    joined = join(np.ascontiguousarray(left["key"]), np.ascontiguousarray(right["key"]),
                  consume=True)  # fmt: skip
    # the repeats left out above are duplicates as the join counts them
    counts += [joined.counts.matched, joined.counts.unmatched, joined.counts.unlabelled,
               joined.counts.duplicate_labels + rows[1] - right.size,
               joined.counts.duplicate_predictions + rows[0] - left.size]  # fmt: skip
    if not joined.prediction_rows.size:
        return
    kept = left[joined.prediction_rows]
    pairs = np.empty(kept.size, pair_type(predictions.dtype["prediction"].type))
    pairs["row"], pairs["prediction"] = kept["row"], kept["prediction"]
    pairs["probability"] = kept["probability"]
    pairs["label"] = right["label"][joined.label_rows]
    path = spill.file("pairs")
    append(path, pairs)
    per_range = np.bincount(pairs["row"] // spill.range_rows, minlength=ranges)
    leaves.append(Leaf(path, per_range))


def first_of_each_key(path: Path, dtype: np.dtype[Any], rows: int, size: int) -> Any:
    """The records of ``path`` without the later repeats of a key, in their order (what the
    join keeps of each side: the first row of a key), read ``size`` rows at a time: memory
    for the distinct keys, not for the repeats."""
    kept: list[Any] = []
    seen = np.empty(0, dtype=dtype["key"])
    for chunk in chunks(path, dtype, rows, size):
        keys, first = np.unique(chunk["key"], return_index=True)
        new = ~np.isin(keys, seen, assume_unique=True)
        if np.any(new):
            kept.append(chunk[np.sort(first[new])])
            seen = np.union1d(seen, keys[new])
    return np.concatenate(kept) if kept else np.empty(0, dtype=dtype)


@dataclass
class Segment:
    """A range of a sort's rows (``path``), sorted on first :meth:`read`; ``constant``: every
    key equal (read in :meth:`chunks`, never whole)."""

    path: Path
    dtype: np.dtype[Any]
    rows: int
    constant: bool
    done: bool = False

    def read(self) -> Any:
        records = read(self.path, self.dtype, self.rows)
        if not self.done:
            # NaN last, as np.argsort puts it
            records = records[np.argsort(np.ascontiguousarray(records["key"]))]
            self.path.unlink()
            append(self.path, records)
            self.done = True
        return records

    def chunks(self, size: int) -> Iterator[Any]:
        return chunks(self.path, self.dtype, self.rows, size)


def sorted_segments(
    spill: SpillDir, path: Path, dtype: np.dtype[Any], rows: int, depth: int = 0
) -> list[Segment]:
    """The records of ``path`` in ascending ``key`` order as segments of at most the budget's
    rows (or of one key): the ranges of keys cut at quantiles of a sample, a key never in two."""
    budget = spill.budget
    if rows <= budget:
        return [Segment(path, dtype, rows, False)] if rows else []
    low, high, sample = math.inf, -math.inf, []
    parts = min(MAX_RANGES, max(2, math.ceil(2 * rows / budget)))  # more: cut again below
    stride = max(1, rows // min(SAMPLE * parts, budget // 2))  # a sample of the budget's half
    nan = 0
    for chunk in chunks(path, dtype, rows, spill.range_rows):
        keys = chunk["key"]
        finite = keys[~np.isnan(keys)]
        nan += keys.size - finite.size
        if finite.size:
            low, high = min(low, float(finite.min())), max(high, float(finite.max()))
            sample.append(finite[::stride].copy())  # not a view: the chunk goes
    if (low == high and math.isfinite(low) and nan == 0) or (low > high):
        constant = low == high and math.isfinite(low)  # else: all NaN, sorted as a block
        return [Segment(path, dtype, rows, constant, done=True)]
    if depth > 32 or (low == high and not math.isfinite(low)):
        return [Segment(path, dtype, rows, False)]  # inf only: sorted whole
    points = np.concatenate(sample)
    bounds = np.unique(np.quantile(points, np.linspace(0, 1, parts + 1)[1:-1]))
    if bounds.size == 0 or bounds[-1] >= high:
        # the highest key holds the upper quantiles: it gets a range of its own (constant,
        # read in chunks), or each level would only cut the lowest key off the rest
        below = float(np.nextafter(high, -math.inf))
        bounds = np.unique(np.append(bounds[bounds < below], [low, below]))
    paths = [spill.file("range") for _ in range(bounds.size + 1)]
    counts = np.zeros(bounds.size + 1, dtype=np.int64)
    for chunk in chunks(path, dtype, rows, spill.range_rows):
        where = np.searchsorted(bounds, chunk["key"], side="left")  # NaN: the last
        where = where.astype(np.uint16)  # MAX_RANGES + 1 at most: a radix sort
        order = np.argsort(where, kind="stable")
        found = np.bincount(where, minlength=bounds.size + 1)
        ordered, start = chunk[order], 0
        for index in np.flatnonzero(found).tolist():
            append(paths[index], ordered[start : start + found[index]])
            start += int(found[index])
        counts += found
    path.unlink()
    segments: list[Segment] = []
    for part_path, count in zip(paths, counts.tolist(), strict=True):
        if count:
            segments += sorted_segments(spill, part_path, dtype, count, depth + 1)
    return segments
