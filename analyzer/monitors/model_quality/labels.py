"""A ground-truth record's label, and the one text form that labels and predictions share.

``ground_truth_attribute`` (as SageMaker's) says where the label is in
``groundTruthData.data``: a column index for CSV (``"0"``), a key or a JMESPath expression
for JSON; without it the whole value is the label. BASE64 data is decoded first and then read
as JSON when it is a JSON object or list, as CSV otherwise.

Labels and predictions are compared as text, so both go through :func:`as_text`: numbers
lose a trailing ``.0`` (``1.0``, ``"1.0"`` and ``1`` are all ``"1"``), booleans and
``"true"``/``"false"`` become ``"1"``/``"0"``, surrounding spaces go. A label that cannot
be read raises :class:`LabelError` with a short ``reason`` that the caller counts. Pure.

Examples
--------
>>> LabelReader("1")("0.9,1", "CSV")
'1'
>>> LabelReader("label.value")('{"label": {"value": 1.0}}', "JSON")
'1'
>>> LabelReader(None)(' true ', "CSV")
'1'
>>> try:
...     LabelReader(None, "BinaryClassification")("2", "CSV")
... except LabelError as exc:
...     print(exc)
bad_label: '2' is not 0 or 1 (BinaryClassification)
"""

from __future__ import annotations

import base64
import binascii
import csv
import functools
import math
from typing import Any

import jmespath
import orjson

__all__ = ["MAX_TEXT", "LabelError", "LabelReader", "as_text", "label_reader"]

MAX_TEXT = 1024  # longer labels or predictions are refused (counted as too_long)
_TRUTH = {"true": "1", "false": "0"}


class LabelError(ValueError):
    """A label that cannot be read; ``reason`` is counted."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def as_text(value: Any) -> str | None:
    """The text a label or prediction is compared by; None for no value (or not a scalar)."""
    kind = type(value)
    if kind is str:
        text: str = value.strip()
        if text.isdigit() and len(text) < 16:  # the common class label: "0", "1", "12"
            return text.lstrip("0") or "0"
        return _text(text) if text else None
    if value is None or kind is dict or kind is list:
        return None
    if kind is bool:
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
    return _text(str(value).strip()) or None


def _text(text: str) -> str:
    truth = _TRUTH.get(text.lower())
    if truth is not None:
        return truth
    if text and text[0] in "+-.0123456789" and len(text) < 64:
        try:
            number = float(text)
        except ValueError:
            return text
        if math.isfinite(number) and number.is_integer() and abs(number) < 2**53:
            return str(int(number))
    return text


def _finite_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _checked(value: Any) -> str:
    text = as_text(value)
    if text is None:
        raise LabelError("no_label" if value is None else "label_not_scalar")
    if len(text) > MAX_TEXT:
        raise LabelError("too_long", f"over {MAX_TEXT} characters")
    return text


class LabelReader:
    """Reads the label out of ``groundTruthData`` with the configured attribute."""

    def __init__(self, attribute: str | None, problem_type: str | None = None) -> None:
        self.attribute = attribute
        self.problem_type = problem_type
        self.index = int(attribute) if attribute is not None and attribute.isdigit() else None
        self.path = (
            jmespath.compile(attribute) if attribute is not None and self.index is None else None
        )

    def __call__(self, data: str, encoding: str) -> str:
        """The label's text; raises :class:`LabelError`."""
        text = self._read(data, encoding)
        problem = self.problem_type
        if problem == "BinaryClassification" and text != "0" and text != "1":
            raise LabelError("bad_label", f"{text[:40]!r} is not 0 or 1 (BinaryClassification)")
        if problem == "Regression" and not _finite_number(text):
            raise LabelError("bad_label", f"{text[:40]!r} is not a finite number (Regression)")
        return text

    def _read(self, data: str, encoding: str) -> str:
        if encoding == "BASE64":
            try:
                data = base64.b64decode(data, validate=True).decode("utf-8")
            except (binascii.Error, ValueError) as exc:
                raise LabelError("bad_base64", str(exc)) from exc
            stripped = data.lstrip()
            encoding = "JSON" if stripped[:1] in ("{", "[") else "CSV"
        if encoding == "JSON" or (self.path is not None and data.lstrip()[:1] in ("{", "[")):
            return self._json(data)
        return self._csv(data)

    def _csv(self, data: str) -> str:
        if self.index is None and self.path is None:
            return _checked(data)
        line = data.strip().split("\n", 1)[0]
        fields = next(csv.reader([line]), []) if '"' in line else line.split(",")
        if len(fields) == 1:  # one value is the label, whatever names it in a table (as batch)
            return _checked(fields[0])
        if self.index is None:
            raise LabelError("attribute_not_in_csv", f"{self.attribute!r} names no column")
        if self.index >= len(fields):
            raise LabelError("no_label", f"no column {self.index} in {len(fields)}")
        return _checked(fields[self.index])

    def _json(self, data: str) -> str:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise LabelError("label_not_json", str(exc)) from exc
        if self.index is not None:
            if not isinstance(doc, list) or self.index >= len(doc):
                raise LabelError("no_label", f"no item {self.index}")
            return _checked(doc[self.index])
        if self.path is None:
            if isinstance(doc, list) and len(doc) == 1:
                doc = doc[0]
            return _checked(doc)
        if isinstance(doc, dict) and self.attribute in doc:
            return _checked(doc[self.attribute])
        try:
            found = self.path.search(doc)
        except jmespath.exceptions.JMESPathError as exc:
            raise LabelError("bad_jmespath", str(exc)) from exc
        return _checked(found)


@functools.lru_cache(maxsize=16)
def label_reader(attribute: str | None, problem_type: str | None = None) -> LabelReader:
    """The reader for a config's attribute and problem type, built once (it holds nothing
    that changes: the index or the compiled JMESPath), shared by every POST."""
    return LabelReader(attribute, problem_type)
