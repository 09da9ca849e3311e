"""An optional Apache Arrow fast path for blocks of plain capture records with CSV payloads.

When ``pyarrow`` is installed (the ``fast`` extra), :class:`ArrowDecoder` reads a whole block
of capture lines in C++: ``pyarrow.json`` parses the records into columns, the CSV bodies are
read by ``pyarrow.csv`` (every field a string, no quoting), a numeric column is converted to
float64 and a text column counted (``value_counts``) without one Python object per value.
Only what the record-by-record path would take *verbatim* is taken: every line one capture
record with both sides present as text (``CSV``/``JSON`` encoding), an ``eventId`` string, an
``inferenceTime`` of the form ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``, no truncation marker, no
escape sequence and no carriage return anywhere in the block (so no quote or line break in a
body), no empty body, no byte-order mark, every body one row of the same width. Otherwise
:meth:`ArrowDecoder.decode` returns ``None`` and the caller decodes the block with
:class:`analyzer.codecs.PayloadDecoder`, so results are identical either way (checked by
``tests/analyzer/test_arrow_batch.py``).

A column is handed over as a :class:`~analyzer.value_types.PreSplit` when every present value
is a decimal literal (bytes ``0-9 + - . e E`` only, accepted by Arrow's cast, finite): exactly
the columns :func:`analyzer.value_types.split_values` converts in one numpy call, with the same
counts and the same (correctly rounded) numbers; or when no distinct value is a numeric literal
(a text column: its counts in order of first appearance, as ``Counter`` gives them). A column
mixing both is handed over as Python strings, typed by the existing code. Pure (no I/O): it
takes the bytes of whole lines (:func:`analyzer.capture_files.read_blocks`).

Examples
--------
>>> from modelmon.config import PayloadConfig, PayloadSide
>>> payload = PayloadConfig(input=PayloadSide(format="csv", columns=["a", "b"]),
...                         output=PayloadSide(format="csv"))
>>> decoder = ArrowDecoder.create(payload)
>>> line = (
...     b'{"captureData": {"endpointInput": {"data": "1,x", "encoding": "CSV"},'
...     b' "endpointOutput": {"data": "0.5", "encoding": "CSV"}},'
...     b' "eventMetadata": {"eventId": "e1", "inferenceTime": "2024-01-01T00:00:00Z"}}\\n'
... )
>>> batch = decoder.decode(line * 2)  # decoder is None without pyarrow
>>> a, b = batch.columns["a"].split, batch.columns["b"].split
>>> (batch.n_rows, a.numbers.tolist(), a.integral, b.string_counts)
(2, [1.0, 1.0], 2, Counter({'x': 2}))
"""

from __future__ import annotations

import importlib
import io
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain, repeat
from typing import Any

import numpy as np

from analyzer.columns import input_name, output_name
from analyzer.value_types import _FRACTIONAL, PreSplit, SplitValues
from modelmon.config import PayloadConfig

__all__ = ["ArrowBatch", "ArrowDecoder"]

_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-5][0-9](\.[0-9]{1,6})?Z$"
_INTEGRAL = r"^[+-]?[0-9]+$"
_NUMERIC = "^" + _FRACTIONAL.pattern + "$"  # the same literals, for RE2 (whole value)
_BOM = "\ufeff"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NUMERIC_BYTES = np.zeros(256, dtype=bool)
_NUMERIC_BYTES[np.frombuffer(b"0123456789+-.eE", dtype=np.uint8)] = True
_DOT, _E, _UPPER_E = ord("."), ord("e"), ord("E")
_VERBATIM = {"CSV", "JSON"}
_FIELDS = (
    "captureData.endpointInput.data",
    "captureData.endpointInput.encoding",
    "captureData.endpointOutput.data",
    "captureData.endpointOutput.encoding",
    "eventMetadata.eventId",
    "eventMetadata.inferenceTime",
)


@dataclass(slots=True)
class ArrowBatch:
    """One batch decoded by Arrow: one row per record, no bad record, no padding."""

    columns: dict[str, list[str] | PreSplit]
    predictions: dict[str, list[str] | PreSplit]
    n_rows: int
    field_counts: Counter[int]
    first_time: datetime
    last_time: datetime


class _Arrow:
    """The pyarrow modules, imported once, lazily."""

    def __init__(self) -> None:
        self.pa = importlib.import_module("pyarrow")
        self.pc = importlib.import_module("pyarrow.compute")
        self.json = importlib.import_module("pyarrow.json")
        self.csv = importlib.import_module("pyarrow.csv")
        pa = self.pa
        side = pa.struct([("data", pa.string()), ("encoding", pa.string())])
        schema = pa.schema(
            [
                ("captureData", pa.struct([("endpointInput", side), ("endpointOutput", side)])),
                (
                    "eventMetadata",
                    pa.struct([("eventId", pa.string()), ("inferenceTime", pa.string())]),
                ),
            ]
        )
        self.parse_options = self.json.ParseOptions(
            explicit_schema=schema, unexpected_field_behavior="ignore"
        )
        self.read_options = self.json.ReadOptions(use_threads=False, block_size=1 << 24)
        self.csv_options = self.csv.ParseOptions(
            quote_char=False,
            escape_char=False,
            double_quote=False,
            newlines_in_values=False,
            ignore_empty_lines=False,
        )

    def read_csv(self, text: bytes, names: list[str]) -> Any:
        """Headerless CSV, every field a string as it is (no quoting, no nulls)."""
        csv = self.csv
        return csv.read_csv(
            io.BytesIO(text),
            read_options=csv.ReadOptions(
                column_names=names, use_threads=False, block_size=max(len(text) + 1, 1 << 20)
            ),
            parse_options=self.csv_options,
            convert_options=csv.ConvertOptions(
                column_types=dict.fromkeys(names, self.pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )


_arrow: _Arrow | None = None


def _load() -> _Arrow | None:
    global _arrow
    if _arrow is None:
        try:
            _arrow = _Arrow()
        except ImportError:
            return None
    return _arrow


def _column_name(names: list[str], default: Callable[[int], str], index: int) -> str:
    return names[index] if index < len(names) else default(index)


class ArrowDecoder:
    """Decodes blocks of plain CSV-payload capture lines with Arrow (see the module)."""

    def __init__(self, payload: PayloadConfig, arrow: _Arrow) -> None:
        self._arrow = arrow
        self._inputs = list(payload.input.columns)
        self._outputs = list(payload.output.columns)

    @classmethod
    def create(cls, payload: PayloadConfig) -> ArrowDecoder | None:
        """A decoder, or None without pyarrow or unless both sides are configured as CSV."""
        if payload.input.format != "csv" or payload.output.format != "csv":
            return None
        arrow = _load()
        return None if arrow is None else cls(payload, arrow)

    def decode(self, block: bytes) -> ArrowBatch | None:
        """The batch of ``block`` (whole lines, one capture record each), or None: decode it
        the slow way (:func:`analyzer.capture_files.block_lines`, then ``PayloadDecoder``)."""
        if not block or b"\\" in block or b"\r" in block or b'"truncated"' in block:
            return None
        if not block.isascii():
            try:
                block.decode("utf-8")
            except UnicodeDecodeError:
                return None
        a = self._arrow
        lines = block.count(b"\n") + (not block.endswith(b"\n"))
        try:
            table = a.json.read_json(
                io.BytesIO(block), read_options=a.read_options, parse_options=a.parse_options
            )
            return self._batch(table, lines)
        except a.pa.ArrowInvalid:
            return None

    def _batch(self, table: Any, n: int) -> ArrowBatch | None:
        pa, pc = self._arrow.pa, self._arrow.pc
        if table.num_rows != n:  # blank lines, or two documents on one line
            return None
        flat = table.flatten().flatten()
        fields = [flat.column(name).combine_chunks() for name in _FIELDS]
        if any(column.null_count for column in fields):
            return None
        in_data, in_enc, out_data, out_enc, _, times = fields
        encodings = set(pc.unique(pa.concat_arrays([in_enc, out_enc])).to_pylist())
        if not encodings <= _VERBATIM or not pc.all(pc.match_substring_regex(times, _TIME)).as_py():
            return None
        stamps = pc.min_max(pc.cast(times, pa.timestamp("us", "UTC")).cast(pa.int64()))
        inputs = self._side(in_data, self._inputs, input_name)
        outputs = self._side(out_data, self._outputs, output_name)
        if inputs is None or outputs is None:
            return None
        return ArrowBatch(
            inputs[0],
            outputs[0],
            n,
            Counter({inputs[1]: n}),
            _EPOCH + timedelta(microseconds=stamps["min"].as_py()),
            _EPOCH + timedelta(microseconds=stamps["max"].as_py()),
        )

    def _side(
        self, data: Any, names: list[str], default: Callable[[int], str]
    ) -> tuple[dict[str, list[str] | PreSplit], int] | None:
        """The columns of one side's CSV bodies (one unquoted row each) and their width."""
        pc = self._arrow.pc
        n = len(data)
        if pc.any(pc.equal(pc.binary_length(data), 0)).as_py():
            return None  # an empty body: the slow path counts it
        first = data[0].as_py()
        if first.startswith(_BOM):
            return None  # Arrow's CSV reader would drop it
        width = first.count(",") + 1
        if width == 1:
            if pc.any(pc.match_substring(data, ",")).as_py():
                return None
            columns = [data]
        else:
            lines = pc.binary_join_element_wise(data, "\n", "")
            start, stop = lines.offset, lines.offset + len(lines)
            offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
            text = lines.buffers()[2][offsets[start] : offsets[stop]]
            names = [_column_name(names, default, j) for j in range(width)]
            table = self._arrow.read_csv(text.to_pybytes(), names)
            if table.num_rows != n:
                return None
            columns = [column.combine_chunks() for column in table.columns]
        out = {_column_name(names, default, j): self._column(c, n) for j, c in enumerate(columns)}
        return out, width

    def _column(self, column: Any, n: int) -> list[str] | PreSplit:
        """A numeric or a text column split as ``split_values`` would, else its strings."""
        pa, pc = self._arrow.pa, self._arrow.pc
        lengths = pc.binary_length(column).to_numpy()
        empty = int(np.count_nonzero(lengths == 0))
        present = column.filter(pa.array(lengths > 0)) if empty else column
        if len(present) == 0:
            return PreSplit(SplitValues(missing=empty), n)
        offsets = np.frombuffer(present.buffers()[1], dtype=np.int32)
        start, stop = offsets[present.offset], offsets[present.offset + len(present)]
        text = np.frombuffer(present.buffers()[2], dtype=np.uint8)[start:stop]
        counts = np.bincount(text, minlength=256)
        if counts[~_NUMERIC_BYTES].any():
            return self._text(column, present, empty, n)
        try:
            numbers = pc.cast(present, pa.float64()).to_numpy(zero_copy_only=False, writable=True)
        except pa.ArrowInvalid:
            return column.to_pylist()  # type: ignore[no-any-return]
        if not np.isfinite(numbers).all():
            return column.to_pylist()  # type: ignore[no-any-return]
        if counts[_E] or counts[_UPPER_E]:
            integral = int(pc.sum(pc.match_substring_regex(present, _INTEGRAL)).as_py() or 0)
            fractional = len(present) - integral
        else:
            fractional = int(counts[_DOT])  # a decimal literal holds at most one dot
        split = SplitValues(
            missing=empty,
            numbers=numbers,
            integral=len(present) - fractional,
            fractional=fractional,
        )
        return PreSplit(split, n)

    def _text(self, column: Any, present: Any, empty: int, n: int) -> list[str] | PreSplit:
        """A column none of whose distinct values is a numeric literal: counted, not listed."""
        pc = self._arrow.pc
        counted = pc.value_counts(present)
        keys, tallies = counted.field(0), counted.field(1)
        if pc.any(pc.match_substring_regex(keys, _NUMERIC)).as_py():
            return column.to_pylist()  # type: ignore[no-any-return]
        values, numbers = keys.to_pylist(), tallies.to_pylist()
        split = SplitValues(missing=empty)
        split.string_counts = Counter(dict(zip(values, numbers, strict=True)))
        # Only the number of strings matters once they are counted (FeatureProfile.update).
        split.strings = list(chain.from_iterable(map(repeat, values, numbers)))
        return PreSplit(split, n)
