"""What the model-quality join keeps of each captured record: key, time, prediction, input row.

Works on the decoder's output (:class:`~analyzer.decoding.codecs.DecodedBatch`), so a
capture file is decoded once for both monitors. The prediction and probability are read from
each record's output body (``DecodedBatch.output_bodies``) by the one extraction that the
batch readers use too (:class:`~.extraction.OutputReader`; the rule is in its module), and a
record that gives none is counted by its reason (``no_prediction``, ``bad_probability``, …),
never raised. The key is the record's ``inferenceId``, else its ``eventId`` (over
:data:`~.extraction.MAX_KEY` characters: ``key_too_long``; holding a NUL character, which
the join's ``json_each`` look-ups would cut there, losing the prediction: ``key_with_nul``).

The input row is kept as a compact JSON object (name → value, as decoded) of at most
``max_row_bytes``; a longer one is left out and counted (``row_too_large``), the prediction
is kept. A record whose request held several rows keeps the prediction its output gives
and no input row, and so does one the decoder refused only for its body
(``DecodedBatch.refused``: an input that does not parse in its configured format, which the
batch readers, reading only the output, never look at). Pure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from operator import itemgetter
from typing import Any, cast

import orjson

from analyzer.decoding.codecs import DecodedBatch
from analyzer.decoding.contract import Refused
from analyzer.decoding.value_types import PreSplit
from analyzer.monitors.model_quality.extraction import MAX_KEY, OutputReader
from analyzer.monitors.model_quality.extraction_batch import read_many
from modelmon.config import ModelQualityConfig, PayloadSide

__all__ = [
    "MAX_KEY",
    "MAX_ROW_BYTES",
    "Extracted",
    "PredictionColumns",
    "PredictionExtractor",
    "PredictionRow",
]

MAX_ROW_BYTES = 4096
NUL = "\x00"  # a key holding it is refused: SQLite's JSON functions cut a text there
# key, event_id, inference_id, inference_time (epoch s), prediction, probability, input row
PredictionRow = tuple[str, str | None, str | None, float, str, float | None, bytes | None]


@dataclass
class PredictionColumns:
    """Prediction rows as their seven columns, in :data:`PredictionRow`'s order: what the
    extraction builds and a block stores, with no tuple per row between them (building
    10,000 tuples on the ingest thread and taking them apart again on the writer's cost
    ~0.6 µs a record, all of it holding the GIL)."""

    keys: list[str] = field(default_factory=list)
    event_ids: list[str | None] = field(default_factory=list)
    inference_ids: list[str | None] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    predictions: list[str] = field(default_factory=list)
    probabilities: list[float | None] = field(default_factory=list)
    inputs: list[bytes | None] = field(default_factory=list)

    @classmethod
    def of_rows(cls, rows: Iterable[PredictionRow]) -> PredictionColumns:
        rows = list(rows)
        return cls(*map(list, zip(*rows, strict=True))) if rows else cls()

    def __len__(self) -> int:
        return len(self.keys)

    def lists(self) -> tuple[list[Any], ...]:
        return (self.keys, self.event_ids, self.inference_ids, self.times, self.predictions,
                self.probabilities, self.inputs)  # fmt: skip

    def rows(self) -> list[PredictionRow]:
        return list(zip(*self.lists(), strict=True))

    def __post_init__(self) -> None:
        lengths = set(map(len, self.lists()))
        if len(lengths) > 1:  # a decoder's columns out of step: never stored as a block
            raise ValueError(f"prediction columns of different lengths {sorted(lengths)}")

    def take(self, indices: Sequence[int]) -> PredictionColumns:
        """The rows at ``indices``, in that order."""
        if len(indices) == 1:  # (itemgetter of one index gives the value, not a tuple)
            return PredictionColumns(*([column[indices[0]]] for column in self.lists()))
        if not len(indices):
            return PredictionColumns()
        pick = itemgetter(*indices)
        return PredictionColumns(*(list(pick(column)) for column in self.lists()))

    def extend(self, other: PredictionColumns) -> None:
        for mine, theirs in zip(self.lists(), other.lists(), strict=True):
            mine.extend(theirs)


@dataclass
class Extracted:
    """The predictions of one decoded batch, and the records left out by reason."""

    columns: PredictionColumns = field(default_factory=PredictionColumns)
    skipped: Counter[str] = field(default_factory=Counter)
    rows_too_large: int = 0

    @property
    def rows(self) -> list[PredictionRow]:
        """The predictions as rows (built on each call: for tests and small batches)."""
        return self.columns.rows()

    def add(self, other: Extracted) -> None:
        self.columns.extend(other.columns)
        self.skipped.update(other.skipped)
        self.rows_too_large += other.rows_too_large


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
        self.reader = OutputReader(config, output)
        self.max_row_bytes = max_row_bytes

    def extract(self, batch: DecodedBatch, times: Sequence[float] | None = None) -> Extracted:
        """One prediction per decoded record of ``batch`` and per record it refused for a
        body (``batch.refused``: no input row; in their place among the decoded ones); the
        other bad ones are the decoder's. ``times``: the decoded records' inference times as
        epoch seconds, when the caller has them (the refused records' are read here)."""
        if times is None or len(times) != batch.n_records:
            times = list(map(datetime.timestamp, batch.inference_times))
        out = Extracted()
        blobs = self._rows(_lists(batch.columns), batch.n_rows, out)
        if batch.n_rows != batch.n_records or set(batch.record_rows) != {1}:
            blobs = _record_blobs(blobs, batch.record_rows)
        events, ids = batch.event_ids, batch.inference_ids
        bodies, encodings = batch.output_bodies, batch.output_encodings
        if batch.refused:
            events, ids, times, bodies, encodings, blobs = _with_refused(
                batch.refused, events, ids, times, bodies, encodings, blobs
            )
        predictions, probabilities, reasons = read_many(self.reader, bodies, encodings)
        keys = [i or e for i, e in zip(ids, events, strict=True)]
        # (a prediction is None only where a reason says why: those are left out below)
        columns = PredictionColumns(keys, list(events), list(ids), list(times),
                                    cast(list[str], list(predictions)), list(probabilities),
                                    blobs)  # fmt: skip
        if reasons is None and (
            not keys or (max(map(len, keys)) <= MAX_KEY and NUL not in "".join(keys))
        ):
            out.columns = columns  # no reason: every prediction is set
            return out
        skipped, kept = out.skipped, []
        for index, key in enumerate(keys):
            reason = reasons[index] if reasons is not None else None
            if len(key) > MAX_KEY:
                skipped["key_too_long"] += 1
            elif NUL in key:
                skipped["key_with_nul"] += 1
            elif reason is not None:
                skipped[reason] += 1
            else:
                kept.append(index)
        out.columns = columns.take(kept)
        return out

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

    A number, ``true``, ``false`` or ``null`` holds no comma, so their split is exact. In
    a column of strings every ``"`` inside a value is escaped, so ``","`` in the encoded list
    is a separator, except where a value ends in ``",``: its escaped quote, the comma and
    its closing quote read ``\\","``, and the next value follows. The column joined by
    ``","`` then holds ``",","``, and its values are encoded one by one instead.
    """
    try:
        joined = '","'.join(values)  # a TypeError at the first value that is not a string
    except TypeError:
        if not set(map(type, values)) <= _SCALARS:
            return None
        try:
            return False, orjson.dumps(values)[1:-1].split(b",")
        except TypeError:  # an integer over 64 bits
            return None
    try:  # (the join tells a column of strings apart faster than the set of its types)
        if '",","' in joined:  # a value that ends in '",' and is not the last
            return True, [orjson.dumps(value)[1:-1] for value in values]
        return True, orjson.dumps(values)[2:-2].split(b'","')
    except TypeError:  # a lone surrogate
        return None


def _with_refused(
    refused: Sequence[Refused], *columns: Sequence[Any]
) -> tuple[list[Any], list[Any], list[Any], list[Any], list[Any], list[Any]]:
    """The per-record ``columns`` (event ids, inference ids, times, output bodies and
    encodings, input rows) with the refused records in their places (no input row)."""
    kept = zip(*columns, strict=True)
    records: list[tuple[Any, ...]] = []
    done = 0
    for record in refused:
        records.extend(islice(kept, record.at - done))
        done = record.at
        records.append((
            record.event_id, record.inference_id, record.inference_time.timestamp(),
            record.output_body, record.output_encoding, None,
        ))  # fmt: skip
    records.extend(kept)
    events, ids, times, bodies, encodings, blobs = map(list, zip(*records, strict=True))
    return events, ids, times, bodies, encodings, blobs


def _record_blobs(blobs: list[bytes | None], record_rows: Sequence[int]) -> list[bytes | None]:
    """Each record's input row: its one row's, None when it held several (or none)."""
    out: list[bytes | None] = []
    row = 0
    for n in record_rows:
        out.append(blobs[row] if n == 1 else None)
        row += n
    return out
