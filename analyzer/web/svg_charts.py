"""Small inline SVG charts for the HTML report: drift over time, histograms, grouped bars.

Pure functions from numbers to an ``<svg>`` string: no I/O, no JavaScript, no external
resources, every text escaped. Sizes are in CSS pixels; the SVGs scale to their container.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

__all__ = [
    "NO_VERDICT",
    "STATE_COLORS",
    "Point",
    "alert_starts",
    "fmt",
    "grouped_bars",
    "histogram_overlay",
    "legend",
    "line_chart",
    "svg_root",
    "svg_text",
    "y_grid",
]

STATE_COLORS = {
    "ok": "#2e7d32",
    "warning": "#b7791f",
    "alert": "#c62828",
    "not_enough_data": "#5c6f82",
    "no_data": "#8a8f98",
    "no_baseline": "#6b5b95",
}
BASELINE_COLOR = "#9aa5b1"
CURRENT_COLOR = "#1f6feb"
_UNKNOWN_COLOR = "#8a8f98"
_STATE_RANK = {"alert": 0, "warning": 1, "not_enough_data": 2, "no_baseline": 3, "no_data": 4}
_FONT = 'font-family="system-ui, sans-serif" fill="#444"'


@dataclass(frozen=True)
class Point:
    """One run on the drift chart: ``x`` is any increasing number (epoch seconds, index)."""

    x: float
    distance: float | None
    threshold: float | None
    state: str | None
    label: str


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _or(value: float | None, default: float) -> float:
    return value if value is not None and math.isfinite(value) else default


def fmt(value: float | None) -> str:
    """A number for people: 3 significant digits below 1,000, whole with thousands separators
    from 1,000 on (never scientific notation there), ``–`` when missing.

    >>> [fmt(v) for v in (0.0456, 12.345, 9120.5, 20000.0, None)]
    ['0.0456', '12.3', '9,120', '20,000', '–']
    """
    if value is None or not math.isfinite(value):
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def nice_ceil(value: float) -> float:
    """The smallest of 1, 2, 4, 5 times a power of ten that is >= ``value`` (1.0 for 0)."""
    if not value > 0 or not math.isfinite(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 4, 5, 10) if m * power >= value * (1 - 1e-9))


def y_grid(left: int, right_x: int, y_of: list[tuple[float, str]]) -> list[str]:
    out = []
    for y, label in y_of:
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right_x}" y2="{y:.1f}" stroke="#e3e6ea"/>')
        out.append(svg_text(left - 6, y + 4, label, "end"))
    return out


def svg_text(x: float, y: float, text: str, anchor: str = "start", size: int = 11) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" {_FONT}>'
        f"{escape(text)}</text>"
    )


def svg_root(width: int, height: int, label: str, body: list[str]) -> str:
    return (
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="xMidYMid meet">'
        + "".join(body)
        + "</svg>"
    )


def legend(x: float, y: float, items: Sequence[tuple[str, str, str]]) -> list[str]:
    """``items`` are (color, label, style) with style ``box``, ``line`` or ``dash``."""
    out: list[str] = []
    for color, label, style in items:
        if style in ("dash", "line"):
            dash = ' stroke-dasharray="4 3"' if style == "dash" else ""
            out.append(
                f'<line x1="{x:.1f}" y1="{y - 4:.1f}" x2="{x + 14:.1f}" y2="{y - 4:.1f}" '
                f'stroke="{color}" stroke-width="2"{dash}/>'
            )
        else:
            out.append(
                f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="12" height="10" fill="{color}" '
                'fill-opacity="0.7"/>'
            )
        out.append(svg_text(x + 18, y, label))
        x += 26 + 6.5 * len(label)
    return out


def _downsample(points: Sequence[Point], max_points: int) -> list[Point]:
    """Keep at most ``max_points``: per chunk the run with the largest distance (spikes stay)."""
    if len(points) <= max_points:
        return list(points)
    size = math.ceil(len(points) / max_points)
    kept = []
    for start in range(0, len(points), size):
        chunk = points[start : start + size]
        kept.append(
            max(
                chunk,
                key=lambda p: -math.inf if p.state in NO_VERDICT else _or(p.distance, -math.inf),
            )
        )
    return kept


NO_VERDICT = frozenset({"not_enough_data", "no_data", "no_baseline"})
NO_VERDICT_COLOR = "#d9dde3"
DOT_STATES = ("ok", "warning", "alert")


def _dot_legend(x: float, y: float) -> list[str]:
    """What the dot colours and the grey band mean (squares with round corners, not circles)."""
    out: list[str] = []
    for state in DOT_STATES:
        out.append(
            f'<rect x="{x:.1f}" y="{y - 8:.1f}" width="8" height="8" rx="4" '
            f'fill="{STATE_COLORS[state]}"/>'
        )
        out.append(svg_text(x + 11, y, state))
        x += 20 + 6.5 * len(state)
    out.append(
        f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="12" height="10" fill="{NO_VERDICT_COLOR}"/>'
    )
    out.append(svg_text(x + 16, y, "no verdict"))
    return out


def _bands(pts: Sequence[Point], px: Any) -> list[tuple[float, float]]:
    """x ranges (pixels) of consecutive runs without a verdict, each half-way to its neighbours."""
    out: list[tuple[float, float]] = []
    i = 0
    while i < len(pts):
        if pts[i].state not in NO_VERDICT:
            i += 1
            continue
        j = i
        while j + 1 < len(pts) and pts[j + 1].state in NO_VERDICT:
            j += 1
        lo = px(pts[i].x) if i == 0 else (px(pts[i - 1].x) + px(pts[i].x)) / 2
        hi = px(pts[j].x) if j == len(pts) - 1 else (px(pts[j].x) + px(pts[j + 1].x)) / 2
        out.append((lo - 2 if hi - lo < 4 else lo, hi + 2 if hi - lo < 4 else hi))
        i = j + 1
    return out


def alert_starts(pts: Sequence[Point]) -> list[Point]:
    """The runs where the state became ``alert`` (the one before was not)."""
    return [
        p
        for before, p in itertools.pairwise([None, *pts])
        if p is not None and p.state == "alert" and (before is None or before.state != "alert")
    ]


def line_chart(
    points: Sequence[Point],
    *,
    title: str,
    x_labels: tuple[str, str] = ("", ""),
    x_ticks: Sequence[tuple[float, str]] = (),
    x_title: str = "",
    width: int = 520,
    height: int = 196,
    max_points: int = 400,
) -> str:
    """Drift distance per run (dots coloured by state) with the threshold as a dashed line.

    Runs without a verdict (``not_enough_data``, ``no_data``, ``no_baseline``) are not drawn
    as distances: they are a grey band, the line breaks there, and they do not stretch the
    y-axis. A vertical line marks each run where the state became ``alert``. ``x_ticks`` are
    (x, label) pairs under the axis (else ``x_labels`` at both ends), ``x_title`` its caption.
    """
    pts = _downsample(sorted(points, key=lambda p: p.x), max_points)
    left, right, top, bottom = 44, 12, 34, 38
    plot_w, plot_h = width - left - right, height - top - bottom
    judged = [p for p in pts if p.state not in NO_VERDICT]
    values = [_or(v, 0.0) for p in judged for v in (p.distance, p.threshold)]
    values += [_or(p.threshold, 0.0) for p in pts]
    y_max = nice_ceil(max(values, default=0.0) * 1.05)
    x_lo, x_hi = (pts[0].x, pts[-1].x) if pts else (0.0, 1.0)

    def px(x: float) -> float:
        return left + (plot_w / 2 if x_hi == x_lo else (x - x_lo) / (x_hi - x_lo) * plot_w)

    def py(y: float) -> float:
        return top + plot_h - min(max(0.0, y), y_max) / y_max * plot_h

    body = legend(
        left + 4, 12, [(CURRENT_COLOR, "distance", "line"), ("#c62828", "threshold", "dash")]
    )
    body += _dot_legend(left + 180, 12)
    for lo, hi in _bands(pts, px):
        body.append(
            f'<rect class="no-verdict" x="{lo:.1f}" y="{top}" width="{hi - lo:.1f}" '
            f'height="{plot_h}" fill="{NO_VERDICT_COLOR}" fill-opacity="0.7">'
            "<title>no verdict: fewer rows than min_samples</title></rect>"
        )
    body += y_grid(left, width - right, [(py(y_max * f), fmt(y_max * f)) for f in (0, 0.5, 1)])
    axis_y = top + plot_h + 14
    if x_ticks and pts:
        for i, (x, label) in enumerate(x_ticks):
            anchor = "start" if i == 0 else "end" if i == len(x_ticks) - 1 else "middle"
            body.append(svg_text(px(x), axis_y, label, anchor))
    else:
        body.append(svg_text(left, axis_y, x_labels[0]))
        body.append(svg_text(width - right, axis_y, x_labels[1], "end"))
    if x_title:
        body.append(svg_text(left + plot_w / 2, height - 4, x_title, "middle", size=10))
    if not pts:
        body.append(svg_text(left + plot_w / 2, top + plot_h / 2, "no runs yet", "middle"))
        return svg_root(width, height, title, body)
    if not judged:
        body.append(
            svg_text(left + plot_w / 2, top + plot_h / 2, "no verdict yet: too few rows", "middle")
        )

    segments: list[list[str]] = [[]]
    for p in pts:
        if _finite(p.distance) and p.state not in NO_VERDICT:
            segments[-1].append(f"{px(p.x):.1f},{py(p.distance or 0.0):.1f}")
        elif segments[-1]:
            segments.append([])
    for seg in segments:
        if len(seg) > 1:
            body.append(
                f'<polyline points="{" ".join(seg)}" fill="none" stroke="{CURRENT_COLOR}" '
                'stroke-width="1.5"/>'
            )
    steps = [f"{px(p.x):.1f},{py(p.threshold or 0.0):.1f}" for p in pts if _finite(p.threshold)]
    if len(steps) == 1:
        level = steps[0].split(",")[1]
        steps = [f"{left},{level}", f"{width - right},{level}"]
    if steps:
        body.append(
            f'<polyline points="{" ".join(steps)}" fill="none" stroke="#c62828" '
            'stroke-width="1.2" stroke-dasharray="5 4"/>'
        )
    for p in alert_starts(pts):
        x = px(p.x)
        body.append(
            f'<line class="alert-start" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" '
            f'y2="{top + plot_h}" stroke="#c62828" stroke-width="1" stroke-dasharray="2 2">'
            f"<title>alert began {escape(p.label)}</title></line>"
        )
        body.append(svg_text(x + 3, top + 10, "alert", size=9))
    radius = 3.0 if len(pts) <= 60 else 2.0
    dense = len(pts) > 120  # then only dots that are not ok, to keep the page small
    for p in judged:
        if not _finite(p.distance) or (dense and p.state == "ok"):
            continue
        color = STATE_COLORS.get(p.state or "", _UNKNOWN_COLOR)
        tip = f"{p.label}: distance {fmt(p.distance)}, threshold {fmt(p.threshold)}, {p.state}"
        body.append(
            f'<circle cx="{px(p.x):.1f}" cy="{py(p.distance or 0.0):.1f}" r="{radius}" '
            f'fill="{color}"><title>{escape(tip)}</title></circle>'
        )
    return svg_root(width, height, title, body)


def _shares(counts: Sequence[float]) -> list[float]:
    clean = [c if _finite(c) and c > 0 else 0.0 for c in counts]
    total = sum(clean)
    return [c / total if total else 0.0 for c in clean]


def histogram_overlay(
    edges: Sequence[float],
    baseline: Sequence[float],
    current: Sequence[float],
    *,
    title: str,
    width: int = 520,
    height: int = 180,
) -> str:
    """Baseline and current histograms on the same bins, each as shares of its own total."""
    bins = max(len(baseline), len(current))
    base, cur = (
        _shares(list(baseline) + [0.0] * (bins - len(baseline))),
        _shares(list(current) + [0.0] * (bins - len(current))),
    )
    left, right, top, bottom = 44, 12, 20, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    with_base = any(_finite(b) and b > 0 for b in baseline)
    body = legend(
        left + 4,
        12,
        [(BASELINE_COLOR, "baseline", "box")] * with_base + [(CURRENT_COLOR, "current", "line")],
    )
    if bins == 0:
        body.append(svg_text(left + plot_w / 2, top + plot_h / 2, "no distribution", "middle"))
        return svg_root(width, height, title, body)
    proportional = (
        len(edges) == bins + 1
        and all(math.isfinite(e) for e in edges)
        and all(b > a for a, b in itertools.pairwise(edges))
    )
    if proportional:
        span = edges[-1] - edges[0]
        xs = [left + (e - edges[0]) / span * plot_w for e in edges]
    else:
        xs = [left + i / bins * plot_w for i in range(bins + 1)]
    y_max = nice_ceil(max([*base, *cur]) * 1.05)
    floor_y = top + plot_h

    def py(y: float) -> float:
        return floor_y - y / y_max * plot_h

    body += y_grid(
        left, width - right, [(py(y_max * f), f"{y_max * f * 100:.3g}%") for f in (0, 0.5, 1)]
    )
    step = [f"M{xs[0]:.1f},{floor_y:.1f}"]
    for i in range(bins):
        x0, x1 = xs[i], xs[i + 1]
        y = py(base[i])
        body.append(
            f'<rect x="{x0 + 0.5:.1f}" y="{y:.1f}" width="{max(x1 - x0 - 1, 0.5):.1f}" '
            f'height="{floor_y - y:.1f}" fill="{BASELINE_COLOR}" fill-opacity="0.75"/>'
        )
        step.append(f"V{py(cur[i]):.1f}H{x1:.1f}")
    step.append(f"V{floor_y:.1f}")
    body.append(
        f'<path d="{"".join(step)}" fill="{CURRENT_COLOR}" fill-opacity="0.08" '
        f'stroke="{CURRENT_COLOR}" stroke-width="2" stroke-linejoin="miter"/>'
    )
    for i in range(bins):  # invisible columns carrying the tooltips, on top of both
        bin_text = f"[{fmt(edges[i])}, {fmt(edges[i + 1])})" if len(edges) > i + 1 else f"bin {i}"
        body.append(
            f'<rect x="{xs[i]:.1f}" y="{top}" width="{max(xs[i + 1] - xs[i], 0.5):.1f}" '
            f'height="{plot_h}" fill="transparent"><title>{escape(bin_text)}: '
            f"baseline {base[i]:.1%}, current {cur[i]:.1%}</title></rect>"
        )
    if edges:
        body.append(svg_text(xs[0], height - 6, fmt(edges[0])))
        body.append(svg_text(xs[-1], height - 6, fmt(edges[-1]), "end"))
        if len(edges) > 2:
            mid = len(edges) // 2
            body.append(svg_text(xs[min(mid, len(xs) - 1)], height - 6, fmt(edges[mid]), "middle"))
    return svg_root(width, height, title, body)


def grouped_bars(
    baseline: Mapping[str, float],
    current: Mapping[str, float],
    *,
    title: str,
    width: int = 520,
    top_n: int = 12,
) -> str:
    """Horizontal bars of each category's share, baseline above current, largest first."""
    values = sorted(
        set(baseline) | set(current),
        key=lambda v: (-max(baseline.get(v, 0.0), current.get(v, 0.0)), v),
    )
    rows = [(v, baseline.get(v, 0.0), current.get(v, 0.0)) for v in values[:top_n]]
    if len(values) > top_n:
        rest = values[top_n:]
        rows.append(
            (
                f"({len(rest)} more)",
                sum(baseline.get(v, 0.0) for v in rest),
                sum(current.get(v, 0.0) for v in rest),
            )
        )
    label_w, right, top, row_h = 130, 48, 22, 22
    height = top + max(len(rows), 1) * row_h + 6
    plot_w = width - label_w - right
    with_base = bool(baseline)
    body = legend(
        label_w,
        12,
        [(BASELINE_COLOR, "baseline", "box")] * with_base + [(CURRENT_COLOR, "current", "box")],
    )
    if not rows:
        body.append(svg_text(width / 2, top + 14, "no categories", "middle"))
        return svg_root(width, height, title, body)
    s_max = max(max(b, c) for _, b, c in rows) or 1.0
    for i, (name, b_share, c_share) in enumerate(rows):
        y = top + i * row_h
        shown = name if len(name) <= 18 else name[:17] + "…"
        body.append(
            f'<text x="{label_w - 6}" y="{y + 13:.1f}" text-anchor="end" font-size="11" {_FONT}>'
            f"<title>{escape(name)}</title>{escape(shown)}</text>"
        )
        bars = ((b_share, BASELINE_COLOR), (c_share, CURRENT_COLOR))[0 if with_base else 1 :]
        for j, (share, color) in enumerate(bars):
            bar_w = max(share, 0.0) / s_max * plot_w
            bar_y = y + 2 + j * 9
            body.append(
                f'<rect x="{label_w}" y="{bar_y:.1f}" width="{bar_w:.1f}" height="8" '
                f'fill="{color}" fill-opacity="0.8"/>'
            )
            body.append(svg_text(label_w + bar_w + 4, bar_y + 7.5, f"{share:.1%}", size=9))
    return svg_root(width, height, title, body)


def worst_state(states: Sequence[str | None]) -> str | None:
    """The most severe of ``states`` (alert > warning > not_enough_data > … > ok)."""
    present = [s for s in states if s]
    return min(present, key=lambda s: _STATE_RANK.get(s, 5), default=None)
