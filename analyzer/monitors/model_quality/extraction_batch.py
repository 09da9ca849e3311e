"""The one extraction (:mod:`.extraction`) over a batch of output bodies, a column at a time.

:func:`read_many` gives what :meth:`~.extraction.OutputReader.read` gives each body. When
every body of the batch has the common shape it takes the values a column at a time
(:func:`_columns`), with no Python call per record but the value conversions that ``read``
makes too:

- CSV bodies of one row without quotes: each split with :func:`~.extraction.csv_fields`,
  as ``read`` splits it, the attribute's field picked by index (or
  ``payload.output.columns`` name);
- JSON objects with an attribute that is a plain key: the key of each object, or, when no
  object has it at the top, the key of the one row the output decoder splits each into
  (``{"predictions": [{"label": 1}]}``), as ``read``'s fallback.

Any body that does not fit (another shape, a value missing, a value that gives no
prediction or probability) sends the whole batch to ``read`` body by body, so the answers,
reasons included, are ``read``'s. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from analyzer.decoding.payload_rows import PayloadError
from analyzer.decoding.record_batch import CHUNK
from analyzer.decoding.side_codec import SideCodec
from analyzer.monitors.model_quality.extraction import (
    OutputReader,
    Unusable,
    _Where,
    csv_fields,
    prediction_of,
)

__all__ = ["Many", "read_many"]

# per body: the prediction, the probability; the reason of each body that gave none (None: all did)
Many = tuple[list[str | None], list[float | None], list[str | None] | None]
Columns = tuple[list[str | None], list[float | None]]
_ABSENT = object()


def read_many(reader: OutputReader, bodies: Sequence[str | None], encodings: Sequence[str]) -> Many:
    """``reader.read`` of every body: the predictions, the probabilities, and each body's
    reason when one gave none (None when all gave one)."""
    fast = _columns(reader, bodies, encodings)
    if fast is not None:
        return fast[0], fast[1], None
    predictions: list[str | None] = []
    probabilities: list[float | None] = []
    reasons: list[str | None] = []
    read = reader.read
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


class _CsvColumns:
    """The fields of one-row CSV bodies without quotes, by attribute."""

    def __init__(self, reader: OutputReader, texts: list[str]) -> None:
        self.reader, self.texts = reader, texts
        self.joined = "".join(texts)
        self.split: list[list[str]] = []

    def fits(self) -> bool:
        joined = self.joined
        return not ('"' in joined or "\n" in joined or "\r" in joined)

    def __call__(self, where: _Where) -> list[Any] | None:
        index = where.index
        if index is None:
            columns = self.reader.columns
            if where.name not in columns:
                return None
            index = columns.index(where.name)
        if index == 0 and "," not in self.joined:
            return list(map(str.strip, self.texts))
        if not self.split:
            self.split.extend(map(csv_fields, self.texts))
        if min(map(len, self.split)) <= index:
            return None
        return list(map(itemgetter(index), self.split))


class _JsonColumns:
    """The plain keys of JSON object bodies (or of the decoder's one row of each): parsed
    :data:`~analyzer.decoding.record_batch.CHUNK` at a time, only the values kept (a batch of
    parsed bodies alive at once would make the garbage collector walk them again and again)."""

    def __init__(self, reader: OutputReader, texts: list[str]) -> None:
        wheres = [w for w in (reader.probability_where, reader.prediction_where) if w]
        self.values: dict[str, list[Any]] | None = None
        if all(where.field for where in wheres):
            self.values = _json_values(reader, texts, [where.name for where in wheres])

    def fits(self) -> bool:
        return self.values is not None

    def __call__(self, where: _Where) -> list[Any] | None:
        return self.values.get(where.name) if self.values is not None else None


def _json_values(reader: OutputReader, texts: list[str], names: list[str]) -> Any:
    """Each key's value in every body (a chunk of bodies that all lack it: in the decoder's
    one object row of each), or None when a body does not fit."""
    out: dict[str, list[Any]] = {name: [] for name in names}
    codec = reader.codec
    for start in range(0, len(texts), CHUNK):
        try:
            docs = list(map(orjson.loads, texts[start : start + CHUNK]))
        except orjson.JSONDecodeError:
            return None
        if set(map(type, docs)) != {dict}:
            return None
        rows: list[Any] | None = None
        for name in names:
            found = [doc.get(name, _ABSENT) for doc in docs]
            if _ABSENT in found or None in found:
                if any(value is not _ABSENT for value in found):
                    return None  # some have it, some not: record by record
                if rows is None:
                    try:
                        rows = [_object_row(codec, doc) for doc in docs]
                    except PayloadError:
                        return None
                    if None in rows:
                        return None
                found = [row.get(name, _ABSENT) for row in rows]
                if _ABSENT in found or None in found:
                    return None
            out[name].extend(found)
    return out


def _object_row(codec: SideCodec, doc: dict[str, Any]) -> dict[str, Any] | None:
    """The decoder's one row of ``doc`` when it is an object (``codec.doc_rows``), else None.
    The common ``{key: [{…}]}`` (``key`` the first of the codec's keys ``doc`` has) is read
    here: ``doc_rows`` gives that object as the one row too."""
    if codec.path is None and codec.format != "v2":
        for key in codec.keys:
            if key in doc:
                value = doc[key]
                if type(value) is list and len(value) == 1 and type(value[0]) is dict:
                    return value[0]
                break
    rows = codec.doc_rows(doc)
    return rows.data[0] if rows.n == 1 and rows.kind == "obj" else None


def _columns(
    reader: OutputReader, bodies: Sequence[str | None], encodings: Sequence[str]
) -> Columns | None:
    """:func:`read_many` a column at a time (see the module), or None."""
    n = len(bodies)
    kinds = set(encodings)
    if not n or len(kinds) != 1:
        return None
    texts: list[str] = list(bodies)  # type: ignore[arg-type]  # CSV/JSON: never None
    column: _CsvColumns | _JsonColumns
    if kinds == {"CSV"}:
        column = _CsvColumns(reader, texts)
    elif kinds == {"JSON"} and reader.codec.format != "csv":
        column = _JsonColumns(reader, texts)
    else:
        return None
    if not column.fits():
        return None
    probabilities: list[float | None] = [None] * n
    where = reader.probability_where
    if where is not None:
        values = column(where)
        if values is None or not set(map(type, values)) <= {str, float, int}:
            return None
        try:
            numbers = np.fromiter(map(float, values), dtype=np.float64, count=n)
        except (ValueError, OverflowError):
            return None
        if not bool(((numbers >= 0.0) & (numbers <= 1.0)).all()):  # False for NaN
            return None
        probabilities = numbers.tolist()
    where = reader.prediction_where
    if where is None:
        threshold = reader.threshold
        return ["1" if p >= threshold else "0" for p in probabilities], probabilities  # type: ignore[operator]
    values = column(where)
    if values is None:
        return None
    try:
        return _predictions(values, where.name, reader.problem_type), probabilities
    except (Unusable, RecursionError):  # a value nested past the limit: read one by one
        return None


def _predictions(values: list[Any], name: str, problem: str) -> list[str | None]:
    """``prediction_of`` of each value; a classifier's few distinct values (by type and
    value: ``1`` and ``1.0`` are equal keys but may read differently) are read once each."""
    if problem == "Regression" or not set(map(type, values)) <= _SCALARS:
        return [prediction_of(value, name, problem) for value in values]
    keys = list(zip(map(type, values), values, strict=True))
    table = {key: prediction_of(key[1], name, problem) for key in set(keys)}
    return list(map(table.__getitem__, keys))


_SCALARS = frozenset((str, int, float, bool))
