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
be trusted, ``confusion_matrix`` (at most :data:`STATUS_MAX_CLASSES` classes, and no
more than fit in :data:`STATUS_MATRIX_BYTES` of JSON: past that, the others summed in
``(other)`` and ``confusion_matrix_classes`` says how many there are), ``violations`` and
``baseline``. Pairs the metrics cannot count (a label stored before the intake refused such
labels; a multiclass window's classes past the ``MAX_CLASSES`` most frequent, or past those
whose matrix fits in :data:`MAX_MATRIX_BYTES` of JSON) are counted in ``left_out`` by
reason, never the whole window.

Gauges are named like SageMaker's CloudWatch model-quality metrics (the metric's own name,
``auc``, ``f1``, ``rmse`` …), with ``{name}_standard_deviation``, ``{name}_threshold`` and
``{name}_estimated{bound}`` beside them.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
from analyzer.monitors.model_quality.records import (
    MAX_CLASSES,
    MAX_MATRIX_BYTES,
    matrix_cell_bytes,
    matrix_fits,
)

__all__ = [
    "MAX_MATRIX_BYTES",
    "NAME",
    "OTHER",
    "STATUS_MATRIX_BYTES",
    "STATUS_MAX_CLASSES",
    "ModelQuality",
    "ModelQualityWindow",
    "other_name",
]

NAME = "model_quality"
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
# Metrics shown in the status section and as gauges (curves and matrices are report-only).
_NOT_SCALAR = ("confusion_matrix", "receiver_operating_characteristic_curve")
# the status's confusion matrix: at most this many classes, the rest summed in OTHER
STATUS_MAX_CLASSES = 50
STATUS_MATRIX_BYTES = 256 * 1024  # and no more than fit in this much JSON
OTHER = "(other)"


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


def _binary_value(value: str) -> int:
    text = str(value).strip().lower()
    if text in ("1", "1.0", "true"):
        return 1
    if text in ("0", "0.0", "false"):
        return 0
    return -1


def _binary(values: Sequence[str]) -> IntArray:
    """Labels or predictions of a binary classifier as 0/1, -1 where one is not 0/1-like.

    Each distinct text is read once (a window of 500,000 holds two or four of them), then
    the column is mapped through that table at C speed.
    """
    table = {value: _binary_value(value) for value in set(values)}
    return np.fromiter(map(table.__getitem__, values), dtype=np.int64, count=len(values))


def _number(value: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _numbers(values: Sequence[str]) -> FloatArray:
    """The values as numbers; NaN where one is not a number."""
    return np.fromiter(map(_number, values), dtype=np.float64, count=len(values))


def _class_codes(
    labels: Sequence[str], predictions: Sequence[str]
) -> tuple[IntArray, IntArray, list[str]]:
    """Labels and predictions as codes into the class names, ``-1`` for a class past the
    most frequent of the window (labels and predictions counted together; ties by name)
    that the confusion matrix holds: at most ``MAX_CLASSES``, and no more than keep the
    matrix as JSON (each of k rows names the k classes) within :data:`MAX_MATRIX_BYTES`
    (1,000 classes of 1,024-character names would be a 1 GB ``statistics.json``)."""
    seen = Counter(labels)
    seen.update(predictions)
    names = sorted(seen, key=lambda name: (-seen[name], name))[:MAX_CLASSES]
    names = names[: _fitting(names, MAX_MATRIX_BYTES)]
    code = {name: i for i, name in enumerate(names)}

    def codes(values: Sequence[str]) -> IntArray:
        return np.fromiter((code.get(v, -1) for v in values), dtype=np.int64, count=len(values))

    return codes(labels), codes(predictions), names


def _fitting(names: Sequence[str], budget: int) -> int:
    """How many of ``names`` (in order) a confusion matrix can hold within ``budget`` bytes
    of compact JSON (:func:`matrix_fits`, the batch's encoder's rule too; ``statistics.json``,
    indented, takes more: see :func:`matrix_cell_bytes`)."""
    total = 0
    for k, name in enumerate(names, 1):
        total += matrix_cell_bytes(name)
        if not matrix_fits(k, total, budget):
            return k - 1
    return len(names)


def _folded(matrix: Mapping[str, Mapping[str, int]]) -> Mapping[str, Mapping[str, int]]:
    """The confusion matrix of the status: as it is up to ``STATUS_MAX_CLASSES`` classes;
    past that, the ``STATUS_MAX_CLASSES - 1`` classes of most pairs (as actual or predicted,
    ties by name) and the rest summed in :func:`other_name` (``OTHER`` unless a class has that
    name; the report files keep the whole matrix)."""
    if len(matrix) <= STATUS_MAX_CLASSES and _fitting(list(matrix), STATUS_MATRIX_BYTES) == len(
        matrix
    ):
        return matrix
    support: Counter[str] = Counter()
    for actual, row in matrix.items():
        for predicted, n in row.items():
            support[actual] += n
            support[predicted] += n
    other = other_name(support)
    kept = sorted(matrix, key=lambda name: (-support[name], name))[: STATUS_MAX_CLASSES - 1]
    kept = kept[: max(1, _fitting([*kept, other], STATUS_MATRIX_BYTES) - 1)]
    shown = set(kept)
    names = [*sorted(kept), other]
    out = {actual: dict.fromkeys(names, 0) for actual in names}
    for actual, row in matrix.items():
        cells = out[actual if actual in shown else other]
        for predicted, n in row.items():
            cells[predicted if predicted in shown else other] += n
    return out


def other_name(classes: Iterable[str]) -> str:
    """``OTHER``, with ``*`` added until it names no class (a model may answer "(other)")."""
    taken = set(classes)
    name = OTHER
    while name in taken:
        name += "*"
    return name


_WHY = {
    "not_0_or_1": "a label or prediction is not 0/1",
    "not_a_finite_number": "a label or prediction is not a finite number",
    "over_max_classes": f"a class is past the most frequent that fit (at most {MAX_CLASSES})",
}


@dataclass(frozen=True)
class _Arrays:
    """A window's pairs as the metrics take them; ``left_out``: pairs dropped, by reason;
    ``problem``: why none is left (then nothing is evaluated)."""

    truth: Any
    guess: Any
    scores: FloatArray | None
    left_out: Mapping[str, int]
    problem: str | None = None
    classes: list[str] | None = None  # multiclass: truth and guess are codes into these

    @classmethod
    def of(
        cls, truth: Any, guess: Any, scores: FloatArray | None, keep: Any, reason: str, n: int
    ) -> _Arrays:
        dropped = n - int(np.count_nonzero(keep))
        if not dropped:
            return cls(truth, guess, scores, {})
        left_out = {reason: dropped}
        if dropped == n:
            problem = f"no labelled pair can be counted: in all {n}, {_WHY[reason]}"
            return cls(truth, guess, scores, left_out, problem)
        picked = scores[keep] if scores is not None else None
        return cls(truth[keep], guess[keep], picked, left_out)


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
    def _arrays(self, window: ModelQualityWindow) -> _Arrays:
        """Labels, predictions, scores as the metrics take them, without the pairs they
        cannot count (by reason): a label or prediction that is not 0/1 (binary), not a
        finite number (regression), of a class past the ``MAX_CLASSES`` most frequent
        (multiclass). The intake refuses such labels and the extraction such predictions;
        a pair stored before they did is left out here, never the whole window."""
        n = len(window.labels)
        if self.problem_type == "Regression":
            truth, guess = _numbers(window.labels), _numbers(window.predictions)
            keep = np.isfinite(truth) & np.isfinite(guess)
            return _Arrays.of(truth, guess, None, keep, "not_a_finite_number", n)
        if self.problem_type == "BinaryClassification":
            actual, predicted = _binary(window.labels), _binary(window.predictions)
            scores = np.asarray(window.probabilities, dtype=np.float64)
            keep = (actual >= 0) & (predicted >= 0)
            return _Arrays.of(actual, predicted, scores, keep, "not_0_or_1", n)
        truth_codes, guess_codes, names = _class_codes(window.labels, window.predictions)
        keep = (truth_codes >= 0) & (guess_codes >= 0)
        arrays = _Arrays.of(truth_codes, guess_codes, None, keep, "over_max_classes", n)
        return dataclasses.replace(arrays, classes=names)

    def realized(self, window: ModelQualityWindow) -> tuple[WindowResult | None, str | None]:
        """The window's metrics and decisions, or why there are none."""
        result, arrays = self._realized(window)
        return result, arrays.problem

    def _realized(self, window: ModelQualityWindow) -> tuple[WindowResult | None, _Arrays]:
        arrays = self._arrays(window)
        if arrays.problem is not None:
            return None, arrays
        scores = arrays.scores
        with np.errstate(over="ignore", invalid="ignore"):  # 1e308s: an inf metric, said as such
            result = evaluate_window(
                self.problem_type,
                arrays.truth,
                arrays.guess,
                scores if scores is not None and bool(np.isfinite(scores).all()) else None,
                self.constraints or {},
                self.baseline,
                false_alarm_rate=self.false_alarm_rate,
                min_labels=self.min_labels,
                r2_convention=self.r2_convention,
                classes=arrays.classes,
            )
        return result, arrays

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
        if scores.size == 0 or (predicted < 0).any() or not bool(np.isfinite(scores).all()):
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
        result, arrays = self._realized(window) if len(window.labels) else (None, None)
        problem = arrays.problem if arrays is not None else None
        if arrays is not None and arrays.left_out:
            section["left_out"] = dict(arrays.left_out)
            section["samples"] = len(window.labels) - sum(arrays.left_out.values())
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
            matrix = result.metrics["confusion_matrix"]
            section["confusion_matrix"] = folded = _folded(matrix)
            if folded is not matrix:  # the rest summed under its last name
                section["confusion_matrix_classes"] = len(matrix)
                section["confusion_matrix_other"] = list(folded)[-1]
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
            section["samples"],
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
