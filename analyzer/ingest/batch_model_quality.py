"""``modelmon analyze --once --ground-truth DIR``: the model-quality half of the batch pass.

The capture files of the window are joined in memory with every label of the ground-truth
folder (``pairs.join``), evaluated against the model-quality baseline
(``evaluate.evaluate_window``: SageMaker's metrics, our verdict) and, for a binary classifier
with probabilities and a calibration in its baseline (``statistics.json``'s
``modelmon.calibration``), estimated without labels
over every prediction of the window (CBPE). Reports go to the ``model_quality`` folder of the
hour's report folder (docs/model-quality.md, "Reports"):

- ``statistics.json``, ``constraints.json``, ``constraint_violations.json``: SageMaker's
  model-quality schema (violations are our ``alert`` metrics, in SageMaker's words);
- ``modelmon.json``: what SageMaker has no place for: the join's counts, each checked
  metric's state and noise margin, what SageMaker's rule alone would say, and the estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.ingest.executor import Executor
from analyzer.ingest.model_quality_files import Pairs
from analyzer.ingest.model_quality_map import joined_pairs_or_spilled
from analyzer.ingest.model_quality_spill import Spilled, on_disk_note
from analyzer.ingest.model_quality_spilled import estimate_spilled, evaluate_spilled
from analyzer.ingest.remote_files import CaptureFile
from analyzer.ingest.table_readers import InputError
from analyzer.monitors.model_quality.estimate import (
    Calibrator,
    Estimate,
    agreement,
    estimate_binary,
)
from analyzer.monitors.model_quality.evaluate import WindowResult, evaluate_window
from analyzer.monitors.model_quality.records import Encoder
from analyzer.store.model_quality_baseline import (
    ModelQualityBaseline,
    load_model_quality_baseline,
)
from analyzer.store.report_files import ReportFolder, report_folder, subfolder, write_reports
from modelmon.config import ModelmonConfig, ModelQualityConfig

__all__ = ["REPORT_SUBFOLDER", "ModelQualityStop", "analyze_model_quality"]

REPORT_SUBFOLDER = "model_quality"


class ModelQualityStop(Exception):
    """The pass cannot go on: ``code`` is the exit code (as ``batch._Stop``)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _baseline(mq: ModelQualityConfig, code: int) -> ModelQualityBaseline:
    """The baseline as the service reads it (one reader), but all of it is needed here."""
    loaded = load_model_quality_baseline(mq)
    if loaded.constraints is None:
        raise ModelQualityStop(code, str(loaded.info["error"]))
    if loaded.statistics_problem is not None:
        hint = "create it with `modelmon baseline --config CONFIG --model-quality --data …`"
        raise ModelQualityStop(code, f"{loaded.statistics_problem}; {hint}")
    if not mq.estimate:
        loaded.calibrator = None
    return loaded


def _estimate(baseline: ModelQualityBaseline, rows: list[Any]) -> dict[str, Estimate] | None:
    """The label-free estimate over every prediction of the window (labelled or not), from
    ``rows`` = [probabilities or None, predictions] (the model's, or score ≥ threshold),
    taken out of the list: the estimate drops each once used, so the caller must hold no
    other reference (``estimate._sums``: at a million predictions, the pass's peak)."""
    if baseline.calibrator is None or rows[0] is None or rows[0].size == 0:
        return None
    return estimate_binary(rows.pop(0), rows.pop(0), baseline.calibrator)


def _number(value: float) -> float | str:
    return "NaN" if math.isnan(value) else value


def _modelmon_document(
    result: WindowResult,
    pairs: Pairs,
    estimate: dict[str, Estimate] | None,
    calibrator: Calibrator | None,
    window: tuple[datetime, datetime],
) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    for name, d in result.decisions.items():
        metrics[name] = {
            "value": _number(d.value),
            "threshold": d.threshold,
            "comparison_operator": d.operator,
            "margin": _number(d.margin),
            "warning_margin": _number(d.warning_margin),
            "state": d.state,
            "sagemaker_violation": d.sagemaker_violation,
        }
    doc: dict[str, Any] = {
        "version": 1,
        "window": {"start": window[0].isoformat(), "end": window[1].isoformat()},
        "state": result.state,
        "labels": pairs.counts.to_json() if pairs.counts is not None else {},
        "bad_lines": {"count": pairs.bad.count, "shown": pairs.bad.shown},
        "metrics": metrics,
    }
    if estimate is not None and calibrator is not None:
        estimated: dict[str, Any] = {}
        for name, e in estimate.items():
            entry = result.metrics.get(name)
            realized = entry.get("value") if isinstance(entry, dict) else None
            deviation = entry.get("standard_deviation") if isinstance(entry, dict) else None
            item: dict[str, Any] = {"value": _number(e.value), "low": _number(e.low),
                                    "high": _number(e.high)}  # fmt: skip
            if isinstance(realized, float) and result.labels > 0:
                spread = deviation if isinstance(deviation, float) else math.nan
                item["agrees_with_realized"] = agreement(e, realized, spread)
            estimated[name] = item
        doc["estimated"] = {
            "trusted": calibrator.trusted,
            "reason": calibrator.reason,
            "metrics": estimated,
        }
    return doc


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def analyze_model_quality(
    config: ModelmonConfig,
    files: Sequence[CaptureFile],
    ground_truth: Path | str,
    start: datetime | None,
    end: datetime | None,
    *,
    no_baseline: int,
    no_data: int,
    tick: Any = None,
    out: str | None = None,
    executor: Executor | None = None,
) -> tuple[datetime, datetime, ReportFolder]:
    """Evaluate the window; write the reports; print a summary. Returns the window and folder.
    ``files`` and ``ground_truth`` may be remote (URLs); ``out``: a report URL
    (:func:`~analyzer.store.report_files.report_folder`); ``executor``: where the capture
    files are read (the map; default: this process)."""
    mq = config.analyzer.model_quality
    assert mq is not None
    baseline = _baseline(mq, no_baseline)
    assert baseline.constraints is not None and baseline.constraints_doc is not None
    encoder = Encoder(mq.problem_type, mq.probability_threshold_attribute)
    window = (
        start.timestamp() if start is not None else -math.inf,
        end.timestamp() if end is not None else math.inf,
    )
    try:
        joined = joined_pairs_or_spilled(
            mq,
            encoder,
            files,
            ground_truth,
            window=window,
            tick=tick,
            output=config.analyzer.payload.output,
            arrow=config.analyzer.arrow,
            max_line_bytes=config.analyzer.max_line_bytes,
            executor=executor,
            memory_rows=mq.batch_memory_rows,
        )
    except InputError as exc:
        raise ModelQualityStop(no_data, str(exc)) from exc
    on_disk = None
    if isinstance(joined, Spilled):
        with joined.spill:  # the temporary files go, also on error
            result, pairs, estimate = _spilled(config, mq, joined, baseline, encoder)
            predictions = joined.predictions
        on_disk = on_disk_note(mq.batch_memory_rows)
    else:
        predictions = int(joined.all_predictions.size)
        held = [joined]
        del joined  # the labelled rows go before the estimate (``_in_memory``)
        result, pairs, estimate = _in_memory(config, mq, held, baseline, encoder)
    span = pairs.time_range
    if span is None:
        first = f" (first: {pairs.bad.shown[0]})" if pairs.bad.shown else ""
        raise ModelQualityStop(
            no_data, f"no prediction decoded from {len(files)} capture files{first}"
        )
    if end is None:
        end = _hour(datetime.fromtimestamp(span[1], UTC)) + timedelta(hours=1)
    if start is None:
        start = _hour(datetime.fromtimestamp(span[0], UTC))
    folder = subfolder(report_folder(config, end, out), REPORT_SUBFOLDER)
    write_reports(
        folder,
        {
            "statistics.json": result.statistics(),
            "constraints.json": baseline.constraints_doc,
            "constraint_violations.json": {"violations": result.violations},
            "modelmon.json": _modelmon_document(
                result, pairs, estimate, baseline.calibrator, (start, end)
            ),
        },
    )
    summary = _summary(result, pairs, estimate, predictions, folder)
    print(summary if on_disk is None else f"{summary}\n{on_disk}", flush=True)
    return start, end, folder


def _in_memory(
    config: ModelmonConfig,
    mq: ModelQualityConfig,
    held: list[Pairs],
    baseline: ModelQualityBaseline,
    encoder: Encoder,
) -> tuple[WindowResult, Pairs, dict[str, Estimate] | None]:
    """Today's path: the pairs in memory (``evaluate_window``, ``estimate_binary``), taken
    out of ``held`` (no other reference: the arrays go once used)."""
    assert baseline.constraints is not None
    pairs = held.pop()
    if pairs.time_range is None:  # nothing decoded: the caller stops
        return WindowResult(mq.problem_type, 0, {}), pairs, None
    result = evaluate_window(
        mq.problem_type,
        pairs.labels,
        pairs.predictions,
        pairs.probabilities,
        baseline.constraints,
        baseline.baseline,
        false_alarm_rate=config.analyzer.false_alarm_rate,
        min_labels=mq.min_labels,
        r2_convention=mq.r2_convention,
        classes=pairs.class_names(encoder),
    )
    # the labelled rows are done with, and every row goes into the estimate: ``pairs`` keeps
    # only its counts (memory: docs/model-quality.md, "The batch join")
    rows = [pairs.all_probabilities, pairs.all_predictions]
    empty = np.zeros(0, np.int8)
    pairs = replace(pairs, labels=empty, predictions=empty, probabilities=None,
                    all_probabilities=None, all_predictions=empty)  # fmt: skip
    return result, pairs, _estimate(baseline, rows)


def _spilled(
    config: ModelmonConfig,
    mq: ModelQualityConfig,
    spilled: Spilled,
    baseline: ModelQualityBaseline,
    encoder: Encoder,
) -> tuple[WindowResult, Pairs, dict[str, Estimate] | None]:
    """The spill path: the pairs on disk, in blocks (``model_quality_spilled``)."""
    assert baseline.constraints is not None
    empty = np.zeros(0, np.int8)
    pairs = Pairs(empty, empty, None, spilled.counts, spilled.bad, time_range=spilled.time_range)
    if spilled.time_range is None:
        return WindowResult(mq.problem_type, 0, {}), pairs, None
    classes = encoder.class_names() if mq.problem_type == "MulticlassClassification" else None
    result = evaluate_spilled(
        mq,
        spilled,
        baseline.constraints,
        baseline.baseline,
        false_alarm_rate=config.analyzer.false_alarm_rate,
        classes=classes,
    )
    return result, pairs, estimate_spilled(spilled, baseline.calibrator)


def _summary(
    result: WindowResult,
    pairs: Pairs,
    estimate: dict[str, Estimate] | None,
    predictions: int,
    folder: ReportFolder,
) -> str:
    lines = [f"model quality: {result.state}, {result.labels:,} labelled of {predictions:,}"
             " predictions in the window"]  # fmt: skip
    if pairs.counts is not None:
        c = pairs.counts
        lines.append(
            f"  labels: {c.matched:,} matched, {c.unmatched:,} without a prediction (in this "
            f"window or not captured), {c.duplicate_labels:,} duplicates (first kept)"
        )
    if pairs.bad.count:
        lines.append(f"  skipped {pairs.bad.count:,} lines that could not be used:")
        lines += [f"    {shown}" for shown in pairs.bad.shown[:5]]
    for name, d in result.decisions.items():
        flag = " (SageMaker's rule: violation)" if d.sagemaker_violation else ""
        lines.append(f"  {name:<22} {d.value:.4f}  threshold {d.threshold:.4f}  {d.state}{flag}")
    if estimate is not None:
        shown = ", ".join(
            f"{name} {e.value:.4f} [{e.low:.4f}, {e.high:.4f}]" for name, e in estimate.items()
        )
        lines.append(f"  estimated without labels: {shown}")
    lines.append(f"  wrote {folder}")
    if result.violations:
        lines.append(f"  {len(result.violations)} violations")
    return "\n".join(lines)
