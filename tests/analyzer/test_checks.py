"""The six checks on the reference data (``tests/reference/data``, its README says what is true)."""

from __future__ import annotations

import copy
import csv
import re
from collections import Counter
from functools import cache
from typing import Any

import numpy as np
import pytest

from analyzer.decoding.codecs import DecodedBatch
from analyzer.monitors.data_quality.checks import CheckResult, run_checks, violations_json
from analyzer.monitors.data_quality.profile import DatasetProfile, profile_rows
from analyzer.monitors.data_quality.statistics_format import (
    parse_constraints,
    parse_statistics,
    statistics_json,
    suggest_constraints,
)
from tests.shared_data import DATA as SHARED_DATA

DATA = SHARED_DATA
FEATURES = [
    "age", "income", "balance", "tenure_months", "num_products", "credit_score",
    "utilization", "state", "plan", "channel", "gender",
]  # fmt: skip
OUTPUTS = ("score", "label")  # the model's output and the late label: not model inputs


@cache
def _table(name: str) -> dict[str, list[str]]:
    with (DATA / name).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    cols = [c for c in rows[0] if c not in OUTPUTS]
    return {c: [r[c] for r in rows] for c in cols}


@cache
def _baseline_docs() -> tuple[dict[str, Any], dict[str, Any]]:
    profile = profile_rows(_table("baseline.csv"))
    return statistics_json(profile), suggest_constraints(profile)


def _check(current: DatasetProfile, constraints_doc: dict[str, Any] | None = None) -> CheckResult:
    stats_doc, cons_doc = _baseline_docs()
    return run_checks(
        parse_statistics(stats_doc),
        parse_constraints(constraints_doc if constraints_doc is not None else cons_doc),
        current,
        false_alarm_rate=0.01,
    )


def _found(result: CheckResult) -> set[tuple[str, str]]:
    return {(v["feature_name"], v["constraint_check_type"]) for v in result.violations}


def test_nodrift_has_no_violation() -> None:
    result = _check(profile_rows(_table("current_nodrift.csv")))
    assert result.violations == []
    assert set(result.features) == set(FEATURES)
    assert result.n_features_tested == len(FEATURES)
    assert all(fr.state in ("ok", "warning") for fr in result.features.values())


def test_covariate_drift_on_income_and_state_only() -> None:
    result = _check(profile_rows(_table("current_covariate.csv")))
    assert _found(result) == {("income", "baseline_drift_check"), ("state", "baseline_drift_check")}
    income, state = result.features["income"], result.features["state"]
    assert income.distance is not None and state.distance is not None
    assert income.decision_margin is not None and income.threshold == 0.1
    assert income.distance - income.decision_margin > income.threshold
    assert state.distance == pytest.approx(0.15, abs=0.03)  # TX 15% -> 30% (README)
    for name, fr in result.features.items():
        if name not in ("income", "state"):
            assert fr.state != "alert", name
    assert income.psi is not None and income.psi > 0.2 and income.wasserstein is not None
    text = next(v["description"] for v in result.violations if v["feature_name"] == "income")
    assert re.fullmatch(r"Baseline drift distance: [0-9.e-]+ exceeds threshold: 0\.1", text)


def test_quality_faults_each_found() -> None:
    result = _check(profile_rows(_table("current_quality.csv")))
    found = _found(result)
    assert ("credit_score", "data_type_check") in found
    assert ("utilization", "completeness_check") in found
    assert ("plan", "categorical_values_check") in found
    assert ("promo_code", "extra_column_check") in found
    text = next(
        v["description"]
        for v in result.violations
        if v["constraint_check_type"] == "data_type_check"
    )
    expected_type = parse_constraints(_baseline_docs()[1]).features["credit_score"].inferred_type
    assert text == (
        "Data type match requirement is not met. "
        f"Expected data type: {expected_type}, Expected match: 100.0%. "
        "Observed: Only 96.9% of data is " + expected_type + "."
    )  # every 33rd value is "n/a": 1 - 152/5000 = 96.96% (rounded down)
    completeness = next(
        v["description"]
        for v in result.violations
        if v["constraint_check_type"] == "completeness_check"
    )
    assert completeness == "Value: 0.875 does not meet the constraint requirement! "
    assert violations_json(result) == {"violations": result.violations}


def test_missing_column() -> None:
    table = dict(_table("current_nodrift.csv"))
    del table["age"]
    table["plan"] = [""] * len(table["plan"])  # as CSV rows with fewer fields leave it
    found = _found(_check(profile_rows(table)))
    assert {("age", "missing_column_check"), ("plan", "missing_column_check")} <= found
    assert not {n for n, c in found if c == "missing_column_check"} - {"age", "plan"}


def test_override_and_switches() -> None:
    current = profile_rows(_table("current_covariate.csv"))
    doc = copy.deepcopy(_baseline_docs()[1])
    for feature in doc["features"]:
        if feature["name"] == "income":
            feature["monitoring_config_overrides"] = {"comparison_threshold": 0.9}
    assert ("income", "baseline_drift_check") not in _found(_check(current, doc))
    doc["monitoring_config"]["distribution_constraints"]["perform_comparison"] = "Disabled"
    assert _check(current, doc).violations == []
    quality = profile_rows(_table("current_quality.csv"))
    doc["monitoring_config"]["evaluate_constraints"] = "Disabled"
    assert _check(quality, doc).violations == []


def test_simple_method_is_uncorrected() -> None:
    doc = copy.deepcopy(_baseline_docs()[1])
    dist = doc["monitoring_config"]["distribution_constraints"]
    dist["comparison_method"], dist["comparison_threshold"] = "Simple", 0.005
    dist["categorical_comparison_threshold"] = 0.005
    result = _check(profile_rows(_table("current_nodrift.csv")), doc)
    # the literal rule alarms on noise at a tiny effect size; the corrected one would not
    assert {c for _, c in _found(result)} == {"baseline_drift_check"}
    dist["comparison_method"] = "Robust"
    assert _check(profile_rows(_table("current_nodrift.csv")), doc).violations == []


def test_seeded_windows_same_and_shifted() -> None:
    rng = np.random.default_rng(20261127)
    base = profile_rows({"x": rng.lognormal(size=200_000), "c": rng.choice(list("abcd"), 200_000)})
    stats, cons = (
        parse_statistics(statistics_json(base)),
        parse_constraints(suggest_constraints(base)),
    )
    for _ in range(3):
        same = profile_rows(
            {"x": rng.lognormal(size=20_000), "c": rng.choice(list("abcd"), 20_000)}
        )
        assert run_checks(stats, cons, same).violations == []
    moved = profile_rows(
        {"x": rng.lognormal(0.3, size=20_000), "c": rng.choice(list("abcd"), 20_000)}
    )
    result = run_checks(stats, cons, moved)
    assert _found(result) == {("x", "baseline_drift_check")}
    # lognormal(0.3) vs lognormal(0): KS distance = 2Φ(0.15) − 1 = 0.1192; tolerance 3 sd + 2ε
    assert result.features["x"].distance == pytest.approx(0.1192, abs=0.015)


def test_predictions_checked_only_where_the_baseline_has_them() -> None:
    rng = np.random.default_rng(8)
    n = 20_000
    base = profile_rows({"x": rng.normal(size=n), "score": rng.beta(2, 5, size=n)})
    stats, cons = (
        parse_statistics(statistics_json(base)),
        parse_constraints(suggest_constraints(base)),
    )
    m = 5_000
    current = DatasetProfile()
    current.update(
        DecodedBatch(
            columns={"x": rng.normal(size=m).tolist()},
            n_rows=m,
            predictions={"score": rng.beta(5, 2, size=m).tolist(), "other": ["1"] * m},
            field_counts=Counter({1: m}),
        )
    )
    result = run_checks(stats, cons, current)
    assert _found(result) == {("score", "baseline_drift_check")}  # "other": not in the baseline
    assert set(result.features) == {"x", "score"}


def test_chi_squared_method_flags_state_with_p_value() -> None:
    doc = copy.deepcopy(_baseline_docs()[1])
    doc["monitoring_config"]["distribution_constraints"]["categorical_drift_method"] = "ChiSquared"
    result = _check(profile_rows(_table("current_covariate.csv")), doc)
    assert ("state", "baseline_drift_check") in _found(result)
    state = result.features["state"]
    assert state.method == "ChiSquared" and state.p_value is not None and state.p_value < 1e-6
    text = next(v["description"] for v in result.violations if v["feature_name"] == "state")
    assert text.startswith("Baseline drift p-value: ")
    assert result.features["plan"].p_value is not None  # every categorical feature gets one


def test_bonferroni_over_features_tested() -> None:
    current = profile_rows(_table("current_nodrift.csv"))
    stats_doc, cons_doc = _baseline_docs()
    stats, cons = parse_statistics(stats_doc), parse_constraints(cons_doc)
    kw: dict[str, Any] = {"false_alarm_rate": 0.01, "drift_verdict": "confident"}
    default = run_checks(stats, cons, current, **kw)
    assert default.alpha_per_feature == pytest.approx(0.01 / len(FEATURES))
    wider = run_checks(stats, cons, current, n_features_tested=1000, **kw)
    income, income_wide = default.features["income"], wider.features["income"]
    assert income.decision_margin is not None and income_wide.decision_margin is not None
    assert income_wide.decision_margin > income.decision_margin  # more tests, wider margins
    assert income_wide.distance == income.distance  # the reported distance never changes
