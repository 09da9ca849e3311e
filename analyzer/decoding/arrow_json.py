"""The JSON bodies of one payload side of a block, read by Arrow into columns (fast path).

Part of the optional Arrow fast path (:mod:`analyzer.decoding.arrow_batch`). The bodies of a block
are
read by ``pyarrow.json`` (types inferred) when they hold what
:class:`analyzer.decoding.side_codec.SideCodec` reads the simple way: every body one JSON object,
the
same one of the side's keys (``instances``, ``predictions``, …) in all of them (other keys
ignored, as the slow path ignores them), holding a non-empty list of

- objects of scalars (rows by feature name; a key missing from a row is missing),
- lists of scalars, all of the same width (positional rows, named by ``columns``), or
- scalars (one column, one row per value).

Arrow raises on what it cannot type (a column mixing numbers and strings, or booleans,
duplicate keys, a bad literal…), and anything else (nested values, a null row, lists of
different widths, no or several of the keys, an empty list, JMESPath, ``v2``) returns
``None``: the block is decoded the slow way. Where Arrow loses what the slow path sees (``3``
against ``3.0``, a key holding ``null`` against a missing key), the few rows concerned are
parsed with orjson, as the slow path parses them (:mod:`analyzer.decoding.arrow_values`). The block
must hold no escape but ``\\"`` (checked by the caller), so a body holds no backslash.

Pure (no I/O).

Examples
--------
>>> import importlib
>>> pa, pc = importlib.import_module("pyarrow"), importlib.import_module("pyarrow.compute")
>>> modules = (pa, pc, importlib.import_module("pyarrow.json"))
>>> side = JsonSide(modules, ("instances",), ["a"], lambda i: f"_c{i}", track_fields=True)
>>> bodies = pa.array(['{"instances": [{"a": 1, "b": "x"}]}', '{"instances": [{"a": 2.0}]}'])
>>> out = side.read(bodies)
>>> a, b = out.columns["a"].split, out.columns["b"].split
>>> (a.integral, a.fractional, b.missing, out.rows.tolist(), out.field_counts)
(1, 1, 1, [1, 1], Counter({2: 1, 1: 1}))
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from analyzer.decoding.arrow_values import json_number_column, text_column
from analyzer.decoding.value_types import PreSplit, SplitValues

__all__ = ["JsonSide", "SideColumns"]

Column = list[Any] | PreSplit


@dataclass(slots=True)
class SideColumns:
    """One side of a block: its columns, the rows of each record, the rows by width."""

    columns: dict[str, Column]
    rows: np.ndarray
    field_counts: Counter[int]


class _Bodies:
    """The bodies' rows as orjson parses them, for the few rows Arrow cannot tell apart."""

    def __init__(self, bodies: Any, key: str, rows: np.ndarray) -> None:
        self._bodies, self._key = bodies, key
        self._starts = np.concatenate([[0], np.cumsum(rows)])
        self._docs: dict[int, Any] = {}

    def row(self, index: int) -> Any:
        body = int(np.searchsorted(self._starts, index, side="right")) - 1
        doc = self._docs.get(body)
        if doc is None:
            doc = self._docs[body] = orjson.loads(self._bodies[body].as_py())
        return doc[self._key][index - int(self._starts[body])]


class JsonSide:
    """Reads the JSON bodies of one side (see the module)."""

    def __init__(
        self,
        modules: tuple[Any, Any, Any],
        keys: Sequence[str],
        names: Sequence[str],
        default: Callable[[int], str],
        track_fields: bool,
    ) -> None:
        self._pa, self._pc, self._json = modules
        self._keys = tuple(keys)
        self._names = list(names)
        self._default = default
        self._track = track_fields
        self._options = self._json.ReadOptions(use_threads=False, block_size=1 << 24)

    def _name(self, index: int) -> str:
        return self._names[index] if index < len(self._names) else self._default(index)

    def read(self, data: Any, escaped: bool = True) -> SideColumns | None:
        """The columns of ``data`` (a string array of bodies, no null), or None.
        ``escaped``: whether the block held ``\\"`` (else no body holds a string)."""
        pa, pc = self._pa, self._pc
        n = len(data)
        offsets = np.frombuffer(data.buffers()[1], dtype=np.int32)[data.offset :][: n + 1]
        text = np.frombuffer(data.buffers()[2], dtype=np.uint8)
        if n == 0 or np.any(offsets[1:] == offsets[:-1]):
            return None  # an empty body: the slow path counts it
        if np.any(text[offsets[:-1]] != ord("{")):
            return None  # not an object, or leading blanks: one document per body is checked
        lines = pc.binary_join_element_wise(data, "\n", "")
        cuts = np.frombuffer(lines.buffers()[1], dtype=np.int32)
        joined = lines.buffers()[2][cuts[lines.offset] : cuts[lines.offset + n]]
        try:
            table = self._json.read_json(pa.BufferReader(joined), read_options=self._options)
        except pa.ArrowInvalid:
            return None
        found = [name for name in table.column_names if name in self._keys]
        if table.num_rows != n or len(found) != 1:
            return None
        try:
            lists = table.column(found[0]).combine_chunks()
        except pa.ArrowException:  # e.g. ArrowIndexError on some nested chunks: decline
            return None
        if lists.null_count or not pa.types.is_list(lists.type):
            return None
        rows = pc.list_value_length(lists).to_numpy()
        if np.any(rows == 0):
            return None
        values = lists.flatten()
        bodies = _Bodies(data, found[0], rows)
        if pa.types.is_struct(values.type):
            out = self._objects(values, bodies)
        elif pa.types.is_list(values.type):
            out = self._positions(values, bodies)
        else:
            column = self._column(values, lambda at: [bodies.row(i) for i in at.tolist()])
            out = None if column is None else ({self._name(0): column}, Counter({1: len(values)}))
        if out is None:
            return None
        return SideColumns(out[0], rows, out[1] if self._track else Counter())

    def _objects(self, rows: Any, bodies: _Bodies) -> tuple[dict[str, Column], Counter[int]] | None:
        if rows.null_count:
            return None  # a null row: not rows of objects for the slow path
        fields = [rows.type.field(i).name for i in range(rows.type.num_fields)]
        children = dict(zip(fields, rows.flatten(), strict=True))
        named = set(self._names)
        order = [k for k in self._names if k in children] + [k for k in fields if k not in named]
        columns: dict[str, Column] = {}
        for key in order:

            def resolve(at: np.ndarray, key: str = key) -> list[Any]:
                return [bodies.row(i).get(key) for i in at.tolist()]

            column = self._column(children[key], resolve)
            if column is None:
                return None
            columns[key] = column
        counts: Counter[int] = Counter({len(fields): len(rows)})
        if self._track and any(child.null_count for child in children.values()):
            # A key holding null or a missing key: only the row itself tells them apart.
            holes = np.zeros(len(rows), dtype=bool)
            for child in children.values():
                if child.null_count:
                    holes |= child.is_null().to_numpy(zero_copy_only=False)
            at = np.flatnonzero(holes)
            counts[len(fields)] -= len(at)
            counts.update(len(bodies.row(i)) for i in at.tolist())
            counts = +counts
        return columns, counts

    def _positions(
        self, rows: Any, bodies: _Bodies
    ) -> tuple[dict[str, Column], Counter[int]] | None:
        widths = self._pc.list_value_length(rows).to_numpy() if not rows.null_count else None
        if widths is None or len(widths) == 0 or widths.min() != widths.max() or widths[0] == 0:
            return None
        width, flat = int(widths[0]), rows.flatten()
        columns: dict[str, Column] = {}
        for j in range(width):
            picks = np.arange(j, len(flat), width)

            def resolve(at: np.ndarray, j: int = j) -> list[Any]:
                return [bodies.row(i)[j] for i in at.tolist()]

            column = self._column(flat.take(self._pa.array(picks)), resolve)
            if column is None:
                return None
            columns[self._name(j)] = column
        return columns, Counter({width: len(rows)})

    def _column(self, column: Any, resolve: Callable[[np.ndarray], list[Any]]) -> Column | None:
        pa, pc, kind, n = self._pa, self._pc, column.type, len(column)
        if pa.types.is_null(kind):
            return PreSplit(SplitValues(missing=n), n)
        if pa.types.is_string(kind):
            return text_column(pa, pc, column, n)
        if pa.types.is_int64(kind) or pa.types.is_float64(kind):
            return json_number_column(pa, pc, column, n, resolve)
        if pa.types.is_boolean(kind):
            return column.to_pylist()  # type: ignore[no-any-return]
        return None  # nested values: the slow path writes them as JSON text
