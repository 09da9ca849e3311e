"""Arrow columns to what
:meth:`analyzer.monitors.data_quality.feature_profile.FeatureProfile.update` takes, exactly.

Used by the optional Arrow fast path (:mod:`analyzer.decoding.arrow_batch`,
:mod:`analyzer.decoding.arrow_json`).
Each function returns either a :class:`~analyzer.decoding.value_types.PreSplit` (the column already
split as :func:`analyzer.decoding.value_types.split_values` would split the Python values the
record-by-record path reads), or that list of Python values itself when the column is better
typed by the existing code, or ``None`` when it cannot tell exactly (the caller then decodes the
whole block the slow way).

- :func:`text_column`: a column of strings (CSV fields, JSON strings; nulls are missing, as
  ``None`` is). A column whose present values use only the bytes ``0-9 + - . e E`` and cast
  to finite float64s is split at once (Fractional = values with a dot, or by RE2 when an
  exponent occurs); a column none of whose distinct values is a numeric literal is counted
  (``value_counts``, in order of first appearance, as ``Counter`` counts); else the strings.
- :func:`json_number_column`: JSON numbers as Arrow inferred them. ``int64``: every value an
  Integral. ``double``: Arrow merges ``3`` and ``3.0``, so every integer-valued number is
  looked up in the body as orjson parses it (``resolve``): an ``int`` is Integral (and its
  float value is taken from it, as numpy would convert it), a ``float`` Fractional. A
  fraction such as ``2.5`` can only come from a Fractional literal.

Pure (no I/O). Pass the ``pyarrow`` and ``pyarrow.compute`` modules.

Examples
--------
>>> import importlib
>>> pa, pc = importlib.import_module("pyarrow"), importlib.import_module("pyarrow.compute")
>>> split = text_column(pa, pc, pa.array(["1", "2.5", None, ""]), 4).split
>>> (split.missing, split.integral, split.fractional, split.numbers.tolist())
(2, 1, 1, [1.0, 2.5])
>>> rows = [3, 2.0]  # what orjson read for the integer-valued numbers
>>> number = json_number_column(pa, pc, pa.array([1.5, 3.0, 2.0]), 3, lambda i: rows)
>>> (number.split.integral, number.split.fractional)
(1, 2)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from itertools import chain, repeat
from typing import Any

import numpy as np

from analyzer.decoding.literals import INTEGRAL_PATTERN, NUMERIC_BYTES, NUMERIC_PATTERN
from analyzer.decoding.value_types import PreSplit, SplitValues

__all__ = ["Resolve", "json_number_column", "text_column"]

# Row positions (in the column) -> the values there as orjson parses them, or None.
Resolve = Callable[[np.ndarray], list[Any] | None]
# The grammar of analyzer.decoding.literals, for RE2 (whole values) and as a byte mask.
_INTEGRAL = "^" + INTEGRAL_PATTERN + "$"
_NUMERIC = "^" + NUMERIC_PATTERN + "$"
_NUMERIC_BYTES = np.zeros(256, dtype=bool)
_NUMERIC_BYTES[np.frombuffer(NUMERIC_BYTES, dtype=np.uint8)] = True
_DOT, _E, _UPPER_E = ord("."), ord("e"), ord("E")


def text_column(pa: Any, pc: Any, column: Any, n: int) -> list[Any] | PreSplit:
    """A string column (nulls allowed) split as ``split_values`` would, else its values."""
    if column.null_count:
        keep = pc.fill_null(pc.binary_length(column), 0).to_numpy() > 0
        present = column.filter(pa.array(keep))
    else:
        bounds = np.frombuffer(column.buffers()[1], dtype=np.int32)[column.offset :][: n + 1]
        keep = bounds[1:] != bounds[:-1]
        present = column if keep.all() else column.filter(pa.array(keep))
    empty = n - len(present)
    if len(present) == 0:
        return PreSplit(SplitValues(missing=empty), n)
    offsets = np.frombuffer(present.buffers()[1], dtype=np.int32)
    start, stop = offsets[present.offset], offsets[present.offset + len(present)]
    text = np.frombuffer(present.buffers()[2], dtype=np.uint8)[start:stop]
    counts = np.bincount(text, minlength=256)
    if counts[~_NUMERIC_BYTES].any():
        return _counted(pc, column, present, empty, n)
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
        missing=empty, numbers=numbers, integral=len(present) - fractional, fractional=fractional
    )
    return PreSplit(split, n)


def _counted(pc: Any, column: Any, present: Any, empty: int, n: int) -> list[Any] | PreSplit:
    """A column none of whose distinct values is a numeric literal: counted, not listed."""
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


def json_number_column(pa: Any, pc: Any, column: Any, n: int, resolve: Resolve) -> PreSplit | None:
    """An ``int64`` or ``double`` column of JSON numbers (nulls allowed), or None."""
    missing = column.null_count
    valid = column.drop_null() if missing else column
    if pa.types.is_int64(column.type):
        numbers = valid.to_numpy().astype(np.float64)
        return PreSplit(SplitValues(missing=missing, numbers=numbers, integral=len(numbers)), n)
    numbers = valid.to_numpy(zero_copy_only=False, writable=True).astype(np.float64, copy=False)
    if not np.isfinite(numbers).all():
        return None
    whole = np.flatnonzero(numbers == np.floor(numbers))  # 3 or 3.0: ask the text
    integral = 0
    if len(whole):
        rows = whole
        if missing:
            rows = np.flatnonzero(column.is_valid().to_numpy(zero_copy_only=False))[whole]
        values = resolve(rows)
        if values is None:
            return None
        for at, value in zip(whole.tolist(), values, strict=True):
            kind = type(value)
            if kind is int:
                integral += 1
            elif kind is not float:
                return None
            numbers[at] = float(value)
    split = SplitValues(
        missing=missing, numbers=numbers, integral=integral, fractional=len(numbers) - integral
    )
    return PreSplit(split, n)
