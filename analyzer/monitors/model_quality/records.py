"""Model-quality values out of records: a prediction, its probability, a label, a join key.

Pure: bytes and parsed JSON in, numbers out; the readers in ``analyzer.ingest`` open the files.

- :class:`Attribute` is SageMaker's ``inference_attribute`` / ``probability_attribute`` /
  ``ground_truth_attribute``: a column index (``"0"``), a column or key name, or a JMESPath
  expression into a JSON body.
- :class:`Encoder` turns what an attribute picked into the float a metric counts: 0/1 for
  BinaryClassification (the prediction from the probability and
  ``probability_threshold_attribute`` when there is no inference attribute), a class code for
  MulticlassClassification (the codebook is shared by predictions and labels), the number
  itself for Regression. A value it cannot use raises :class:`BadValue`, whose message says
  which attribute and what was found.
- :func:`ground_truth_record` reads one JSON line of SageMaker's ground-truth format: the join
  key is its ``eventMetadata.eventId`` (which holds the capture's ``inferenceId`` when it has
  one, else its ``eventId``, as in SageMaker). A capture line's prediction is read by the one
  extraction, :mod:`.extraction`.

The label is read as the service reads it (:class:`~.labels.LabelReader`), and labels and
predictions are compared in the service's one text form (:func:`~.labels.as_text`): a batch
run and the running service agree on what a label is.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jmespath
import orjson

from analyzer.monitors.model_quality.documents import ProblemType
from analyzer.monitors.model_quality.labels import LabelError, LabelReader, as_text

__all__ = [
    "MAX_CLASSES",
    "MAX_FILE_CLASSES",
    "MAX_MATRIX_BYTES",
    "Attribute",
    "BadValue",
    "Encoder",
    "ground_truth_record",
    "json_line",
    "matrix_cell_bytes",
    "matrix_fits",
]

MAX_CLASSES = 1000  # a multiclass label set larger than this is not a classifier's output
# a confusion matrix: no more classes than fit in this much compact JSON (see matrix_cell_bytes)
MAX_MATRIX_BYTES = 16 * 1024 * 1024
# a file's own encoder (the batch's map) leaves the run's limits to the run's encoder, which
# meets the classes in the run's order; it only keeps its codes in int16 and its names (each
# at most MAX_TEXT characters) within ~30 MB: past this a file's rows of a new class are bad
MAX_FILE_CLASSES = 30_000


def matrix_cell_bytes(name: str) -> int:
    """What one class costs a row of the confusion matrix as compact JSON: its name quoted and
    escaped (``\\u0001``: 6 bytes), a colon, a comma and a count of a digit or two; a matrix
    of k classes is about (k + 1) × the sum of these (k rows naming k classes, and the rows'
    own names). ``statistics.json`` is written indented (2 spaces): there a cell takes about
    10 bytes more, so the file's matrix is up to ~2.5× this for short names (1,000 classes of
    9 characters: 16 MB compact, 24 MB as written) and ~1.01× for names of 1,000."""
    return len(orjson.dumps(name)) + 5


def matrix_fits(classes: int, cells: int, budget: int = MAX_MATRIX_BYTES) -> bool:
    """Whether a confusion matrix of ``classes`` classes whose :func:`matrix_cell_bytes` sum
    to ``cells`` fits in ``budget``: k rows each naming the k classes, and the rows' own
    names, so (k + 1) × the sum."""
    return (classes + 1) * cells <= budget


class BadValue(ValueError):
    """A record whose value cannot be used; the message says why."""


@dataclass(frozen=True)
class Attribute:
    """Where a value is: a column index, a column or key name, or a JMESPath expression.

    Examples
    --------
    >>> Attribute.of("1").pick_text("0,0.73", "CSV")
    '0.73'
    >>> Attribute.of("scores[1]").pick_text('{"scores": [0.27, 0.73]}', "JSON")
    0.73
    """

    name: str
    index: int | None
    path: Any = field(compare=False, repr=False)

    @classmethod
    def of(cls, name: str) -> Attribute:
        index = int(name) if name.isdigit() else None
        return cls(name, index, None if index is not None else jmespath.compile(name))

    def pick(self, value: Any, columns: Sequence[str] = ()) -> Any:
        """From a parsed JSON value (an object or a list) or a row of CSV fields.

        A name picks from a list (a CSV row) by its place in ``columns`` (the config's
        ``payload.output.columns`` for a capture's output).
        """
        if self.index is None and isinstance(value, list):
            if self.name in columns:
                return Attribute.of(str(list(columns).index(self.name))).pick(value)
            raise BadValue(
                f"{self.name}: a name, but the data is a CSV row of {len(value)} columns: "
                "use a column index, or name the columns in analyzer.payload.output.columns"
            )
        if self.index is not None:
            if isinstance(value, list):
                if self.index < len(value):
                    return value[self.index]
                raise BadValue(f"{self.name}: the row has {len(value)} columns")
            if self.index == 0 and not isinstance(value, dict):
                return value  # a scalar body is its own column 0
            raise BadValue(f"{self.name}: a column index, but the body is {_kind(value)}")
        if isinstance(value, dict) and self.name in value:
            return value[self.name]
        found = self.path.search(value)
        if found is None:
            raise BadValue(f"{self.name}: not found in the body ({_shape(value)})")
        return found

    def pick_text(self, data: str, encoding: str, columns: Sequence[str] = ()) -> Any:
        """From a capture's ``data`` string with its ``encoding`` (CSV, JSON or BASE64)."""
        return self.pick(parse_data(data, encoding), columns)


def _kind(value: Any) -> str:
    return "an object" if isinstance(value, dict) else type(value).__name__


def _shape(value: Any) -> str:
    if isinstance(value, dict):
        keys = ", ".join(list(map(str, value))[:10])
        return f"keys: {keys}" if keys else "an empty object"
    return _kind(value)


def parse_data(data: str, encoding: str) -> Any:
    """A ``data`` string as a JSON value (JSON) or a list of CSV fields (one row)."""
    if encoding == "BASE64":
        try:
            data = base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise BadValue(f"BASE64 data that does not decode to text: {exc}") from exc
        encoding = "JSON" if data.lstrip()[:1] in ("{", "[") else "CSV"
    if encoding == "JSON":
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise BadValue(f"JSON data that does not parse: {exc}") from exc
    text = data.strip()
    if "\n" in text:
        raise BadValue("the data holds several rows; model quality joins one row per record")
    if '"' in text:
        return next(csv.reader(io.StringIO(text)), [])
    return text.split(",")


class Encoder:
    """Predictions, probabilities and labels as the floats the metrics count."""

    def __init__(
        self, problem_type: ProblemType, threshold: float = 0.5, *, one_file: bool = False
    ) -> None:
        """``one_file``: the encoder of one file of a run (the map's), whose classes the run's
        encoder numbers again in the run's order: it does not apply the run's limits
        (``MAX_CLASSES``, ``MAX_MATRIX_BYTES``: a class it kept would not be the run's), only
        ``MAX_FILE_CLASSES``."""
        self.problem_type = problem_type
        self.threshold = threshold
        self.one_file = one_file
        self.classes: dict[str, int] = {}  # multiclass: class name -> code
        self._matrix_bytes = 0  # Σ matrix_cell_bytes of the classes

    def class_names(self) -> list[str]:
        return sorted(self.classes, key=self.classes.__getitem__)

    def label(self, value: Any, what: str = "label") -> float:
        if self.problem_type == "Regression":
            return _number(value, what)
        if self.problem_type == "BinaryClassification":
            return _binary(value, what)
        name = as_text(value)
        if name is None:
            raise BadValue(f"{what} {value!r} is not a class name")
        code = self.classes.get(name)
        if code is None and self.one_file:
            if len(self.classes) >= MAX_FILE_CLASSES:
                raise BadValue(
                    f"{what} {name[:40]!r}: more than {MAX_FILE_CLASSES} classes in a file"
                )
            code = self.classes[name] = len(self.classes)
        elif code is None:
            if len(self.classes) >= MAX_CLASSES:
                raise BadValue(f"{what} {name!r}: more than {MAX_CLASSES} classes")
            cost = self._matrix_bytes + matrix_cell_bytes(name)
            if not matrix_fits(len(self.classes) + 1, cost):
                raise BadValue(
                    f"{what} {name[:40]!r}: the confusion matrix of {len(self.classes) + 1}"
                    f" classes would pass {MAX_MATRIX_BYTES} bytes of JSON"
                )
            self._matrix_bytes = cost
            code = self.classes[name] = len(self.classes)
        return float(code)

    def prediction(self, value: Any, probability: float) -> float:
        """The predicted value (``value`` None: from the probability and the threshold)."""
        if value is None:
            if self.problem_type != "BinaryClassification" or math.isnan(probability):
                raise BadValue("no prediction: set inference_attribute")
            return 1.0 if probability >= self.threshold else 0.0
        return self.label(value, "prediction")

    def probability(self, value: Any) -> float:
        number = _number(value, "probability")
        if not 0.0 <= number <= 1.0:
            raise BadValue(f"probability {number!r} is not between 0 and 1")
        return number


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadValue(f"{what} {value!r} is not a number")
    try:
        number = float(value)
    except ValueError:
        raise BadValue(f"{what} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise BadValue(f"{what} {value!r} is not a finite number")
    return number


def _binary(value: Any, what: str) -> float:
    text = as_text(value)
    if text == "1":
        return 1.0
    if text == "0":
        return 0.0
    raise BadValue(f"{what} {value!r} is not 0 or 1 (BinaryClassification)")


def json_line(line: bytes) -> dict[str, Any]:
    """One line of a capture or ground-truth file as its JSON object; :class:`BadValue` when
    it is not one."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise BadValue(f"not JSON: {exc}") from exc
    if not isinstance(record, dict):
        raise BadValue("a line must be a JSON object")
    return record


def ground_truth_record(line: bytes, reader: LabelReader) -> tuple[str, str]:
    """``(key, label)`` of one ground-truth line, the label as the service's ``reader`` reads
    it; :class:`BadValue` says what is wrong.

    Examples
    --------
    >>> ground_truth_record(b'{"groundTruthData": {"data": "1", "encoding": "CSV"},'
    ...                     b' "eventMetadata": {"eventId": "e-1"}, "eventVersion": "0"}',
    ...                     LabelReader(None))
    ('e-1', '1')
    """
    record = json_line(line)
    metadata = record.get("eventMetadata")
    key = metadata.get("eventId") if isinstance(metadata, dict) else None
    if not isinstance(key, str) or not key:
        raise BadValue("eventMetadata.eventId must be the captured inferenceId or eventId")
    data = record.get("groundTruthData")
    value = data.get("data") if isinstance(data, dict) else None
    if not isinstance(value, str):
        raise BadValue('groundTruthData.data must be a string (e.g. "1")')
    encoding = str(data.get("encoding", "CSV")).upper()  # type: ignore[union-attr]
    try:
        return key, reader(value, encoding)
    except LabelError as exc:
        raise BadValue(f"the label: {exc}") from exc
