"""statistics.json / constraints.json: Deequ's suggestion rules, and readers of AWS's own files."""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import pytest

from analyzer.monitors.data_quality.profile import profile_rows
from analyzer.monitors.data_quality.statistics_format import (
    BaselineFormatError,
    baseline_from_profile,
    parse_constraints,
    parse_statistics,
    statistics_json,
    suggest_constraints,
)
from tests.shared_data import EXAMPLES as SHARED_EXAMPLES

EXAMPLES = SHARED_EXAMPLES / "data_quality"


def load(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text())


def test_parse_aws_statistics_unchanged() -> None:
    doc = load("statistics.json")
    stats = parse_statistics(doc)
    assert stats.item_count == 100
    assert list(stats.features) == [f"_c{i}" for i in range(6)]
    f = stats.features["_c0"]
    assert (f.inferred_type, f.num_present, f.mean, f.sum, f.min, f.max) == (
        "Fractional",
        100,
        2.31,
        231.0,
        1.0,
        3.0,
    )
    data = doc["features"][0]["numerical_statistics"]["distribution"]["kll"]["sketch"]["data"]
    assert np.array_equal(f.cdf_values, np.sort(np.array(data[0])))
    assert f.cdf_weights.sum() == 100 and f.kll_k == 2048.0
    assert len(f.buckets) == 10


def test_parse_aws_constraints_with_defaults_for_missing_categorical_keys() -> None:
    constraints = parse_constraints(load("constraints.json"))
    m = constraints.monitoring
    assert (m.comparison_threshold, m.comparison_method) == (0.1, "Robust")
    assert (m.categorical_comparison_threshold, m.categorical_drift_method) == (0.1, "LInfinity")
    assert (m.datatype_check_threshold, m.domain_content_threshold) == (1.0, 1.0)
    assert constraints.features["_c3"].is_non_negative is True
    # The README says _c3 was edited, but the file edits _c5: read what the file holds.
    edited = parse_constraints(load("constraints_edited.json")).features
    assert [f.name for f in edited.values() if f.inferred_type == "String"] == ["_c5"]


def test_categorical_threshold_defaults_to_the_numeric_one() -> None:
    doc = load("constraints.json")
    doc["monitoring_config"]["distribution_constraints"]["comparison_threshold"] = 0.3
    assert parse_constraints(doc).monitoring.categorical_comparison_threshold == 0.3


@pytest.mark.parametrize("key", ["monitoringConfigOverrides", "monitoring_config_overrides"])
def test_both_override_spellings(key: str) -> None:
    doc = load("constraints.json")
    doc["features"][1][key] = {"comparison_threshold": 0.5}
    assert parse_constraints(doc).features["_c1"].overrides == {"comparison_threshold": 0.5}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("features"), "'features' must be a list"),
        (lambda d: d["features"][0].update(inferred_type="Text"), "inferred_type must be one of"),
        (
            lambda d: d["monitoring_config"].update(datatype_check_threshold=2),
            "must be in \\[0, 1\\]",
        ),
        (lambda d: d["features"][0].update(completeness="high"), "expected a number"),
    ],
)
def test_bad_constraints_name_the_key(mutate: Any, message: str) -> None:
    doc = copy.deepcopy(load("constraints.json"))
    mutate(doc)
    with pytest.raises(BaselineFormatError, match=message):
        parse_constraints(doc)


def test_completeness_uses_deequs_lower_bound() -> None:
    n = 1000
    values = ["1"] * 900 + [""] * 100  # p = 0.9
    doc = suggest_constraints(profile_rows({"x": values, "y": ["1"] * 150 + [""] * 850}))
    p = 0.9
    expected = np.floor((p - 1.96 * np.sqrt(p * (1 - p) / n)) * 100) / 100
    x, y = doc["features"]
    assert x["completeness"] == expected == 0.88
    assert y["completeness"] == 0.15  # p <= 0.2: Deequ has no bound; the observed value
    assert (
        suggest_constraints(profile_rows({"z": ["1", "2"]}))["features"][0]["completeness"] == 1.0
    )


def test_non_negative_and_domains_rules() -> None:
    rng = np.random.default_rng(5)
    columns = {
        "pos": rng.integers(0, 5, 500).astype(str).tolist(),
        "neg": rng.normal(size=500).round(3).astype(str).tolist(),
        "cat": rng.choice(["a", "b", "c"], size=500, p=[0.6, 0.3, 0.1]).tolist(),
        "ids": [f"id{i}" for i in range(500)],  # every value once: not a domain
        "mixed": ["n/a" if i % 33 == 0 else str(600 + i % 50) for i in range(500)],
    }
    doc = suggest_constraints(profile_rows(columns))
    by_name = {f["name"]: f for f in doc["features"]}
    assert by_name["pos"]["num_constraints"] == {"is_non_negative": True}
    assert by_name["neg"]["num_constraints"] == {"is_non_negative": False}
    assert by_name["cat"]["string_constraints"]["domains"] == ["a", "b", "c"]
    assert "string_constraints" not in by_name["ids"]
    assert by_name["mixed"]["inferred_type"] == "String"
    assert "string_constraints" not in by_name["mixed"]  # numbers are not categories here
    dist = doc["monitoring_config"]["distribution_constraints"]
    assert dist["categorical_drift_method"] == "LInfinity"
    parsed = parse_constraints(doc)
    assert parsed.features["cat"].domains == ["a", "b", "c"]


def test_written_statistics_read_back_like_the_live_profile() -> None:
    rng = np.random.default_rng(9)
    columns = {
        "x": rng.normal(10, 2, 5000).round(4).astype(str).tolist(),
        "s": rng.choice(["u", "v", "w"], 5000).tolist(),
    }
    profile = profile_rows(columns)
    doc = json.loads(json.dumps(statistics_json(profile)))
    read, live = parse_statistics(doc), baseline_from_profile(profile)
    for name in columns:
        r, lv = read.features[name], live.features[name]
        assert (r.inferred_type, r.num_present, r.mean, r.std_dev) == (
            lv.inferred_type,
            lv.num_present,
            lv.mean,
            lv.std_dev,
        )
        assert np.array_equal(r.cdf_values, lv.cdf_values)
        assert np.array_equal(r.cdf_weights, lv.cdf_weights)
        assert r.categories == lv.categories
    s = doc["features"][1]["string_statistics"]
    assert s["distinct_count"] == 3.0
    assert sum(b["count"] for b in s["distribution"]["categorical"]["buckets"]) == 5000
    x = doc["features"][0]["numerical_statistics"]["distribution"]["kll"]["sketch"]
    assert sum(len(level) * 2**i for i, level in enumerate(x["data"])) == 5000
