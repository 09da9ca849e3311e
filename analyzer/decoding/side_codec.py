"""One side (request or response) of a capture record to rows, with the configured codec.

BASE64 sides are decoded first; CSV and JSON sides are read verbatim. The body parser is chosen
once per decoder (see :mod:`analyzer.decoding.payload_rows` for the formats).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from analyzer.decoding.envelope import side_text
from analyzer.decoding.payload_rows import (
    INPUT_KEYS,
    OUTPUT_KEYS,
    PayloadError,
    Rows,
    compile_path,
    csv_rows,
    json_rows,
    parse_json_body,
    rows_of,
    v2_rows,
)
from modelmon.config import PayloadSide

__all__ = ["SideCodec", "decode_body"]


class SideCodec:
    """The configured codec of one side (request or response), ready for many bodies."""

    def __init__(self, side: PayloadSide, output: bool) -> None:
        self.format = side.format
        self.columns = side.columns
        self.output = output
        self.keys = (OUTPUT_KEYS if output else INPUT_KEYS).get(side.format, ())
        self.path = compile_path(side.path) if side.path else None
        self.body_rows: Callable[[str], Rows] = csv_rows if side.format == "csv" else self._json

    def _json(self, text: str) -> Rows:
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:
            doc = parse_json_body(text)  # JSON Lines, or the error with its reason
        return self.doc_rows(doc)

    def doc_rows(self, doc: Any) -> Rows:
        """The rows of a JSON body already parsed (not for ``csv``)."""
        if self.format == "v2":
            return v2_rows(doc, "outputs" if self.output else "inputs", self.columns, self.path)
        if self.path is None and type(doc) is dict:
            for key in self.keys:
                if key in doc:
                    return rows_of(doc[key])
        return json_rows(doc, self.keys, self.path)

    def rows(self, side: Any) -> Rows:
        """The rows of one side of a capture record (BASE64 decoded first), checked as
        :mod:`analyzer.decoding.envelope` checks a side."""
        if type(side) is not dict:
            raise PayloadError("bad_capture_side")
        if type(side.get("data")) is not str:
            raise PayloadError("no_data")
        return self.body_rows(side_text(side))


def decode_body(text: str, side: PayloadSide, output: bool) -> Rows:
    """The rows of one body (already text) in the side's configured format."""
    return SideCodec(side, output).body_rows(text)
