"""The HTML report: structure, self-containment, escaping, charts. Parsed with html.parser."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

from analyzer.web.report_html import render_report

HOSTILE = '<script>alert("x")</script>'


def sample(
    seed: int = 7, runs: int = 48
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """A status with one drifting numeric, one warning, one categorical and a hostile name."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
    names = ["income", "age", "state", HOSTILE]
    history = []
    for i in range(runs):
        drifted = i >= runs * 3 // 4
        features = {}
        for name in names:
            distance = rng.uniform(0.01, 0.05)
            if name == "income" and drifted:
                distance = rng.uniform(0.18, 0.3)
            if name == "age":
                distance = rng.uniform(0.06, 0.09)
            state = "alert" if distance > 0.1 else "warning" if distance >= 0.08 else "ok"
            features[name] = {"distance": distance, "threshold": 0.1, "state": state}
        history.append(
            {
                "run_id": i + 1,
                "time": (start + timedelta(minutes=5 * i)).isoformat().replace("+00:00", "Z"),
                "state": "alert" if drifted else "ok",
                "features": features,
            }
        )
    last = history[-1]["features"]
    status = {
        "state": "alert",
        "endpoint": "churn-model",
        "monitors": {
            "data_quality": {
                "state": "alert",
                "window": {"start": "2026-11-27T09:00:00Z", "end": "2026-11-27T10:00:00Z"},
                "samples": 1500,
                "violations": [
                    {
                        "feature_name": "income",
                        "constraint_check_type": "baseline_drift_check",
                        "description": "Baseline drift distance: 0.23 exceeds threshold: 0.1",
                    },
                    {
                        "feature_name": HOSTILE,
                        "constraint_check_type": "data_type_check",
                        "description": f"Data type of {HOSTILE} is String, expected Fractional",
                    },
                ],
                "features": {
                    n: {**last[n], "psi": rng.uniform(0, 0.3), "js": rng.uniform(0, 0.1)}
                    for n in names
                },
            }
        },
        "ingest": {"records": 60000, "bad_records": 3, "files": 60},
        "alerts": {"sent": 1, "failed": 0, "pending": 0},
        "last_run": history[-1]["time"],
        "stale_s": 3,
    }
    edges = [float(e) for e in range(0, 210, 10)]
    base = [rng.randint(50, 100) * (1 + min(i, 20 - i)) for i in range(20)]
    distributions = {
        "income": {
            "type": "numeric",
            "edges": edges,
            "baseline": base,
            "current": base[5:] + [0] * 5,
        },
        "age": {
            "type": "numeric",
            "edges": [18, 25, 35, 50, 65, 90],
            "baseline": [2, 5, 6, 4, 1],
            "current": [3, 5, 5, 4, 2],
        },
        "state": {
            "type": "categorical",
            "baseline": {"CA": 0.4, "NY": 0.3, "TX": 0.2, "WA": 0.1},
            "current": {"CA": 0.25, "NY": 0.3, "TX": 0.2, "WA": 0.1, "FL": 0.15},
        },
        HOSTILE: {"type": "categorical", "baseline": {HOSTILE: 1.0}, "current": {"<b>": 1.0}},
    }
    return status, history, distributions


class Page(HTMLParser):
    """Collects tags, attributes, text, and the feature cards."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.card_titles: list[str] = []
        self._in_h3 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_h3 = tag == "h3"

    def handle_endtag(self, tag: str) -> None:
        if tag == "h3":
            self._in_h3 = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_h3:
            self.card_titles.append(data)

    def count(self, tag: str) -> int:
        return sum(1 for t, _ in self.tags if t == tag)


def _parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def test_every_feature_has_a_card_with_both_charts() -> None:
    status, history, distributions = sample()
    page = _parse(render_report(status, history, distributions))

    assert sorted(page.card_titles) == sorted(distributions)
    cards = [a for t, a in page.tags if t == "section" and a.get("class") == "card"]
    assert len(cards) == len(distributions)
    # per card: one drift line chart (polyline) and one distribution chart
    assert page.count("svg") == 2 * len(distributions)
    assert page.count("circle") == len(history) * len(distributions)  # one dot per run
    assert page.count("rect") > 2 * 20  # at least the income histogram, baseline + current
    # worst first: the alerting feature's card comes before the ok ones
    assert page.card_titles[0] == "income"  # the one alerting feature comes first


def test_state_badges_and_violations_are_shown() -> None:
    status, history, distributions = sample()
    page = _parse(render_report(status, history, distributions))
    text = " ".join(page.text)

    assert "alert" in page.text  # the overall badge
    for violation in status["monitors"]["data_quality"]["violations"]:
        assert violation["description"] in page.text
        assert violation["constraint_check_type"] in page.text
    assert "60,000 records ingested" in text
    assert "data_quality" in page.text


def test_page_is_self_contained() -> None:
    status, history, distributions = sample()
    html = render_report(status, history, distributions)
    page = _parse(html)

    assert "http" not in html.lower()  # no URL at all, not even an SVG namespace
    assert page.count("script") == 0 and page.count("link") == 0 and page.count("img") == 0
    for _, attrs in page.tags:
        for key in ("src", "href"):
            assert not attrs.get(key) or attrs[key].startswith("#"), attrs
    assert "@import" not in html and "url(" not in html


def test_hostile_names_are_escaped() -> None:
    status, history, distributions = sample()
    html = render_report(status, history, distributions)
    page = _parse(html)

    assert "<script" not in html.lower()
    assert "<b>" not in html  # a category value
    assert HOSTILE in page.card_titles  # shown as text, not interpreted
    assert page.count("script") == 0 and page.count("b") == 0


def test_empty_inputs_render_a_page_saying_so() -> None:
    html = render_report({"state": "no_data", "monitors": {}}, [], {})
    page = _parse(html)

    assert "No monitor has run yet." in page.text
    assert "No feature has been profiled yet." in page.text
    assert page.count("svg") == 0


def test_missing_pieces_do_not_break_a_card() -> None:
    status = {
        "state": "ok",
        "monitors": {"data_quality": {"state": "ok", "features": {"x": {"state": "ok"}}}},
    }
    history = [
        {"run_id": 1, "time": "not a time", "state": "ok", "features": {"x": {"distance": None}}}
    ]
    distributions = {"x": {"type": "numeric", "edges": [], "baseline": [], "current": []}}
    page = _parse(render_report(status, history, distributions))

    assert page.card_titles == ["x"]
    assert "no distribution" in page.text


def test_long_history_is_downsampled_keeping_the_spikes() -> None:
    status, history, distributions = sample(runs=3000)
    one = {"income": distributions["income"]}
    status["monitors"]["data_quality"]["features"] = {
        "income": status["monitors"]["data_quality"]["features"]["income"]
    }
    for run in history:
        run["features"] = {"income": run["features"]["income"]}
    html = render_report(status, history, one)
    page = _parse(html)

    alerting = sum(1 for run in history if run["features"]["income"]["state"] == "alert")
    assert 0 < page.count("circle") <= 400  # dots only for non-ok runs, at most one per chunk
    assert page.count("circle") < alerting  # so some alert runs were merged into chunks
    assert len(html) < 200_000
    peak = max(run["features"]["income"]["distance"] for run in history)
    assert f"distance {peak:.3g}" in html  # the largest distance survives downsampling
