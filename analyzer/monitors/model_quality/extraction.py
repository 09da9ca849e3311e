"""The one extraction of a capture record's prediction and probability (every path uses it).

The running service's ingest (:class:`~.predictions.PredictionExtractor`), the batch
readers (``analyze --once``, ``modelmon baseline --model-quality`` from a capture folder:
:func:`capture_record`) and their Arrow fast path (which only takes files whose every line
gives here what it gives) read a record's prediction with :class:`OutputReader`. The rule:

1. SageMaker's ``inference_attribute`` / ``probability_attribute`` apply to the record's
   OUTPUT BODY (``captureData.endpointOutput.data``, BASE64 decoded first): a column index
   or a ``payload.output.columns`` name for a CSV body (one row), a key or a JMESPath
   expression for a JSON body, index ``0`` for a scalar body;
2. if that finds nothing and the output decoder (``analyzer.payload.output``) splits the
   body into exactly one row, the attribute applies to that row (a key of the object
   ``{"predictions": [{"label": 1}]}`` holds; an index on an object row is its value at
   that position); a body of several rows gives ``several_rows``.

Without ``inference_attribute`` the prediction is, for BinaryClassification with a
``probability_attribute``, ``1`` when the probability is at least
``probability_threshold_attribute`` and ``0`` below; else column ``0`` of the output. A
probability is a number in [0, 1], or a list of them (one per class) kept as its largest.

A record that gives no prediction raises :class:`Unusable` whose ``reason`` the service
counts (``model_quality:skipped:{reason}``) and the batch readers report with the line
(``{reason}: {detail}``): ``no_output``, ``truncated_output``, ``unreadable_output``,
``several_rows``, ``no_probability``, ``bad_probability``, ``no_prediction``,
``bad_prediction`` (a number that is not finite; not 0/1 for BinaryClassification, not a
number for Regression), ``prediction_too_long``, ``key_too_long``. Pure.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import jmespath
import numpy as np
import orjson

from analyzer.decoding.inference_time import parse_inference_time
from analyzer.decoding.payload_rows import PayloadError, Rows
from analyzer.decoding.side_codec import SideCodec
from analyzer.monitors.model_quality.labels import MAX_TEXT, as_text
from analyzer.monitors.model_quality.records import Attribute, BadValue
from modelmon.config import ModelQualityConfig, PayloadSide

__all__ = ["MAX_KEY", "CaptureRecord", "OutputReader", "Unusable", "capture_record"]

MAX_KEY = 1024  # a join key (inferenceId or eventId) longer than this is refused
Found = tuple[str, float | None]  # the prediction's text, the probability (None: none set)
# per body: the prediction, the probability; the reason of each body that gave none (None: all did)
Many = tuple[list[str | None], list[float | None], list[str | None] | None]


class Unusable(BadValue):
    """A record that gives no prediction; ``reason`` is counted, the message says why."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class _Missing:
    """Nothing found where an attribute points (distinct from a JSON null)."""

    def __init__(self, why: str) -> None:
        self.why = why


def _text_of(data: str, encoding: str) -> str:
    if encoding != "BASE64":
        return data
    try:
        return base64.b64decode(data, validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise Unusable("unreadable_output", f"BASE64 that does not decode to text: {exc}") from exc


def csv_fields(text: str) -> list[str]:
    """The fields of a one-row CSV body without quotes (the fast path splits the same way)."""
    return text.strip().split(",")


def _parsed(text: str, encoding: str) -> Any:
    """The body as a JSON value or a CSV row (a list of fields); a :class:`_Missing` when it
    is neither (several CSV rows, JSON that does not parse)."""
    json = encoding == "JSON" or (encoding == "BASE64" and text.lstrip()[:1] in ("{", "["))
    if json:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return _Missing(f"the body is not JSON ({exc})")
    stripped = text.strip()
    if "\n" in stripped or "\r" in stripped:
        return _Missing("the CSV body holds several rows")
    if '"' in stripped:
        try:
            return next(csv.reader(io.StringIO(stripped)), [])
        except csv.Error as exc:
            return _Missing(f"the CSV body does not parse ({exc})")
    return csv_fields(stripped)


def _pick(attribute: Attribute, value: Any, columns: Sequence[str], row: bool = False) -> Any:
    """What ``attribute`` finds in a parsed body or (``row``) the decoder's row, or a
    :class:`_Missing`. An index picks from an object row by position, not from a body."""
    if isinstance(value, _Missing):
        return value
    if row and attribute.index is not None and isinstance(value, dict):
        values = list(value.values())
        if attribute.index < len(values):
            return values[attribute.index]
        return _Missing(f"{attribute.name}: an object of {len(values)} keys")
    try:
        found = attribute.pick(value, columns)
    except BadValue as exc:
        return _Missing(str(exc))
    except jmespath.exceptions.JMESPathError as exc:
        return _Missing(f"{attribute.name}: {exc}")
    return _Missing(f"{attribute.name}: null") if found is None else found


def _one_row(rows: Rows) -> Any:
    """The decoder's single row as a list of fields or an object."""
    data = rows.data
    if rows.kind == "csv":
        return csv_fields(data[0])
    if rows.kind in ("pos", "obj"):
        return data[0]
    if all(isinstance(name, int) for name in data):  # "cols": positional, or named
        return [data[i][0] for i in sorted(data)]
    return {name: values[0] for name, values in data.items()}


def probability_of(value: Any, name: str) -> float:
    """A probability out of what an attribute found; :class:`Unusable` when it is none."""
    if isinstance(value, _Missing):
        raise Unusable("no_probability", value.why)
    if type(value) is list:
        if not value:
            raise Unusable("bad_probability", f"{name}: an empty list")
        return max(probability_of(v, name) for v in value)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Unusable("bad_probability", f"{name}: {value!r} is not a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise Unusable("bad_probability", f"{name}: {value!r} is not a number") from None
    if not 0.0 <= number <= 1.0:  # False for NaN
        raise Unusable("bad_probability", f"{name}: {value!r} is not between 0 and 1")
    return number


def prediction_of(value: Any, name: str, problem_type: str = "MulticlassClassification") -> str:
    """A prediction's text (:func:`~.labels.as_text`); :class:`Unusable` when it is none:
    nothing, not a single value, a number that is not finite, not ``0``/``1`` for
    BinaryClassification, not a number for Regression, over ``MAX_TEXT`` characters."""
    if isinstance(value, _Missing):
        raise Unusable("no_prediction", value.why)
    text = as_text(value)
    if text is None:
        if isinstance(value, float):
            raise Unusable("bad_prediction", f"{name}: {value!r} is not a finite number")
        raise Unusable("no_prediction", f"{name}: {_kind(value)} is not a value")
    if problem_type == "BinaryClassification":
        if text != "0" and text != "1":
            raise Unusable("bad_prediction", f"{name}: {_kind(value)} is not 0 or 1")
        return text
    if len(text) > MAX_TEXT:
        raise Unusable("prediction_too_long", f"{name}: over {MAX_TEXT} characters")
    if problem_type == "Regression" or (text[:1] in "+-.0123456789iInN" and len(text) < 64):
        try:
            number = float(text)
        except ValueError:
            if problem_type != "Regression":
                return text
            raise Unusable("bad_prediction", f"{name}: {_kind(value)} is not a number") from None
        if not math.isfinite(number):
            raise Unusable("bad_prediction", f"{name}: {value!r} is not a finite number")
    return text


def _kind(value: Any) -> str:
    return "an object" if isinstance(value, dict) else repr(value)[:40]


class OutputReader:
    """The prediction and probability of a record's output body (see the module)."""

    def __init__(self, config: ModelQualityConfig, output: PayloadSide) -> None:
        def attribute(name: str | None) -> Attribute | None:
            return Attribute.of(name) if name is not None else None

        self.inference = attribute(config.inference_attribute)
        self.probability = attribute(config.probability_attribute)
        self.threshold = config.probability_threshold_attribute
        self.problem_type = config.problem_type
        self.from_probability = (
            self.inference is None
            and self.probability is not None
            and config.problem_type == "BinaryClassification"
        )
        self.prediction = None if self.from_probability else self.inference or Attribute.of("0")
        self.columns = tuple(output.columns)
        self.codec = SideCodec(output, output=True)

    def read(self, data: str | None, encoding: str) -> Found:
        """``(prediction, probability)`` of one output body; :class:`Unusable` if none.

        ``data`` None: the record has no usable output, ``encoding`` says why
        (``no_output``, ``truncated_output``)."""
        if data is None:
            raise Unusable(encoding, "the record holds no complete output body")
        encoding = encoding.upper()
        text = _text_of(data, encoding)
        body = _parsed(text, encoding)
        fallback: list[Any] = []  # the decoder's row, made once when first needed

        def find(attribute: Attribute) -> Any:
            found = _pick(attribute, body, self.columns)
            if not isinstance(found, _Missing):
                return found
            if not fallback:
                fallback.append(self._row(text))
            if isinstance(fallback[0], Unusable):
                raise Unusable(fallback[0].reason, f"{found.why}; {fallback[0]}")
            again = _pick(attribute, fallback[0], self.columns, row=True)
            if isinstance(again, _Missing):
                return _Missing(f"{found.why}; in the output decoder's row: {again.why}")
            return again

        probability = None
        if self.probability is not None:
            probability = probability_of(find(self.probability), self.probability.name)
        if self.prediction is None:
            assert probability is not None
            return ("1" if probability >= self.threshold else "0"), probability
        prediction = prediction_of(find(self.prediction), self.prediction.name, self.problem_type)
        return prediction, probability

    def read_many(self, bodies: Sequence[str | None], encodings: Sequence[str]) -> Many:
        """:meth:`read` of every body: the predictions, the probabilities, and each body's
        reason when one gave none (None when all gave one). A batch of one-row CSV bodies
        without quotes goes a column at a time (:meth:`_columns`: the same values)."""
        fast = self._columns(bodies, encodings)
        if fast is not None:
            return fast[0], fast[1], None
        predictions: list[str | None] = []
        probabilities: list[float | None] = []
        reasons: list[str | None] = []
        read = self.read
        for data, encoding in zip(bodies, encodings, strict=True):
            try:
                prediction, probability = read(data, encoding)
            except Unusable as exc:
                predictions.append(None)
                probabilities.append(None)
                reasons.append(exc.reason)
                continue
            predictions.append(prediction)
            probabilities.append(probability)
            reasons.append(None)
        return predictions, probabilities, reasons if any(reasons) else None

    def _index(self, attribute: Attribute) -> int | None:
        if attribute.index is not None:
            return attribute.index
        return self.columns.index(attribute.name) if attribute.name in self.columns else None

    def _columns(
        self, bodies: Sequence[str | None], encodings: Sequence[str]
    ) -> tuple[list[str | None], list[float | None]] | None:
        """:meth:`read_many` a column at a time, when every body is CSV, one row without
        quotes (:meth:`read` then splits each with :func:`csv_fields` too), every attribute
        is a column of every row and every value gives a prediction and probability; else
        None (nothing decided: :meth:`read` takes each body)."""
        n = len(bodies)
        if not n or set(encodings) != {"CSV"}:
            return None
        texts: list[str] = bodies  # type: ignore[assignment]  # CSV: a body, never None
        joined = "".join(texts)
        if '"' in joined or "\n" in joined or "\r" in joined:
            return None
        split: list[list[str]] = []

        def column(attribute: Attribute) -> list[str] | None:
            index = self._index(attribute)
            if index is None:
                return None
            if index == 0 and "," not in joined:
                return list(map(str.strip, texts))
            if not split:
                split.extend(map(csv_fields, texts))
            if min(map(len, split)) <= index:
                return None
            return list(map(itemgetter(index), split))

        probabilities: list[float | None] = [None] * n
        if self.probability is not None:
            values = column(self.probability)
            if values is None:
                return None
            try:
                numbers = np.fromiter(map(float, values), dtype=np.float64, count=n)
            except ValueError:
                return None
            if not bool(((numbers >= 0.0) & (numbers <= 1.0)).all()):  # False for NaN
                return None
            probabilities = numbers.tolist()
        if self.prediction is None:
            threshold = self.threshold
            return ["1" if p >= threshold else "0" for p in probabilities], probabilities  # type: ignore[operator]
        values = column(self.prediction)
        if values is None:
            return None
        name, problem = self.prediction.name, self.problem_type
        try:
            return [prediction_of(value, name, problem) for value in values], probabilities
        except Unusable:
            return None

    def _row(self, text: str) -> Any:
        """The one row the output decoder splits the body into, or an :class:`Unusable`
        (returned, not raised) saying why there is none."""
        try:
            rows = self.codec.body_rows(text)
        except PayloadError as exc:
            return Unusable("unreadable_output", f"the output decoder: {exc}")
        if rows.n != 1:
            return Unusable("several_rows", f"the output decoder finds {rows.n} rows")
        return _one_row(rows)


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    """What model quality needs of one capture record."""

    key: str
    inference_time: float  # epoch seconds
    prediction: str
    probability: float | None  # None when there is no probability attribute


def _epoch(value: Any) -> float:
    if value is None:
        raise BadValue("eventMetadata.inferenceTime is missing")
    try:
        return parse_inference_time(value).timestamp()
    except PayloadError:
        raise BadValue(f"eventMetadata.inferenceTime {value!r} is not ISO-8601") from None


def capture_record(line: bytes, reader: OutputReader) -> CaptureRecord:
    """The join key, inference time, prediction and probability of one capture line
    (:meth:`OutputReader.read` of its output); :class:`BadValue` says what is wrong."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise BadValue(f"not JSON: {exc}") from exc
    if not isinstance(record, dict):
        raise BadValue("a line must be a JSON object")
    metadata = record.get("eventMetadata")
    if not isinstance(metadata, dict):
        raise BadValue("eventMetadata is missing")
    inference_id, event_id = metadata.get("inferenceId"), metadata.get("eventId")
    if not isinstance(event_id, str):
        raise BadValue("eventMetadata.eventId is missing")
    key = inference_id if isinstance(inference_id, str) and inference_id else event_id
    when = _epoch(metadata.get("inferenceTime"))
    if len(key) > MAX_KEY:
        raise Unusable("key_too_long", f"a key over {MAX_KEY} characters")
    capture = record.get("captureData")
    output = capture.get("endpointOutput") if isinstance(capture, dict) else None
    data = output.get("data") if isinstance(output, dict) else None
    extra = record.get("modelmon")
    truncated = extra.get("truncated") if isinstance(extra, dict) else None
    if not isinstance(data, str):
        found = reader.read(None, "no_output")
    elif isinstance(truncated, list | str | dict) and "output" in truncated:
        found = reader.read(None, "truncated_output")
    else:
        encoding = output.get("encoding")  # type: ignore[union-attr]
        found = reader.read(data, encoding if isinstance(encoding, str) else "CSV")
    return CaptureRecord(key, when, found[0], found[1])
