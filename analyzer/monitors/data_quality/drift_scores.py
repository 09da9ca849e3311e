"""Familiar drift scores reported beside the verdict: PSI, Jensen–Shannon, Wasserstein.

They let users coming from Evidently or NannyML find their numbers; they never decide a
violation (``analyzer.monitors.data_quality.drift`` does). Numbers are binned on the baseline's
deciles (read
from its sketch), categories on their shares; an empty bin gets a share of 1e-4 so that PSI
stays finite. The Jensen–Shannon *distance* uses base-2 logarithms (so it lies in [0, 1]);
the Wasserstein-1 distance is divided by the baseline's standard deviation, Evidently's
"normed" reading (0.1 = a shift of a tenth of a standard deviation).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from analyzer.monitors.data_quality.drift import weighted_cdf

__all__ = ["categorical_scores", "jensen_shannon", "numeric_scores", "psi"]

FloatArray = npt.NDArray[np.float64]
SHARE_FLOOR = 1e-4
DECILES = 10


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike) -> float:
    """Population stability index ``Σ (a − e)·ln(a/e)`` over shares (floored at 1e-4).

    Examples
    --------
    >>> round(psi([0.5, 0.5], [0.6, 0.4]), 4)
    0.0405
    """
    e = np.maximum(np.asarray(expected, dtype=np.float64), SHARE_FLOOR)
    a = np.maximum(np.asarray(actual, dtype=np.float64), SHARE_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def jensen_shannon(p: npt.ArrayLike, q: npt.ArrayLike) -> float:
    """Jensen–Shannon distance (square root of the divergence, base 2) between two shares.

    Examples
    --------
    >>> jensen_shannon([1.0, 0.0], [0.0, 1.0])
    1.0
    >>> round(jensen_shannon([0.5, 0.5], [0.6, 0.4]), 4)
    0.0854
    """
    a = np.asarray(p, dtype=np.float64)
    b = np.asarray(q, dtype=np.float64)
    a = a / a.sum() if a.sum() > 0 else a
    b = b / b.sum() if b.sum() > 0 else b
    mid = (a + b) / 2

    def kl(x: FloatArray, y: FloatArray) -> float:
        mask = x > 0
        return float(np.sum(x[mask] * np.log2(x[mask] / y[mask])))

    return math.sqrt(max(0.0, (kl(a, mid) + kl(b, mid)) / 2))


def numeric_scores(
    base: tuple[npt.ArrayLike, npt.ArrayLike | None],
    cur: tuple[npt.ArrayLike, npt.ArrayLike | None],
    base_std: float | None,
) -> tuple[float, float, float | None]:
    """(PSI, Jensen–Shannon distance, Wasserstein / baseline std) from two weighted samples.

    Examples
    --------
    >>> rng = np.random.default_rng(11)
    >>> a, b = rng.normal(size=50_000), rng.normal(0.5, size=50_000)
    >>> [round(s, 2) for s in numeric_scores((a, None), (b, None), 1.0)]
    [0.24, 0.2, 0.5]
    """
    bx, bc = weighted_cdf(*base)
    cx, cc = weighted_cdf(*cur)
    if not len(bx) or not len(cx):
        return 0.0, 0.0, None
    idx = np.searchsorted(bc, np.arange(1, DECILES) / DECILES, side="left")
    edges = np.unique(bx[np.minimum(idx, len(bx) - 1)])
    pad_b, pad_c = np.concatenate(([0.0], bc)), np.concatenate(([0.0], cc))
    at_b = np.concatenate((pad_b[np.searchsorted(bx, edges, side="right")], [1.0]))
    at_c = np.concatenate((pad_c[np.searchsorted(cx, edges, side="right")], [1.0]))
    share_b, share_c = np.diff(at_b, prepend=0.0), np.diff(at_c, prepend=0.0)
    grid = np.union1d(bx, cx)
    fb = pad_b[np.searchsorted(bx, grid, side="right")]
    fc = pad_c[np.searchsorted(cx, grid, side="right")]
    w1 = float(np.sum(np.abs(fb - fc)[:-1] * np.diff(grid)))
    wasserstein = w1 / base_std if base_std and base_std > 0 else None
    return psi(share_b, share_c), jensen_shannon(share_b, share_c), wasserstein


def categorical_scores(base: Mapping[str, float], cur: Mapping[str, float]) -> tuple[float, float]:
    """(PSI, Jensen–Shannon distance) between category counts.

    Examples
    --------
    >>> [round(s, 4) for s in categorical_scores({"a": 50, "b": 50}, {"a": 60, "b": 40})]
    [0.0405, 0.0854]
    """
    keys = sorted(set(base) | set(cur))
    b = np.array([float(base.get(k, 0.0)) for k in keys])
    c = np.array([float(cur.get(k, 0.0)) for k in keys])
    if b.sum() <= 0 or c.sum() <= 0:
        return 0.0, 0.0
    return psi(b / b.sum(), c / c.sum()), jensen_shannon(b, c)
