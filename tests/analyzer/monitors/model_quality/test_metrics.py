"""Model-quality metrics against scikit-learn (to 1e-9) and AWS's own model-quality output."""

from __future__ import annotations

import doctest
import math
import warnings
from typing import Any

import numpy as np
import orjson
import pytest
from sklearn import metrics as sk

from analyzer.monitors.model_quality import metrics
from analyzer.monitors.model_quality.metrics import (
    BINARY_SCALARS,
    MULTICLASS_SCALARS,
    REGRESSION_SCALARS,
    binary_metrics,
    binary_metrics_with_deviation,
    multiclass_metrics,
    regression_metrics,
    with_standard_deviation,
)
from tests.shared_data import EXAMPLES

TOLERANCE = 1e-9


def close(ours: float, theirs: float) -> bool:
    if math.isnan(theirs):
        return math.isnan(ours)
    return abs(ours - theirs) <= TOLERANCE * max(1.0, abs(theirs))


def test_doctests_run() -> None:
    failed, attempted = doctest.testmod(metrics)  # type: ignore[arg-type]
    assert attempted > 0 and failed == 0


def sklearn_binary(y: np.ndarray, p: np.ndarray, s: np.ndarray | None) -> dict[str, float]:
    zero = {"zero_division": np.nan}
    tn, fp, _, _ = sk.confusion_matrix(y, p, labels=[0, 1]).ravel()
    out = {
        "recall": sk.recall_score(y, p, **zero),
        "precision": sk.precision_score(y, p, **zero),
        "accuracy": sk.accuracy_score(y, p),
        "true_positive_rate": sk.recall_score(y, p, **zero),
        "false_positive_rate": fp / (fp + tn) if fp + tn else math.nan,
        "f0_5": sk.fbeta_score(y, p, beta=0.5, **zero),
        "f1": sk.f1_score(y, p, **zero),
        "f2": sk.fbeta_score(y, p, beta=2.0, **zero),
    }
    out["true_negative_rate"] = 1 - out["false_positive_rate"]
    out["false_negative_rate"] = 1 - out["recall"]
    ones = np.ones_like(y)
    for name in ("recall", "precision", "f0_5", "f1", "f2"):
        beta = metrics.BETAS.get(name)
        if beta is None:
            fn_ = sk.recall_score if name == "recall" else sk.precision_score
            out[f"{name}_best_constant_classifier"] = fn_(y, ones, **zero)
        else:
            out[f"{name}_best_constant_classifier"] = sk.fbeta_score(y, ones, beta=beta, **zero)
    out["accuracy_best_constant_classifier"] = sk.accuracy_score(y, ones)
    if s is not None:
        out["auc"] = sk.roc_auc_score(y, s) if 0 < y.sum() < y.size else math.nan
    return out


def binary_case(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rng.uniform(0.05, 0.95)).astype(np.int64)
    s = np.clip(0.5 * y + rng.normal(0.25, 0.3, n), 0, 1).round(rng.integers(1, 4))
    p = (s >= 0.5).astype(np.int64)
    return y, p, s


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("n", [1, 2, 7, 50, 1000])
def test_binary_against_sklearn(seed: int, n: int) -> None:
    y, p, s = binary_case(seed, n)
    ours = binary_metrics(y, p, s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns on one-class windows; NaN is the point
        theirs = sklearn_binary(y, p, s)
    assert set(ours) >= set(BINARY_SCALARS)
    for name, value in theirs.items():
        assert close(ours[name], value), (name, ours[name], value)
    tn, fp, fn, tp = sk.confusion_matrix(y, p, labels=[0, 1]).ravel()
    assert ours["confusion_matrix"] == {"0": {"0": tn, "1": fp}, "1": {"0": fn, "1": tp}}


def test_binary_curves_match_sklearn_when_small() -> None:
    y, p, s = binary_case(3, 400)
    ours = binary_metrics(y, p, s)
    fpr, tpr, _ = sk.roc_curve(y, s, drop_intermediate=False)
    roc = ours["receiver_operating_characteristic_curve"]
    np.testing.assert_allclose(roc["false_positive_rates"], fpr, atol=TOLERANCE)
    np.testing.assert_allclose(roc["true_positive_rates"], tpr, atol=TOLERANCE)
    precision, recall, _ = sk.precision_recall_curve(y, s, drop_intermediate=False)
    pr = ours["precision_recall_curve"]
    # scikit-learn lists the PR curve from the lowest threshold up and ends at (1, 0).
    np.testing.assert_allclose(pr["precisions"][1:], precision[::-1][1:], atol=TOLERANCE)
    np.testing.assert_allclose(pr["recalls"][1:], recall[::-1][1:], atol=TOLERANCE)


def test_curves_are_thinned_but_auc_stays_exact() -> None:
    rng = np.random.default_rng(5)
    y = (rng.random(50_000) < 0.3).astype(np.int64)
    s = rng.random(50_000) * 0.5 + 0.5 * y * rng.random(50_000)
    ours = binary_metrics(y, (s > 0.5).astype(np.int64), s, max_curve_points=101)
    roc = ours["receiver_operating_characteristic_curve"]
    assert len(roc["false_positive_rates"]) <= 101
    assert roc["false_positive_rates"][-1] == 1.0 and roc["true_positive_rates"][-1] == 1.0
    assert close(ours["auc"], sk.roc_auc_score(y, s))


def test_binary_degenerate_windows_give_nan_not_a_crash() -> None:
    one_class = binary_metrics(np.zeros(5, np.int64), np.zeros(5, np.int64), np.full(5, 0.2))
    assert math.isnan(one_class["auc"]) and math.isnan(one_class["recall"])
    assert math.isnan(one_class["precision"]) and one_class["accuracy"] == 1.0
    empty = binary_metrics(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    assert math.isnan(empty["accuracy"]) and math.isnan(empty["auc"])
    all_equal = binary_metrics(np.array([0, 1, 1]), np.array([1, 1, 1]), np.full(3, 0.7))
    assert all_equal["auc"] == 0.5 and all_equal["recall"] == 1.0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n", [1, 3, 40, 500])
def test_multiclass_against_sklearn(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 7))
    truth = [f"c{v}" for v in rng.integers(0, k, n)]
    guess = [t if rng.random() < 0.6 else f"c{rng.integers(0, k + 1)}" for t in truth]
    ours = multiclass_metrics(truth, guess)
    assert set(ours) >= set(MULTICLASS_SCALARS)
    weighted = {"average": "weighted", "zero_division": 0}
    assert close(ours["accuracy"], sk.accuracy_score(truth, guess))
    assert close(ours["weighted_recall"], sk.recall_score(truth, guess, **weighted))
    assert close(ours["weighted_precision"], sk.precision_score(truth, guess, **weighted))
    for name, beta in metrics.BETAS.items():
        theirs = sk.fbeta_score(truth, guess, beta=beta, **weighted)
        assert close(ours[f"weighted_{name}"], theirs), name
    top = max(sorted(set(truth)), key=truth.count)
    constant = [top] * n
    assert close(ours["accuracy_best_constant_classifier"], sk.accuracy_score(truth, constant))
    theirs = sk.precision_score(truth, constant, **weighted)
    assert close(ours["weighted_precision_best_constant_classifier"], theirs)
    theirs = sk.f1_score(truth, constant, **weighted)
    assert close(ours["weighted_f1_best_constant_classifier"], theirs)
    labels = sorted(set(truth) | set(guess))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one label only (n = 1): sklearn warns, counts agree
        matrix = sk.confusion_matrix(truth, guess, labels=labels)
    for i, actual in enumerate(labels):
        for j, predicted in enumerate(labels):
            assert ours["confusion_matrix"][actual][predicted] == matrix[i, j]


def test_multiclass_empty_window() -> None:
    out = multiclass_metrics([], [])
    assert out["confusion_matrix"] == {} and math.isnan(out["accuracy"])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n", [2, 30, 5000])
def test_regression_against_sklearn(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.normal(rng.uniform(-1e3, 1e3), rng.uniform(0.1, 100), n)
    p = y + rng.normal(0, rng.uniform(0.1, 50), n)
    ours = regression_metrics(y, p)
    assert close(ours["mae"], sk.mean_absolute_error(y, p))
    assert close(ours["mse"], sk.mean_squared_error(y, p))
    assert close(ours["rmse"], math.sqrt(sk.mean_squared_error(y, p)))
    assert close(ours["r2"], sk.r2_score(y, p))


def test_regression_degenerate() -> None:
    constant = regression_metrics(np.full(4, 2.0), np.array([1.0, 2.0, 3.0, 2.0]))
    assert math.isnan(constant["r2"]) and constant["mae"] == 0.5
    one = regression_metrics(np.array([3.0]), np.array([1.0]))
    assert one["mae"] == 2.0 and math.isnan(one["r2"])
    assert all(math.isnan(v) for v in regression_metrics(np.zeros(0), np.zeros(0)).values())


def test_standard_deviation_follows_sagemakers_recipe() -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(size=1000)
    p = y + rng.normal(size=1000)
    out = with_standard_deviation(regression_metrics, [y, p], seed=7)
    again = with_standard_deviation(regression_metrics, [y, p], seed=7)
    assert out == again  # seeded: a re-run writes the same numbers
    picks = np.random.default_rng(7)
    maes = []
    for _ in range(5):
        keep = picks.random(1000) < 0.8  # each row kept with probability 0.8 (Spark's sample)
        maes.append(sk.mean_absolute_error(y[keep], p[keep]))
    assert close(out["mae"]["standard_deviation"], float(np.std(maes, ddof=1)))
    small = with_standard_deviation(regression_metrics, [y[:199], p[:199]])
    assert math.isnan(small["mae"]["standard_deviation"])
    assert set(small) == set(REGRESSION_SCALARS)


@pytest.mark.parametrize("case", range(6))
def test_binary_fast_path_equals_the_generic_recipe(case: int) -> None:
    rng = np.random.default_rng(case)
    n = [200, 201, 999, 5000, 300, 250][case]
    s = np.round(rng.random(n), [1, 2, 3, 6, 1, 2][case])  # ties, many or few
    y = (rng.random(n) < s).astype(np.int64) if case != 4 else np.zeros(n, np.int64)
    p = (s >= 0.5).astype(np.int64)
    generic = with_standard_deviation(binary_metrics, [y, p, s], seed=case)
    fast = binary_metrics_with_deviation(y, p, s, seed=case)
    assert generic.keys() == fast.keys()
    for name, entry in generic.items():
        if isinstance(entry, dict) and "value" in entry:
            for part in ("value", "standard_deviation"):
                a, b = entry[part], fast[name][part]
                assert (math.isnan(a) and math.isnan(b)) or close(a, b), (name, part)
        else:  # curves and matrix (NaN rates of one class compare equal as JSON null)
            assert orjson.dumps(entry) == orjson.dumps(fast[name]), name
    if case != 4:
        assert close(fast["auc"]["value"], sk.roc_auc_score(y, s))


def test_standard_deviation_passes_matrices_and_curves_through() -> None:
    y, p, s = binary_case(1, 500)
    out = with_standard_deviation(binary_metrics, [y, p, s])
    assert out["confusion_matrix"] == binary_metrics(y, p, s)["confusion_matrix"]
    assert out["auc"]["standard_deviation"] > 0
    assert "false_positive_rates" in out["receiver_operating_characteristic_curve"]


def sagemaker_example() -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    folder = EXAMPLES / "model_quality"
    lines = (folder / "baseline_dataset.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:] if line]
    label = np.array([float(r[header.index("Label")]) for r in rows])
    prediction = np.array([float(r[header.index("Prediction")]) for r in rows])
    return label, prediction, orjson.loads((folder / "statistics.json").read_bytes())


def test_reproduces_sagemakers_regression_statistics() -> None:
    label, prediction, expected = sagemaker_example()
    ours = regression_metrics(label, prediction, r2_convention="sagemaker")
    for name, entry in expected["regression_metrics"].items():
        assert close(ours[name], entry["value"]), name
    # The standard r2 is scikit-learn's, and differs from SageMaker's on this file.
    standard = regression_metrics(label, prediction)["r2"]
    assert close(standard, sk.r2_score(label, prediction))
    assert not close(standard, expected["regression_metrics"]["r2"]["value"])
