"""The model-quality files, the honest verdict and the label-free estimate, on seeded data."""

from __future__ import annotations

import csv
import doctest
import math

import numpy as np
import orjson
import pytest

from analyzer.monitors.model_quality import documents, estimate, evaluate, verdict
from analyzer.monitors.model_quality.documents import (
    ConstraintsError,
    parse_constraints,
    suggest_constraints,
)
from analyzer.monitors.model_quality.estimate import (
    Calibrator,
    agreement,
    estimate_binary,
    fit_calibrator,
)
from analyzer.monitors.model_quality.evaluate import (
    Baseline,
    baseline_from_statistics,
    evaluate_window,
)
from analyzer.monitors.model_quality.metrics import binary_metrics
from tests.shared_data import DATA, EXAMPLES

BINARY = "BinaryClassification"


@pytest.mark.parametrize("module", [documents, verdict, estimate, evaluate])
def test_doctests_run(module: object) -> None:
    failed, _ = doctest.testmod(module)  # type: ignore[arg-type]
    assert failed == 0


def draw(rng: np.random.Generator, n: int, flip: float = 0.0) -> tuple[np.ndarray, ...]:
    """A calibrated binary model: P(y = 1 | score) = score; ``flip`` breaks that."""
    score = rng.beta(2, 3, n)
    y = (rng.random(n) < score).astype(np.int64)
    if flip:
        swap = rng.random(n) < flip
        y[swap] = 1 - y[swap]
    return y, (score >= 0.5).astype(np.int64), score


def binary_baseline(
    seed: int = 0, n: int = 20_000
) -> tuple[dict[str, tuple[float, str]], Baseline, dict]:
    y, p, s = draw(np.random.default_rng(seed), n)
    result = evaluate_window(BINARY, y, p, s, {}, None, false_alarm_rate=0.01, min_labels=1)
    stats = result.statistics()
    constraints = parse_constraints(BINARY, suggest_constraints(BINARY, stats))
    return constraints, baseline_from_statistics(BINARY, stats), stats


def test_suggested_constraints_follow_sagemaker() -> None:
    constraints, _, stats = binary_baseline()
    section = stats["binary_classification_metrics"]
    assert constraints["f1"] == (section["f1"]["value"], "LessThanThreshold")
    assert constraints["false_positive_rate"][1] == "GreaterThanThreshold"
    assert not any(name.endswith("_best_constant_classifier") for name in constraints)
    assert "confusion_matrix" not in constraints and "auc" in constraints


def test_reproduces_sagemakers_regression_constraints() -> None:
    folder = EXAMPLES / "model_quality"
    rows = list(csv.DictReader((folder / "baseline_dataset.csv").read_text().splitlines()))
    label = np.array([float(r["Label"]) for r in rows])
    prediction = np.array([float(r["Prediction"]) for r in rows])
    result = evaluate_window(
        "Regression",
        label,
        prediction,
        None,
        {},
        None,
        false_alarm_rate=0.01,
        min_labels=1,
        r2_convention="sagemaker",
    )
    ours = suggest_constraints("Regression", result.statistics())
    theirs = orjson.loads((folder / "constraints.json").read_bytes())
    assert ours.keys() == theirs.keys()
    for name, entry in theirs["regression_constraints"].items():
        mine = ours["regression_constraints"][name]
        assert mine["comparison_operator"] == entry["comparison_operator"]
        assert math.isclose(mine["threshold"], entry["threshold"], rel_tol=1e-12)
    statistics = result.statistics()
    assert statistics["dataset"] == {"item_count": 100}
    assert statistics["regression_metrics"]["mae"]["standard_deviation"] == "NaN"  # n < 200


@pytest.mark.parametrize(
    ("document", "needle"),
    [
        ({}, "binary_classification_constraints"),
        ({"binary_classification_constraints": {"f1": {"threshold": "x"}}}, "'f1'"),
        (
            {
                "binary_classification_constraints": {
                    "f1": {"threshold": 0.5, "comparison_operator": "Below"}
                }
            },
            "comparison_operator",
        ),
        (
            {
                "binary_classification_constraints": {
                    "f1": {"threshold": math.inf, "comparison_operator": "LessThanThreshold"}
                }
            },
            "finite",
        ),
    ],
)
def test_bad_constraints_name_the_metric(document: dict, needle: str) -> None:
    with pytest.raises(ConstraintsError, match=needle):
        parse_constraints(BINARY, document)


def test_unchanged_window_is_not_a_violation_where_sagemaker_would_call_one() -> None:
    constraints, baseline, _ = binary_baseline()
    rng = np.random.default_rng(11)
    sagemaker_would = 0
    for seed in range(8):
        y, p, s = draw(rng, 2_000)
        result = evaluate_window(
            BINARY, y, p, s, constraints, baseline, false_alarm_rate=0.01, min_labels=100, seed=seed
        )
        assert result.state != "alert", result.violations
        assert result.violations == []
        sagemaker_would += any(d.sagemaker_violation for d in result.decisions.values())
    assert sagemaker_would >= 4  # SageMaker's rule fires on most of these unchanged windows


def test_a_real_drop_is_an_alert_in_sagemakers_words() -> None:
    constraints, baseline, stats = binary_baseline()
    y, p, s = draw(np.random.default_rng(3), 10_000, flip=0.15)
    result = evaluate_window(
        BINARY, y, p, s, constraints, baseline, false_alarm_rate=0.01, min_labels=100
    )
    assert result.state == "alert"
    accuracy = result.decisions["accuracy"]
    assert accuracy.state == "alert" and accuracy.value < accuracy.threshold - accuracy.margin
    [entry] = [v for v in result.violations if v["metric_name"] == "accuracy"]
    assert entry["constraint_check_type"] == "LessThanThreshold"
    assert entry["description"].startswith(f"Metric accuracy with {accuracy.value!r} +/- ")
    assert entry["description"].endswith(
        f"was LessThanThreshold {stats['binary_classification_metrics']['accuracy']['value']!r}"
    )


def test_margins_shrink_with_the_window_and_cover_the_baselines_noise() -> None:
    constraints, baseline, _ = binary_baseline(n=2_000)
    check = {"accuracy": (*constraints["accuracy"], True)}
    assert baseline.cells is not None
    small = verdict.matrix_margins(baseline.cells, 500, check, 0.01)["accuracy"][0]
    large = verdict.matrix_margins(baseline.cells, 50_000, check, 0.01)["accuracy"][0]
    user = {"accuracy": (*constraints["accuracy"], False)}
    unpaired = verdict.matrix_margins(baseline.cells, 50_000, user, 0.01)["accuracy"][0]
    assert small > large > unpaired > 0  # the threshold's own noise stays at 2,000 rows


def test_below_min_labels_and_degenerate_windows() -> None:
    constraints, baseline, _ = binary_baseline()
    y, p, s = draw(np.random.default_rng(4), 50)
    few = evaluate_window(
        BINARY, y, p, s, constraints, baseline, false_alarm_rate=0.01, min_labels=100
    )
    assert few.state == "not_enough_data" and few.violations == []
    assert not math.isnan(few.metrics["accuracy"]["value"])  # still shown
    ones = np.ones(300, np.int64)
    one_class = evaluate_window(
        BINARY, ones, ones, np.full(300, 0.9), constraints, baseline,
        false_alarm_rate=0.01, min_labels=100,
    )  # fmt: skip
    assert one_class.decisions["auc"].state == "not_enough_data"
    assert one_class.metrics["auc"]["value"] is not None


def test_regression_verdict() -> None:
    rng = np.random.default_rng(8)
    truth = rng.normal(size=20_000)
    base = evaluate_window(
        "Regression", truth, truth + rng.normal(0, 0.5, 20_000), None, {}, None,
        false_alarm_rate=0.01, min_labels=1,
    )  # fmt: skip
    stats = base.statistics()
    constraints = parse_constraints("Regression", suggest_constraints("Regression", stats))
    baseline = baseline_from_statistics("Regression", stats)
    same = rng.normal(size=5_000)
    quiet = evaluate_window(
        "Regression", same, same + rng.normal(0, 0.5, 5_000), None, constraints, baseline,
        false_alarm_rate=0.01, min_labels=100,
    )  # fmt: skip
    assert quiet.state in ("ok", "warning")
    worse = evaluate_window(
        "Regression", same, same + rng.normal(0, 0.6, 5_000), None, constraints, baseline,
        false_alarm_rate=0.01, min_labels=100,
    )  # fmt: skip
    assert worse.state == "alert"
    assert {v["metric_name"] for v in worse.violations} >= {"mae", "mse", "rmse"}


def reference(name: str) -> tuple[np.ndarray, np.ndarray]:
    rows = list(csv.DictReader((DATA / name).read_text().splitlines()))
    scores = np.array([float(r["score"]) for r in rows])
    return scores, np.array([round(float(r["label"])) for r in rows], dtype=np.int64)


def test_estimate_follows_covariate_shift_and_is_contradicted_by_concept_drift() -> None:
    calibrator = fit_calibrator(*reference("baseline.csv"))
    assert calibrator.trusted, calibrator.reason
    assert Calibrator.from_json(orjson.loads(orjson.dumps(calibrator.to_json()))) == calibrator
    for name, should_agree in (("current_covariate.csv", True), ("current_concept.csv", False)):
        scores, labels = reference(name)
        predicted = (scores >= 0.5).astype(np.int64)
        estimated = estimate_binary(scores, predicted, calibrator)
        realized = binary_metrics(labels, predicted, scores)
        assert agreement(estimated["auc"], float(realized["auc"]), 0.01) is should_agree, name
        assert estimated["auc"].low < estimated["auc"].value < estimated["auc"].high


def test_estimate_says_when_it_cannot_be_trusted() -> None:
    rng = np.random.default_rng(2)
    scores = rng.random(1_000)
    rare = (rng.random(1_000) < 0.02).astype(np.int64)
    assert not fit_calibrator(scores, rare).trusted
    # Scores whose held-out calibration fails: labels unrelated to a score that varies a lot.
    noise = rng.random(4_000)
    labels = (rng.random(4_000) < 0.5).astype(np.int64)
    shuffled = fit_calibrator(noise, labels)
    if shuffled.trusted:  # isotonic on noise can still hold out; then it must be near 0.5
        assert abs(float(shuffled(np.array([0.9]))[0]) - 0.5) < 0.15
    else:
        assert "held-out" in shuffled.reason
    empty = estimate_binary(np.zeros(0), np.zeros(0, np.int64), shuffled)
    assert math.isnan(empty["accuracy"].value)
