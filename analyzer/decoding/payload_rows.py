"""Payload bodies to rows: CSV, JSON (+ JMESPath), KServe V2 (Open Inference Protocol), TF Serving.

Pure functions used by :mod:`analyzer.decoding.codecs`. Each parser turns one body (already
BASE64-decoded
text) into :class:`Rows`, one of four shapes chosen so that the batch step can vectorize:

- ``csv``: CSV lines, split later for the whole batch at once;
- ``pos``: positional rows (lists), named by ``columns`` and then ``_c{i}``;
- ``obj``: rows as objects (feature name -> value);
- ``cols``: columnar data (feature name -> list of values), e.g. TF Serving ``inputs`` or V2.

A body that cannot become rows raises :class:`PayloadError` whose ``reason`` is a short
machine-readable word that the decoder counts.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import jmespath
import orjson

__all__ = [
    "INPUT_KEYS",
    "OUTPUT_KEYS",
    "PayloadError",
    "Rows",
    "csv_rows",
    "json_rows",
    "parse_json_body",
    "rows_of",
    "v2_rows",
]

Kind = Literal["csv", "pos", "obj", "cols"]

# Keys that hold the rows of a JSON body, by format and side, in order of preference.
INPUT_KEYS: dict[str, tuple[str, ...]] = {
    "json": ("instances", "inputs", "features", "data"),
    "tfserving": ("instances", "inputs"),
}
OUTPUT_KEYS: dict[str, tuple[str, ...]] = {
    "json": ("predictions", "outputs", "scores", "probabilities", "results"),
    "tfserving": ("predictions", "outputs"),
}


class PayloadError(ValueError):
    """A body that does not decode; ``reason`` is counted by the decoder."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(slots=True)
class Rows:
    """The rows of one body. ``data`` depends on ``kind`` (see the module docstring)."""

    kind: Kind
    data: Any
    n: int

    def take(self, n: int) -> Rows:
        """The first ``n`` rows (n <= self.n)."""
        if n >= self.n:
            return self
        if self.kind == "cols":
            return Rows("cols", {k: v[:n] for k, v in self.data.items()}, n)
        return Rows(self.kind, self.data[:n], n)


def csv_rows(text: str) -> Rows:
    """Headerless CSV: one row per non-empty line; quoted fields are kept whole."""
    if '"' in text:
        try:
            rows = [row for row in csv.reader(io.StringIO(text)) if row]
        except csv.Error as exc:
            raise PayloadError("bad_csv", str(exc)) from exc
        if not rows:
            raise PayloadError("empty_payload")
        return Rows("pos", rows, len(rows))
    if "\n" in text or "\r" in text:
        lines = [line for line in text.splitlines() if line]
    else:
        lines = [text] if text else []
    if not lines:
        raise PayloadError("empty_payload")
    return Rows("csv", lines, len(lines))


def parse_json_body(text: str | bytes) -> Any:
    """One JSON document, or JSON Lines (one document per line) as a list."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        body = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        if "\n" in body.strip():
            try:
                return [orjson.loads(line) for line in body.splitlines() if line.strip()]
            except orjson.JSONDecodeError:
                pass
        raise PayloadError("payload_not_json", str(exc)) from exc


class _BadPath:
    """A JMESPath expression that does not compile: every body fails with its reason."""

    def __init__(self, error: str) -> None:
        self.error = error

    def search(self, doc: Any) -> Any:
        raise PayloadError("bad_jmespath", self.error)


def compile_path(path: str) -> Any:
    """A compiled JMESPath expression (``.search(doc)``), compiled once per decoder."""
    try:
        return jmespath.compile(path)
    except jmespath.exceptions.JMESPathError as exc:
        return _BadPath(str(exc))


def _search(path: Any, doc: Any) -> Any:
    try:
        return path.search(doc)
    except jmespath.exceptions.JMESPathError as exc:
        raise PayloadError("bad_jmespath", str(exc)) from exc


def json_rows(doc: Any, keys: Sequence[str], path: Any) -> Rows:
    """Rows from a parsed JSON body: a JMESPath result, a known key, a list or one object."""
    if path is not None:
        doc = _search(path, doc)
    elif isinstance(doc, dict):
        for key in keys:
            if key in doc:
                doc = doc[key]
                break
    return rows_of(doc)


def rows_of(doc: Any) -> Rows:
    """Rows of a JSON value: a list (of objects, lists or scalars), one object, a scalar."""
    if type(doc) is list:
        n = len(doc)
        if n == 1:  # the common single-row request, without building a set
            kind = type(doc[0])
            if kind is dict:
                return Rows("obj", doc, 1)
            return Rows("pos", doc, 1) if kind is list else Rows("cols", {0: doc}, 1)
        if not n:
            raise PayloadError("empty_payload")
        kinds = set(map(type, doc))
        if dict in kinds:
            if len(kinds) > 1:
                raise PayloadError("mixed_rows", "objects mixed with other values")
            return Rows("obj", doc, n)
        if list in kinds:
            rows = doc if len(kinds) == 1 else [r if type(r) is list else [r] for r in doc]
            return Rows("pos", rows, n)
        return Rows("cols", {0: doc}, n)
    if isinstance(doc, dict):
        if not doc:
            raise PayloadError("empty_payload")
        values = list(doc.values())
        if all(isinstance(v, list) for v in values):
            lengths = {len(v) for v in values}
            if len(lengths) == 1 and 0 not in lengths:
                return Rows("cols", dict(doc), lengths.pop())
        return Rows("obj", [doc], 1)
    if doc is None:
        raise PayloadError("empty_payload")
    return Rows("cols", {0: [doc]}, 1)


def _flatten(data: list[Any]) -> list[Any]:
    if not data or not any(isinstance(v, list) for v in data):
        return data
    flat: list[Any] = []
    for value in data:
        flat.extend(_flatten(value) if isinstance(value, list) else [value])
    return flat


def v2_rows(doc: Any, side_key: str, columns: Sequence[str], path: Any) -> Rows:
    """KServe V2 / Open Inference Protocol: ``{side_key: [{name, shape, datatype, data}]}``.

    Each tensor's first dimension is the batch. A tensor of width 1 is one feature (named by the
    tensor, or by ``columns`` when given); a wider one yields ``{name}_{j}`` features, or the
    positional ``columns`` when given.
    """
    if path is not None:
        doc = _search(path, doc)
    tensors = doc.get(side_key) if isinstance(doc, dict) else doc
    if not isinstance(tensors, list) or not tensors:
        raise PayloadError("v2_no_tensors", f"no {side_key!r} list")
    names: list[Any] = []
    values: list[list[Any]] = []
    n_rows: int | None = None
    for index, tensor in enumerate(tensors):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("data"), list):
            raise PayloadError("v2_bad_tensor", "a tensor without a data list")
        data = _flatten(tensor["data"])
        shape = tensor.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            shape = [len(data)]
        rows = shape[0] if shape else 1
        width = 1
        for dim in shape[1:]:
            width *= dim
        if rows * width != len(data) or (n_rows is not None and rows != n_rows):
            raise PayloadError("v2_shape_mismatch", f"shape {shape} for {len(data)} values")
        n_rows = rows
        name = str(tensor.get("name", f"output_{index}"))
        for j in range(width):
            names.append(name if width == 1 else f"{name}_{j}")
            values.append(data[j::width] if width > 1 else data)
    if not n_rows:
        raise PayloadError("empty_payload")
    if columns:
        named = [columns[i] if i < len(columns) else f"_c{i}" for i in range(len(names))]
        names = named
    return Rows("cols", dict(zip(names, values, strict=True)), n_rows)
