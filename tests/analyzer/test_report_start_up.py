"""The HTML report at start-up and for people: runs without a verdict are not plotted as
distances, the time axis says UTC, alerts are marked, dot colours have a legend, counts are
plain numbers, tables do not break words, predictions have their own section."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

from analyzer.web.report_html import render_report
from analyzer.web.svg_charts import Point, alert_starts, fmt, line_chart

START = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)


def _run(i: int, state: str, distance: float) -> dict[str, Any]:
    return {
        "run_id": i + 1,
        "time": (START + timedelta(minutes=i)).isoformat().replace("+00:00", "Z"),
        "state": state,
        "features": {"income": {"distance": distance, "threshold": 0.1, "state": state}},
    }


def start_up_history() -> list[dict[str, Any]]:
    """Four one-request windows (distances 0.6-0.95, no verdict), ten ok runs, five alerts."""
    runs = [_run(i, "not_enough_data", d) for i, d in enumerate((0.95, 0.6, 0.8, 0.7))]
    runs += [_run(4 + i, "ok", 0.03) for i in range(10)]
    runs += [_run(14 + i, "alert", 0.2) for i in range(5)]
    return runs


def status(**extra: Any) -> dict[str, Any]:
    return {
        "state": "alert",
        "monitors": {
            "data_quality": {
                "state": "alert",
                "window": {"start": "2026-11-27T07:00:00Z", "end": "2026-11-27T07:18:00Z"},
                "samples": 60000,
                "violations": [],
                "features": {
                    "income": {
                        "state": "alert",
                        "distance": 0.2,
                        "threshold": 0.1,
                        "n_baseline": 20000.0,
                        "n_current": 60000.0,
                        "wasserstein": 9120.5,
                    }
                },
                **extra,
            }
        },
        "ingest": {"records": 1234567, "bad_records": 0, "files": 60},
    }


class Svg(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def of(self, tag: str, cls: str | None = None) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and (cls is None or a.get("class") == cls)]


def _parse(html: str) -> Svg:
    parser = Svg()
    parser.feed(html)
    parser.close()
    return parser


def _chart(history: list[dict[str, Any]]) -> Svg:
    html = render_report(status(), history, {})
    found = re.search(r'<svg[^>]*aria-label="drift distance of income over time".*?</svg>', html)
    assert found is not None
    return _parse(found.group(0))


def test_runs_without_a_verdict_are_a_grey_band_not_distances() -> None:
    svg = _chart(start_up_history())
    bands = svg.of("rect", "no-verdict")
    assert len(bands) == 1  # the four start-up runs, one band
    assert len(svg.of("circle")) == 15  # dots only for the runs with a verdict
    # The y-axis is scaled to the real values (0.2) and the threshold, not to 0.95.
    assert "0.95" not in "".join(svg.text) and "1" not in [t.strip() for t in svg.text]
    assert {"0", "0.2", "0.4"} <= {t.strip() for t in svg.text}
    # The line starts after the band: no point of it lies inside the band.
    band_end = float(bands[0]["x"] or 0) + float(bands[0]["width"] or 0)
    (line,) = [a for a in svg.of("polyline") if a.get("stroke") != "#c62828"]
    xs = [float(p.split(",")[0]) for p in (line["points"] or "").split()]
    assert len(xs) == 15 and min(xs) > band_end


def test_time_axis_is_labelled_with_its_time_zone_and_alerts_are_marked() -> None:
    svg = _chart(start_up_history())
    text = [t.strip() for t in svg.text]
    assert "time (UTC)" in text
    assert "2026-11-27 07:00" in text and "07:18" in text
    (marker,) = svg.of("line", "alert-start")
    html = render_report(status(), start_up_history(), {})
    assert "alert began 2026-11-27T07:14:00Z" in html
    assert "since 2026-11-27 07:14 UTC" in html  # in the monitors table
    assert float(marker["x1"] or 0) > 0


def test_the_dot_colours_have_a_legend() -> None:
    text = [t.strip() for t in _chart(start_up_history()).text]
    for label in ("distance", "threshold", "ok", "warning", "alert", "no verdict"):
        assert label in text


def test_counts_are_plain_numbers_and_tables_do_not_break_words() -> None:
    html = render_report(status(), start_up_history(), {})
    assert "1,234,567 records ingested" in html
    assert "n_baseline 20,000" in html and "n_current 60,000" in html
    assert "wasserstein 9,120" in html and ">60,000<" in html  # samples in the table
    assert not re.search(r"\d(\.\d+)?e[+-]\d", html)  # no scientific notation anywhere
    assert "anywhere" not in html and "break-all" not in html
    assert "overflow-wrap: normal" in html and "white-space: nowrap" in html
    assert [fmt(v) for v in (20000.0, 9120.5, 0.0456)] == ["20,000", "9,120", "0.0456"]


def test_a_chart_with_only_start_up_runs_says_there_is_no_verdict_yet() -> None:
    points = [Point(float(i), 0.9, 0.1, "not_enough_data", str(i)) for i in range(3)]
    svg = _parse(line_chart(points, title="t"))
    assert "no verdict yet: too few rows" in "".join(svg.text)
    assert not svg.of("circle") and len(svg.of("rect", "no-verdict")) == 1
    assert alert_starts(points) == []


def test_predictions_have_a_section_saying_what_is_compared() -> None:
    predictions = {
        "prediction": {
            "role": "output",
            "compared": False,
            "type": "Fractional",
            "data": {"count": 1500, "mean": 0.2},
            "quantiles": {"p05": 0.03, "p50": 0.16, "p95": 0.48},
            "note": "described only: the baseline has no column 'prediction'",
        },
        "label": {
            "role": "output",
            "compared": True,
            "state": "ok",
            "distance": 0.02,
            "threshold": 0.1,
        },
    }
    distributions = {
        "prediction": {
            "type": "numeric",
            "edges": [0.0, 0.5, 1.0],
            "baseline": [],
            "current": [1200.0, 300.0],
        },
    }
    html = render_report(status(predictions=predictions), [], distributions)
    assert "<h2>Predictions (2)</h2>" in html
    assert "compared with the baseline: label; described only: prediction" in html
    assert "rows 1,500 · mean 0.2 · p05 0.03 · p50 0.16 · p95 0.48" in html
    assert "Distribution in the current window" in html
    section = html[html.index("<h2>Predictions") : html.index("<h2>Features")]
    assert ">baseline<" not in section  # no baseline legend where there is none
