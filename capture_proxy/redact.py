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

Policy for what cannot be redacted: with any rule configured, every non-empty body must parse
as a kind that has rules, **whatever its Content-Type** (a JSON document labelled
``text/plain``, ``application/vnd.api+json``, ``application/octet-stream``, ``text/csv`` or
nothing is still a JSON document): with ``json_paths`` a body that parses as JSON (or JSON
Lines) is masked by path; with ``csv_columns`` a UTF-8 body that the :mod:`csv` module reads is
masked by column (a body of JSON scalars only, like ``42``, counts as CSV when columns are
configured; a body starting with ``{`` or ``[`` must be JSON when paths are configured). A
body that parses as neither, a side cut at ``max_capture_bytes`` (raw, or once decoded: a cut
body cannot be parsed) and a compressed side that cannot be decoded are replaced whole by
:data:`UNREDACTABLE` and counted (``Redactor.unredactable``, and the ``on_unredactable``
callback). Nothing that might hold a masked field is stored as is.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from capture_proxy.exchange import Exchange, plain_body
from modelmon.config import CaptureConfig, RedactConfig
from modelmon.json_path import ANY as _ANY
from modelmon.json_path import Step as _Step
from modelmon.json_path import parse_json_path

__all__ = ["MASK", "UNREDACTABLE", "Redactor", "parse_json_path"]

MASK = "***"
UNREDACTABLE = b"***"


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
        parsed = _documents(body)
        if parsed is None:
            return self._give_up()
        return self._masked_json(body, *parsed)

    def _masked_json(self, body: bytes, documents: list[Any], lines: bool) -> bytes:
        masked = sum(_mask(doc, steps) for doc in documents for steps in self._paths)
        if not masked:
            return body
        if not lines:
            return _dumps(documents[0])
        tail = b"\n" if body.endswith(b"\n") else b""
        return b"\n".join(_dumps(doc) for doc in documents) + tail

    def _csv(self, body: bytes) -> bytes:
        masked = self._masked_csv(body)
        return masked if masked is not None else self._give_up()

    def _masked_csv(self, body: bytes) -> bytes | None:
        try:
            text = body.decode("utf-8")
            rows = list(csv.reader(io.StringIO(text, newline="")))
        except (UnicodeDecodeError, csv.Error):
            return None
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

    def mask(self, body: bytes) -> bytes | None:
        """``body`` masked as the kind it parses as, whatever its label; ``None`` when it
        parses as no kind that has rules.

        >>> from modelmon.config import RedactConfig
        >>> r = Redactor(RedactConfig(json_paths=["ssn"]))
        >>> r.mask(b'{"ssn": "1"}'), r.mask(b"ssn,1"), r.mask(b"\\x89PNG")
        (b'{"ssn":"***"}', None, None)
        """
        if self._paths:
            parsed = _documents(body)
            if parsed is not None:
                scalars = not any(isinstance(doc, dict | list) for doc in parsed[0])
                if not (self._columns and scalars):  # "42" is a one-column CSV row too
                    return self._masked_json(body, *parsed)
            elif body.lstrip()[:1] in (b"{", b"["):
                return None  # broken JSON: never read as CSV, where nothing would match
        if self._columns:
            return self._masked_csv(body)
        return None

    def prepare(self, exchange: Exchange, capture: CaptureConfig) -> Exchange:
        """``exchange`` with every side masked, whatever its content type, or replaced whole by
        :data:`UNREDACTABLE` (see the module's policy); compressed sides are decoded first
        (within ``max_capture_bytes``). The sides of the result need no more redaction."""
        if not self.enabled:
            return exchange
        changes: dict[str, Any] = {}
        limit = capture.max_capture_bytes
        for prefix in ("request", "response"):
            body: bytes | None = getattr(exchange, f"{prefix}_body")
            if body is None:
                continue
            truncated: bool = getattr(exchange, f"{prefix}_truncated")
            content_encoding = getattr(exchange, f"{prefix}_content_encoding")
            plain, ok, cut = plain_body(body, content_encoding, truncated, limit)
            if not ok or cut:
                changes[f"{prefix}_body"] = self._give_up()
                changes[f"{prefix}_truncated"] = cut
            elif not plain.strip():
                changes[f"{prefix}_body"] = plain  # nothing in it to mask
            else:
                masked = self.mask(plain)
                changes[f"{prefix}_body"] = masked if masked is not None else self._give_up()
            changes[f"{prefix}_content_encoding"] = None
        return replace(exchange, **changes) if changes else exchange


def _documents(body: bytes) -> tuple[list[Any], bool] | None:
    """The JSON document of ``body`` (``lines=False``) or its JSON Lines; None when neither."""
    try:
        return [_loads(body)], False
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        pass
    try:
        documents = [_loads(line) for line in body.splitlines() if line.strip()]
    except ValueError:
        return None
    return (documents, True) if documents else None
