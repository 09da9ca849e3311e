"""The batch join of model quality on the executor seam: a map over capture and label files.

:func:`joined_pairs_or_spilled` is ``modelmon analyze --once --ground-truth`` and ``modelmon
baseline --model-quality`` from a capture folder: one map (:func:`read_file`, one task a file) reads
the capture files and then the ground-truth files on the executor, so both kinds are read in
parallel; the reduce (class codes, the keys' hashes when the workers could not make them, the
join) runs here in file order, so every backend gives the same pairs.

The join key's 64-bit hash is Python's ``hash``, whose secret differs between interpreters:
this process and the forked workers of :class:`~.executor.LocalProcesses` share it, so they
hash in the map (8 bytes a key come back, and the work is spread); other workers (Dask) hand
the key strings back to be hashed here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.ingest import model_quality_arrow
from analyzer.ingest.capture_files import DEFAULT_MAX_LINE_BYTES
from analyzer.ingest.executor import Executor, InProcess, LocalProcesses
from analyzer.ingest.model_quality_files import (
    BAD_LINES_SHOWN,
    BadLines,
    Pairs,
    label_files,
    read_label_files,
    read_predictions,
)
from analyzer.ingest.model_quality_spill import Sink, Spilled
from analyzer.ingest.remote_files import CaptureFile
from analyzer.monitors.model_quality.extraction import OutputReader
from analyzer.monitors.model_quality.pairs import Columns, join, key_hashes
from analyzer.monitors.model_quality.records import Attribute, BadValue, Encoder
from modelmon.config import ModelQualityConfig, PayloadSide

__all__ = [
    "FileColumns",
    "ReadTask",
    "joined_pairs_or_spilled",
    "read_file",
    "value_type",
]

PREDICTIONS = "predictions"
LABELS = "labels"


def _attribute(value: str | None) -> Attribute | None:
    return Attribute.of(value) if value is not None else None


@dataclass(frozen=True)
class ReadTask:
    """What the map over the files needs; plain values, so it pickles to any worker."""

    problem_type: str
    threshold: float
    inference: str | None
    probability: str | None
    ground_truth: str | None
    window: tuple[float, float] | None
    output: PayloadSide  # payload.output: how the extraction's fallback splits a body
    arrow_mode: str
    max_line_bytes: int
    hash_keys: bool  # the worker shares this process's ``hash`` (see the module doc)


@dataclass
class FileColumns:
    """The map's result for one file: its columns (``key``: hashes, or the key strings when
    the task does not hash), the class names by code of its own encoder (multiclass), and its
    bad lines."""

    columns: Columns
    classes: list[str]
    bad: BadLines
    path: str = ""  # the file, as the bad lines name it


def read_file(task: ReadTask, item: tuple[str, CaptureFile]) -> FileColumns:
    """The map: the predictions of a capture file or the labels of a ground-truth file (a
    fresh encoder: class codes are the file's; the run's limits on classes are the reduce's,
    :func:`_run_codes`, which meets them in the run's order)."""
    kind, path = item
    encoder = Encoder(task.problem_type, task.threshold, one_file=True)  # type: ignore[arg-type]
    bad = BadLines()
    if kind == LABELS:
        columns = read_label_files(
            [path],
            _attribute(task.ground_truth),
            encoder,
            bad,
            arrow_mode=task.arrow_mode,
            max_line_bytes=task.max_line_bytes,
            hash_keys=task.hash_keys,
        )
    else:
        quality = ModelQualityConfig(
            problem_type=task.problem_type,  # type: ignore[arg-type]
            inference_attribute=task.inference,
            probability_attribute=task.probability,
            probability_threshold_attribute=task.threshold,
        )
        columns = read_predictions(
            [path],
            OutputReader(quality, task.output),
            encoder,
            bad,
            window=task.window,
            arrow_mode=task.arrow_mode,
            max_line_bytes=task.max_line_bytes,
            hash_keys=task.hash_keys,
        )
    return FileColumns(columns, encoder.class_names(), bad, str(path))


def _run_codes(
    values: Any, classes: list[str], encoder: Encoder, what: str, bad: BadLines, path: str
) -> Any:
    """A file's class codes as the run's (in the order of first appearance, as one reader
    going through the files gives them); NaN for a class the run's encoder refuses (past
    ``MAX_CLASSES`` classes, or a confusion matrix over ``MAX_MATRIX_BYTES``): its rows are
    counted by the caller, and each such class is shown once in ``bad`` with its row count."""
    codes = np.empty(len(classes))
    refused: list[tuple[int, str]] = []
    for code, name in enumerate(classes):
        try:
            codes[code] = encoder.label(name, what)
        except BadValue as exc:
            codes[code] = np.nan
            refused.append((code, str(exc)))
    file_codes = values.astype(np.int64)
    if refused:
        rows = np.bincount(file_codes, minlength=len(classes))
        for code, error in refused[: max(0, BAD_LINES_SHOWN - len(bad.shown))]:
            bad.shown.append(f"{path}: {int(rows[code]):,} rows: {error}")
    return codes[file_codes]


def value_type(problem_type: str) -> type[np.generic]:
    """The narrowest exact type of a label or prediction: 0/1 (int8), a class code below
    ``MAX_CLASSES`` (int16), or a number (float64)."""
    if problem_type == "BinaryClassification":
        return np.int8
    if problem_type == "MulticlassClassification":
        return np.int16
    return np.float64


def _reduce(
    results: Iterable[FileColumns],
    predictions: int,
    encoder: Encoder,
    bad: BadLines,
    tick: Any,
    sink: Sink,
) -> tuple[float, float] | None:
    """The first ``predictions`` results are capture files, the rest ground-truth files: each
    kind's columns into ``sink`` in file order, keys hashed, class codes made the run's,
    values in their narrowest exact type; returns the first and last inference time (the
    times are not kept)."""
    first, last = math.inf, -math.inf
    for index, result in enumerate(results):
        columns = result.columns
        is_label = index >= predictions
        values = columns.column("label" if is_label else "prediction")
        keep: Any = slice(None)
        if result.classes:  # multiclass: the file's codes to the run's
            what = "label" if is_label else "prediction"
            values = _run_codes(values, result.classes, encoder, what, bad, result.path)
            keep = ~np.isnan(values)
            bad.count += int(values.size - keep.sum())  # classes the run refused
        bad.extend(result.bad)
        keys = columns.column("key")[keep]
        if keys.dtype == np.object_:
            keys = key_hashes(keys.tolist())
        values = np.asarray(values[keep], sink.values)
        if is_label:
            sink.add_labels(keys, values)
        else:
            times = columns.column("time")[keep]
            if times.size:
                first, last = min(first, float(times.min())), max(last, float(times.max()))
            sink.add_predictions(keys, values, columns.column("probability")[keep])
        if tick is not None:
            tick(sink.label_rows if is_label else sink.prediction_rows)
    return (first, last) if first <= last else None


def joined_pairs_or_spilled(
    mq: ModelQualityConfig,
    encoder: Encoder,
    capture_files: Sequence[CaptureFile],
    ground_truth: Path | str,
    *,
    window: tuple[float, float] | None = None,
    tick: Any = None,
    output: PayloadSide | None = None,
    arrow: str = "csv",
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    executor: Executor | None = None,
    memory_rows: int | None = None,
) -> Pairs | Spilled:
    """Read the capture files and the ground-truth folder and join them in memory; a line
    over ``max_line_bytes`` is a bad line (skipped, counted with its file and number).
    ``memory_rows``: past this many rows (predictions and labels together) the join goes
    to disk (:mod:`.model_quality_spill`; the caller closes ``Spilled.spill``).

    The files are one map on ``executor`` (default: this process), one task a file
    (:func:`read_file`): the capture files, then the ground-truth files; the reduce runs
    here in file order, so every backend gives the same pairs."""
    executor = executor or InProcess()
    truth_files = label_files(ground_truth)
    task = ReadTask(
        encoder.problem_type,
        encoder.threshold,
        mq.inference_attribute,
        mq.probability_attribute,
        mq.ground_truth_attribute,
        window,
        output if output is not None else PayloadSide(),
        arrow,
        max_line_bytes,
        isinstance(executor, InProcess | LocalProcesses),
    )
    items = [(PREDICTIONS, f) for f in capture_files] + [(LABELS, f) for f in truth_files]
    if isinstance(executor, LocalProcesses):
        model_quality_arrow.preload(encoder, arrow)
    bad = BadLines()
    results = executor.map(partial(read_file, task), items)
    binary_scores = (encoder.problem_type == "BinaryClassification"
                     and mq.probability_attribute is not None)  # fmt: skip
    sink = Sink(value_type(encoder.problem_type), memory_rows, binary_scores)
    try:
        span = _reduce(results, len(capture_files), encoder, bad, tick, sink)
        if sink.spill is not None:
            return sink.finish(bad, span)
    except BaseException:
        if sink.spill is not None:
            sink.spill.close()
        raise
    predictions, labels = sink.predictions, sink.labels
    has_scores = mq.probability_attribute is not None
    every_score: Any = predictions.take("probability") if has_scores else None
    every_prediction: Any = predictions.take("prediction")
    # the keys go into the join and die there (sorted in place to count the distinct ones)
    joined = join(predictions.take("key"), labels.take("key"), consume=True)  # type: ignore[arg-type]
    rows = joined.prediction_rows
    return Pairs(
        labels.take("label")[joined.label_rows],
        every_prediction[rows],
        every_score[rows] if has_scores else None,
        joined.counts,
        bad,
        all_probabilities=every_score,
        all_predictions=every_prediction,
        time_range=span,
    )
