"""Masking of configured fields before a record is written (``capture.redact``).

JSON paths (``redact.json_paths``) are dotted paths, a small JMESPath-like subset:

- ``user.ssn``: key ``ssn`` of the object under key ``user``;
- ``instances[*].email``: ``email`` of every element of the list ``instances``;
- ``instances[0].email`` / ``instances[-1]``: one element (negative counts from the end);
- ``[*].card``: a top-level list; ``*`` as a whole segment (``users.*.ssn``): every value
  of an object;
- ``"a.b".c``: a key holding dots or brackets, in double quotes.

A matched value (of any type, object and list included) becomes the string ``"***"``; the
body is then re-serialized compactly. A JSON Lines body (one document per line) is masked
line by line. CSV columns (``redact.csv_columns``, 0-based indices) are masked on every line
with the :mod:`csv` module, so quoted fields with commas, quotes or newlines count as one
column. A body in which nothing matched is returned byte for byte.

Policy for what cannot be redacted: when rules exist for its kind, a body that cannot be parsed
(invalid JSON, CSV that is not UTF-8) and a JSON/CSV side that would be stored without passing
through the redactor (cut at ``max_capture_bytes``, or compressed in a way that cannot be
undone) is replaced whole by :data:`UNREDACTABLE` and counted (``Redactor.unredactable``, and
the ``on_unredactable`` callback). Nothing that might hold a masked field is stored as is.
Sides whose content type is neither a CSV nor a JSON type (images, audio ...) have no fields
to mask and are kept.
"""

from __future__ import annotations

import csv
import io
import json
import zlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from capture_proxy.exchange import Exchange
from modelmon.capture_record import choose_encoding
from modelmon.config import CaptureConfig, RedactConfig
from modelmon.json_path import ANY as _ANY
from modelmon.json_path import Step as _Step
from modelmon.json_path import parse_json_path

__all__ = ["MASK", "UNREDACTABLE", "Redactor", "parse_json_path"]

MASK = "***"
UNREDACTABLE = b"***"

_MAX_DECODED = 64 * 1024 * 1024


def _mask(node: Any, steps: list[_Step], depth: int = 0) -> int:
    """Mask the values ``steps[depth:]`` leads to inside ``node``; the number masked."""
    step = steps[depth]
    last = depth == len(steps) - 1
    if isinstance(node, dict):
        if step is _ANY:
            keys: list[Any] = list(node)
        elif isinstance(step, str) and step in node:
            keys = [step]
        else:
            return 0
    elif isinstance(node, list):
        if step is _ANY:
            keys = list(range(len(node)))
        elif isinstance(step, int) and -len(node) <= step < len(node):
            keys = [step]
        else:
            return 0
    else:
        return 0
    if last:
        for key in keys:
            node[key] = MASK
        return len(keys)
    return sum(_mask(node[key], steps, depth + 1) for key in keys)


def _loads(text: bytes) -> Any:
    # The standard library, not orjson: orjson turns integers beyond 64 bits into floats,
    # which would silently change ids in a re-serialized body.
    return json.loads(text)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _decode(body: bytes, content_encoding: str) -> bytes | None:
    """The body with ``Content-Encoding`` undone, or ``None`` when that is impossible."""
    name = content_encoding.strip().lower()
    try:
        if name in ("gzip", "x-gzip"):
            decoder = zlib.decompressobj(wbits=47)
        elif name == "deflate":
            try:
                return zlib.decompressobj().decompress(body, _MAX_DECODED)
            except zlib.error:
                decoder = zlib.decompressobj(wbits=-15)
        else:
            return None
        return decoder.decompress(body, _MAX_DECODED)
    except zlib.error:
        return None


class Redactor:
    """Mask ``capture.redact`` fields in a body; ``redactor(body, "JSON" | "CSV")``.

    Parameters
    ----------
    config : RedactConfig
        The paths and columns to mask. Invalid paths raise ``ValueError`` here, at start.
    on_unredactable : callable, optional
        Called once for every body replaced whole by :data:`UNREDACTABLE`.

    Examples
    --------
    >>> from modelmon.config import RedactConfig
    >>> r = Redactor(RedactConfig(json_paths=["user.ssn", "items[*].email"], csv_columns=[1]))
    >>> r(b'{"user": {"ssn": "123", "age": 4}, "items": [{"email": "a@b"}]}', "JSON")
    b'{"user":{"ssn":"***","age":4},"items":[{"email":"***"}]}'
    >>> r(b'1,"secret, with comma",3\\n4,5,6\\n', "CSV")
    b'1,***,3\\n4,***,6\\n'
    >>> r(b'{"user": ', "JSON"), r.unredactable
    (b'***', 1)
    """

    def __init__(
        self, config: RedactConfig, on_unredactable: Callable[[], None] | None = None
    ) -> None:
        self._paths = [parse_json_path(path) for path in config.json_paths]
        self._columns = sorted(set(config.csv_columns))
        self.enabled: bool = bool(self._paths or self._columns)
        self.unredactable = 0
        self._on_unredactable = on_unredactable

    def _give_up(self) -> bytes:
        self.unredactable += 1
        if self._on_unredactable is not None:
            self._on_unredactable()
        return UNREDACTABLE

    def __call__(self, body: bytes, encoding: str) -> bytes:
        """The body with the configured fields masked (``BASE64`` bodies are returned as is)."""
        if encoding == "JSON" and self._paths:
            return self._json(body)
        if encoding == "CSV" and self._columns:
            return self._csv(body)
        return body

    def _json(self, body: bytes) -> bytes:
        try:
            documents = [_loads(body)]
            lines = False
        except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            try:
                documents = [_loads(line) for line in body.splitlines() if line.strip()]
            except ValueError:
                return self._give_up()
            if not documents:
                return self._give_up()
            lines = True
        masked = sum(_mask(doc, steps) for doc in documents for steps in self._paths)
        if not masked:
            return body
        if not lines:
            return _dumps(documents[0])
        tail = b"\n" if body.endswith(b"\n") else b""
        return b"\n".join(_dumps(doc) for doc in documents) + tail

    def _csv(self, body: bytes) -> bytes:
        try:
            text = body.decode("utf-8")
            rows = list(csv.reader(io.StringIO(text, newline="")))
        except (UnicodeDecodeError, csv.Error):
            return self._give_up()
        masked = 0
        for row in rows:
            for column in self._columns:
                if column < len(row):
                    row[column] = MASK
                    masked += 1
        if not masked:
            return body
        terminator = "\r\n" if "\r\n" in text else "\n"
        out = io.StringIO(newline="")
        csv.writer(out, lineterminator=terminator).writerows(rows)
        result = out.getvalue()
        if not text.endswith(("\n", "\r")):
            result = result[: -len(terminator)]
        return result.encode("utf-8")

    def prepare(self, exchange: Exchange, capture: CaptureConfig) -> Exchange:
        """Make every JSON/CSV side of ``exchange`` reach the redactor, or mask it whole.

        :func:`capture_proxy.exchange.to_line` only redacts sides it can store as text; a side
        cut at ``max_capture_bytes`` or compressed undecodably would be stored as BASE64 of
        the raw bytes. Compressed sides are decoded here; the others become :data:`UNREDACTABLE`.
        """
        if not self.enabled:
            return exchange
        changes: dict[str, Any] = {}
        for prefix in ("request", "response"):
            body: bytes | None = getattr(exchange, f"{prefix}_body")
            if body is None:
                continue
            content_type = getattr(exchange, f"{prefix}_content_type")
            kind = choose_encoding(
                content_type, capture.csv_content_types, capture.json_content_types
            )
            if kind == "BASE64" or not (self._paths if kind == "JSON" else self._columns):
                continue  # no rule for this kind of body: to_line stores it as usual
            content_encoding = getattr(exchange, f"{prefix}_content_encoding")
            plain: bytes | None = body
            if getattr(exchange, f"{prefix}_truncated"):
                plain = None
            elif content_encoding and content_encoding.strip().lower() not in ("", "identity"):
                plain = _decode(body, content_encoding)
            else:
                continue
            changes[f"{prefix}_body"] = plain if plain is not None else self._give_up()
            changes[f"{prefix}_content_encoding"] = None
        return replace(exchange, **changes) if changes else exchange
