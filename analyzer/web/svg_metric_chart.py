"""An inline SVG chart of one model-quality metric over time: realized, estimated, threshold.

The realized value is a solid line with dots coloured by the metric's state; the label-free
estimate a dashed line over its band (``low``–``high``, a shaded area); the threshold a red
dashed line. A run without a value (fewer labels than ``min_labels``, no estimate) is a gap:
the lines and the band break there. Pure: numbers in, an ``<svg>`` string out, every text
escaped.

Examples
--------
>>> svg = metric_chart([MetricPoint(0, 0.8, 0.79, 0.75, 0.83, 0.7, "ok", "t0")], title="auc")
>>> svg.count('class="band"'), svg.count("<circle")
(1, 1)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from html import escape

from analyzer.web.svg_charts import (
    CURRENT_COLOR,
    STATE_COLORS,
    fmt,
    legend,
    svg_root,
    svg_text,
    y_grid,
)

__all__ = ["ESTIMATE_COLOR", "MetricPoint", "metric_chart", "nice_range"]

ESTIMATE_COLOR = "#8250df"
THRESHOLD_COLOR = "#c62828"
_UNKNOWN_COLOR = "#8a8f98"
VERDICTS = ("ok", "warning", "alert")


@dataclass(frozen=True)
class MetricPoint:
    """One run: ``x`` increasing (epoch seconds or index); None where the run has no value."""

    x: float
    value: float | None
    estimate: float | None
    low: float | None
    high: float | None
    threshold: float | None
    state: str | None
    label: str


def _ok(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def nice_range(lo: float, hi: float, ticks: int = 4) -> tuple[float, float, float]:
    """``(bottom, top, step)``: round numbers around ``[lo, hi]`` with about ``ticks`` steps.

    >>> nice_range(0.41, 0.77)
    (0.4, 0.8, 0.1)
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0.0, 1.0, 0.25
    if hi - lo < 1e-12:
        pad = max(abs(hi) * 0.05, 0.01)
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * (1 - 1e-9))
    bottom = math.floor(lo / step + 1e-9) * step
    top = math.ceil(hi / step - 1e-9) * step
    return round(bottom, 12), round(top, 12), step


def _runs(
    points: Sequence[MetricPoint], good: Callable[[MetricPoint], bool]
) -> Iterator[list[MetricPoint]]:
    """Maximal stretches of consecutive points for which ``good`` holds (gaps break them)."""
    stretch: list[MetricPoint] = []
    for p in points:
        if good(p):
            stretch.append(p)
        elif stretch:
            yield stretch
            stretch = []
    if stretch:
        yield stretch


def _thin(points: Sequence[MetricPoint], max_points: int) -> list[MetricPoint]:
    """At most ``max_points``, evenly; the newest always kept."""
    if len(points) <= max_points:
        return list(points)
    step = math.ceil(len(points) / max_points)
    kept = list(points[::step])
    if kept[-1] is not points[-1]:
        kept.append(points[-1])
    return kept


def _tip(p: MetricPoint, name: str) -> str:
    parts = [f"{p.label}: {name}"]
    parts.append(f"realized {fmt(p.value)}" if _ok(p.value) else "no realized value")
    if _ok(p.estimate):
        parts.append(f"estimated {fmt(p.estimate)} [{fmt(p.low)}, {fmt(p.high)}]")
    if _ok(p.threshold):
        parts.append(f"threshold {fmt(p.threshold)}")
    if p.state:
        parts.append(str(p.state))
    return ", ".join(parts)


def metric_chart(
    points: Sequence[MetricPoint],
    *,
    title: str,
    name: str = "",
    x_ticks: Sequence[tuple[float, str]] = (),
    x_title: str = "",
    width: int = 520,
    height: int = 214,
    max_points: int = 400,
) -> str:
    """The metric over time (see the module docstring); ``x_ticks`` are (x, label) pairs."""
    pts = _thin(sorted(points, key=lambda p: p.x), max_points)
    left, right, top, bottom = 48, 12, 44, 38
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [
        v
        for p in pts
        for v in (p.value, p.estimate, p.low, p.high, p.threshold)
        if v is not None and math.isfinite(v)
    ]
    y_lo, y_hi, step = nice_range(min(values, default=0.0), max(values, default=1.0))
    x_lo, x_hi = (pts[0].x, pts[-1].x) if pts else (0.0, 1.0)

    def px(x: float) -> float:
        return left + (plot_w / 2 if x_hi == x_lo else (x - x_lo) / (x_hi - x_lo) * plot_w)

    def py(y: float) -> float:
        return top + plot_h - (min(max(y, y_lo), y_hi) - y_lo) / (y_hi - y_lo) * plot_h

    body = legend(
        left + 4,
        12,
        [
            (CURRENT_COLOR, "realized", "line"),
            (ESTIMATE_COLOR, "estimated", "dash"),
            (ESTIMATE_COLOR, "estimate band", "box"),
            (THRESHOLD_COLOR, "threshold", "dash"),
        ],
    )
    x = left + 4.0
    for state in VERDICTS:
        body.append(
            f'<rect x="{x:.1f}" y="{20:.1f}" width="8" height="8" rx="4" '
            f'fill="{STATE_COLORS[state]}"/>'
        )
        body.append(svg_text(x + 11, 28, state))
        x += 20 + 6.5 * len(state)
    body.append(svg_text(x + 6, 28, "gap: no value (too few labels)"))
    n_ticks = round((y_hi - y_lo) / step)
    body += y_grid(
        left,
        width - right,
        [(py(y_lo + i * step), fmt(y_lo + i * step)) for i in range(n_ticks + 1)],
    )
    axis_y = top + plot_h + 14
    for i, (tx, label) in enumerate(x_ticks if pts else ()):
        anchor = "start" if i == 0 else "end" if i == len(x_ticks) - 1 else "middle"
        body.append(svg_text(px(tx), axis_y, label, anchor))
    if x_title:
        body.append(svg_text(left + plot_w / 2, height - 4, x_title, "middle", size=10))
    if not values:
        message = "no runs yet" if not pts else "no value yet: too few labels"
        body.append(svg_text(left + plot_w / 2, top + plot_h / 2, message, "middle"))
        if not pts:
            return svg_root(width, height, title, body)

    for stretch in _runs(pts, lambda p: _ok(p.low) and _ok(p.high)):
        if len(stretch) == 1:
            p = stretch[0]
            y0, y1 = py(p.high or 0.0), py(p.low or 0.0)
            body.append(
                f'<rect class="band" x="{px(p.x) - 3:.1f}" y="{y0:.1f}" width="6" '
                f'height="{max(y1 - y0, 1.0):.1f}" fill="{ESTIMATE_COLOR}" fill-opacity="0.2"/>'
            )
            continue
        upper = [f"{px(p.x):.0f},{py(p.high or 0.0):.0f}" for p in stretch]
        lower = [f"{px(p.x):.0f},{py(p.low or 0.0):.0f}" for p in reversed(stretch)]
        body.append(
            f'<polygon class="band" points="{" ".join(upper + lower)}" '
            f'fill="{ESTIMATE_COLOR}" fill-opacity="0.2" stroke="none"/>'
        )
    for stretch in _runs(pts, lambda p: _ok(p.estimate)):
        coords = [(px(p.x), py(p.estimate or 0.0)) for p in stretch]
        if len(coords) == 1:
            coords = [(coords[0][0] - 5, coords[0][1]), (coords[0][0] + 5, coords[0][1])]
        body.append(
            f'<polyline class="estimate" points="{" ".join(f"{a:.0f},{b:.0f}" for a, b in coords)}"'
            f' fill="none" stroke="{ESTIMATE_COLOR}" stroke-width="1.5" stroke-dasharray="5 3"/>'
        )
    levels = [(px(p.x), py(p.threshold or 0.0)) for p in pts if _ok(p.threshold)]
    if len(levels) == 1:
        levels = [(left, levels[0][1]), (width - right, levels[0][1])]
    # a threshold that stays put is one segment, not a point per run
    kept = [
        (a, b)
        for i, (a, b) in enumerate(levels)
        if i in (0, len(levels) - 1) or b != levels[i - 1][1] or b != levels[i + 1][1]
    ]
    steps = [f"{a:.1f},{b:.1f}" for a, b in kept]
    if steps:
        body.append(
            f'<polyline class="threshold" points="{" ".join(steps)}" fill="none" '
            f'stroke="{THRESHOLD_COLOR}" stroke-width="1.2" stroke-dasharray="5 4"/>'
        )
    for stretch in _runs(pts, lambda p: _ok(p.value)):
        if len(stretch) > 1:
            line = " ".join(f"{px(p.x):.0f},{py(p.value or 0.0):.0f}" for p in stretch)
            body.append(
                f'<polyline class="realized" points="{line}" fill="none" '
                f'stroke="{CURRENT_COLOR}" stroke-width="1.6"/>'
            )
    before: str | None = None
    for p in pts:
        if p.state == "alert" and before != "alert":
            ax = px(p.x)
            body.append(
                f'<line class="alert-start" x1="{ax:.1f}" y1="{top}" x2="{ax:.1f}" '
                f'y2="{top + plot_h}" stroke="{THRESHOLD_COLOR}" stroke-width="1" '
                f'stroke-dasharray="2 2"><title>alert began {escape(p.label)}</title></line>'
            )
        before = p.state
    radius = 3.0 if len(pts) <= 60 else 2.0
    dense = len(pts) > 120  # then only dots that are not ok, to keep the page small
    for p in pts:
        if not _ok(p.value) or (dense and p.state == "ok"):
            continue
        fill = STATE_COLORS.get(p.state or "", _UNKNOWN_COLOR)
        tip = f"{p.label}: {fmt(p.value)} {p.state or ''}" if dense else _tip(p, name)
        body.append(
            f'<circle cx="{px(p.x):.0f}" cy="{py(p.value or 0.0):.0f}" r="{radius}" '
            f'fill="{fill}"><title>{escape(tip)}</title></circle>'
        )
    return svg_root(width, height, title, body)
