"""The mergeable profile of one feature: exact counts and moments, DataSketches for the rest.

Counts (present, missing, per inferred type) and the moments of the numbers (count, sum,
population variance merged with Chan et al.'s formula, min, max) are exact; a KLL sketch holds
the numbers' distribution; string values go to a frequent-items sketch (exact counts up to 3072
distinct values) and an HLL distinct count. A string longer than :data:`MAX_VALUE_CHARS`
(256) characters is profiled as its first 255 and ``…``, so the sketch stays bounded in bytes.
Re-exported by :mod:`analyzer.monitors.data_quality.profile`.

Any finite float64 is a valid number, up to ±1.7976931348623157e308, and never overflows the
moments: the sum and the sum of squared deviations are kept scaled by a power of two,
``2**scale`` (``4**scale`` for the squares), where ``scale`` is 0 (so the arithmetic is the
plain one, bit for bit) until a value would overflow; then the moments move to the smallest
larger scale that holds them (scaling by a power of two is exact). ``mean`` and ``std`` are
therefore always finite; ``sum`` saturates at ±1.7976931348623157e308 when the true sum is
beyond the float range. Non-finite values never get here (:mod:`analyzer.decoding.value_types`
counts
them as strings), so a serialized profile never holds ``inf``, ``nan`` or ``null`` moments;
:meth:`FeatureProfile.from_bytes` refuses one that does (:class:`ProfileError`).

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
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

import datasketches as ds
import numpy as np
import orjson

from analyzer.decoding.value_types import (
    FRACTIONAL,
    INTEGRAL,
    STRING,
    UNKNOWN,
    PreSplit,
    split_values,
)
from analyzer.monitors.data_quality.sketches import (
    DEFAULT_KLL_K,
    frequent_counts,
    merge_hll,
    new_frequent,
    new_hll,
    new_kll,
)

__all__ = ["MAX_VALUE_CHARS", "FeatureProfile", "ProfileError"]

_FEATURE_MAGIC = b"MMF1"
# A string value longer than this is profiled as its first MAX_VALUE_CHARS - 1 characters and
# "…", so that the frequent-items sketch (up to 3072 values) stays bounded in bytes.
MAX_VALUE_CHARS = 256
_FLOAT_MAX = sys.float_info.max
# Moments that overflow move up by this many powers of two until they fit.
_SCALE_STEP = 64
# A chunk with huge values is profiled at a scale that leaves its largest value near 2**400:
# its squares (2**800) times any count below 2**200 stay finite.
_CHUNK_TOP_EXP = 400


class ProfileError(ValueError):
    """Bytes that are not a readable profile (corrupt, or holding a non-finite moment)."""


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


def _chunk_moments(numbers: np.ndarray) -> tuple[float, float]:
    """(sum, sum of squared deviations) of a chunk; may be non-finite when values are huge."""
    n = len(numbers)
    with np.errstate(over="ignore", invalid="ignore"):
        if n <= _SEQUENTIAL_MAX:
            return _sequential_moments(numbers.tolist())
        total = float(numbers.sum())
        deviations = numbers - total / n
        np.square(deviations, out=deviations)  # ufuncs, not BLAS (its threads spin)
        return total, float(deviations.sum())


def _finite(x: float) -> bool:
    return math.isfinite(x)


def _down(x: float, exp: int) -> float:
    """``x / 2**exp`` (exact but for subnormal results; ``exp >= 0``)."""
    return math.ldexp(x, -exp) if exp else x


def _up(x: float, exp: int) -> float:
    """``x * 2**exp``, saturating at the largest float instead of overflowing."""
    if not exp:
        return x
    try:
        return math.ldexp(x, exp)
    except OverflowError:
        return math.copysign(_FLOAT_MAX, x)


def merge_moments(
    a: tuple[int, float, float, int], b: tuple[int, float, float, int]
) -> tuple[float, float, int]:
    """Chan et al.'s merge of two (count, sum, m2, scale) into (sum, m2, scale), all finite.

    At scale 0 on both sides and without overflow this is the plain formula. Otherwise the
    common scale rises by :data:`_SCALE_STEP` until the result is finite (it is at the latest
    when every scaled value has become tiny), so the loop ends after a few steps.
    """
    n_a, s_a, m_a, k_a = a
    n_b, s_b, m_b, k_b = b
    scale = max(k_a, k_b)
    while True:
        sa, ma = _down(s_a, scale - k_a), _down(m_a, 2 * (scale - k_a))
        sb, mb = _down(s_b, scale - k_b), _down(m_b, 2 * (scale - k_b))
        delta = sb / n_b - sa / n_a
        m2 = ma + mb + delta * delta * n_a * n_b / (n_a + n_b)
        total = sa + sb
        if _finite(m2) and _finite(total):
            return total, m2, scale
        scale += _SCALE_STEP


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
        # sum / 2**scale and (sum of squared deviations from the mean) / 4**scale
        self._sum = 0.0
        self._m2 = 0.0
        self.scale = 0
        self.min: float | None = None
        self.max: float | None = None
        self.kll: Any = None
        self.frequent: Any = None
        self.hll: Any = None

    @property
    def sum(self) -> float:
        """The sum of the numbers (saturated at ±1.797e308 when it is beyond the float range)."""
        return _up(self._sum, self.scale)

    @property
    def m2(self) -> float:
        """The sum of squared deviations from the mean (saturated like :attr:`sum`)."""
        return _up(self._m2, 2 * self.scale)

    @property
    def mean(self) -> float | None:
        if not self.count:
            return None
        return _up(self._sum / self.count, self.scale)

    @property
    def std(self) -> float | None:
        """Population standard deviation of the numbers."""
        if not self.count:
            return None
        return _up(math.sqrt(max(self._m2, 0.0) / self.count), self.scale)

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
        low, high = float(numbers.min()), float(numbers.max())
        total, m2 = _chunk_moments(numbers)
        scale = 0
        if not (_finite(total) and _finite(m2)):  # huge values: profile the chunk scaled down
            top = math.frexp(max(abs(low), abs(high)))[1]
            scale = max(0, top - _CHUNK_TOP_EXP)
            total, m2 = _chunk_moments(np.ldexp(numbers, -scale))
        if self.kll is None:
            self.kll = new_kll(self.k)
        self.kll.update(numbers)
        self._merge_moments(n, total, m2, scale, low, high)

    def _merge_moments(
        self, n: int, total: float, m2: float, scale: int, low: float, high: float
    ) -> None:
        if self.count == 0:
            self.count, self._sum, self._m2, self.scale = n, total, m2, scale
            self.min, self.max = low, high
            return
        self._sum, self._m2, self.scale = merge_moments(
            (self.count, self._sum, self._m2, self.scale), (n, total, m2, scale)
        )
        self.count += n
        self.min = low if self.min is None else min(self.min, low)
        self.max = high if self.max is None else max(self.max, high)

    def _update_strings(self, counts: Counter[str]) -> None:
        if max(map(len, counts)) > MAX_VALUE_CHARS:  # bounded sketches: long values cut
            cut: Counter[str] = Counter()
            for value, count in counts.items():
                key = value if len(value) <= MAX_VALUE_CHARS else value[: MAX_VALUE_CHARS - 1]
                cut[key if key is value else key + "…"] += count
            counts = cut
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
            self._merge_moments(
                other.count, other._sum, other._m2, other.scale, other.min, other.max
            )
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
                "sum": self._sum,
                "m2": self._m2,
                "scale": self.scale,
                "min": self.min,
                "max": self.max,
            }
        )
        blobs = [_blob(self.kll), _blob(self.frequent), _blob(self.hll, "serialize_compact")]
        sizes = struct.pack("<4I", len(header), *(len(b) for b in blobs))
        return b"".join([_FEATURE_MAGIC, sizes, header, *blobs])

    @classmethod
    def from_bytes(cls, data: bytes) -> FeatureProfile:
        """Read :meth:`to_bytes`; :class:`ProfileError` when the bytes are not a valid profile."""
        if data[:4] != _FEATURE_MAGIC:
            raise ProfileError("not a serialized FeatureProfile")
        try:
            sizes = struct.unpack_from("<4I", data, 4)
            offset = 4 + struct.calcsize("<4I")
            if offset + sum(sizes) != len(data):
                raise ProfileError("a serialized FeatureProfile of the wrong length")
            parts = []
            for size in sizes:
                parts.append(data[offset : offset + size])
                offset += size
            profile = cls._from_header(orjson.loads(parts[0]))
            if parts[1]:
                profile.kll = ds.kll_doubles_sketch.deserialize(parts[1])
            if parts[2]:
                profile.frequent = ds.frequent_strings_sketch.deserialize(parts[2])
                profile.hll = ds.hll_sketch.deserialize(parts[3])
        except ProfileError:
            raise
        except (struct.error, orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ProfileError(f"a corrupt FeatureProfile: {exc!r}") from exc
        except (RuntimeError, ValueError, IndexError, OverflowError, MemoryError) as exc:
            # a sketch that does not load
            raise ProfileError(f"a corrupt sketch in a FeatureProfile: {exc!r}") from exc
        return profile

    @classmethod
    def _from_header(cls, head: Any) -> FeatureProfile:
        """The exact parts, checked: counts are integers >= 0, moments finite numbers."""
        if not isinstance(head, dict) or not isinstance(head.get("name"), str):
            raise ProfileError("a FeatureProfile header without a name")
        counts = [head["k"], head["present"], head["missing"], head["count"]]
        types = head["types"]
        if not isinstance(types, dict):
            raise ProfileError("a FeatureProfile header without type counts")
        counts += list(types.values())
        if not all(type(c) is int and c >= 0 for c in counts) or head["k"] < 1:
            raise ProfileError(f"feature {head['name']!r}: a count that is not an integer >= 0")
        moments = [head["sum"], head["m2"]]
        bounds = [head["min"], head["max"]] if head["count"] else []
        for value in moments + bounds:
            if type(value) not in (int, float) or not math.isfinite(value):
                raise ProfileError(
                    f"feature {head['name']!r}: a moment that is not a finite number "
                    f"(sum={head['sum']!r}, m2={head['m2']!r}, min={head['min']!r}, "
                    f"max={head['max']!r})"
                )
        scale = head.get("scale", 0)  # profiles written before scaling have none
        if type(scale) is not int or scale < 0:
            raise ProfileError(f"feature {head['name']!r}: a bad moment scale {scale!r}")
        profile = cls(head["name"], head["k"])
        profile.num_present, profile.num_missing = head["present"], head["missing"]
        profile.type_counts = {str(key): value for key, value in types.items()}
        profile.count, profile._sum, profile._m2 = (
            head["count"],
            float(head["sum"]),
            float(head["m2"]),
        )
        profile.scale = scale
        if head["count"]:
            profile.min, profile.max = float(head["min"]), float(head["max"])
        return profile
