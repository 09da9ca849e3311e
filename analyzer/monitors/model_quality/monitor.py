"""The model-quality monitor type: a window's joined pairs in, metrics and states out (pure).

:class:`ModelQuality` keeps :class:`analyzer.monitors.contract.MonitorType`. The service
reads one window (keyed by *inference* time) from the join: the labelled pairs, every
prediction of the window (for the label-free estimate) and where the labels stand; the
evaluation computes SageMaker's metrics (:mod:`.evaluate`), decides each constrained
metric's state against the noise (:mod:`.verdict`), estimates the classification metrics
before the labels arrive (:mod:`.estimate`) and fills ``monitors.model_quality``:

``state``, ``window``, ``problem_type``, ``samples`` (labelled pairs), ``min_labels``,
``labels`` (``matched``, ``unmatched``, ``pending``, …), ``metrics.{name}`` (``value``,
``standard_deviation``, ``threshold``, ``comparison_operator``, ``margin``, ``state``),
``estimated.{name}`` (``value``, ``low``, ``high``) with ``estimate`` saying whether it can
be trusted, ``confusion_matrix``, ``violations`` and ``baseline``.

Gauges are named like SageMaker's CloudWatch model-quality metrics (the metric's own name,
``auc``, ``f1``, ``rmse`` …), with ``{name}_standard_deviation``, ``{name}_threshold`` and
``{name}_estimated{bound}`` beside them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from analyzer.monitors.contract import Evaluation, Gauge, iso
from analyzer.monitors.model_quality.documents import ProblemType
from analyzer.monitors.model_quality.estimate import (
    Calibrator,
    Estimate,
    agreement,
    estimate_binary,
)
from analyzer.monitors.model_quality.evaluate import Baseline, WindowResult, evaluate_window

__all__ = ["NAME", "ModelQuality", "ModelQualityWindow"]

NAME = "model_quality"
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
# Metrics shown in the status section and as gauges (curves and matrices are report-only).
_NOT_SCALAR = ("confusion_matrix", "receiver_operating_characteristic_curve")


@dataclass(frozen=True)
class ModelQualityWindow:
    """One window as read from the join.

    ``labels``/``predictions``/``probabilities``: the labelled pairs (probability NaN where
    the capture had none); ``all_predictions``/``all_probabilities``: every prediction of the
    window, labelled or not (what the estimate is over); ``label_counts``: where the labels
    stand (``matched``, ``unmatched``, ``pending`` …).
    """

    labels: Sequence[str]
    predictions: Sequence[str]
    probabilities: FloatArray
    all_predictions: Sequence[str] = ()
    all_probabilities: FloatArray = field(default_factory=lambda: np.zeros(0))
    label_counts: Mapping[str, int] = field(default_factory=dict)


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _binary(values: Sequence[str]) -> IntArray | None:
    """Labels or predictions of a binary classifier as 0/1 (None when one is not 0/1-like)."""
    out = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        text = str(value).strip().lower()
        if text in ("1", "1.0", "true"):
            out[i] = 1
        elif text in ("0", "0.0", "false"):
            out[i] = 0
        else:
            return None
    return out


def _numbers(values: Sequence[str]) -> FloatArray | None:
    try:
        out = np.array([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return out if bool(np.isfinite(out).all()) else None


class ModelQuality:
    """The model-quality monitor of one endpoint against one baseline (``None``: none)."""

    name = NAME

    def __init__(
        self,
        problem_type: ProblemType,
        constraints: Mapping[str, tuple[float, str]] | None,
        baseline: Baseline | None,
        baseline_info: Mapping[str, Any],
        *,
        min_labels: int,
        false_alarm_rate: float,
        calibrator: Calibrator | None = None,
        r2_convention: str = "standard",
    ) -> None:
        self.problem_type = problem_type
        self.constraints = dict(constraints) if constraints is not None else None
        self.baseline = baseline
        self.baseline_info = dict(baseline_info)
        self.min_labels = min_labels
        self.false_alarm_rate = false_alarm_rate
        self.calibrator = calibrator
        self.r2_convention = r2_convention

    # -- evaluation ----------------------------------------------------------------------
    def _arrays(self, window: ModelQualityWindow) -> tuple[Any, Any, FloatArray | None, str | None]:
        """Labels, predictions, scores as the metrics take them; or why they cannot be."""
        if self.problem_type == "Regression":
            truth, guess = _numbers(window.labels), _numbers(window.predictions)
            if truth is None or guess is None:
                return None, None, None, "a label or prediction is not a finite number"
            return truth, guess, None, None
        if self.problem_type == "BinaryClassification":
            actual, predicted = _binary(window.labels), _binary(window.predictions)
            if actual is None or predicted is None:
                return None, None, None, "a label or prediction is not 0/1"
            scores = np.asarray(window.probabilities, dtype=np.float64)
            return actual, predicted, scores if bool(np.isfinite(scores).all()) else None, None
        return list(window.labels), list(window.predictions), None, None

    def realized(self, window: ModelQualityWindow) -> tuple[WindowResult | None, str | None]:
        """The window's metrics and decisions, or why there are none."""
        truth, guess, scores, problem = self._arrays(window)
        if problem is not None:
            return None, problem
        result = evaluate_window(
            self.problem_type,
            truth,
            guess,
            scores,
            self.constraints or {},
            self.baseline,
            false_alarm_rate=self.false_alarm_rate,
            min_labels=self.min_labels,
            r2_convention=self.r2_convention,
        )
        return result, None

    def estimated(self, window: ModelQualityWindow) -> tuple[dict[str, Estimate], str]:
        """The label-free estimate over every prediction of the window, and a note."""
        if self.problem_type != "BinaryClassification":
            return {}, (
                "no label-free estimate for this problem type (a regressor's error has no "
                "expectation its outputs determine)"
                if self.problem_type == "Regression"
                else "no label-free estimate for multiclass models yet"
            )
        if self.calibrator is None:
            return {}, "no calibration in the baseline (build it with modelmon baseline)"
        scores = np.asarray(window.all_probabilities, dtype=np.float64)
        predicted = _binary(window.all_predictions)
        if scores.size == 0 or predicted is None or not bool(np.isfinite(scores).all()):
            return {}, "no probabilities captured in this window"
        estimates = estimate_binary(scores, predicted, self.calibrator)
        note = "" if self.calibrator.trusted else self.calibrator.reason
        return estimates, note

    def evaluate(self, window: ModelQualityWindow, *, start: float, end: float) -> Evaluation:
        """The window's realized metrics, states and estimate, as the status section."""
        counts = {key: int(value) for key, value in window.label_counts.items()}
        section: dict[str, Any] = {
            "window": {"start": iso(start), "end": iso(end)},
            "problem_type": self.problem_type,
            "samples": len(window.labels),
            "min_labels": self.min_labels,
            "labels": counts,
            "metrics": {},
            "estimated": {},
            "violations": [],
            "violations_total": 0,
            "baseline": self.baseline_info,
        }
        result, problem = self.realized(window) if len(window.labels) else (None, None)
        estimates, note = self.estimated(window)
        section["estimate"] = {"trusted": not note, "note": note or None}
        decisions = result.decisions if result is not None else {}
        for name, entry in (result.metrics if result is not None else {}).items():
            if name in _NOT_SCALAR or name == "precision_recall_curve":
                continue
            decision = decisions.get(name)
            section["metrics"][name] = {
                "value": _finite(entry.get("value")),
                "standard_deviation": _finite(entry.get("standard_deviation")),
                "threshold": decision.threshold if decision is not None else None,
                "comparison_operator": decision.operator if decision is not None else None,
                "margin": _finite(decision.margin) if decision is not None else None,
                "state": decision.state if decision is not None else None,
            }
        if result is not None and "confusion_matrix" in result.metrics:
            section["confusion_matrix"] = result.metrics["confusion_matrix"]
        for name, estimate in estimates.items():
            realized = section["metrics"].get(name, {})
            section["estimated"][name] = {
                "value": _finite(estimate.value),
                "low": _finite(estimate.low),
                "high": _finite(estimate.high),
                "agrees_with_realized": (
                    agreement(
                        estimate,
                        realized["value"],
                        realized.get("standard_deviation") or math.nan,
                    )
                    if realized.get("value") is not None and len(window.labels) >= self.min_labels
                    else None
                ),
            }
        if any(e["agrees_with_realized"] is False for e in section["estimated"].values()):
            section["estimate"] = {
                "trusted": False,
                "note": "the realized metric is outside the estimate's band: the relation "
                "between inputs and labels moved (concept drift) or calibration broke",
            }
        state = self._state(result, problem)
        if problem is not None:
            section["error"] = problem
        violations = result.violations if result is not None else []
        section["state"] = state
        section["violations"] = violations
        section["violations_total"] = len(violations)
        documents: dict[str, Any] = {}
        if result is not None:
            documents["statistics.json"] = result.statistics()
            if self.constraints is not None:
                documents["constraint_violations.json"] = {"violations": violations}
        return Evaluation(
            NAME,
            state,
            len(window.labels),
            section,
            violations=violations,
            documents=documents,
            detail={"metrics": section["metrics"], "estimated": section["estimated"]},
        )

    def _state(self, result: WindowResult | None, problem: str | None) -> str:
        if self.constraints is None:
            return "no_baseline"
        if problem is not None:
            return "no_data"
        if result is None:
            return "no_data"
        if result.labels < self.min_labels:
            return "not_enough_data"
        return result.state

    # -- gauges --------------------------------------------------------------------------
    @staticmethod
    def gauges(section: Mapping[str, Any]) -> Iterator[Gauge]:
        """SageMaker's CloudWatch names for the realized metrics, with their spread and
        threshold; the estimate with its band; the label counts; violations by metric."""
        for name, entry in (section.get("metrics") or {}).items():
            if not isinstance(entry, Mapping):
                continue
            for suffix, key, text in (
                ("", "value", "Model-quality metric {} of the window (realized)"),
                ("_standard_deviation", "standard_deviation", "Standard deviation of {}"),
                ("_threshold", "threshold", "Threshold of {} in the constraints"),
            ):
                value = _finite(entry.get(key))
                if value is not None:
                    yield Gauge(f"{name}{suffix}", text.format(name), value)
        for name, entry in (section.get("estimated") or {}).items():
            for bound in ("value", "low", "high"):
                value = _finite(entry.get(bound)) if isinstance(entry, Mapping) else None
                if value is not None:
                    yield Gauge(
                        f"{name}_estimated",
                        f"Label-free estimate of {name} and its band",
                        value,
                        (("bound", bound),),
                    )
        for kind, count in (section.get("labels") or {}).items():
            yield Gauge(
                "modelmon_model_quality_labels",
                "Ground-truth labels: matched, unmatched, pending predictions …",
                float(count),
                (("kind", str(kind)),),
            )
        by_metric: dict[str, int] = {}
        for violation in section.get("violations") or []:
            metric = str(violation.get("metric_name"))
            by_metric[metric] = by_metric.get(metric, 0) + 1
        for metric, n in by_metric.items():
            yield Gauge(
                "modelmon_model_quality_violations",
                "Model-quality constraint violations in the last run",
                float(n),
                (("metric", metric),),
            )
