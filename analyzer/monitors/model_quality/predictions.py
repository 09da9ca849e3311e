"""What the model-quality join keeps of each captured record: key, time, prediction, input row.

Works on the decoder's output (:class:`~analyzer.decoding.codecs.DecodedBatch`), so a
capture file is decoded once for both monitors. SageMaker's attributes are applied to the
record's output row as the decoder found it (``analyzer.payload.output``):

- a column index (``"0"``) is the output column at that position (named as the decoder names
  it: ``payload.output.columns[i]``, else ``prediction``, ``prediction_1``, …);
- a name is the output column of that name (a key of a JSON output object);
- anything else is a JMESPath expression searched in the output row as an object
  (``{"label": 1, "scores": [0.1, 0.9]}`` with ``scores[1]``).

The prediction is ``inference_attribute``; without it, for BinaryClassification with a
``probability_attribute``, ``1`` when the probability is at least
``probability_threshold_attribute`` and ``0`` below; otherwise the first output column. A
probability that is a list (one per class) is kept as its largest value. The input row is
kept as a compact JSON object (name → value, as decoded) of at most
``max_row_bytes``; a longer one is left out and counted (``row_too_large``), the prediction
is kept.

One prediction per record: a record whose body held several rows is skipped and counted
(``several_rows``): a SageMaker ground-truth record labels one ``eventId``. Every record
that cannot give a prediction is counted by reason, never raised. Pure.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import jmespath
import numpy as np
import orjson

from analyzer.decoding.codecs import DecodedBatch
from analyzer.decoding.columns import output_name
from analyzer.decoding.value_types import PreSplit
from analyzer.monitors.model_quality.labels import MAX_TEXT, as_text
from modelmon.config import ModelQualityConfig, PayloadSide

__all__ = ["MAX_KEY", "MAX_ROW_BYTES", "Extracted", "PredictionExtractor", "PredictionRow"]

MAX_KEY = 1024
MAX_ROW_BYTES = 4096
# key, event_id, inference_id, inference_time (epoch s), prediction, probability, input row
PredictionRow = tuple[str, str | None, str | None, float, str, float | None, bytes | None]
Getter = Callable[[Mapping[str, list[Any]], int], Any]
Column = Callable[[Mapping[str, list[Any]]], list[Any] | None]  # a whole column, if it is one


@dataclass
class Extracted:
    """The predictions of one decoded batch, and the records left out by reason."""

    rows: list[PredictionRow] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    rows_too_large: int = 0

    def add(self, other: Extracted) -> None:
        self.rows.extend(other.rows)
        self.skipped.update(other.skipped)
        self.rows_too_large += other.rows_too_large


def _probability(value: Any) -> float | None:
    if isinstance(value, list):
        numbers = [p for p in map(_probability, value) if p is not None]
        return max(numbers) if numbers else None
    if value is None or isinstance(value, bool | dict):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _out_of_range(value: Any) -> bool:
    """A single number (or numeric text) that is no probability: infinite, NaN, or outside
    [0, 1]. Such a record is skipped as ``bad_probability``, as the batch reader rejects it
    (``Encoder.probability``); a list is a per-class vector and keeps its largest value."""
    if value is None or isinstance(value, bool | dict | list):
        return False
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return False
    return not 0.0 <= number <= 1.0


def _getter(attribute: str, output: PayloadSide) -> Getter:
    """How to read ``attribute`` from the output columns at a row."""
    if attribute.isdigit():
        index = int(attribute)
        name = output.columns[index] if index < len(output.columns) else output_name(index)
        return lambda columns, row: columns[name][row] if name in columns else None
    path = jmespath.compile(attribute)

    def get(columns: Mapping[str, list[Any]], row: int) -> Any:
        if attribute in columns:
            return columns[attribute][row]
        try:
            return path.search({name: values[row] for name, values in columns.items()})
        except jmespath.exceptions.JMESPathError:
            return None

    return get


def _column(attribute: str, output: PayloadSide) -> Column:
    """The output column ``attribute`` reads whole, when it reads one (None: per row)."""
    if attribute.isdigit():
        index = int(attribute)
        name = output.columns[index] if index < len(output.columns) else output_name(index)
    else:
        name = attribute
    return lambda columns: columns.get(name)


def _first_column(columns: Mapping[str, list[Any]]) -> list[Any] | None:
    return next(iter(columns.values()), None)


def _first(columns: Mapping[str, list[Any]], row: int) -> Any:
    for values in columns.values():
        return values[row]
    return None


def _lists(columns: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The record decoders' columns (values in record order). Arrow's pre-split columns have
    lost that order: the service's ingest never hands them over."""
    out: dict[str, list[Any]] = {}
    for name, values in columns.items():
        if isinstance(values, PreSplit):
            raise TypeError(f"column {name!r} is pre-split (Arrow): no per-record values")
        out[name] = values if isinstance(values, list) else list(values)
    return out


class PredictionExtractor:
    """Turns decoded capture records into the join's prediction rows (see the module doc)."""

    def __init__(
        self,
        config: ModelQualityConfig,
        output: PayloadSide,
        *,
        max_row_bytes: int = MAX_ROW_BYTES,
    ) -> None:
        self.threshold = config.probability_threshold_attribute
        self.max_row_bytes = max_row_bytes
        self._prediction: Getter | None = (
            _getter(config.inference_attribute, output) if config.inference_attribute else None
        )
        self._probability: Getter | None = (
            _getter(config.probability_attribute, output) if config.probability_attribute else None
        )
        self._prediction_column: Column = (
            _column(config.inference_attribute, output)
            if config.inference_attribute
            else _first_column
        )
        self._probability_column: Column | None = (
            _column(config.probability_attribute, output) if config.probability_attribute else None
        )
        self._from_probability = (
            self._prediction is None
            and self._probability is not None
            and config.problem_type == "BinaryClassification"
        )

    def extract(self, batch: DecodedBatch, times: Sequence[float] | None = None) -> Extracted:
        """One prediction per decoded record of ``batch`` (the bad ones are the decoder's);
        ``times``: the records' inference times as epoch seconds, when the caller has them."""
        if times is None or len(times) != batch.n_records:
            times = list(map(datetime.timestamp, batch.inference_times))
        out = Extracted()
        outputs = _lists(batch.predictions)
        blobs = self._rows(_lists(batch.columns), batch.n_rows, out)
        if batch.record_rows and set(batch.record_rows) == {1}:
            return self._single_rows(batch, outputs, blobs, out, times)
        probabilities = self._probability
        getter = self._prediction or _first
        threshold, from_probability = self.threshold, self._from_probability
        event_ids, inference_ids = batch.event_ids, batch.inference_ids
        append = out.rows.append
        row = 0
        for i, n in enumerate(batch.record_rows):
            first, row = row, row + n
            if n != 1:
                out.skipped["several_rows" if n else "no_rows"] += 1
                continue
            event_id = event_ids[i]
            inference_id = inference_ids[i]
            key = inference_id or event_id
            if len(key) > MAX_KEY:
                out.skipped["key_too_long"] += 1
                continue
            probability = None
            if probabilities is not None:
                value = probabilities(outputs, first)
                if _out_of_range(value):
                    out.skipped["bad_probability"] += 1
                    continue
                probability = _probability(value)
            prediction: str | None
            if from_probability:
                if probability is None:
                    out.skipped["no_probability"] += 1
                    continue
                prediction = "1" if probability >= threshold else "0"
            else:
                prediction = as_text(getter(outputs, first))
            if prediction is None:
                out.skipped["no_prediction"] += 1
                continue
            if len(prediction) > MAX_TEXT:
                out.skipped["prediction_too_long"] += 1
                continue
            append((key, event_id, inference_id, times[i], prediction, probability,
                    blobs[first]))  # fmt: skip
        return out

    def _single_rows(
        self,
        batch: DecodedBatch,
        outputs: dict[str, list[Any]],
        blobs: list[bytes | None],
        out: Extracted,
        times: Sequence[float],
    ) -> Extracted:
        """The common case, a column at a time: one row per record (no Python object per
        row but the row tuple that SQLite takes). The same rows and counts as the record
        loop of :meth:`extract`."""
        n = len(batch.record_rows)
        from_probability = self._from_probability
        probabilities: list[float | None] = [None] * n
        bad: list[bool] | None = None  # per row: a number that is no probability
        if self._probability is not None:
            probabilities, bad = self._probabilities(outputs, n)
        predictions: list[str | None]
        if from_probability:
            predictions = _thresholded(probabilities, self.threshold)
        else:
            values = _column_values(self._prediction_column, self._prediction, outputs, n)
            predictions = list(map(as_text, values))
        keys = [i or e for i, e in zip(batch.inference_ids, batch.event_ids, strict=True)]
        rows = zip(
            keys, batch.event_ids, batch.inference_ids, times, predictions, probabilities, blobs,
            strict=True,
        )  # fmt: skip
        if (
            bad is None
            and None not in predictions
            and max(map(len, keys)) <= MAX_KEY
            and max(map(len, predictions)) <= MAX_TEXT  # type: ignore[arg-type]
        ):
            out.rows.extend(rows)
            return out
        skipped, append = out.skipped, out.rows.append
        for index, row in enumerate(rows):
            key, prediction = row[0], row[4]
            if bad is not None and bad[index]:
                skipped["bad_probability"] += 1
            elif prediction is None and from_probability:
                skipped["no_probability"] += 1
            elif len(key) > MAX_KEY:
                skipped["key_too_long"] += 1
            elif prediction is None:
                skipped["no_prediction"] += 1
            elif len(prediction) > MAX_TEXT:
                skipped["prediction_too_long"] += 1
            else:
                append(row)
        return out

    def _probabilities(
        self, outputs: dict[str, list[Any]], n: int
    ) -> tuple[list[float | None], list[bool] | None]:
        """The probability of each row (:func:`_probability`), a column at once when it is
        a column of numbers or numeric texts (``float`` on each, as :func:`_probability`),
        and which rows hold a number that is no probability (:func:`_out_of_range`; None
        when none does)."""
        values = _column_values(self._probability_column, self._probability, outputs, n)
        if set(map(type, values)) <= {str, float, int}:
            try:
                numbers = np.fromiter(map(float, values), dtype=np.float64, count=n)
            except (ValueError, OverflowError):
                pass
            else:
                found: list[float | None] = numbers.tolist()
                inside = (numbers >= 0.0) & (numbers <= 1.0)  # False for NaN
                if bool(inside.all()):
                    return found, None
                return found, (~inside).tolist()
        bad = list(map(_out_of_range, values))
        return list(map(_probability, values)), bad if any(bad) else None

    def _rows(
        self, columns: Mapping[str, Sequence[Any]], n: int, out: Extracted
    ) -> list[bytes | None]:
        """Each input row as a JSON object (the whole batch at once), None when too large.

        Each column is encoded with one ``orjson.dumps`` and split into its values
        (:func:`_encoded`), and the objects are filled into one ``%b`` template: the same bytes
        as ``orjson.dumps`` of each row's dict. A column of other values (lists, objects) or
        one orjson refuses (an integer over 64 bits) sends the batch to the row-by-row path,
        where such a row alone is left out.
        """
        if not columns or not n:
            return [None] * n
        parts: list[bytes] = []
        encoded: list[list[bytes]] = []
        for name, values in columns.items():
            found = _encoded(values)
            if found is None:
                return self._rows_one_by_one(columns, out)
            quote, column = found
            parts.append(orjson.dumps(name).replace(b"%", b"%%") + (b':"%b"' if quote else b":%b"))
            encoded.append(column)
        template = b"{%b}" % b",".join(parts)
        blobs: list[bytes | None] = list(map(template.__mod__, zip(*encoded, strict=True)))
        limit = self.max_row_bytes
        if max(map(len, blobs)) > limit:  # type: ignore[arg-type]
            blobs = [b if len(b) <= limit else None for b in blobs]  # type: ignore[arg-type]
            out.rows_too_large += blobs.count(None)
        return blobs

    def _rows_one_by_one(
        self, columns: Mapping[str, Sequence[Any]], out: Extracted
    ) -> list[bytes | None]:
        names = list(columns)
        dumps, limit = orjson.dumps, self.max_row_bytes
        blobs: list[bytes | None] = []
        for values in zip(*columns.values(), strict=True):
            try:
                blob: bytes | None = dumps(dict(zip(names, values, strict=True)))
            except TypeError:  # e.g. an integer over 64 bits: the row is left out
                blob = None
            if blob is None or len(blob) > limit:
                out.rows_too_large += 1
                blob = None
            blobs.append(blob)
        return blobs


_SCALARS = frozenset((int, float, bool, type(None)))


def _encoded(values: Sequence[Any]) -> tuple[bool, list[bytes]] | None:
    """A column's values each as its JSON text, from one ``orjson.dumps`` of the column:
    ``(True, insides)`` for a column of strings (each value's text between its quotes),
    ``(False, texts)`` for numbers, booleans and nulls; None for anything else.

    The split is exact: inside a JSON string every ``"`` is escaped, so ``","`` occurs in
    the encoded list only between two strings; and a number, ``true``, ``false`` or
    ``null`` holds no comma.
    """
    kinds = set(map(type, values))
    try:
        if kinds == {str}:
            return True, orjson.dumps(values)[2:-2].split(b'","')
        if kinds <= _SCALARS:
            return False, orjson.dumps(values)[1:-1].split(b",")
    except TypeError:  # an integer over 64 bits
        return None
    return None


def _thresholded(probabilities: list[float | None], threshold: float) -> list[str | None]:
    """``"1"`` at or above ``threshold``, ``"0"`` below, None without a probability."""
    return [None if p is None else "1" if p >= threshold else "0" for p in probabilities]


def _column_values(
    column: Column | None, getter: Getter | None, outputs: dict[str, list[Any]], n: int
) -> list[Any]:
    """The attribute's value at each of ``n`` rows: its column when it is one, else per row."""
    found = column(outputs) if column is not None else None
    if found is not None:
        return found
    get = getter or _first
    return [get(outputs, row) for row in range(n)]
