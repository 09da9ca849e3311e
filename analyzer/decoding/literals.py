"""The value-type grammar: which text is an Integral, a Fractional or a String (pure, no I/O).

This is the one definition of Deequ's type rule as we apply it; every decoding path
(:mod:`analyzer.decoding.value_types` in Python, :mod:`analyzer.decoding.arrow_values` with
Arrow's RE2 and byte counts) reads it from here.

- ``Integral``: an integer literal, ``[+-]?[0-9]+`` (``-12``, ``+1``, ``007``);
- ``Fractional``: any other decimal literal, with a dot or an exponent or both (``3.0``,
  ``.5``, ``5.``, ``1e5``, ``-2.5E-3``); ``3.0`` is Fractional, as in AWS's own files;
- a literal whose value is not finite (``1e400``) is a String, as are ``nan`` and ``inf``;
- ``String``: everything else, including ``" 1"``, ``"1_000"``, ``"0x10"``, a lone sign or dot;
- the empty string (and ``None``) is missing.

Deequ's patterns are ``^(-|\\+)? ?\\d*\\.\\d*$`` and ``^(-|\\+)? ?\\d*$``; ours differ on purpose
in three corner cases: we also accept exponents (``1e-05``, as numpy and most servers print
floats), and we reject a lone sign, a lone dot and a space after the sign (Deequ would call
``-`` Integral).

The fast paths convert whole columns with ``float()``-like parsers (numpy, Arrow), which
accept more than the grammar: blanks and underscores (:data:`FLOAT_ONLY`), other scripts'
digits, and words for non-finite values. They may convert only ASCII text without
:data:`FLOAT_ONLY` characters and must keep only finite results (numpy), or only text made of
:data:`NUMERIC_BYTES` (Arrow); there the parser accepts exactly the grammar's literals —
checked on the edge cases by ``tests/analyzer/test_decoding_contract.py``.

Examples
--------
>>> [literal_type(v) for v in ["1e5", " 1", "0x10", "1_000", "+1", ".5", "inf", "NaN", ""]]
['Fractional', 'String', 'String', 'String', 'Integral', 'Fractional', 'String', 'String', None]
"""

from __future__ import annotations

import math
import re

__all__ = [
    "FLOAT_ONLY",
    "FRACTIONAL",
    "INTEGRAL",
    "INTEGRAL_PATTERN",
    "NUMERIC_BYTES",
    "NUMERIC_PATTERN",
    "SEPARATOR",
    "STRING",
    "UNKNOWN",
    "integral_literal",
    "literal_type",
    "numeric_literal",
    "numeric_tokens",
]

INTEGRAL, FRACTIONAL, STRING, UNKNOWN = "Integral", "Fractional", "String", "Unknown"

_SIGN = "[+-]?"
_MANTISSA = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_EXPONENT = "(?:[eE][+-]?[0-9]+)?"
#: An integer literal (a whole value), for ``re`` and for RE2 (``^…$`` added by the caller).
INTEGRAL_PATTERN = _SIGN + "[0-9]+"
#: Any numeric literal, Integral or Fractional (a whole value).
NUMERIC_PATTERN = _SIGN + _MANTISSA + _EXPONENT
#: Every byte a numeric literal may hold.
NUMERIC_BYTES = b"0123456789+-.eE"
#: ASCII characters that ``float()`` accepts but a numeric literal may not hold.
FLOAT_ONLY = "_ \t\n\r\x0b\x0c\x1c\x1d\x1e"
#: The separator of :func:`numeric_tokens` (a control character no literal holds).
SEPARATOR = "\x1f"

_INTEGRAL = re.compile(INTEGRAL_PATTERN)
_NUMERIC = re.compile(NUMERIC_PATTERN)
# A whole field (between separators) that is a numeric literal.
_TOKEN = re.compile(rf"(?<![^{SEPARATOR}]){NUMERIC_PATTERN}(?![^{SEPARATOR}])")


def integral_literal(text: str) -> bool:
    """Whether ``text`` is an integer literal (a long one may still overflow a float)."""
    return _INTEGRAL.fullmatch(text) is not None


def numeric_literal(text: str) -> bool:
    """Whether ``text`` is a numeric literal (its value may still overflow to infinity)."""
    return _NUMERIC.fullmatch(text) is not None


def numeric_tokens(joined: str) -> set[str]:
    """The distinct fields of ``joined`` (values joined by :data:`SEPARATOR`) that are numeric
    literals, found by one scan of the text."""
    return set(_TOKEN.findall(joined))


def literal_type(text: str) -> str | None:
    """``Integral``, ``Fractional`` or ``String`` for one text value; None when missing."""
    if not text:
        return None
    if not numeric_literal(text) or not math.isfinite(float(text)):
        return STRING
    return INTEGRAL if integral_literal(text) else FRACTIONAL
