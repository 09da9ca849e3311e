"""The model-quality monitor on the reference tables, in process (issue 11's data checks).

The monitor is built as the service builds it (:func:`load_model_quality_baseline` on files
written from ``baseline.csv``'s score and label) and evaluates windows of the other tables:

- ``current_covariate.csv`` (inputs moved, labels follow the same model): the label-free
  estimate follows the realized metric, within its band, in every window of 1,000;
- ``current_nodrift.csv``: no model-quality violation in any of its disjoint windows, where
  SageMaker's rule (the threshold is the baseline's value) flags most of them.

Disjoint windows, not a bootstrap of the file: windows resampled from one 5,000-row file all
share that file's own sampling error (its TNR is 1.5 standard errors under the baseline's),
so they are not independent draws of an unchanged process (docs/model-quality.md, "On the
reference data").
"""

from __future__ import annotations

import numpy as np
import pytest

from analyzer.monitors.model_quality.monitor import ModelQuality, ModelQualityWindow
from analyzer.store.model_quality_baseline import load_model_quality_baseline
from modelmon.config import ModelQualityConfig
from tests.analyzer.test_service_model_quality import BINARY, scored, write_quality_baseline


@pytest.fixture(scope="module")
def monitor(tmp_path_factory: pytest.TempPathFactory) -> ModelQuality:
    statistics, constraints = write_quality_baseline(tmp_path_factory.mktemp("mq") / "base")
    config = ModelQualityConfig.model_validate(
        {
            "problem_type": BINARY,
            "probability_attribute": "0",
            "min_labels": 100,
            "baseline": {"statistics": str(statistics), "constraints": str(constraints)},
        }
    )
    baseline = load_model_quality_baseline(config)
    assert baseline.constraints is not None and baseline.calibrator is not None
    return ModelQuality(
        BINARY,
        baseline.constraints,
        baseline.baseline,
        baseline.info,
        min_labels=config.min_labels,
        false_alarm_rate=0.01,
        calibrator=baseline.calibrator,
    )


def _window(name: str, first: int, n: int) -> ModelQualityWindow:
    """Rows ``first..first+n`` of a reference table, every one labelled."""
    scores, labels = scored(name)
    s = np.array(scores[first : first + n], dtype=np.float64)
    predictions = ["1" if v >= 0.5 else "0" for v in s]
    truth = [str(v) for v in labels[first : first + n]]
    return ModelQualityWindow(truth, predictions, s, predictions, s)


def test_the_estimate_follows_the_realized_metric_under_covariate_shift(
    monitor: ModelQuality,
) -> None:
    for first in range(0, 5000, 1000):
        section = monitor.evaluate(
            _window("current_covariate.csv", first, 1000), start=0, end=1
        ).section
        assert section["estimate"]["trusted"] is True, section["estimate"]
        for name in ("auc", "accuracy"):
            estimated, realized = section["estimated"][name], section["metrics"][name]
            assert estimated["agrees_with_realized"] is True, (first, name, estimated, realized)
            assert estimated["low"] < estimated["value"] < estimated["high"]
        # the shift moved accuracy (fewer positives: 0.78 → 0.81) and the estimate moved with it
        threshold = section["metrics"]["accuracy"]["threshold"]
        assert section["estimated"]["accuracy"]["value"] > threshold + 0.015
        assert section["metrics"]["accuracy"]["value"] > threshold + 0.015


@pytest.mark.parametrize("size", [200, 500, 1000])
def test_nodrift_windows_raise_no_model_quality_violation(monitor: ModelQuality, size: int) -> None:
    sagemaker = 0
    windows = range(0, 5000, size)
    for first in windows:
        window = _window("current_nodrift.csv", first, size)
        evaluation = monitor.evaluate(window, start=0, end=1)
        assert evaluation.state in ("ok", "warning"), (first, evaluation.section["violations"])
        assert not evaluation.violations
        result, _ = monitor.realized(window)
        assert result is not None
        sagemaker += any(d.sagemaker_violation for d in result.decisions.values())
    # the same windows under SageMaker's rule alone: most are violations
    assert sagemaker >= len(windows) // 2, sagemaker
