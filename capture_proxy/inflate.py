"""Bounded undoing of ``Content-Encoding`` for capture, and the bound on JSON escaping.

A compressed body is stored decoded (the client and the model still get the compressed
bytes). Inflating is bounded: :func:`inflate` asks zlib for at most ``limit + 1`` bytes
(``decompressobj(...).decompress(data, max_length)``), so a 60 kB gzip bomb costs at most
``max_capture_bytes`` of memory and the time to produce them, and a body that inflates past
``limit`` comes back cut to ``limit`` with ``cut=True`` (the record then says ``truncated``).

:func:`escapes_within_bound` decides whether a text body can be stored verbatim: JSON escaping
turns ``"`` and ``\\`` into two characters and other control characters into six
(``\\u0000``), so a body of control characters would grow sixfold in the capture line. A body
whose escaped form would be more than twice its size is stored as BASE64 (4/3) instead.
Pure logic: no I/O.
"""

from __future__ import annotations

import zlib

__all__ = ["ESCAPE_CHECK_BYTES", "escapes_within_bound", "inflate", "is_identity"]

# Bodies up to this size are not checked: their line is small whatever the escaping.
ESCAPE_CHECK_BYTES = 4096
_GZIP_WBITS = 47  # 32 + 15: a gzip (or zlib) header, detected
_ZLIB_WBITS = 15
_RAW_WBITS = -15
_SIX = bytes(c for c in range(32) if c not in (8, 9, 10, 12, 13))  # escaped as \u00XX


def is_identity(content_encoding: str | None) -> bool:
    """No ``Content-Encoding`` (or ``identity``): the body is what the model saw."""
    return not content_encoding or content_encoding.strip().lower() in ("", "identity")


def _bounded(data: bytes, wbits: int, limit: int) -> tuple[bytes, bool]:
    """Inflate ``data`` (gzip members one after another) to at most ``limit`` bytes."""
    parts: list[bytes] = []
    room = limit
    while True:
        decoder = zlib.decompressobj(wbits=wbits)
        try:
            out = decoder.decompress(data, room + 1)  # never more than room + 1 bytes
        except zlib.error:
            if not parts:
                raise
            return b"".join(parts), False  # bytes after the last gzip member are ignored
        if len(out) > room:
            parts.append(out[:room])
            return b"".join(parts), True
        parts.append(out)
        room -= len(out)
        if not decoder.eof:
            return b"".join(parts), True  # the stream stops early: what arrived is a part
        data = decoder.unused_data
        if not data or wbits != _GZIP_WBITS:
            return b"".join(parts), False


def inflate(body: bytes, content_encoding: str, limit: int) -> tuple[bytes, bool] | None:
    """``(plain, cut)`` for a ``gzip``/``x-gzip``/``deflate`` body, at most ``limit`` bytes;
    ``None`` when the coding is another one or the data is not valid for it.

    ``cut`` is True when the plain body is longer than ``limit`` (it is returned cut) or the
    compressed stream ends before its end marker.

    Examples
    --------
    >>> import gzip
    >>> inflate(gzip.compress(b"a,b\\n" * 4), "gzip", 1024)
    (b'a,b\\na,b\\na,b\\na,b\\n', False)
    >>> plain, cut = inflate(gzip.compress(bytes(10_000_000)), "gzip", 1000)
    >>> len(plain), cut
    (1000, True)
    >>> inflate(b"not gzip", "gzip", 1000) is None, inflate(b"x", "br", 1000) is None
    (True, True)
    """
    name = content_encoding.strip().lower()
    if not body and name in ("gzip", "x-gzip", "deflate"):
        return b"", False
    try:
        if name in ("gzip", "x-gzip"):
            return _bounded(body, _GZIP_WBITS, limit)
        if name == "deflate":  # RFC 9110 says zlib format; some servers send raw deflate
            try:
                return _bounded(body, _ZLIB_WBITS, limit)
            except zlib.error:
                return _bounded(body, _RAW_WBITS, limit)
    except zlib.error:
        return None
    return None


def escapes_within_bound(body: bytes) -> bool:
    """True when ``body`` as a JSON string is at most twice its size (small bodies always).

    Examples
    --------
    >>> escapes_within_bound(b'{"a": "b"}' * 1000), escapes_within_bound(b"1,2\\n" * 2000)
    (True, True)
    >>> escapes_within_bound(bytes(8000))  # NULs: six characters each
    False
    """
    size = len(body)
    if size <= ESCAPE_CHECK_BYTES:
        return True
    extra = body.count(b'"') + body.count(b"\\")
    extra += body.count(b"\n") + body.count(b"\r") + body.count(b"\t")
    extra += body.count(b"\b") + body.count(b"\f")
    extra += 5 * (size - len(body.translate(None, _SIX)))
    return extra <= size
