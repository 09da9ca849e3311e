"""The model-quality monitor type behind the monitor contract: window in, section and gauges out."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, roc_auc_score

from analyzer.monitors.contract import Evaluation
from analyzer.monitors.model_quality.documents import parse_constraints, suggest_constraints
from analyzer.monitors.model_quality.estimate import fit_calibrator
from analyzer.monitors.model_quality.evaluate import baseline_from_statistics, evaluate_window
from analyzer.monitors.model_quality.monitor import (
    MAX_MATRIX_BYTES,
    OTHER,
    STATUS_MATRIX_BYTES,
    STATUS_MAX_CLASSES,
    ModelQuality,
    ModelQualityWindow,
)
from analyzer.monitors.registry import section_gauges
from tests.analyzer.monitors.model_quality.test_verdict import BINARY, draw


def _monitor(seed: int = 0, n: int = 20_000, *, calibrated: bool = True) -> ModelQuality:
    y, p, s = draw(np.random.default_rng(seed), n)
    result = evaluate_window(BINARY, y, p, s, {}, None, false_alarm_rate=0.01, min_labels=1)
    stats = result.statistics()
    return ModelQuality(
        BINARY,
        parse_constraints(BINARY, suggest_constraints(BINARY, stats)),
        baseline_from_statistics(BINARY, stats),
        {"statistics": "statistics.json"},
        min_labels=100,
        false_alarm_rate=0.01,
        calibrator=fit_calibrator(s, y) if calibrated else None,
    )


def _window(
    y: np.ndarray, p: np.ndarray, s: np.ndarray, counts: dict[str, int]
) -> ModelQualityWindow:
    labels, predictions = [str(v) for v in y], [str(v) for v in p]
    return ModelQualityWindow(labels, predictions, s, predictions, s, counts)


def test_a_window_gets_sklearns_metrics_states_and_an_estimate() -> None:
    monitor = _monitor()
    y, p, s = draw(np.random.default_rng(7), 5_000)
    evaluation = monitor.evaluate(_window(y, p, s, {"matched": 5000}), start=0.0, end=3600.0)
    assert isinstance(evaluation, Evaluation)
    section = evaluation.section
    assert section["window"] == {"start": "1970-01-01T00:00:00Z", "end": "1970-01-01T01:00:00Z"}
    metrics = section["metrics"]
    assert metrics["accuracy"]["value"] == pytest.approx(accuracy_score(y, p), abs=1e-9)
    assert metrics["f1"]["value"] == pytest.approx(f1_score(y, p), abs=1e-9)
    assert metrics["auc"]["value"] == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    assert metrics["auc"]["comparison_operator"] == "LessThanThreshold"
    assert {m["state"] for m in metrics.values() if m["threshold"] is not None} <= {"ok", "warning"}
    assert section["state"] in ("ok", "warning") and evaluation.violations == []
    assert section["labels"] == {"matched": 5000}
    auc = section["estimated"]["auc"]
    assert auc["low"] <= metrics["auc"]["value"] <= auc["high"]
    assert section["estimate"]["trusted"] is True
    assert set(evaluation.documents) == {"statistics.json", "constraint_violations.json"}


def test_concept_drift_alerts_and_distrusts_the_estimate() -> None:
    monitor = _monitor()
    y, p, s = draw(np.random.default_rng(8), 5_000, flip=0.3)
    evaluation = monitor.evaluate(_window(y, p, s, {}), start=0.0, end=60.0)
    assert evaluation.state == "alert"
    assert {v["metric_name"] for v in evaluation.violations} >= {"accuracy", "auc"}
    assert evaluation.violations[0]["description"].startswith("Metric ")
    assert evaluation.section["estimate"]["trusted"] is False
    assert "concept drift" in evaluation.section["estimate"]["note"]
    assert evaluation.documents["constraint_violations.json"]["violations"] == evaluation.violations


def test_too_few_labels_is_not_enough_data_but_the_estimate_shows() -> None:
    monitor = _monitor()
    y, p, s = draw(np.random.default_rng(9), 2_000)
    window = ModelQualityWindow(
        [str(v) for v in y[:10]], [str(v) for v in p[:10]], s[:10], [str(v) for v in p], s, {}
    )
    evaluation = monitor.evaluate(window, start=0.0, end=60.0)
    assert evaluation.state == "not_enough_data" and evaluation.samples == 10
    assert evaluation.section["estimated"]["accuracy"]["value"] is not None
    assert evaluation.section["estimated"]["accuracy"]["agrees_with_realized"] is None


def test_no_labels_yet_is_no_data_and_labels_that_are_not_binary_are_said() -> None:
    monitor = _monitor(calibrated=False)
    empty = monitor.evaluate(ModelQualityWindow([], [], np.zeros(0)), start=0.0, end=1.0)
    assert empty.state == "no_data" and empty.documents == {}
    assert "no calibration" in empty.section["estimate"]["note"]
    odd = ModelQualityWindow(["yes", "no"], ["1", "0"], np.array([0.9, 0.1]))
    evaluation = monitor.evaluate(odd, start=0.0, end=1.0)
    assert evaluation.state == "no_data" and "not 0/1" in evaluation.section["error"]


def test_a_stored_label_the_metrics_cannot_count_is_left_out_not_the_window() -> None:
    """A label stored before the intake refused such labels ("yes" for a binary classifier)
    leaves its pair out, counted; the other pairs keep their metrics (before: none had)."""
    monitor = _monitor()
    y, p, s = draw(np.random.default_rng(10), 1_000)
    labels = [str(v) for v in y]
    labels[3] = "yes"
    window = ModelQualityWindow(labels, [str(v) for v in p], s, [str(v) for v in p], s, {})
    evaluation = monitor.evaluate(window, start=0.0, end=60.0)
    section = evaluation.section
    assert section["left_out"] == {"not_0_or_1": 1} and "error" not in section
    assert evaluation.samples == section["samples"] == 999
    keep = np.arange(1_000) != 3
    expected = accuracy_score(y[keep], p[keep])
    assert section["metrics"]["accuracy"]["value"] == pytest.approx(expected, abs=1e-12)
    assert section["metrics"]["auc"]["value"] == pytest.approx(
        roc_auc_score(y[keep], s[keep]), abs=1e-9
    )


def test_regression_has_no_estimate_and_says_why() -> None:
    rng = np.random.default_rng(3)
    truth = rng.normal(size=1000)
    guess = truth + rng.normal(scale=0.5, size=1000)
    monitor = ModelQuality(
        "Regression",
        {"mae": (0.1, "GreaterThanThreshold")},
        None,
        {},
        min_labels=100,
        false_alarm_rate=0.01,
    )
    window = ModelQualityWindow(
        [str(float(v)) for v in truth], [str(float(v)) for v in guess], np.zeros(0)
    )
    evaluation = monitor.evaluate(window, start=0.0, end=1.0)
    assert evaluation.section["metrics"]["mae"]["value"] == pytest.approx(
        mean_absolute_error(truth, guess), abs=1e-9
    )
    assert evaluation.state == "alert" and evaluation.violations[0]["metric_name"] == "mae"
    assert evaluation.section["estimated"] == {}
    assert "no label-free estimate" in evaluation.section["estimate"]["note"]


def test_without_constraints_the_state_is_no_baseline() -> None:
    monitor = ModelQuality(
        BINARY, None, None, {"error": "missing"}, min_labels=1, false_alarm_rate=0.01
    )
    y, p, s = draw(np.random.default_rng(4), 300)
    evaluation = monitor.evaluate(_window(y, p, s, {}), start=0.0, end=1.0)
    assert (
        evaluation.state == "no_baseline"
        and "constraint_violations.json" not in evaluation.documents
    )


def test_gauges_are_named_like_sagemakers_cloudwatch_metrics() -> None:
    monitor = _monitor()
    y, p, s = draw(np.random.default_rng(8), 3_000, flip=0.3)
    section = monitor.evaluate(
        _window(y, p, s, {"matched": 3000, "pending": 5}), start=0, end=1
    ).section
    gauges = list(section_gauges("model_quality", section))
    names = {g.name for g in gauges}
    assert {
        "auc",
        "f1",
        "accuracy",
        "auc_threshold",
        "auc_standard_deviation",
        "auc_estimated",
    } <= names
    labelled = {(g.name, g.labels) for g in gauges}
    assert ("modelmon_model_quality_labels", (("kind", "pending"),)) in labelled
    assert ("modelmon_model_quality_violations", (("metric", "auc"),)) in labelled
    auc = next(g for g in gauges if g.name == "auc")
    assert auc.value == section["metrics"]["auc"]["value"]


def test_binary_labels_given_as_texts_are_read_as_the_numbers() -> None:
    """0/1 given as texts give the same metrics and decisions as the numbers (the AUC's
    margin counts the positives: a text "0" is not one)."""
    y, p, s = draw(np.random.default_rng(3), 2000)
    constraints = {"auc": (0.9, "LessThanThreshold"), "accuracy": (0.5, "LessThanThreshold")}

    def result(truth: object, guess: object) -> object:
        return evaluate_window(
            BINARY,
            truth,
            guess,
            s,
            constraints,
            None,
            false_alarm_rate=0.01,
            min_labels=1,  # type: ignore[arg-type]
        )

    numbers, texts = result(y, p), result([str(v) for v in y], [str(v) for v in p])
    assert texts == numbers
    assert numbers.decisions["auc"].margin > 0  # type: ignore[attr-defined]


def test_a_multiclass_window_of_long_class_names_keeps_its_matrix_within_its_bytes() -> None:
    """200 classes named with 1,024 characters each: before, a 41 MB confusion matrix in
    statistics.json and 2.6 MB in every status (1,000 such classes: 1 GB an hour); now the
    classes of most pairs whose matrix fits in MAX_MATRIX_BYTES, the rest left out and
    counted, and the status's matrix within STATUS_MATRIX_BYTES."""
    names = [f"{i:04d}" + "x" * 1020 for i in range(200)]
    labels = names + names[:50]  # the first 50 classes have three pairs, the others one
    monitor = ModelQuality("MulticlassClassification", None, None, {}, min_labels=1,
                           false_alarm_rate=0.01)  # fmt: skip
    window = ModelQualityWindow(labels, list(labels), np.zeros(len(labels)))
    evaluation = monitor.evaluate(window, start=0.0, end=60.0)
    kept = evaluation.documents["statistics.json"]["multiclass_classification_metrics"]
    matrix = kept["confusion_matrix"]
    assert 100 < len(matrix) < 200 and set(names[:50]) <= set(matrix)
    assert len(orjson.dumps(matrix)) <= MAX_MATRIX_BYTES
    section = evaluation.section
    assert section["left_out"] == {"over_max_classes": 200 - len(matrix)}
    assert section["samples"] == len(labels) - (200 - len(matrix))
    assert section["metrics"]["accuracy"]["value"] == 1.0
    assert len(orjson.dumps(section["confusion_matrix"])) <= STATUS_MATRIX_BYTES
    assert OTHER in section["confusion_matrix"]
    assert section["confusion_matrix_classes"] == len(matrix)


def test_class_names_that_json_escapes_are_counted_as_written() -> None:
    """Names of control characters (each written as ``\\u0001``, 6 bytes): the budget counted
    their UTF-8 bytes, and the matrices came out ~6x over it (99.5 MB and 1.4 MB)."""
    names = ["\x01" * 1019 + f"{i:04d}" for i in range(200)]
    labels = names + names[:50]
    monitor = ModelQuality("MulticlassClassification", None, None, {}, min_labels=1,
                           false_alarm_rate=0.01)  # fmt: skip
    window = ModelQualityWindow(labels, list(labels), np.zeros(len(labels)))
    evaluation = monitor.evaluate(window, start=0.0, end=60.0)
    matrix = evaluation.documents["statistics.json"]["multiclass_classification_metrics"]
    assert len(orjson.dumps(matrix["confusion_matrix"])) <= MAX_MATRIX_BYTES
    assert len(orjson.dumps(evaluation.section["confusion_matrix"])) <= STATUS_MATRIX_BYTES


def test_a_class_named_like_the_folded_rest_is_not_merged_into_it() -> None:
    """A model answering "(other)": the status's folded matrix sums the rest under another
    name, so that class's own pairs stay its own (before: 500 real pairs + 36 folded)."""
    labels = [OTHER] * 500 + [f"c{i}" for i in range(60)] * 3
    monitor = ModelQuality("MulticlassClassification", None, None, {}, min_labels=1,
                           false_alarm_rate=0.01)  # fmt: skip
    window = ModelQualityWindow(labels, list(labels), np.zeros(len(labels)))
    matrix = monitor.evaluate(window, start=0.0, end=60.0).section["confusion_matrix"]
    assert len(matrix) == STATUS_MAX_CLASSES
    assert matrix[OTHER][OTHER] == 500
    assert sum(matrix[OTHER + "*"].values()) == 3 * (60 - (STATUS_MAX_CLASSES - 2))
    assert sum(sum(row.values()) for row in matrix.values()) == len(labels)
