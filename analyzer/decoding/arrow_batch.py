"""An optional Apache Arrow fast path for blocks of plain capture records (CSV and JSON payloads).

When ``pyarrow`` is installed (the ``fast`` extra), :class:`ArrowDecoder` reads a whole block
of capture lines in C++: ``pyarrow.json`` parses the records into columns; CSV bodies are read
by ``pyarrow.csv`` (every field a string, no quoting), JSON bodies by ``pyarrow.json``
(:mod:`analyzer.decoding.arrow_json`); a numeric column becomes float64 and a text column is counted
(``value_counts``) without one Python object per value (:mod:`analyzer.decoding.arrow_values`).
Only what the record-by-record path would take *verbatim* is taken: every line one capture
record with both sides present as text (``CSV``/``JSON`` encoding), a non-empty ``eventId``
string (the envelope's rules, :mod:`analyzer.decoding.envelope`, on whole columns), an
``inferenceId`` string or none, an ``inferenceTime`` of the form
``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` (:data:`analyzer.decoding.inference_time.ARROW_TIME`), no
truncation marker, no
escape sequence but ``\\"`` and no carriage return anywhere in the block (so no backslash or
line break in a body, and no quote in a CSV body), no empty body, no byte-order mark, every CSV
body one row of the same width, both sides of a record the same number of rows. Otherwise
:meth:`ArrowDecoder.decode` returns ``None`` and the caller decodes the block with
:class:`analyzer.decoding.codecs.PayloadDecoder`, so results are identical either way (the
contract of :mod:`analyzer.decoding.contract`, checked by
``tests/analyzer/test_decoding_contract.py``, ``tests/analyzer/test_arrow_batch.py`` and
``tests/analyzer/test_arrow_json.py``). The per-record fields (event ids, inference ids and
times) are made Python objects only when read.
Pure (no I/O): it takes the bytes of whole lines
(:func:`analyzer.ingest.capture_files.read_blocks`).

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
>>> batch = decoder.decode_block(line * 2)  # decoder is None without pyarrow
>>> a, b = batch.columns["a"].split, batch.columns["b"].split
>>> (batch.n_rows, a.numbers.tolist(), a.integral, b.string_counts)
(2, [1.0, 1.0], 2, Counter({'x': 2}))
"""

from __future__ import annotations

import importlib
import io
from collections import Counter
from typing import Any

import numpy as np

from analyzer.decoding.arrow_csv import CsvSide
from analyzer.decoding.arrow_json import Column, JsonSide, SideColumns
from analyzer.decoding.columns import input_name, output_name
from analyzer.decoding.contract import DecodedBatch, Later
from analyzer.decoding.envelope import VERBATIM
from analyzer.decoding.inference_time import InferenceTimes, arrow_stamps
from analyzer.decoding.payload_rows import INPUT_KEYS, OUTPUT_KEYS
from modelmon.config import PayloadConfig, PayloadSide

__all__ = ["ArrowDecoder"]

_BACKSLASH, _QUOTE, _NEWLINE, _BRACE = ord("\\"), ord('"'), ord("\n"), ord("{")
_VERBATIM = frozenset(VERBATIM)
_FIELDS = (
    "captureData.endpointInput.data",
    "captureData.endpointInput.encoding",
    "captureData.endpointOutput.data",
    "captureData.endpointOutput.encoding",
    "eventMetadata.eventId",
    "eventMetadata.inferenceTime",
)
_NEWLINE_BYTE = b"\n"


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
                    pa.struct(
                        [
                            ("eventId", pa.string()),
                            ("inferenceId", pa.string()),
                            ("inferenceTime", pa.string()),
                        ]
                    ),
                ),
                ("modelmon", pa.struct([("truncated", pa.list_(pa.string()))])),
            ]
        )
        self.parse_options = self.json.ParseOptions(
            explicit_schema=schema, unexpected_field_behavior="ignore"
        )
        self.read_options = self.json.ReadOptions(use_threads=False, block_size=1 << 24)


_arrow: _Arrow | None = None


def _load() -> _Arrow | None:
    global _arrow
    if _arrow is None:
        try:
            _arrow = _Arrow()
        except ImportError:
            return None
    return _arrow


def _object_lines(block: bytes) -> int | None:
    """The number of lines, or None unless every line starts with ``{``: Arrow skips blank
    lines and reads two documents on one line, where the slow path counts a bad line. A
    block without a final ``\\n`` is one line
    (:func:`analyzer.ingest.capture_files.block_lines`)."""
    raw = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(raw == _NEWLINE)
    if raw[-1] != _NEWLINE:
        return None if len(ends) else 1
    inner = ends[:-1]
    if raw[0] != _BRACE or not np.all(raw[inner + 1] == _BRACE):
        return None
    return len(ends)


def _quote_escapes_only(block: bytes) -> bool:
    """Whether every backslash of ``block`` starts the escape ``\\"``."""
    raw = np.frombuffer(block, dtype=np.uint8)
    at = np.flatnonzero(raw[:-1] == _BACKSLASH)
    return raw[-1] != _BACKSLASH and bool(np.all(raw[at + 1] == _QUOTE))


class _Whole:
    """A side read as a whole (JSON bodies): only the whole run of records can be asked for."""

    def __init__(self, side: SideColumns) -> None:
        self._side, self.rows = side, side.rows

    def block(self, start: int, n: int) -> tuple[dict[str, Column], Counter[int]]:
        assert start == 0 and n == len(self.rows)
        return self._side.columns, self._side.field_counts


class _JsonReader:
    """:class:`JsonSide` behind the interface of :class:`CsvSide` (one block at a time)."""

    def __init__(self, side: JsonSide) -> None:
        self._side = side

    def read(self, data: Any, escaped: bool) -> _Whole | None:
        out = self._side.read(data, escaped)
        return None if out is None else _Whole(out)


def _reader(arrow: _Arrow, side: PayloadSide, output: bool) -> CsvSide | _JsonReader | None:
    default = output_name if output else input_name
    if side.format == "csv":
        return CsvSide((arrow.pa, arrow.pc, arrow.csv), side.columns, default)
    if side.format in ("json", "tfserving") and not side.path:
        keys = (OUTPUT_KEYS if output else INPUT_KEYS)[side.format]
        modules = (arrow.pa, arrow.pc, arrow.json)
        return _JsonReader(JsonSide(modules, keys, side.columns, default, not output))
    return None  # v2, JMESPath: the slow path only


class ArrowDecoder:
    """Decodes blocks of plain capture lines with Arrow (see the module)."""

    def __init__(
        self, arrow: _Arrow, inputs: CsvSide | _JsonReader, outputs: CsvSide | _JsonReader
    ) -> None:
        self._arrow = arrow
        self._inputs, self._outputs = inputs, outputs
        #: Whether :meth:`decode_blocks` takes several blocks at once (CSV on both sides).
        self.groups = isinstance(inputs, CsvSide) and isinstance(outputs, CsvSide)

    @classmethod
    def create(cls, payload: PayloadConfig, json: bool = False) -> ArrowDecoder | None:
        """A decoder, or None without pyarrow or when a side's format is not read by Arrow:
        ``csv``; with ``json``, also ``json`` and ``tfserving`` without a JMESPath ``path``
        (off by default: on the bench data Arrow reads JSON bodies more slowly than orjson)."""
        readable = ("csv", "json", "tfserving") if json else ("csv",)
        if payload.input.format not in readable or payload.output.format not in readable:
            return None
        arrow = _load()
        if arrow is None:
            return None
        inputs = _reader(arrow, payload.input, output=False)
        outputs = _reader(arrow, payload.output, output=True)
        if inputs is None or outputs is None:
            return None
        return cls(arrow, inputs, outputs)

    def decode(self, lines: list[bytes]) -> DecodedBatch | None:
        """The :class:`~analyzer.decoding.contract.BatchDecoder` call: ``lines`` (one record
        each, with or without its ``\\n``) as one block (:meth:`decode_block`)."""
        if not lines:
            return None
        block = b"".join(line if line.endswith(_NEWLINE_BYTE) else line + b"\n" for line in lines)
        if block.count(_NEWLINE_BYTE) != len(lines):
            return None  # a line break inside a line: not one record per line
        return self.decode_block(block)

    def decode_block(self, block: bytes) -> DecodedBatch | None:
        """The batch of ``block`` (whole lines, one capture record each), or None: decode it
        the slow way (:func:`analyzer.ingest.capture_files.block_lines`, then
        ``PayloadDecoder``)."""
        batches = self.decode_blocks([block])
        return None if batches is None else batches[0]

    def decode_blocks(self, blocks: list[bytes]) -> list[DecodedBatch] | None:
        """One batch per block, each as :meth:`decode_block` gives it, all read by one Arrow call
        (fewer, larger calls); None unless all are taken together (e.g. CSV rows of another
        width in one block; with JSON payloads, more than one block): then decode them one
        by one. Every block but the last must end with ``\\n``, as
        :func:`analyzer.ingest.capture_files.read_blocks` gives them."""
        if not blocks or (len(blocks) > 1 and not self.groups):
            return None
        if not all(block.endswith(b"\n") for block in blocks[:-1]):
            return None
        counts = []
        for block in blocks:
            lines = _object_lines(block) if block else None
            if lines is None:
                return None
            counts.append(lines)
        joined = blocks[0] if len(blocks) == 1 else b"".join(blocks)
        if b"\r" in joined:
            return None
        escaped = b"\\" in joined
        if escaped and not _quote_escapes_only(joined):
            return None  # an escape other than \\" (a backslash, a line break, \\u...)
        if not joined.isascii():
            try:
                joined.decode("utf-8")
            except UnicodeDecodeError:
                return None
        a = self._arrow
        try:
            table = a.json.read_json(
                io.BytesIO(joined), read_options=a.read_options, parse_options=a.parse_options
            )
            return self._batches(table, counts, escaped)
        except a.pa.ArrowInvalid:
            return None

    def _batches(self, table: Any, counts: list[int], escaped: bool) -> list[DecodedBatch] | None:
        pa, pc = self._arrow.pa, self._arrow.pc
        if table.num_rows != sum(counts):
            return None
        flat = table.flatten().flatten()
        fields = [flat.column(name).combine_chunks() for name in _FIELDS]
        if any(column.null_count for column in fields):
            return None
        if pc.max(pc.list_value_length(flat.column("modelmon.truncated"))).as_py():
            return None  # a truncated side: the slow path counts it
        in_data, in_enc, out_data, out_enc, event_ids, times = fields
        if pc.min(pc.utf8_length(event_ids)).as_py() == 0:
            return None  # an empty eventId: the envelope refuses it
        encodings = set(pc.unique(pa.concat_arrays([in_enc, out_enc])).to_pylist())
        if not encodings <= _VERBATIM:
            return None
        stamps = arrow_stamps(pa, pc, times)
        if stamps is None:
            return None
        inference_ids = flat.column("eventMetadata.inferenceId").combine_chunks()
        inputs = self._inputs.read(in_data, escaped)
        outputs = self._outputs.read(out_data, escaped) if inputs is not None else None
        if inputs is None or outputs is None or not np.array_equal(inputs.rows, outputs.rows):
            return None
        batches = []
        start = 0
        for n in counts:
            columns, widths = inputs.block(start, n)
            predictions, _ = outputs.block(start, n)
            rows = inputs.rows[start : start + n]
            batches.append(
                DecodedBatch(
                    columns=dict(columns),
                    n_rows=int(rows.sum()),
                    record_rows=Later(n, rows.tolist),
                    event_ids=Later(n, event_ids.slice(start, n).to_pylist),
                    inference_ids=Later(n, inference_ids.slice(start, n).to_pylist),
                    inference_times=InferenceTimes(stamps[start : start + n]),
                    predictions=dict(predictions),
                    field_counts=widths,
                    output_bodies=Later(n, out_data.slice(start, n).to_pylist),
                    output_encodings=Later(n, out_enc.slice(start, n).to_pylist),
                )
            )
            start += n
        return batches
