"""``modelmon baseline --model-quality``: SageMaker's model-quality baseline, and the calibrator.

Input, as the config's ``analyzer.model_quality`` attributes name it:

- a CSV with a header or JSON Lines holding the label (``ground_truth_attribute``) and the
  prediction (``inference_attribute``) and/or probability (``probability_attribute``);
- or a capture folder plus ``--ground-truth DIR`` (SageMaker's ground-truth records), joined
  in memory on the capture's ``inferenceId``, else its ``eventId``.

Writes ``statistics.json`` and ``constraints.json`` in SageMaker's model-quality schema and,
for a binary classifier with probabilities, the calibration the label-free estimate needs
inside ``statistics.json`` under ``modelmon.calibration`` (where the service reads it;
SageMaker's readers ignore the key). ``--data``, ``--ground-truth`` and ``--out`` may be
storage URLs (``s3://``, ``gs://``, ``file://``), read and written through fsspec. Exit 0
on success, 2 with a message naming the file (and the line) when the input cannot be used,
1 when a file cannot be written.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from analyzer.ingest.capture_files import DEFAULT_MAX_LINE_BYTES
from analyzer.ingest.executor import Executor
from analyzer.ingest.model_quality_files import BadLines, Pairs, folder_files
from analyzer.ingest.model_quality_map import joined_pairs
from analyzer.ingest.model_quality_table import TableAttributes, read_table
from analyzer.ingest.remote_files import CaptureFile, RemoteFolder
from analyzer.ingest.table_readers import InputError, capture_files_under, infer_format
from analyzer.monitors.model_quality.documents import metric_section, suggest_constraints
from analyzer.monitors.model_quality.estimate import fit_calibrator
from analyzer.monitors.model_quality.evaluate import evaluate_window
from analyzer.monitors.model_quality.records import Attribute, Encoder
from modelmon.cli.baseline import source_of, write_documents
from modelmon.config import ModelmonConfig, ModelQualityConfig

__all__ = ["calibration_document", "run_model_quality_baseline"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
FloatArray = npt.NDArray[np.float64]


def _attribute(value: str | None) -> Attribute | None:
    return Attribute.of(value) if value is not None else None


def _need_output(mq: ModelQualityConfig) -> None:
    if mq.probability_attribute is not None and mq.problem_type != "BinaryClassification":
        raise InputError(
            "analyzer.model_quality.probability_attribute is only for BinaryClassification"
        )


def _table_pairs(
    mq: ModelQualityConfig, encoder: Encoder, data: CaptureFile, fmt: str, tick: Any, limit: int
) -> Pairs:
    if mq.ground_truth_attribute is None:
        raise InputError(
            f"{data}: set analyzer.model_quality.ground_truth_attribute to the label's column"
        )
    if mq.inference_attribute is None and mq.probability_attribute is None:
        raise InputError(
            f"{data}: set analyzer.model_quality.inference_attribute (the prediction's column)"
            " or probability_attribute"
        )
    attributes = TableAttributes(
        Attribute.of(mq.ground_truth_attribute),
        _attribute(mq.inference_attribute),
        _attribute(mq.probability_attribute),
    )
    columns = read_table(data, fmt, attributes, encoder, tick, max_line_bytes=limit)
    scores = columns.column("probability")
    return Pairs(
        columns.column("label"),
        columns.column("prediction"),
        scores if mq.probability_attribute is not None else None,  # type: ignore[arg-type]
        None,
        BadLines(),
    )


def calibration_document(
    mq: ModelQualityConfig, labels: FloatArray, scores: FloatArray | None
) -> dict[str, Any] | None:
    """The isotonic calibrator the label-free estimate uses (``Calibrator.to_json``)."""
    if mq.problem_type != "BinaryClassification" or scores is None or labels.size == 0:
        return None
    return fit_calibrator(scores, labels.astype(np.int64)).to_json()


def _summary(
    data: Path | str,
    pairs: Pairs,
    statistics: dict[str, Any],
    mq: ModelQualityConfig,
    written: list[Path | str],
    calibration: dict[str, Any] | None,
) -> str:
    lines = [f"Model-quality baseline from {data}: {len(pairs.labels):,} labelled predictions"]
    if pairs.counts is not None:
        c = pairs.counts
        lines.append(
            f"  join: {c.matched:,} matched, {c.unmatched:,} labels without a prediction, "
            f"{c.unlabelled:,} predictions without a label, {c.duplicate_labels:,} duplicate "
            f"labels (first kept), {c.duplicate_predictions:,} duplicate predictions"
        )
    if pairs.bad.count:
        lines.append(f"  skipped {pairs.bad.count:,} lines that could not be used:")
        lines += [f"    {shown}" for shown in pairs.bad.shown]
    section = statistics[metric_section(mq.problem_type)]
    for name, entry in section.items():
        if isinstance(entry, dict) and "value" in entry and not name.endswith("_classifier"):
            value = entry["value"]
            text = value if isinstance(value, str) else f"{value:.4f}"
            lines.append(f"  {name:<22} {text}")
    if calibration is not None:
        trust = "trusted" if calibration["trusted"] else f"not trusted: {calibration['reason']}"
        lines.append(f"  calibration for the label-free estimate: {trust}")
    lines.append("Wrote " + ", ".join(map(str, written)))
    return "\n".join(lines)


def _targets(mq: ModelQualityConfig, out: Path | str | None) -> tuple[Path | str, Path | str]:
    if isinstance(out, str):
        return f"{out}/statistics.json", f"{out}/constraints.json"
    if out is not None:
        return out / "statistics.json", out / "constraints.json"
    return mq.baseline.statistics, mq.baseline.constraints


def run_model_quality_baseline(
    config: ModelmonConfig | None,
    data: Path | str,
    fmt: str | None,
    ground_truth: Path | str | None,
    out: Path | str | None,
    progress: Any,
    *,
    executor: Executor | None = None,
) -> int:
    """Build the model-quality baseline; returns the exit code. ``executor``: where a capture
    folder's files are read (the map of :func:`joined_pairs`; default: this process)."""
    mq = config.analyzer.model_quality if config is not None else None
    if mq is None:
        print(
            "modelmon baseline: --model-quality needs --config with an analyzer.model_quality "
            "section (problem_type and the attributes)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    encoder = Encoder(mq.problem_type, mq.probability_threshold_attribute)
    limit = config.analyzer.max_line_bytes if config is not None else DEFAULT_MAX_LINE_BYTES
    try:
        _need_output(mq)
        source = source_of(data)
        fmt = fmt or infer_format(source, limit)
        if fmt == "capture":
            if ground_truth is None:
                raise InputError(
                    f"{data}: a capture folder needs --ground-truth DIR (the labels to join)"
                )
            files = (
                folder_files(source) if isinstance(source, Path) else capture_files_under(source)
            )
            if not files:
                raise InputError(f"{data}: no capture files (*.jsonl, *.jsonl.gz) found")
            output = config.analyzer.payload.output if config is not None else None
            arrow = config.analyzer.arrow if config is not None else "csv"
            pairs = joined_pairs(
                mq,
                encoder,
                files,
                ground_truth,
                tick=progress.tick,
                output=output,
                arrow=arrow,
                max_line_bytes=limit,
                executor=executor,
            )
        else:
            if ground_truth is not None:
                raise InputError(
                    "--ground-truth goes with a capture folder as --data; a table holds its labels"
                )
            if isinstance(source, RemoteFolder):
                raise InputError(f"{data}: a folder holds capture files, not a {fmt} table")
            pairs = _table_pairs(mq, encoder, source, fmt, progress.tick, limit)
        if len(pairs.labels) == 0:
            counts = pairs.counts.to_json() if pairs.counts is not None else {}
            raise InputError(f"{data}: no prediction could be joined to a label ({counts})")
    except InputError as exc:
        print(f"modelmon baseline: {exc}", file=sys.stderr)
        return EXIT_USAGE
    result = evaluate_window(
        mq.problem_type,
        pairs.labels,
        pairs.predictions,
        pairs.probabilities,
        {},
        None,
        false_alarm_rate=config.analyzer.false_alarm_rate if config is not None else 0.01,
        min_labels=1,
        r2_convention=mq.r2_convention,
        classes=pairs.class_names(encoder),
    )
    statistics = result.statistics()
    constraints = suggest_constraints(mq.problem_type, statistics)
    calibration = calibration_document(mq, pairs.labels, pairs.probabilities)
    if calibration is not None:
        statistics["modelmon"] = {"calibration": calibration}
    stats_path, cons_path = _targets(mq, out)
    written = [stats_path, cons_path]
    failed = write_documents([(stats_path, statistics), (cons_path, constraints)])
    if failed is not None:
        print(f"modelmon baseline: {failed}", file=sys.stderr)
        return EXIT_FAILED
    print(_summary(data, pairs, statistics, mq, written, calibration))
    if len(pairs.labels) < 200:
        print(
            f"modelmon baseline: note: {len(pairs.labels)} labelled rows: standard_deviation "
            "is NaN below 200 (SageMaker's rule)",
            file=sys.stderr,
        )
    return EXIT_OK
