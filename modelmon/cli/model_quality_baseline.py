"""``modelmon baseline --model-quality``: SageMaker's model-quality baseline, and the calibrator.

Input, as the config's ``analyzer.model_quality`` attributes name it:

- a CSV with a header or JSON Lines holding the label (``ground_truth_attribute``) and the
  prediction (``inference_attribute``) and/or probability (``probability_attribute``): in
  memory, or past ``analyzer.model_quality.batch_memory_rows`` on disk like a capture
  folder's pairs (each row a pair);
- or a capture folder plus ``--ground-truth DIR`` (SageMaker's ground-truth records), joined
  on the capture's ``inferenceId``, else its ``eventId``: in memory, or past
  ``analyzer.model_quality.batch_memory_rows`` on disk as ``analyze --once`` joins (the same
  metrics, the calibrator fitted on a seeded sample of at most half the budget's pairs).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from analyzer.ingest.capture_files import DEFAULT_MAX_LINE_BYTES
from analyzer.ingest.executor import Executor
from analyzer.ingest.model_quality_files import BadLines, Pairs, folder_files
from analyzer.ingest.model_quality_map import joined_pairs_or_spilled
from analyzer.ingest.model_quality_spill import Spilled, on_disk_note
from analyzer.ingest.model_quality_spilled import calibration_pairs, evaluate_spilled
from analyzer.ingest.model_quality_table import TableAttributes, read_table
from analyzer.ingest.remote_files import CaptureFile, RemoteFolder
from analyzer.ingest.table_readers import InputError, capture_files_under, infer_format
from analyzer.monitors.model_quality.calibration_sample import sample_pairs
from analyzer.monitors.model_quality.documents import metric_section, suggest_constraints
from analyzer.monitors.model_quality.estimate import fit_calibrator
from analyzer.monitors.model_quality.evaluate import evaluate_window
from analyzer.monitors.model_quality.pairs import JoinCounts
from analyzer.monitors.model_quality.records import Attribute, Encoder
from modelmon.cli.baseline import source_of, write_documents
from modelmon.config import ModelmonConfig, ModelQualityConfig

__all__ = ["Built", "built_on_disk", "calibration_document", "run_model_quality_baseline"]

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
) -> Pairs | Spilled:
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
    columns = read_table(data, fmt, attributes, encoder, tick, max_line_bytes=limit,
                         memory_rows=mq.batch_memory_rows)  # fmt: skip
    if isinstance(columns, Spilled):  # past the budget: every row a pair, on disk
        return columns
    scores = columns.column("probability")
    return Pairs(
        columns.column("label"),
        columns.column("prediction"),
        scores if mq.probability_attribute is not None else None,  # type: ignore[arg-type]
        None,
        BadLines(),
    )


def calibration_document(
    mq: ModelQualityConfig,
    labels: npt.NDArray[Any],
    scores: FloatArray | None,
    *,
    sampled_from: int | None = None,
) -> dict[str, Any] | None:
    """The isotonic calibrator the label-free estimate uses (``Calibrator.to_json``);
    ``sampled_from``: the labelled pairs ``scores`` and ``labels`` are a sample of (its
    ``rows``, the sample's size, is what the estimate's band is widened by)."""
    if mq.problem_type != "BinaryClassification" or scores is None or labels.size == 0:
        return None
    document = fit_calibrator(scores, labels.astype(np.int64)).to_json()
    if sampled_from is not None:
        document["sampled_from"] = sampled_from
    return document


@dataclass
class Built:
    """What the baseline found: its statistics, calibration and the join's counts."""

    statistics: dict[str, Any]
    calibration: dict[str, Any] | None
    labelled: int
    counts: JoinCounts | None
    bad: BadLines
    on_disk: bool = False


def _in_memory(config: ModelmonConfig | None, mq: ModelQualityConfig, encoder: Encoder,
               pairs: Pairs) -> Built:  # fmt: skip
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
    calibration = calibration_document(mq, pairs.labels, pairs.probabilities)
    labelled = len(pairs.labels)
    return Built(result.statistics(), calibration, labelled, pairs.counts, pairs.bad)


def built_on_disk(config: ModelmonConfig | None, mq: ModelQualityConfig, encoder: Encoder,
                  spilled: Spilled) -> Built:  # fmt: skip
    """The join on disk (``analyze --once``'s, :mod:`analyzer.ingest.model_quality_spilled`):
    the same statistics as in memory (binary, multiclass: to the bit); the calibrator fitted
    on a sample of at most :func:`sample_pairs` of the budget's pairs."""
    classes = encoder.class_names() if mq.problem_type == "MulticlassClassification" else None
    result = evaluate_spilled(
        mq,
        spilled,
        {},
        None,
        false_alarm_rate=config.analyzer.false_alarm_rate if config is not None else 0.01,
        classes=classes,
    )
    n = spilled.counts.matched
    calibration = None
    if mq.problem_type == "BinaryClassification" and mq.probability_attribute is not None:
        scores, labels = calibration_pairs(spilled, sample_pairs(mq.batch_memory_rows))
        sampled = n if scores.size < n else None
        calibration = calibration_document(mq, labels, scores, sampled_from=sampled)
    return Built(result.statistics(), calibration, n, spilled.counts, spilled.bad, True)


def _summary(
    data: Path | str,
    built: Built,
    mq: ModelQualityConfig,
    written: list[Path | str],
) -> str:
    lines = [f"Model-quality baseline from {data}: {built.labelled:,} labelled predictions"]
    if built.counts is not None:
        c = built.counts
        lines.append(
            f"  join: {c.matched:,} matched, {c.unmatched:,} labels without a prediction, "
            f"{c.unlabelled:,} predictions without a label, {c.duplicate_labels:,} duplicate "
            f"labels (first kept), {c.duplicate_predictions:,} duplicate predictions"
        )
    if built.on_disk:
        lines.append(on_disk_note(mq.batch_memory_rows))
    if built.bad.count:
        lines.append(f"  skipped {built.bad.count:,} lines that could not be used:")
        lines += [f"    {shown}" for shown in built.bad.shown]
    section = built.statistics[metric_section(mq.problem_type)]
    for name, entry in section.items():
        if isinstance(entry, dict) and "value" in entry and not name.endswith("_classifier"):
            value = entry["value"]
            text = value if isinstance(value, str) else f"{value:.4f}"
            lines.append(f"  {name:<22} {text}")
    calibration = built.calibration
    if calibration is not None:
        trust = "trusted" if calibration["trusted"] else f"not trusted: {calibration['reason']}"
        lines.append(f"  calibration for the label-free estimate: {trust}")
        if "sampled_from" in calibration:
            lines.append(
                f"  (fitted on a seeded sample of {calibration['rows']:,} of the"
                f" {calibration['sampled_from']:,} labelled predictions)"
            )
    lines.append("Wrote " + ", ".join(map(str, written)))
    return "\n".join(lines)


def _targets(mq: ModelQualityConfig, out: Path | str | None) -> tuple[Path | str, Path | str]:
    if isinstance(out, str):
        return f"{out}/statistics.json", f"{out}/constraints.json"
    if out is not None:
        return out / "statistics.json", out / "constraints.json"
    return mq.baseline.statistics, mq.baseline.constraints


def _build(
    config: ModelmonConfig | None,
    mq: ModelQualityConfig,
    encoder: Encoder,
    data: Path | str,
    fmt: str | None,
    ground_truth: Path | str | None,
    progress: Any,
    executor: Executor | None,
) -> Built:
    """Read, join and evaluate; :class:`InputError` when the input cannot be used."""
    limit = config.analyzer.max_line_bytes if config is not None else DEFAULT_MAX_LINE_BYTES
    _need_output(mq)
    source = source_of(data)
    fmt = fmt or infer_format(source, limit)
    if fmt != "capture":
        if ground_truth is not None:
            raise InputError(
                "--ground-truth goes with a capture folder as --data; a table holds its labels"
            )
        if isinstance(source, RemoteFolder):
            raise InputError(f"{data}: a folder holds capture files, not a {fmt} table")
        pairs = _table_pairs(mq, encoder, source, fmt, progress.tick, limit)
        if isinstance(pairs, Spilled):
            with pairs.spill:  # the temporary files go, also on error
                built = built_on_disk(config, mq, encoder, pairs)
            built.counts = None  # a table's rows are its pairs: no join to count
            return built
        if len(pairs.labels) == 0:
            raise InputError(f"{data}: no prediction could be joined to a label ({{}})")
        return _in_memory(config, mq, encoder, pairs)
    if ground_truth is None:
        raise InputError(f"{data}: a capture folder needs --ground-truth DIR (the labels to join)")
    files = folder_files(source) if isinstance(source, Path) else capture_files_under(source)
    if not files:
        raise InputError(f"{data}: no capture files (*.jsonl, *.jsonl.gz) found")
    joined = joined_pairs_or_spilled(
        mq,
        encoder,
        files,
        ground_truth,
        tick=progress.tick,
        output=config.analyzer.payload.output if config is not None else None,
        arrow=config.analyzer.arrow if config is not None else "csv",
        max_line_bytes=limit,
        executor=executor,
        memory_rows=mq.batch_memory_rows,
    )
    if isinstance(joined, Spilled):
        with joined.spill:  # the temporary files go, also on error
            if joined.counts.matched == 0:
                counts = joined.counts.to_json()
                raise InputError(f"{data}: no prediction could be joined to a label ({counts})")
            return built_on_disk(config, mq, encoder, joined)
    if len(joined.labels) == 0:
        counts = joined.counts.to_json() if joined.counts is not None else {}
        raise InputError(f"{data}: no prediction could be joined to a label ({counts})")
    return _in_memory(config, mq, encoder, joined)


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
    folder's files are read (the map of :func:`joined_pairs_or_spilled`; default: this
    process)."""
    mq = config.analyzer.model_quality if config is not None else None
    if mq is None:
        print(
            "modelmon baseline: --model-quality needs --config with an analyzer.model_quality "
            "section (problem_type and the attributes)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    encoder = Encoder(mq.problem_type, mq.probability_threshold_attribute)
    try:
        built = _build(config, mq, encoder, data, fmt, ground_truth, progress, executor)
    except InputError as exc:
        print(f"modelmon baseline: {exc}", file=sys.stderr)
        return EXIT_USAGE
    statistics = built.statistics
    constraints = suggest_constraints(mq.problem_type, statistics)
    if built.calibration is not None:
        statistics["modelmon"] = {"calibration": built.calibration}
    stats_path, cons_path = _targets(mq, out)
    written = [stats_path, cons_path]
    failed = write_documents([(stats_path, statistics), (cons_path, constraints)])
    if failed is not None:
        print(f"modelmon baseline: {failed}", file=sys.stderr)
        return EXIT_FAILED
    print(_summary(data, built, mq, written))
    if built.labelled < 200:
        print(
            f"modelmon baseline: note: {built.labelled} labelled rows: standard_deviation "
            "is NaN below 200 (SageMaker's rule)",
            file=sys.stderr,
        )
    return EXIT_OK
