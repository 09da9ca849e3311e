"""Rows of many bodies into named columns, in one vectorized step per batch.

Consecutive bodies of the same shape are kept together and converted at once: all CSV lines of
a batch are joined and split in one call when they have the same number of fields and no
quotes; positional rows are transposed with ``zip``. Pure (no I/O), used by
:mod:`analyzer.decoding.codecs`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Any

from analyzer.decoding.payload_rows import Rows
from analyzer.monitors.data_quality.cardinality import FeatureLimit

__all__ = ["ColumnBuilder", "input_name", "output_name"]


def input_name(index: int) -> str:
    """SageMaker's name of an unnamed input column: ``_c{i}`` by position."""
    return f"_c{index}"


def output_name(index: int) -> str:
    """The name of an unnamed output column: ``prediction``, ``prediction_1``, …"""
    return "prediction" if index == 0 else f"prediction_{index}"


_kind_of, _data, _n = attrgetter("kind"), attrgetter("data"), attrgetter("n")
_SLICE = 256  # rows transposed at once (a tuple each, freed before the collector runs)


def _transposed(rows: list[dict[Any, Any]], order: list[Any]) -> dict[str, Sequence[Any]]:
    """The columns ``order`` of ``rows`` (KeyError when a row lacks one)."""
    get = itemgetter(*order)
    columns: list[list[Any]] = [[] for _ in order]
    for start in range(0, len(rows), _SLICE):
        values = zip(*map(get, rows[start : start + _SLICE]), strict=True)
        for column, part in zip(columns, values, strict=True):
            column.extend(part)
    return {str(key): column for key, column in zip(order, columns, strict=True)}


class ColumnBuilder:
    """Accumulates the rows of one side (input or output) of many records."""

    def __init__(
        self,
        names: Sequence[str],
        default_name: Callable[[int], str],
        track_fields: bool,
        limit: FeatureLimit | None = None,
    ) -> None:
        self._names = list(names)
        self._limit = limit
        self._admitted: set[str] = set()
        self._others = 0
        # names left out by ``limit`` -> how many values they held
        self.untracked: Counter[str] = Counter()
        self._default = default_name
        self._track = track_fields
        self.columns: dict[str, list[Any]] = {}
        self.n = 0
        self.field_counts: Counter[int] = Counter()
        self._kind = ""
        self._pending: list[Any] = []
        self._pending_n = 0

    def _admits(self, name: str) -> bool:
        """Whether ``name`` has (or now gets) a column under the limit."""
        limit = self._limit
        if limit is None or name in self._admitted:
            return True
        if not limit.admits(name, self._others):
            return False
        self._admitted.add(name)
        self._others += name not in limit.keep
        return True

    def name(self, index: int) -> str:
        """The feature name of the field at ``index``."""
        return self._names[index] if index < len(self._names) else self._default(index)

    def add(self, rows: Rows) -> None:
        if rows.kind != self._kind:
            self._flush()
            self._kind = rows.kind
        if rows.kind == "cols":
            self._pending.append(rows)
        else:
            self._pending.extend(rows.data)
        self._pending_n += rows.n

    def add_all(self, many: list[Rows]) -> None:
        """The same as ``add`` of each in turn, with one extend when all share a kind."""
        kinds = set(map(_kind_of, many))
        if len(kinds) != 1:
            for rows in many:
                self.add(rows)
            return
        kind = kinds.pop()
        if kind != self._kind:
            self._flush()
            self._kind = kind
        if kind == "cols":
            self._pending.extend(many)
        else:
            self._pending.extend(chain.from_iterable(map(_data, many)))
        self._pending_n += sum(map(_n, many))

    def pad(self, n: int) -> None:
        """``n`` rows with no value at all (the side was not captured)."""
        if self._kind != "pad":
            self._flush()
            self._kind = "pad"
        self._pending_n += n

    def finish(self) -> dict[str, list[Any]]:
        self._flush()
        return self.columns

    def _flush(self) -> None:
        kind, pending, n = self._kind, self._pending, self._pending_n
        self._kind, self._pending, self._pending_n = "", [], 0
        if n == 0:
            return
        if kind == "csv":
            self._append(self._csv_columns(pending), n)
        elif kind == "pos":
            self._append(self._pos_columns(pending), n)
        elif kind == "obj":
            self._append(self._obj_columns(pending), n)
        elif kind == "cols":
            self._append(self._cols_columns(pending), n)
        else:
            self._append({}, n)

    def _append(self, columns: dict[str, Sequence[Any]], n: int) -> None:
        for name, values in columns.items():
            column = self.columns.get(name)
            if column is None:
                column = self.columns[name] = [None] * self.n
            column.extend(values)
        self.n += n
        for column in self.columns.values():
            if len(column) < self.n:
                column.extend([None] * (self.n - len(column)))

    def _csv_columns(self, lines: list[str]) -> dict[str, Sequence[Any]]:
        widths = {line.count(",") for line in lines}
        if len(widths) == 1:
            width = widths.pop() + 1
            flat = ",".join(lines).split(",")
            if self._track:
                self.field_counts[width] += len(lines)
            if self._limit is None:
                return {self.name(j): flat[j::width] for j in range(width)}
            out: dict[str, Sequence[Any]] = {}
            for j in range(width):
                name = self.name(j)
                if self._admits(name):
                    out[name] = flat[j::width]
                else:
                    self.untracked[name] += len(lines)
            return out
        return self._pos_columns([line.split(",") for line in lines])

    def _pos_columns(self, rows: list[list[Any]]) -> dict[str, Sequence[Any]]:
        lengths = Counter(map(len, rows))
        if self._track:
            self.field_counts.update(lengths)
        width = max(lengths)
        if len(lengths) > 1:
            rows = [row + [None] * (width - len(row)) if len(row) < width else row for row in rows]
        if self._limit is None:
            return {self.name(j): column for j, column in enumerate(zip(*rows, strict=True))}
        out: dict[str, Sequence[Any]] = {}
        for j, column in enumerate(zip(*rows, strict=True)):
            name = self.name(j)
            if self._admits(name):
                out[name] = column
            else:
                self.untracked[name] += len(column) - column.count(None)
        return out

    def _obj_columns(self, rows: list[dict[Any, Any]]) -> dict[str, Sequence[Any]]:
        lengths = Counter(map(len, rows))
        if self._track:
            self.field_counts.update(lengths)
        first = list(rows[0])
        order = [k for k in self._names if k in rows[0]] + [
            k for k in first if k not in self._names
        ]
        if self._limit is not None and not all(map(self._admits, map(str, order))):
            order = []  # some keys are left out: the general way below counts them
        if len(lengths) == 1 and len(order) > 1:
            # Same number of keys everywhere: if every row has all of the first row's keys, the
            # rows share one key set, and C-speed gets and a transpose do the whole batch (a
            # slice of rows at a time: fewer tuples alive for the garbage collector to walk).
            try:
                return _transposed(rows, order)
            except KeyError:
                pass
        keys: dict[Any, None] = {}
        for row in rows:
            keys.update(dict.fromkeys(row))
        named = set(self._names)
        order = [k for k in self._names if k in keys] + [k for k in keys if k not in named]
        if self._limit is not None:
            left_out = {k for k in order if not self._admits(str(k))}
            if left_out:
                order = [k for k in order if k not in left_out]
                for row in rows:
                    for key in row:
                        if key in left_out:
                            self.untracked[str(key)] += 1
        return {str(key): [row.get(key) for row in rows] for key in order}

    def _cols_columns(self, segments: list[Rows]) -> dict[str, Sequence[Any]]:
        if self._limit is not None:
            segments = [self._limited(segment) for segment in segments]
        first_keys = segments[0].data.keys()
        if all(segment.data.keys() == first_keys for segment in segments):
            if self._track:
                self.field_counts[len(first_keys)] += sum(s.n for s in segments)
            return {
                self._key_name(key): list(
                    chain.from_iterable(map(itemgetter(key), (s.data for s in segments)))
                )
                for key in first_keys
            }
        out = ColumnBuilder(self._names, self._default, self._track)
        for segment in segments:
            out._append({out._key_name(k): v for k, v in segment.data.items()}, segment.n)
            if self._track:
                self.field_counts[len(segment.data)] += segment.n
        return dict(out.columns)

    def _limited(self, segment: Rows) -> Rows:
        """``segment`` without the columns the limit leaves out (counted)."""
        data = {}
        for key, values in segment.data.items():
            name = self._key_name(key)
            if self._admits(name):
                data[key] = values
            else:
                self.untracked[name] += len(values) - list(values).count(None)
        if len(data) == len(segment.data):
            return segment
        return Rows("cols", data, segment.n)

    def _key_name(self, key: Any) -> str:
        return self.name(key) if isinstance(key, int) else str(key)
