"""The fields of a whole batch of capture records at once, when every record is plain.

:class:`analyzer.decoding.codecs.PayloadDecoder` decodes record by record, which handles every
corner case (bad records, BASE64, truncated sides, missing sides) but pays a Python function
call and a dozen dict lookups per record. Almost every batch of real traffic has none of those
corner cases, so this module first tries to take the batch apart column-wise, with C-level ``map``
calls over all records: :func:`plain_fields` returns the per-record fields when **every**
record is a well-formed capture record with both sides present, verbatim (``CSV``/``JSON``
encoding), not truncated, with a non-empty ``eventId`` and a valid ``inferenceTime`` (the
rules of :mod:`analyzer.decoding.envelope`, checked on whole columns); otherwise it returns ``None``
and the caller decodes the batch record by record. The fields it returns are exactly those
the record-by-record path would read, so both paths give the same result. Pure (no I/O).

Examples
--------
>>> line = (
...     '{"captureData": {"endpointInput": {"data": "1,2", "encoding": "CSV"},'
...     ' "endpointOutput": {"data": "0.5", "encoding": "CSV"}},'
...     ' "eventMetadata": {"eventId": "e1", "inferenceTime": "2024-01-01T00:00:00Z"}}'
... )
>>> fields = plain_fields([orjson.loads(line)])
>>> (fields.inputs, fields.outputs, fields.event_ids, fields.inference_ids)
(['1,2'], ['0.5'], ['e1'], [None])
>>> plain_fields([{"captureData": {}}]) is None
True
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter, methodcaller
from typing import Any

import orjson

from analyzer.decoding.envelope import VERBATIM
from analyzer.decoding.inference_time import parse_inference_times
from analyzer.decoding.payload_rows import PayloadError, Rows
from analyzer.decoding.side_codec import SideCodec

__all__ = [
    "CHUNK",
    "PlainFields",
    "body_rows",
    "parse_lines",
    "plain_fields",
    "plain_fields_of_lines",
    "rows_per_record",
]

_VERBATIM = frozenset(VERBATIM)
_capture = itemgetter("captureData")
_metadata = itemgetter("eventMetadata")
_request = itemgetter("endpointInput")
_response = itemgetter("endpointOutput")
_data = itemgetter("data")
_event_id = itemgetter("eventId")
_encoding = methodcaller("get", "encoding")
_extra = methodcaller("get", "modelmon")
_time = methodcaller("get", "inferenceTime")
_inference_id = methodcaller("get", "inferenceId")


@dataclass(slots=True)
class PlainFields:
    """Per-record fields of a batch in which every record is plain (see the module)."""

    inputs: list[str]
    outputs: list[str]
    event_ids: list[str]
    inference_ids: list[str | None]
    inference_times: list[datetime]
    output_encodings: list[str]


def _only(values: list[Any], kind: type) -> bool:
    return set(map(type, values)) == {kind}


def _not_truncated(records: list[Any]) -> bool:
    """No record has a ``modelmon`` that is not an object or flags a side as cut."""
    for extra in map(_extra, records):
        if extra is not None and (type(extra) is not dict or extra.get("truncated")):
            return False
    return True


def plain_fields(records: list[Any]) -> PlainFields | None:
    """The fields of ``records`` (parsed capture records), or None unless all are plain."""
    if not records or not _only(records, dict):
        return None
    try:
        captures = list(map(_capture, records))
        metadata = list(map(_metadata, records))
        if not (_only(captures, dict) and _only(metadata, dict)):
            return None
        requests, responses = list(map(_request, captures)), list(map(_response, captures))
        if not (_only(requests, dict) and _only(responses, dict)):
            return None
        output_encodings = list(map(_encoding, responses))
        if not (set(map(_encoding, requests)) <= _VERBATIM and set(output_encodings) <= _VERBATIM):
            return None
        inputs, outputs = list(map(_data, requests)), list(map(_data, responses))
        event_ids = list(map(_event_id, metadata))
        if not (_only(inputs, str) and _only(outputs, str) and _only(event_ids, str)):
            return None
        if not all(event_ids):
            return None  # an empty eventId: the envelope refuses it
        times = parse_inference_times(list(map(_time, metadata)))
    except (KeyError, TypeError, ValueError):
        return None
    if times is None or not _not_truncated(records):
        return None
    ids = [i if type(i) is str else None for i in map(_inference_id, metadata)]
    return PlainFields(inputs, outputs, event_ids, ids, times, output_encodings)


#: Records (or bodies) parsed at once. The cyclic garbage collector runs every 700 net
#: allocations of containers (a parsed record is 5 or 6 dicts) and walks what is still
#: alive, promoting it to older generations that full collections walk again; 64 parsed
#: records at a time are freed before it runs, so decoding a batch triggers few collections.
CHUNK = 64


def plain_fields_of_lines(lines: list[bytes]) -> PlainFields | None:
    """:func:`plain_fields` of the parsed ``lines`` (None when one is blank or not JSON),
    parsed :data:`CHUNK` at a time: only the fields are kept, not the parsed records."""
    whole: PlainFields | None = None
    for start in range(0, len(lines), CHUNK):
        records = parse_lines(lines[start : start + CHUNK])
        part = None if records is None else plain_fields(records)
        if part is None:
            return None
        if whole is None:
            whole = part
        else:
            whole.inputs.extend(part.inputs)
            whole.outputs.extend(part.outputs)
            whole.event_ids.extend(part.event_ids)
            whole.inference_ids.extend(part.inference_ids)
            whole.inference_times.extend(part.inference_times)
            whole.output_encodings.extend(part.output_encodings)
    return whole


def parse_lines(lines: list[bytes]) -> list[Any] | None:
    """Every line parsed with orjson, or None when one is blank or not JSON."""
    try:
        return list(map(orjson.loads, lines))
    except orjson.JSONDecodeError:
        return None


def body_rows(codec: SideCodec, texts: list[str]) -> Rows | list[Rows] | None:
    """The rows of every body, or None when one does not decode (the slow path counts it).

    When every body is one row, one :class:`Rows` holds them all (one row per record);
    else there is one :class:`Rows` per body.
    """
    if codec.format == "csv":
        joined = "".join(texts)
        if all(texts) and not ('"' in joined or "\n" in joined or "\r" in joined):
            return Rows("csv", texts, len(texts))
    elif codec.format != "v2" and codec.path is None:
        rows = _json_one_row_each(codec.keys, texts)
        if rows is not None:
            return rows
    try:
        return list(map(codec.body_rows, texts))
    except (PayloadError, KeyError, TypeError, AttributeError, IndexError, RecursionError):
        return None  # what the record path counts (a body the parsers did not foresee too)


def _json_one_row_each(keys: tuple[str, ...], texts: list[str]) -> Rows | None:
    """``{key: [row]}`` bodies, the same ``key`` in all: what ``SideCodec._json`` reads.
    Parsed :data:`CHUNK` at a time; only the rows are kept."""
    firsts: list[Any] = []
    key, earlier = "", keys
    for start in range(0, len(texts), CHUNK):
        try:
            docs = list(map(orjson.loads, texts[start : start + CHUNK]))
        except orjson.JSONDecodeError:
            return None
        if not _only(docs, dict):
            return None
        if not key:
            found = [i for i, name in enumerate(keys) if name in docs[0]]
            if not found:
                return None
            key, earlier = keys[found[0]], keys[: found[0]]
        try:
            values = list(map(itemgetter(key), docs))
        except KeyError:
            return None
        if any(any(map(methodcaller("__contains__", e), docs)) for e in earlier):
            return None
        if not _only(values, list) or set(map(len, values)) != {1}:
            return None
        firsts.extend(map(itemgetter(0), values))
    if not firsts:
        return None
    kinds = set(map(type, firsts))
    if kinds == {dict}:
        return Rows("obj", firsts, len(firsts))
    if kinds == {list}:
        return Rows("pos", firsts, len(firsts))
    if dict in kinds or list in kinds:
        return None
    return Rows("cols", {0: firsts}, len(firsts))


def rows_per_record(rows: Rows | list[Rows], n: int) -> list[int]:
    """Rows per record."""
    return [1] * n if isinstance(rows, Rows) else [r.n for r in rows]
