"""What ``modelmon baseline`` warns about before the service ever runs (pure, no I/O).

- **A baseline too small for its threshold.** The drift rule
(:mod:`analyzer.monitors.data_quality.drift`,
  ``docs/drift.md``) takes a noise margin ``M = sqrt(ln(2F/α)/2 · (1/n + 1/m)) + ε`` off the
  observed distance, for ``n`` baseline rows, ``m`` window rows and ``F`` features tested.
  The baseline's share of it does not shrink with more traffic: even an endless window keeps
  ``sqrt(ln(2F/α)/(2n))``. When that floor is half the threshold or more, small drifts cannot
  be told from noise, and the warning says from which distance on a drift is seen.
- **Names that captured data will not match**: see
  :func:`analyzer.decoding.column_mapping.baseline_name_warnings`.

Examples
--------
>>> round(noise_margin(178, None, 13, 0.01), 3)
0.149
>>> rows_for_margin(0.05, 13, 0.01)
1573
"""

from __future__ import annotations

import math

from analyzer.monitors.data_quality.drift import sampling_margin

__all__ = ["TYPICAL_WINDOW_ROWS", "noise_margin", "rows_for_margin", "small_baseline_warning"]

TYPICAL_WINDOW_ROWS = 1000
WARN_FRACTION = 0.5  # warn when the floor of the margin is at least this share of τ


def noise_margin(
    n_baseline: float, n_window: float | None, n_features: int, alpha: float, eps: float = 0.0
) -> float:
    """The numeric rule's margin M; ``n_window=None`` is an endless window (the floor)."""
    alpha_feature = alpha / max(1, n_features)
    if n_window is None:
        return math.sqrt(math.log(2.0 / alpha_feature) / (2.0 * n_baseline)) + eps
    return sampling_margin(n_baseline, n_window, alpha_feature) + eps


def rows_for_margin(target: float, n_features: int, alpha: float, eps: float = 0.0) -> int:
    """Baseline rows whose margin floor is ``target`` (0 when ε alone exceeds it)."""
    room = target - eps
    if room <= 0:
        return 0
    alpha_feature = alpha / max(1, n_features)
    return math.ceil(math.log(2.0 / alpha_feature) / (2.0 * room * room))


def small_baseline_warning(
    rows: int,
    n_features: int,
    threshold: float,
    alpha: float,
    verdict: str = "significant",
    eps: float = 0.0,
) -> str | None:
    """A warning when ``rows`` is too few for ``threshold`` to be checkable, else None."""
    if rows <= 0 or n_features <= 0 or threshold <= 0:
        return None
    floor = noise_margin(rows, None, n_features, alpha, eps)
    if floor < WARN_FRACTION * threshold:
        return None
    typical = noise_margin(rows, TYPICAL_WINDOW_ROWS, n_features, alpha, eps)

    def seen_above(margin: float) -> float:
        return threshold + margin if verdict == "confident" else max(threshold, margin)

    best, usual = seen_above(floor), seen_above(typical)
    margin_best = best - threshold
    needed = rows_for_margin(WARN_FRACTION * threshold, n_features, alpha, eps)
    text = (
        f"{rows:,} rows is a small baseline for the drift threshold {threshold:g}: with "
        f"{n_features} features at false_alarm_rate {alpha:g}, drift smaller than ≈{best:.3f} "
        f"cannot be told from noise even in a very large window (margin ≈{margin_best:.3f} over "
        f"the threshold), ≈{usual:.3f} in a window of {TYPICAL_WINDOW_ROWS:,} rows"
    )
    if needed:
        text += f"; about {needed:,} baseline rows bring the noise floor to half the threshold"
    return text + " (docs/drift.md)"
