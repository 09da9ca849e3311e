"""Type inference of raw values, as SageMaker's analyzer (Deequ) does it, vectorized per column.

The grammar (which text is Integral, Fractional or String) is
:mod:`analyzer.decoding.literals`. ``None`` and the empty string are missing. JSON numbers keep
their JSON type (``3`` Integral, ``3.0`` Fractional); booleans and nested values are strings.
Non-finite numbers (``nan``, ``inf``, overflowing literals) are strings, as Deequ's patterns do
not match them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from analyzer.decoding.literals import (
    FLOAT_ONLY,
    FRACTIONAL,
    INTEGRAL,
    SEPARATOR,
    STRING,
    UNKNOWN,
    integral_literal,
    numeric_literal,
    numeric_tokens,
)

__all__ = [
    "FRACTIONAL",
    "INTEGRAL",
    "STRING",
    "UNKNOWN",
    "PreSplit",
    "SplitValues",
    "split_values",
]

_SEP = SEPARATOR


@dataclass(slots=True)
class SplitValues:
    """A column chunk split by inferred type."""

    missing: int = 0
    numbers: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    integral: int = 0
    fractional: int = 0
    strings: list[str] = field(default_factory=list)
    string_counts: Counter[str] | None = None  # of ``strings``, when already counted


@dataclass(slots=True)
class PreSplit:
    """A column chunk of ``n`` values already split (by :mod:`analyzer.decoding.arrow_batch`)."""

    split: SplitValues
    n: int

    def __len__(self) -> int:
        return self.n


def _fractional_count(tokens: list[str], joined: str) -> int:
    """How many numeric literals (``joined`` by the separator) are not integer literals."""
    if "e" in joined or "E" in joined:
        return sum(1 for t in tokens if not integral_literal(t))
    return joined.count(".")  # a literal holds at most one dot


def _strings_split(values: list[str], out: SplitValues, joined: str | None = None) -> None:
    """Numeric-looking strings to numbers, others stay strings; C-speed passes over the text.

    The column is joined with a separator once. A clean numeric column (ASCII, none of the
    characters only ``float()`` accepts, all finite) converts in one numpy call. Otherwise the
    values are counted once; each distinct value is typed (or, with many distinct values, one
    regex scan of the joined text finds the numeric ones), and only a column that mixes numbers
    and strings pays a per-value pass to keep the numbers in arrival order.
    """
    empty = values.count("")
    if empty:
        out.missing += empty
        values = [v for v in values if v]
        joined = None
    if not values:
        return
    if joined is None:
        joined = _SEP.join(values)
    if joined.count(_SEP) != len(values) - 1:  # the separator inside a value: go slowly
        _slow_strings(values, out)
        return
    if joined.isascii() and not any(c in joined for c in FLOAT_ONLY):
        try:
            numbers = np.array(values, dtype=np.float64)
        except ValueError:
            numbers = None
        if numbers is not None and np.isfinite(numbers).all():  # else: nan/inf, go slowly
            fractional = _fractional_count(values, joined)
            out.numbers = numbers
            out.fractional += fractional
            out.integral += len(values) - fractional
            return
    counts = Counter(values)
    if len(counts) * 2 <= len(values):  # few distinct values: classify each distinct one once
        numeric = {key for key in counts if numeric_literal(key)}
    else:
        numeric = numeric_tokens(joined)
    if not numeric:
        out.strings.extend(values)
        out.string_counts = counts
        return
    tokens = [v for v in values if v in numeric]
    fractional = sum(counts[key] for key in numeric if not integral_literal(key))
    out.numbers = np.array(tokens, dtype=np.float64)
    out.fractional += fractional
    out.integral += len(tokens) - fractional
    if len(tokens) < len(values):
        out.strings.extend(v for v in values if v not in numeric)
        out.string_counts = Counter({k: c for k, c in counts.items() if k not in numeric})


def _slow_strings(values: list[str], out: SplitValues) -> None:
    numbers: list[str] = []
    for value in values:
        if integral_literal(value):
            out.integral += 1
            numbers.append(value)
        elif numeric_literal(value):
            out.fractional += 1
            numbers.append(value)
        else:
            out.strings.append(value)
    out.numbers = np.array(numbers, dtype=np.float64) if numbers else out.numbers


def _text(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def _array_split(values: np.ndarray) -> SplitValues:
    out = SplitValues()
    if values.dtype.kind in "iu":
        out.numbers = values.astype(np.float64)
        out.integral = len(values)
    elif values.dtype.kind == "f":
        numbers = values.astype(np.float64)
        nan = np.isnan(numbers)
        out.missing = int(nan.sum())
        numbers = numbers[~nan] if out.missing else numbers
        out.numbers = numbers
        out.fractional = len(numbers)
    else:
        return split_values(values.tolist())
    _finite_only(out)
    return out


def split_values(values: Sequence[Any] | np.ndarray | PreSplit) -> SplitValues:
    """Split one column chunk into missing count, numbers (with type counts) and strings.

    Examples
    --------
    >>> s = split_values(["3", "3.0", "", None, "n/a", "1e3"])
    >>> (s.missing, s.integral, s.fractional, s.strings, s.numbers.tolist())
    (2, 1, 2, ['n/a'], [3.0, 3.0, 1000.0])
    """
    if isinstance(values, PreSplit):
        return values.split
    if isinstance(values, np.ndarray):
        return _array_split(values)
    out = SplitValues()
    if values and type(values[0]) is str:  # text columns (CSV): one join checks all are str
        try:
            joined = _SEP.join(values)
        except TypeError:
            pass
        else:
            _strings_split(values if isinstance(values, list) else list(values), out, joined)
            _finite_only(out)
            return out
    types = _type_counts(values)
    out.missing = types.pop(type(None), 0)
    n_int, n_float = types.pop(int, 0), types.pop(float, 0)
    strings = [v for v in values if type(v) is str] if types.pop(str, 0) else []
    if n_int or n_float:
        if not types and not strings and not out.missing:
            numbers = _floats(values)
        else:
            numbers = _floats([v for v in values if type(v) is int or type(v) is float])
        out.integral, out.fractional = n_int, n_float
        if strings:
            text_part = SplitValues()
            _strings_split(strings, text_part)
            out.missing += text_part.missing
            out.integral += text_part.integral
            out.fractional += text_part.fractional
            out.strings.extend(text_part.strings)
            numbers = np.concatenate([numbers, text_part.numbers])
        out.numbers = numbers
    elif strings:
        _strings_split(strings, out)
    if types:  # booleans, nested values, anything else: strings
        other = (int, float, str, type(None))
        out.strings.extend(_text(v) for v in values if type(v) not in other)
    _finite_only(out)
    return out


def _type_counts(values: Sequence[Any]) -> Counter[type]:
    """``Counter(map(type, values))``, twice as fast: one set, then C-level ``list.count``."""
    kinds = list(map(type, values))
    return Counter({kind: kinds.count(kind) for kind in set(kinds)})


def _floats(values: Sequence[Any]) -> np.ndarray:
    try:
        return np.array(values, dtype=np.float64)
    except OverflowError:  # an integer beyond the float range
        return np.array([float(v) if abs(v) < 1e308 else np.inf for v in values])


def _finite_only(out: SplitValues) -> None:
    """Non-finite numbers (``nan``, ``inf``, overflowing literals) are strings, as in Deequ."""
    finite = np.isfinite(out.numbers)
    if finite.all():
        return
    bad = out.numbers[~finite]
    out.strings.extend(str(v) for v in bad)
    out.numbers = out.numbers[finite]
    from_fractional = min(out.fractional, len(bad))
    out.fractional -= from_fractional
    out.integral -= len(bad) - from_fractional
