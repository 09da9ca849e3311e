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
number for Regression), ``prediction_too_long``, ``key_too_long``. A line whose envelope is
refused (:func:`~analyzer.decoding.envelope.read_envelope`: ``not_capture_record``,
``bad_inference_time``, ``truncated_input``, …) gives :func:`capture_record` the decoder's
word, as the service's decoder counts it. Pure.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jmespath
import orjson

from analyzer.decoding.envelope import (
    MAX_KEY,
    VERBATIM,
    no_output,
    parse_record,
    read_envelope,
    side_text,
)
from analyzer.decoding.payload_rows import PayloadError, Rows
from analyzer.decoding.side_codec import SideCodec
from analyzer.monitors.model_quality.labels import MAX_TEXT, as_text
from analyzer.monitors.model_quality.records import Attribute, BadValue
from modelmon.config import ModelQualityConfig, PayloadSide

__all__ = ["MAX_KEY", "CaptureRecord", "OutputReader", "Unusable", "capture_record"]

Found = tuple[str, float | None]  # the prediction's text, the probability (None: none set)


class Unusable(BadValue):
    """A record that gives no prediction; ``reason`` is counted, the message says why."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class _Missing:
    """Nothing found where an attribute points (distinct from a JSON null); ``why`` is
    made only when a record is refused (given as a callable when it costs)."""

    __slots__ = ("_why",)

    def __init__(self, why: str | Callable[[], str]) -> None:
        self._why = why

    @property
    def why(self) -> str:
        return self._why if isinstance(self._why, str) else self._why()


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
    """The body as a JSON value or a CSV row (a tuple of fields); a :class:`_Missing` when
    it is neither (several CSV rows, JSON that does not parse)."""
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
            return tuple(next(csv.reader(io.StringIO(stripped)), []))
        except csv.Error as exc:
            return _Missing(f"the CSV body does not parse ({exc})")
    return tuple(csv_fields(stripped))


@dataclass(frozen=True, slots=True)
class _Where:
    """An attribute ready to pick: ``field`` when it is a plain key (JMESPath finds nothing
    more than the key would)."""

    name: str
    index: int | None
    path: Any
    field: bool

    @classmethod
    def of(cls, attribute: Attribute) -> _Where:
        parsed = getattr(attribute.path, "parsed", None)
        field = isinstance(parsed, dict) and parsed.get("type") == "field"
        return cls(attribute.name, attribute.index, attribute.path, field)


def _found(where: _Where, value: Any) -> Any:
    return _Missing(f"{where.name}: null") if value is None else value


def _pick(where: _Where, value: Any, columns: Sequence[str], row: bool = False) -> Any:
    """What ``where`` finds in a parsed body or (``row``) the decoder's row, or a
    :class:`_Missing`: an index picks a CSV field, a list item, a scalar body's ``0`` (and,
    in an object row only, the value at that position); a name picks a key, or a CSV field
    named in ``columns``; anything else is a JMESPath search."""
    if isinstance(value, _Missing):
        return value
    index, kind = where.index, type(value)
    if index is None and kind is not dict and where.name in columns:
        index = columns.index(where.name)  # a named column of a CSV or positional row
    if kind is tuple:  # a CSV row
        if index is None:
            return _Missing(
                f"{where.name}: a name, but the output is a CSV row of {len(value)} fields: "
                "use a column index, or name the columns in analyzer.payload.output.columns"
            )
        return _found(where, value[index]) if index < len(value) else _too_short(where, value)
    if index is not None:
        if kind is list:
            return _found(where, value[index]) if index < len(value) else _too_short(where, value)
        if kind is dict:
            if not row:
                return _Missing(f"{where.name}: a column index, but the body is an object")
            values = list(value.values())
            return _found(where, values[index]) if index < len(values) else _too_short(where, value)
        return _found(where, value) if index == 0 else _too_short(where, [value])
    if kind is dict:
        got = value.get(where.name, _ABSENT)
        if got is not _ABSENT:
            return _found(where, got)
        if where.field:
            return _Missing(lambda: f"{where.name}: not found (keys: {_keys(value)})")
    try:
        return _found(where, where.path.search(value))
    except jmespath.exceptions.JMESPathError as exc:
        return _Missing(f"{where.name}: {exc}")


_ABSENT = object()


def _keys(value: dict[Any, Any]) -> str:
    return ", ".join(list(map(str, value))[:10]) or "none"


def _too_short(where: _Where, value: Any) -> _Missing:
    return _Missing(f"{where.name}: the output has {len(value)} columns")


def _one_row(rows: Rows) -> Any:
    """The decoder's single row as a tuple of CSV fields, a list or an object."""
    data = rows.data
    if rows.kind == "csv":
        return tuple(csv_fields(data[0]))
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
        self.prediction_where = _Where.of(self.prediction) if self.prediction is not None else None
        self.probability_where = (
            _Where.of(self.probability) if self.probability is not None else None
        )

    def read(self, data: str | None, encoding: str) -> Found:
        """``(prediction, probability)`` of one output body; :class:`Unusable` if none.

        ``data`` None: the record has no usable output, ``encoding`` says why
        (``no_output``, ``truncated_output``). A body nested deeper than Python's recursion
        limit (a list of lists of … probabilities, or its message's ``repr``) is
        ``unreadable_output``, never a :class:`RecursionError` out of an ingest."""
        try:
            return self._read(data, encoding)
        except RecursionError:
            raise Unusable("unreadable_output", "the output is nested too deep") from None

    def _read(self, data: str | None, encoding: str) -> Found:
        if data is None:
            raise Unusable(encoding, "the record holds no complete output body")
        encoding = encoding.upper()
        text = _text_of(data, encoding)
        body = _parsed(text, encoding)
        fallback: list[Any] = []  # the decoder's row, made once when first needed
        columns = self.columns

        def find(where: _Where) -> Any:
            found = _pick(where, body, columns)
            if not isinstance(found, _Missing):
                return found
            if not fallback:
                fallback.append(self._row(text, body))
            if isinstance(fallback[0], Unusable):
                raise Unusable(fallback[0].reason, f"{found.why}; {fallback[0]}")
            again = _pick(where, fallback[0], columns, row=True)
            if isinstance(again, _Missing):
                first, second = found, again
                return _Missing(lambda: f"{first.why}; in the output decoder's row: {second.why}")
            return again

        probability = None
        if self.probability_where is not None:
            probability = probability_of(find(self.probability_where), self.probability_where.name)
        if self.prediction_where is None:
            assert probability is not None
            return ("1" if probability >= self.threshold else "0"), probability
        where = self.prediction_where
        return prediction_of(find(where), where.name, self.problem_type), probability

    def _row(self, text: str, body: Any) -> Any:
        """The one row the output decoder splits the body into (from ``body`` when it is
        the parsed JSON the decoder would parse), or an :class:`Unusable` (returned, not
        raised) saying why there is none."""
        codec = self.codec
        try:
            json = codec.format != "csv" and not isinstance(body, tuple | _Missing)
            rows = codec.doc_rows(body) if json else codec.body_rows(text)
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


def capture_record(line: bytes, reader: OutputReader) -> CaptureRecord:
    """The join key, inference time, prediction and probability of one capture line
    (:meth:`OutputReader.read` of its output); :class:`Unusable` says what is wrong, its
    message starting with the reason word the service counts: the envelope's
    (:func:`~analyzer.decoding.envelope.read_envelope`, the decoder's ``bad`` reasons,
    the input side's text included) or the extraction's."""
    try:
        event_id, inference_id, moment, request, response, problem = read_envelope(
            parse_record(line)
        )
        # The decoder refuses a record whose input's text does not decode (bad BASE64,
        # not UTF-8), or whose only side is an output that does not.
        side = request if request is not None else response
        if side is not None and side.get("encoding") not in VERBATIM:
            side_text(side)
    except PayloadError as exc:
        raise Unusable(exc.reason, str(exc).partition(": ")[2]) from None
    key = inference_id or event_id  # Envelope.key
    if len(key) > MAX_KEY:
        raise Unusable("key_too_long", f"a key over {MAX_KEY} characters")
    if response is None:
        found = reader.read(None, no_output(problem))
    else:
        encoding = response.get("encoding")
        found = reader.read(response["data"], encoding if type(encoding) is str else "CSV")
    return CaptureRecord(key, moment.timestamp(), found[0], found[1])
