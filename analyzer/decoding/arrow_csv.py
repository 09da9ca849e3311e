"""The CSV bodies of one payload side of a block (or of several blocks), read by Arrow (fast path).

Part of the optional Arrow fast path (:mod:`analyzer.decoding.arrow_batch`): the bodies, joined with
``\\n``, go through ``pyarrow.csv`` once (no quoting, every field a string, names from the
side's ``columns`` then the default names). Only bodies that are one unquoted row each, all of
the same width, none empty, the first without a byte-order mark, are read; otherwise
:meth:`CsvSide.read` returns ``None`` and the caller decodes the block the slow way. The
columns are converted block by block (:meth:`CsvPart.block`), so that each ~1 MiB block of
lines is handed to the profile exactly as the slow path hands it. Pure (no I/O).

Examples
--------
>>> import importlib
>>> pa = importlib.import_module("pyarrow")
>>> modules = (pa, importlib.import_module("pyarrow.compute"),
...            importlib.import_module("pyarrow.csv"))
>>> part = CsvSide(modules, ["a", "b"], lambda i: f"_c{i}").read(pa.array(["1,x", "2.5,y"]), False)
>>> columns, widths = part.block(1, 1)
>>> (columns["a"].split.numbers.tolist(), columns["b"].split.string_counts, widths)
([2.5], Counter({'y': 1}), Counter({2: 1}))
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from analyzer.decoding.arrow_values import text_column
from analyzer.decoding.value_types import PreSplit

__all__ = ["CsvPart", "CsvSide"]

_BOM = "\ufeff"
Column = list[Any] | PreSplit


class CsvPart:
    """The CSV columns of a run of records (one row each), converted block by block."""

    def __init__(self, modules: tuple[Any, Any], columns: dict[str, Any], width: int) -> None:
        self._pa, self._pc = modules
        self._columns, self.width = columns, width
        self.rows = np.ones(len(next(iter(columns.values()))), dtype=np.int64)

    def block(self, start: int, n: int) -> tuple[dict[str, Column], Counter[int]]:
        """The columns of records ``start`` to ``start + n`` and their rows by width."""
        pa, pc = self._pa, self._pc
        columns: dict[str, Column] = {
            name: text_column(pa, pc, values.slice(start, n), n)
            for name, values in self._columns.items()
        }
        return columns, Counter({self.width: n})


class CsvSide:
    """Reads the CSV bodies of one side: one unquoted row each, all of the same width."""

    def __init__(
        self, modules: tuple[Any, Any, Any], names: Sequence[str], default: Callable[[int], str]
    ) -> None:
        self._pa, self._pc, self._csv = modules
        self._names, self._default = list(names), default
        self._options = self._csv.ParseOptions(
            quote_char=False,
            escape_char=False,
            double_quote=False,
            newlines_in_values=False,
            ignore_empty_lines=False,
        )

    def _name(self, index: int) -> str:
        return self._names[index] if index < len(self._names) else self._default(index)

    def read(self, data: Any, escaped: bool) -> CsvPart | None:
        """The columns of ``data`` (a string array of bodies, no null), or None.
        ``escaped``: whether the block held ``\\"`` (else no body holds a quote)."""
        pa, pc = self._pa, self._pc
        n = len(data)
        if pc.any(pc.equal(pc.binary_length(data), 0)).as_py():
            return None  # an empty body: the slow path counts it
        if escaped and pc.any(pc.match_substring(data, '"')).as_py():
            return None  # a quoted field: the slow path reads it with the csv module
        first = data[0].as_py()
        if first.startswith(_BOM):
            return None  # Arrow's CSV reader would drop it
        width = first.count(",") + 1
        names = [self._name(j) for j in range(width)]
        if width == 1:
            if pc.any(pc.match_substring(data, ",")).as_py():
                return None
            return CsvPart((pa, pc), {names[0]: data}, 1)
        lines = pc.binary_join_element_wise(data, "\n", "")
        start, stop = lines.offset, lines.offset + len(lines)
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
        text = lines.buffers()[2][offsets[start] : offsets[stop]]
        table = self._read(text.to_pybytes(), names)
        if table.num_rows != n:
            return None
        columns = [column.combine_chunks() for column in table.columns]
        return CsvPart((pa, pc), dict(zip(names, columns, strict=True)), width)

    def _read(self, text: bytes, names: list[str]) -> Any:
        """Headerless CSV, every field a string as it is (no quoting, no nulls)."""
        csv = self._csv
        return csv.read_csv(
            io.BytesIO(text),
            read_options=csv.ReadOptions(
                column_names=names, use_threads=False, block_size=max(len(text) + 1, 1 << 20)
            ),
            parse_options=self._options,
            convert_options=csv.ConvertOptions(
                column_types=dict.fromkeys(names, self._pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
