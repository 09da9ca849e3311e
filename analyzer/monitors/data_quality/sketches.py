"""Thin helpers over Apache DataSketches (``datasketches``): creation, merge, exact reads.

KLL (quantiles of numbers), frequent items (exact category counts while the number of distinct
values stays under the map's capacity) and HLL (distinct count). No sketch is hand-rolled here;
these functions only fix parameters and read the sketches' items in the shapes SageMaker's
files use.
"""

from __future__ import annotations

from typing import Any

import datasketches as ds
import numpy as np

__all__ = [
    "DEFAULT_KLL_K",
    "FREQUENT_LG_MAX_MAP",
    "HLL_LG_K",
    "frequent_counts",
    "frequent_is_exact",
    "kll_levels",
    "kll_rank_error",
    "kll_weighted_items",
    "merge_hll",
    "new_frequent",
    "new_hll",
    "new_kll",
    "weighted_rank_counts",
]

DEFAULT_KLL_K = 2048
# 2**12 slots: counts stay exact up to 0.75 * 4096 = 3072 distinct values per feature.
FREQUENT_LG_MAX_MAP = 12
HLL_LG_K = 12


def new_kll(k: int = DEFAULT_KLL_K) -> Any:
    return ds.kll_doubles_sketch(k)


def new_frequent() -> Any:
    return ds.frequent_strings_sketch(FREQUENT_LG_MAX_MAP)


def new_hll() -> Any:
    return ds.hll_sketch(HLL_LG_K, ds.tgt_hll_type.HLL_8)


def merge_hll(left: Any, right: Any) -> Any:
    union = ds.hll_union(HLL_LG_K)
    union.update(left)
    union.update(right)
    return union.get_result(ds.tgt_hll_type.HLL_8)


def kll_rank_error(k: int) -> float:
    """KLL's single-sided normalized rank error (99th percentile) for ``k``."""
    return float(ds.kll_doubles_sketch.get_normalized_rank_error(k, False))


def kll_levels(kll: Any) -> list[list[float]]:
    """The compactor levels' items: level ``i`` holds items of weight ``2**i``.

    Level 0 is in arrival order (the sketch stores it newest first), like Deequ's
    ``sketch.data`` in SageMaker's statistics.json; empty levels in between are kept.

    Examples
    --------
    >>> import numpy as np
    >>> sketch = new_kll(200)
    >>> sketch.update(np.array([3.0, 1.0, 2.0]))
    >>> kll_levels(sketch)
    [[3.0, 1.0, 2.0]]
    """
    levels: list[list[float]] = []
    for item, weight in kll:
        level = int(weight).bit_length() - 1
        while len(levels) <= level:
            levels.append([])
        levels[level].append(float(item))
    if levels:
        levels[0].reverse()
    return levels


def kll_weighted_items(kll: Any) -> tuple[np.ndarray, np.ndarray]:
    """The sketch's retained items sorted ascending, with their integer weights."""
    pairs = list(kll)
    if not pairs:
        return np.empty(0, dtype=np.float64), np.empty(0, dtype=np.float64)
    values = np.fromiter((p[0] for p in pairs), dtype=np.float64, count=len(pairs))
    weights = np.fromiter((p[1] for p in pairs), dtype=np.float64, count=len(pairs))
    order = np.argsort(values, kind="stable")
    return values[order], weights[order]


def weighted_rank_counts(
    values: np.ndarray, weights: np.ndarray, points: np.ndarray, inclusive: bool
) -> np.ndarray:
    """Total weight of items below each point (``<=`` when ``inclusive``); ``values`` sorted."""
    cumulative = np.concatenate([[0.0], np.cumsum(weights)])
    index = np.searchsorted(values, points, side="right" if inclusive else "left")
    result: np.ndarray = cumulative[index]
    return result


def frequent_counts(sketch: Any) -> dict[str, float]:
    """Item -> estimated count, most frequent first (exact while :func:`frequent_is_exact`)."""
    rows = sketch.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)
    return {str(row[0]): float(row[1]) for row in rows}


def frequent_is_exact(sketch: Any) -> bool:
    """True while no item was ever evicted: every count is exact."""
    rows = sketch.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)
    return all(row[2] == row[3] for row in rows)
