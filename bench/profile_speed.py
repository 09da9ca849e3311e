"""Profile building speed against the raw KLL update of datasketches on the same numbers.

Run: ``python bench/profile_speed.py [--rows 1000000] [--k 2048] [--repeat 5]``

For each input shape it prints rows/s of
:class:`analyzer.monitors.data_quality.profile.FeatureProfile` (counts,
types, moments, min/max, KLL) and of a bare ``kll_doubles_sketch(k).update(array)`` on the same
numbers, and their ratio (goal: the profile within 2x of the bare sketch). Times are the best
of ``--repeat`` runs, measured in this process, in the same run.

- ``float64 array``: numbers already parsed (what JSON numbers or a numpy column give);
- ``CSV text``: the column as strings, as CSV payloads arrive; the anchor then includes
  numpy's string-to-float conversion, so both sides parse the same text;
- ``JSON values``: a list of Python floats, as JSON payloads arrive after parsing;
- ``categorical``: strings of a 12-value domain (frequent items + HLL; no KLL anchor, the
  anchor is ``collections.Counter``, the cheapest exact count in Python).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import datasketches as ds
import numpy as np

from analyzer.monitors.data_quality.profile import FeatureProfile


def best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(42)
    numbers = np.round(rng.lognormal(3, 1, args.rows), 4)
    text = numbers.astype(str).tolist()
    floats = numbers.tolist()
    domain = [f"state_{i}" for i in range(12)]
    categories = rng.choice(domain, args.rows).tolist()
    k, n, repeat = args.k, args.rows, args.repeat

    def kll(values: np.ndarray) -> None:
        ds.kll_doubles_sketch(k).update(values)

    def profile(values: Any) -> None:
        FeatureProfile("x", k).update(values)

    cases: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
        ("float64 array", lambda: profile(numbers), lambda: kll(numbers)),
        ("CSV text", lambda: profile(text), lambda: kll(np.array(text, dtype=np.float64))),
        ("JSON values", lambda: profile(floats), lambda: kll(np.array(floats))),
        ("categorical", lambda: profile(categories), lambda: Counter(categories)),
    ]
    print(f"{n:,} values per column, k={k}, best of {repeat}")
    print(f"{'input':<15} {'profile rows/s':>15} {'anchor rows/s':>15} {'ratio':>7}")
    for label, ours, anchor in cases:
        t_ours, t_anchor = best(ours, repeat), best(anchor, repeat)
        print(f"{label:<15} {n / t_ours:>15,.0f} {n / t_anchor:>15,.0f} {t_ours / t_anchor:>6.2f}x")


if __name__ == "__main__":
    main()
