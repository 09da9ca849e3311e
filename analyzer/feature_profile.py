"""The mergeable profile of one feature: exact counts and moments, DataSketches for the rest.

Counts (present, missing, per inferred type) and the moments of the numbers (count, sum,
population variance merged with Chan et al.'s formula, min, max) are exact; a KLL sketch holds
the numbers' distribution; string values go to a frequent-items sketch (exact counts up to 3072
distinct values) and an HLL distinct count. Re-exported by :mod:`analyzer.profile`.

Examples
--------
>>> import numpy as np
>>> x = np.random.default_rng(1).normal(size=500)
>>> a, b = FeatureProfile("x"), FeatureProfile("x")
>>> a.update(x[:200]); b.update(x[200:])
>>> a.merge(b)
>>> (a.count, bool(np.isclose(a.std, x.std())), a.inferred_type)
(500, True, 'Fractional')
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from collections.abc import Sequence
from typing import Any

import datasketches as ds
import numpy as np
import orjson

from analyzer.sketches import (
    DEFAULT_KLL_K,
    frequent_counts,
    merge_hll,
    new_frequent,
    new_hll,
    new_kll,
)
from analyzer.value_types import (
    FRACTIONAL,
    INTEGRAL,
    STRING,
    UNKNOWN,
    PreSplit,
    split_values,
)

__all__ = ["FeatureProfile"]

_FEATURE_MAGIC = b"MMF1"


# Chunks this small are summed sequentially (Welford's update for the variance), as Spark's
# sum and stddev_pop do: on small datasets the results are bit-identical to AWS's container.
_SEQUENTIAL_MAX = 256


def _sequential_moments(values: list[float]) -> tuple[float, float]:
    total = 0.0
    mean = 0.0
    m2 = 0.0
    for n, x in enumerate(values, 1):
        total += x
        delta = x - mean
        delta_n = delta / n
        mean += delta_n
        m2 += delta * (delta - delta_n)
    return total, m2


def _blob(sketch: Any, method: str = "serialize") -> bytes:
    return b"" if sketch is None else bytes(getattr(sketch, method)())


class FeatureProfile:
    """The mergeable profile of one feature (or one prediction column)."""

    def __init__(self, name: str, k: int = DEFAULT_KLL_K) -> None:
        self.name = name
        self.k = k
        self.num_present = 0
        self.num_missing = 0
        self.type_counts: dict[str, int] = {INTEGRAL: 0, FRACTIONAL: 0, STRING: 0}
        self.count = 0
        self.sum = 0.0
        self.m2 = 0.0  # sum of squared deviations from the mean
        self.min: float | None = None
        self.max: float | None = None
        self.kll: Any = None
        self.frequent: Any = None
        self.hll: Any = None

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None

    @property
    def std(self) -> float | None:
        """Population standard deviation of the numbers."""
        return math.sqrt(max(self.m2, 0.0) / self.count) if self.count else None

    @property
    def inferred_type(self) -> str:
        """Deequ's rule: String if any string, else Fractional if any, else Integral."""
        if self.num_present == 0:
            return UNKNOWN
        if self.type_counts[STRING]:
            return STRING
        if self.type_counts[FRACTIONAL]:
            return FRACTIONAL
        return INTEGRAL

    def category_counts(self) -> dict[str, float]:
        """String value -> count, most frequent first (exact up to 3072 distinct values)."""
        return frequent_counts(self.frequent) if self.frequent is not None else {}

    def distinct_count(self) -> float:
        """Distinct string values: exact from the counts while they are, else HLL's estimate."""
        if self.frequent is None:
            return 0.0
        rows = self.frequent.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)
        if all(row[2] == row[3] for row in rows):
            return float(len(rows))
        return float(round(self.hll.get_estimate()))

    def update(self, values: Sequence[Any] | np.ndarray | PreSplit) -> None:
        """Add one chunk of raw values (strings, JSON scalars, a numpy array, or pre-split)."""
        split = split_values(values)
        present = len(values) - split.missing
        self.num_missing += split.missing
        self.num_present += present
        self.type_counts[INTEGRAL] += split.integral
        self.type_counts[FRACTIONAL] += split.fractional
        self.type_counts[STRING] += len(split.strings)
        if len(split.numbers):
            self.update_numbers(split.numbers)
        if split.strings:
            if split.string_counts is None or split.string_counts.total() != len(split.strings):
                split.string_counts = Counter(split.strings)
            self._update_strings(split.string_counts)

    def update_numbers(self, numbers: np.ndarray) -> None:
        """Moments, min/max and the KLL sketch from finite float64 numbers (counts untouched)."""
        n = len(numbers)
        if n <= _SEQUENTIAL_MAX:
            total, m2 = _sequential_moments(numbers.tolist())
        else:
            total = float(numbers.sum())
            deviations = numbers - total / n
            np.square(deviations, out=deviations)  # ufuncs, not BLAS (its threads spin)
            m2 = float(deviations.sum())
        low, high = float(numbers.min()), float(numbers.max())
        if self.kll is None:
            self.kll = new_kll(self.k)
        self.kll.update(numbers)
        self._merge_moments(n, total, m2, low, high)

    def _merge_moments(self, n: int, total: float, m2: float, low: float, high: float) -> None:
        if self.count == 0:
            self.count, self.sum, self.m2, self.min, self.max = n, total, m2, low, high
            return
        n_a, n_b = self.count, n
        delta = total / n_b - self.sum / n_a
        self.m2 = self.m2 + m2 + delta * delta * n_a * n_b / (n_a + n_b)
        self.count = n_a + n_b
        self.sum += total
        self.min = low if self.min is None else min(self.min, low)
        self.max = high if self.max is None else max(self.max, high)

    def _update_strings(self, counts: Counter[str]) -> None:
        if self.frequent is None:
            self.frequent, self.hll = new_frequent(), new_hll()
        for value, count in counts.items():
            self.frequent.update(value, count)
            self.hll.update(value)

    def merge(self, other: FeatureProfile) -> None:
        """Fold ``other`` (same feature) into this profile."""
        self.num_present += other.num_present
        self.num_missing += other.num_missing
        for key, value in other.type_counts.items():
            self.type_counts[key] = self.type_counts.get(key, 0) + value
        if other.count:
            assert other.min is not None and other.max is not None
            self._merge_moments(other.count, other.sum, other.m2, other.min, other.max)
        if other.kll is not None:
            if self.kll is None:
                self.kll = new_kll(self.k)
            self.kll.merge(other.kll)
        if other.frequent is not None:
            if self.frequent is None:
                self.frequent, self.hll = new_frequent(), new_hll()
            self.frequent.merge(other.frequent)
            self.hll = merge_hll(self.hll, other.hll)

    def __iadd__(self, other: FeatureProfile) -> FeatureProfile:
        self.merge(other)
        return self

    def copy(self) -> FeatureProfile:
        return FeatureProfile.from_bytes(self.to_bytes())

    def to_bytes(self) -> bytes:
        header = orjson.dumps(
            {
                "name": self.name,
                "k": self.k,
                "present": self.num_present,
                "missing": self.num_missing,
                "types": self.type_counts,
                "count": self.count,
                "sum": self.sum,
                "m2": self.m2,
                "min": self.min,
                "max": self.max,
            }
        )
        blobs = [_blob(self.kll), _blob(self.frequent), _blob(self.hll, "serialize_compact")]
        sizes = struct.pack("<4I", len(header), *(len(b) for b in blobs))
        return b"".join([_FEATURE_MAGIC, sizes, header, *blobs])

    @classmethod
    def from_bytes(cls, data: bytes) -> FeatureProfile:
        if data[:4] != _FEATURE_MAGIC:
            raise ValueError("not a serialized FeatureProfile")
        sizes = struct.unpack_from("<4I", data, 4)
        offset = 4 + struct.calcsize("<4I")
        parts = []
        for size in sizes:
            parts.append(data[offset : offset + size])
            offset += size
        head = orjson.loads(parts[0])
        profile = cls(head["name"], head["k"])
        profile.num_present, profile.num_missing = head["present"], head["missing"]
        profile.type_counts = dict(head["types"])
        profile.count, profile.sum, profile.m2 = head["count"], head["sum"], head["m2"]
        profile.min, profile.max = head["min"], head["max"]
        if parts[1]:
            profile.kll = ds.kll_doubles_sketch.deserialize(parts[1])
        if parts[2]:
            profile.frequent = ds.frequent_strings_sketch.deserialize(parts[2])
            profile.hll = ds.hll_sketch.deserialize(parts[3])
        return profile
