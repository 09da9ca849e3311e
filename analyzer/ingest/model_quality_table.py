"""Reading a model-quality table for ``modelmon baseline --model-quality``: CSV or JSONL.

A CSV with a header or JSON Lines whose prediction, probability and label columns the config's
attributes name. A line that cannot be used stops the run with :class:`InputError` naming the
file and the line (a baseline built around a broken file is worse than none). Lines are read
in bounded pieces: a line over ``max_line_bytes`` (``analyzer.max_line_bytes``, not counting
its ``\n``) is never held whole, it stops the run as a line that cannot be used.

Memory: past ``memory_rows`` (``analyzer.model_quality.batch_memory_rows``, a row counting as
a prediction and a label) the rows read so far and every later one go to the batch join's
:class:`~analyzer.ingest.model_quality_spill.Sink` on disk, each row its own key (its number,
spread over the 64 bits so the partitions are even), and the caller evaluates the
:class:`~analyzer.ingest.model_quality_spill.Spilled` pairs as a capture folder's past the
budget: the same metrics, memory flat in rows.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from analyzer.ingest.capture_files import (
    DEFAULT_MAX_LINE_BYTES,
    TooLarge,
    block_lines,
    read_pieces,
)
from analyzer.ingest.model_quality_files import CHUNK, BadLines, Tick, numbered_lines, too_long
from analyzer.ingest.model_quality_map import value_type
from analyzer.ingest.model_quality_spill import Sink, Spilled
from analyzer.ingest.remote_files import CaptureFile, opener_of
from analyzer.ingest.table_readers import InputError, csv_read_errors
from analyzer.monitors.model_quality.pairs import Columns
from analyzer.monitors.model_quality.records import Attribute, BadValue, Encoder

__all__ = ["TableAttributes", "read_table"]


def _text_lines(path: CaptureFile, limit: int) -> Iterator[str]:
    """A table's lines as text (gzip when it ends in ``.gz``), each with its line end; a line
    over ``limit`` bytes stops the run with :class:`InputError` naming the file and line.
    ``path`` may be a :class:`RemoteFile` (a table behind a storage URL)."""
    number = 0
    name, opener = opener_of(path)
    for piece in read_pieces(name, 0, limit, opener):
        if isinstance(piece, TooLarge):
            raise InputError(f"{path}: line {number + 1}: {too_long(limit)}")
        for line in block_lines(piece):
            number += 1
            yield line.decode("utf-8")


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
    path: CaptureFile,
    fmt: str,
    attributes: TableAttributes,
    encoder: Encoder,
    tick: Tick | None = None,
    *,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    memory_rows: int | None = None,
) -> Columns | Spilled:
    """Columns ``label``, ``prediction``, ``probability`` of a CSV (with a header) or JSONL;
    past ``memory_rows`` the rows on disk (see the module doc; the caller closes
    ``Spilled.spill``).

    Raises :class:`InputError` naming the file and line of the first row that cannot be used
    (a line over ``max_line_bytes``, ``analyzer.max_line_bytes``, too: it is never held
    whole), and, for a missing column, the attribute and the columns the file has.
    """
    out = Columns({"label": np.float64, "prediction": np.float64, "probability": np.float64})
    has_scores = encoder.problem_type == "BinaryClassification" and attributes.probability
    table = _Table(out, Sink(value_type(encoder.problem_type), memory_rows, bool(has_scores)))
    rows: list[tuple[float, float, float]] = []
    attributes, numbered = _table_rows(path, fmt, attributes, max_line_bytes)
    try:
        for number, row in numbered:
            try:
                rows.append(_table_row(row, attributes, encoder))
            except BadValue as exc:
                raise InputError(f"{path}: line {number}: {exc}") from exc
            if len(rows) >= CHUNK:
                table.append(rows)
                rows = []
                if tick is not None:
                    tick(table.rows)
        if rows:
            table.append(rows)
        if table.rows == 0:
            raise InputError(f"{path}: no data rows")
        if table.sink.spill is not None:
            return table.sink.finish(BadLines(), None)
    except BaseException:
        if table.sink.spill is not None:
            table.sink.spill.close()
        raise
    return out


# row numbers times an odd constant (a bijection of the 64-bit integers): distinct keys
# whose top bits, which choose the partition, are spread evenly (Fibonacci hashing)
_SPREAD = np.uint64(0x9E3779B97F4A7C15)


class _Table:
    """The rows read: in ``out`` (today's in-memory path) until they pass the sink's budget,
    then in the sink on disk, each row a prediction and a label under the same key."""

    def __init__(self, out: Columns, sink: Sink) -> None:
        self.out, self.sink, self.rows = out, sink, 0

    def append(self, rows: list[tuple[float, float, float]]) -> None:
        columns: tuple[Any, ...] = tuple(zip(*rows, strict=True))
        labels, predictions, scores = columns
        start = self.rows
        self.rows += len(rows)
        if self.sink.spill is None:
            self.out.append(label=labels, prediction=predictions, probability=scores)
            budget = self.sink.budget
            if budget is None or 2 * self.out.rows <= budget:
                return
            start = 0  # past the budget: every row held goes to the sink, in order
            labels, predictions = self.out.take("label"), self.out.take("prediction")
            scores = self.out.take("probability")
        keys = (np.arange(start, self.rows, dtype=np.uint64) * _SPREAD).view(np.int64)
        values = self.sink.values
        self.sink.add_predictions(keys, np.asarray(predictions, values), np.asarray(scores))
        self.sink.add_labels(keys, np.asarray(labels, values))


def _table_rows(
    path: CaptureFile, fmt: str, attributes: TableAttributes, limit: int
) -> tuple[TableAttributes, Iterator[tuple[int, Any]]]:
    """The attributes as the rows need them (CSV: column indexes) and the numbered rows."""
    if fmt == "csv":
        return _csv_attributes(path, attributes, limit), _csv_rows(path, limit)
    return attributes, _jsonl_rows(path, attributes, limit)


def _jsonl_rows(
    path: CaptureFile, attributes: TableAttributes, limit: int
) -> Iterator[tuple[int, Any]]:
    try:
        for number, line in numbered_lines(path, BadLines(), limit, strict=True):
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise InputError(f"{path}: line {number}: not valid JSON ({exc})") from exc
            if number == 1:
                _check_keys(path, row, attributes)
            yield number, row
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from exc


def _check_keys(path: CaptureFile, row: Any, attributes: TableAttributes) -> None:
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


def _csv_header(path: CaptureFile, limit: int) -> list[str]:
    header = next(csv.reader(_text_lines(path, limit)), None)
    if header is None:
        raise InputError(f"{path}: the file is empty (expected a header row)")
    return [name.strip() for name in header]


def _csv_attributes(path: CaptureFile, attributes: TableAttributes, limit: int) -> TableAttributes:
    """Each attribute as the index of its column (a name looked up in the header)."""
    names = _guard(path, lambda: _csv_header(path, limit))
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


def _guard(path: CaptureFile, read: Callable[[], Any]) -> Any:
    with csv_read_errors(path):
        return read()


def _csv_rows(path: CaptureFile, limit: int) -> Iterator[tuple[int, Any]]:
    reader = csv.reader(_text_lines(path, limit))
    rows = iter(lambda: _guard(path, lambda: next(reader, None)), None)
    next(rows, None)  # the header
    for row in rows:
        if row:
            yield reader.line_num, row
