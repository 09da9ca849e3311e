"""Reading model-quality inputs for batch runs: tables, capture folders, ground-truth folders.

Every reader streams its files in bounded reads and keeps per row only numbers in numpy
columns (:class:`~analyzer.monitors.model_quality.pairs.Columns`), so memory is a few bytes
per row whatever the files hold; the join itself is :func:`~.pairs.join`.

- :func:`read_table`: a CSV with a header or JSON Lines whose prediction, probability and
  label columns the config's attributes name. A line that cannot be used stops the run with
  :class:`InputError` naming the file and the line (a baseline built around a broken file is
  worse than none).
- :func:`read_labels`: a ground-truth folder, SageMaker's ``{yyyy}/{mm}/{dd}/{hh}/*.jsonl``
  (any ``*.jsonl`` / ``*.jsonl.gz`` below it, read in path order: hour by hour; behind a URL,
  those of the ``yyyy/mm/dd/hh`` folders: :func:`remote_folder_files`);
- :func:`read_predictions`: capture files. For both folders a bad line is skipped and
  counted, and the first :data:`BAD_LINES_SHOWN` are kept with file and line number for the
  summary: one broken line in a month of labels must not lose the month.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import orjson

from analyzer.ingest import model_quality_arrow as arrow
from analyzer.ingest.capture_files import TruncatedCapture, is_sealed, read_blocks
from analyzer.ingest.remote_files import CaptureFile, opener_of, remote_folder_files
from analyzer.ingest.table_readers import InputError
from analyzer.monitors.model_quality.pairs import Columns, JoinCounts, join
from analyzer.monitors.model_quality.records import (
    Attribute,
    BadValue,
    Encoder,
    capture_record,
    ground_truth_record,
)
from modelmon.config import ModelQualityConfig

__all__ = [
    "BAD_LINES_SHOWN",
    "BadLines",
    "Pairs",
    "TableAttributes",
    "folder_files",
    "joined_pairs",
    "read_labels",
    "read_predictions",
    "read_table",
]

BAD_LINES_SHOWN = 20
CHUNK = 65_536
Tick = Callable[[int], None]
FloatArray = npt.NDArray[np.float64]


@dataclass
class BadLines:
    """Lines skipped: all counted, the first :data:`BAD_LINES_SHOWN` kept with their place."""

    count: int = 0
    shown: list[str] = field(default_factory=list)

    def add(self, path: CaptureFile, line: int, error: str) -> None:
        self.count += 1
        if len(self.shown) < BAD_LINES_SHOWN:
            self.shown.append(f"{path}: line {line}: {error}")


def _text(path: Path) -> IO[str]:
    """A table as text (gzip when it ends in ``.gz``). Not line-limited yet: the data-quality
    table readers keep to ``analyzer.max_line_bytes``, this one does not (a known gap)."""
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.GzipFile(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def folder_files(folder: Path) -> list[Path]:
    """Sealed ``*.jsonl`` / ``*.jsonl.gz`` files under ``folder`` (or the file), path order."""
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_sealed(p))


def _lines(path: CaptureFile, bad: BadLines) -> Iterator[tuple[int, bytes]]:
    """``(line number, line)`` of every non-blank line; a gzip cut short is one bad line."""
    number = 0
    name, opener = opener_of(path)
    try:
        for block in read_blocks(name, opener=opener):
            for line in block.split(b"\n"):
                number += 1
                if line.strip():
                    yield number, line
            number -= 1  # the split after a block's last newline is not a line
    except TruncatedCapture:
        bad.add(path, number + 1, "the compressed file is cut short here")
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc


def read_labels(
    folder: Path | str,
    attribute: Attribute | None,
    encoder: Encoder,
    bad: BadLines,
    tick: Tick | None = None,
    arrow_mode: str = "csv",
) -> Columns:
    """Columns ``key`` (hash) and ``label`` of every ground-truth record under ``folder``.

    ``arrow_mode``: ``analyzer.arrow`` (``off``: no Arrow fast path)."""
    files = folder_files(folder) if isinstance(folder, Path) else remote_folder_files(folder)
    if not files:
        raise InputError(f"{folder}: no ground-truth files (*.jsonl, *.jsonl.gz) found")
    out = Columns({"key": np.int64, "label": np.float64})
    keys: list[int] = []
    labels: list[float] = []
    fast = arrow.available(encoder, arrow_mode)
    for path in files:
        whole = None  # a URL's file goes line by line
        if fast and isinstance(path, Path):
            whole = arrow.arrow_labels(path, attribute, encoder)
        if whole is not None:  # after the rows of earlier files: file order is kept
            out.append(key=keys, label=labels)
            keys, labels = [], []
            out.append(key=whole[0], label=whole[1])
            if tick is not None:
                tick(out.rows)
            continue
        for number, line in _lines(path, bad):
            try:
                key, value = ground_truth_record(line, attribute)
                labels.append(encoder.label(value))
            except BadValue as exc:
                bad.add(path, number, str(exc))
                continue
            keys.append(hash(key))
            if len(keys) >= CHUNK:
                out.append(key=keys, label=labels)
                keys, labels = [], []
                if tick is not None:
                    tick(out.rows)
    out.append(key=keys, label=labels)
    return out


def read_predictions(
    files: Sequence[CaptureFile],
    inference: Attribute | None,
    probability: Attribute | None,
    encoder: Encoder,
    bad: BadLines,
    *,
    window: tuple[float, float] | None = None,
    tick: Tick | None = None,
    columns: Sequence[str] = (),
    arrow_mode: str = "csv",
) -> Columns:
    """Columns ``key``, ``time``, ``prediction``, ``probability`` (NaN: none) of capture lines.

    ``columns``: the names of a CSV output's fields (``payload.output.columns``).

    ``window``: ``[start, end)`` in epoch seconds of inference time; records outside are
    passed over (not counted as bad).
    """
    out = Columns(
        {"key": np.int64, "time": np.float64, "prediction": np.float64, "probability": np.float64}
    )
    rows: list[tuple[int, float, float, float]] = []
    nan = float("nan")
    fast = arrow.available(encoder, arrow_mode)
    for path in files:
        whole = (
            arrow.arrow_predictions(path, inference, probability, encoder, list(columns))
            if fast and isinstance(path, Path)
            else None
        )
        if whole is not None:
            keys, times, values, scores = whole
            if window is not None:
                inside = (times >= window[0]) & (times < window[1])
                keys, times, values, scores = (
                    keys[inside],
                    times[inside],
                    values[inside],
                    scores[inside],
                )
            _append_predictions(out, rows)  # after the rows of earlier files: file order kept
            rows = []
            out.append(key=keys, time=times, prediction=values, probability=scores)
            if tick is not None:
                tick(out.rows)
            continue
        for number, line in _lines(path, bad):
            try:
                record = capture_record(line, inference, probability, columns)
                if window is not None and not window[0] <= record.inference_time < window[1]:
                    continue
                score = (
                    encoder.probability(record.probability)
                    if record.probability is not None
                    else nan
                )
                value = encoder.prediction(record.prediction, score)
            except BadValue as exc:
                bad.add(path, number, str(exc))
                continue
            rows.append((hash(record.key), record.inference_time, value, score))
            if len(rows) >= CHUNK:
                _append_predictions(out, rows)
                rows = []
                if tick is not None:
                    tick(out.rows)
    _append_predictions(out, rows)
    return out


def _append_predictions(out: Columns, rows: list[tuple[int, float, float, float]]) -> None:
    if not rows:
        out.append(key=[], time=[], prediction=[], probability=[])
        return
    keys, times, values, scores = zip(*rows, strict=True)
    out.append(key=keys, time=times, prediction=values, probability=scores)


@dataclass(frozen=True)
class TableAttributes:
    """Where a table's label, prediction and probability are (None: not there)."""

    label: Attribute
    prediction: Attribute | None
    probability: Attribute | None

    def named(self) -> list[tuple[str, Attribute]]:
        out = [("ground_truth_attribute", self.label)]
        if self.prediction is not None:
            out.append(("inference_attribute", self.prediction))
        if self.probability is not None:
            out.append(("probability_attribute", self.probability))
        return out


def _table_row(
    row: Any, attributes: TableAttributes, encoder: Encoder
) -> tuple[float, float, float]:
    label = encoder.label(attributes.label.pick(row))
    score = float("nan")
    if attributes.probability is not None:
        score = encoder.probability(attributes.probability.pick(row))
    raw = attributes.prediction.pick(row) if attributes.prediction is not None else None
    return label, encoder.prediction(raw, score), score


def read_table(
    path: Path, fmt: str, attributes: TableAttributes, encoder: Encoder, tick: Tick | None = None
) -> Columns:
    """Columns ``label``, ``prediction``, ``probability`` of a CSV (with a header) or JSONL.

    Raises :class:`InputError` naming the file and line of the first row that cannot be used,
    and, for a missing column, the attribute and the columns the file has.
    """
    out = Columns({"label": np.float64, "prediction": np.float64, "probability": np.float64})
    rows: list[tuple[float, float, float]] = []
    attributes, numbered = _table_rows(path, fmt, attributes)
    for number, row in numbered:
        try:
            rows.append(_table_row(row, attributes, encoder))
        except BadValue as exc:
            raise InputError(f"{path}: line {number}: {exc}") from exc
        if len(rows) >= CHUNK:
            _append_table(out, rows)
            rows = []
            if tick is not None:
                tick(out.rows)
    if rows:
        _append_table(out, rows)
    if out.rows == 0:
        raise InputError(f"{path}: no data rows")
    return out


def _append_table(out: Columns, rows: list[tuple[float, float, float]]) -> None:
    labels, predictions, scores = zip(*rows, strict=True)
    out.append(label=labels, prediction=predictions, probability=scores)


def _table_rows(
    path: Path, fmt: str, attributes: TableAttributes
) -> tuple[TableAttributes, Iterator[tuple[int, Any]]]:
    """The attributes as the rows need them (CSV: column indexes) and the numbered rows."""
    if fmt == "csv":
        return _csv_attributes(path, attributes), _csv_rows(path)
    return attributes, _jsonl_rows(path, attributes)


def _jsonl_rows(path: Path, attributes: TableAttributes) -> Iterator[tuple[int, Any]]:
    try:
        for number, line in _lines(path, BadLines()):
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise InputError(f"{path}: line {number}: not valid JSON ({exc})") from exc
            if number == 1:
                _check_keys(path, row, attributes)
            yield number, row
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from exc


def _check_keys(path: Path, row: Any, attributes: TableAttributes) -> None:
    """The first row of a JSONL file has every named key, or the error lists the keys found."""
    if not isinstance(row, dict):
        return
    for what, attribute in attributes.named():
        try:
            attribute.pick(row)
        except BadValue:
            found = ", ".join(map(str, row)) or "none"
            raise InputError(
                f"{path}: {what} {attribute.name!r} is not in the records (keys found: {found})"
            ) from None


def _csv_header(path: Path) -> list[str]:
    with _text(path) as handle:
        header = next(csv.reader(handle), None)
    if header is None:
        raise InputError(f"{path}: the file is empty (expected a header row)")
    return [name.strip() for name in header]


def _csv_attributes(path: Path, attributes: TableAttributes) -> TableAttributes:
    """Each attribute as the index of its column (a name looked up in the header)."""
    names = _guard(path, lambda: _csv_header(path))
    where = {name: j for j, name in enumerate(names)}

    def index(what: str, attribute: Attribute | None) -> Attribute | None:
        if attribute is None:
            return None
        column = attribute.index if attribute.index is not None else where.get(attribute.name)
        if column is None or column >= len(names):
            raise InputError(
                f"{path}: {what} {attribute.name!r} is not a column of the header "
                f"(columns found: {', '.join(names)})"
            )
        return Attribute.of(str(column))

    label = index("ground_truth_attribute", attributes.label)
    assert label is not None
    return TableAttributes(
        label,
        index("inference_attribute", attributes.prediction),
        index("probability_attribute", attributes.probability),
    )


def _guard(path: Path, read: Callable[[], Any]) -> Any:
    try:
        return read()
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except csv.Error as exc:
        raise InputError(f"{path}: malformed CSV: {exc}") from exc
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc


def _csv_rows(path: Path) -> Iterator[tuple[int, Any]]:
    handle = _guard(path, lambda: _text(path))
    with handle:
        reader = csv.reader(handle)
        rows = iter(lambda: _guard(path, lambda: next(reader, None)), None)
        next(rows, None)  # the header
        for row in rows:
            if row:
                yield reader.line_num, row


@dataclass(frozen=True)
class Pairs:
    """Joined labels, predictions and probabilities (None: no probability attribute)."""

    labels: FloatArray
    predictions: FloatArray
    probabilities: FloatArray | None
    counts: JoinCounts | None  # None: a table, nothing to join
    bad: BadLines
    # every prediction read (labelled or not): inference times, probabilities (None: none)
    all_times: FloatArray = field(default_factory=lambda: np.zeros(0))
    all_probabilities: FloatArray | None = None
    all_predictions: FloatArray = field(default_factory=lambda: np.zeros(0))

    def truth_and_guess(self, encoder: Encoder) -> tuple[Any, Any]:
        """The arrays ``evaluate_window`` takes: class names for a multiclass problem."""
        if encoder.problem_type != "MulticlassClassification":
            return self.labels, self.predictions
        names = np.array(encoder.class_names(), dtype=object)
        return (
            names[self.labels.astype(np.int64)].tolist(),
            names[self.predictions.astype(np.int64)].tolist(),
        )


def _attribute(value: str | None) -> Attribute | None:
    return Attribute.of(value) if value is not None else None


def joined_pairs(
    mq: ModelQualityConfig,
    encoder: Encoder,
    capture_files: Sequence[CaptureFile],
    ground_truth: Path | str,
    *,
    window: tuple[float, float] | None = None,
    tick: Any = None,
    output_columns: Sequence[str] = (),
    arrow: str = "csv",
) -> Pairs:
    """Read the capture files and the ground-truth folder and join them in memory."""
    bad = BadLines()
    inference, probability = (
        _attribute(mq.inference_attribute),
        _attribute(mq.probability_attribute),
    )
    predictions = read_predictions(
        capture_files,
        inference,
        probability,
        encoder,
        bad,
        window=window,
        tick=tick,
        columns=output_columns,
        arrow_mode=arrow,
    )
    labels = read_labels(
        ground_truth, _attribute(mq.ground_truth_attribute), encoder, bad, tick, arrow
    )
    joined = join(predictions.column("key"), labels.column("key"))  # type: ignore[arg-type]
    every_score: Any = predictions.column("probability")
    has_scores = mq.probability_attribute is not None
    return Pairs(
        labels.column("label")[joined.label_rows],  # type: ignore[arg-type]
        predictions.column("prediction")[joined.prediction_rows],  # type: ignore[arg-type]
        every_score[joined.prediction_rows] if has_scores else None,
        joined.counts,
        bad,
        predictions.column("time"),  # type: ignore[arg-type]
        every_score if has_scores else None,
        predictions.column("prediction"),  # type: ignore[arg-type]
    )
