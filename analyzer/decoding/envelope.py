"""The envelope of a capture record: the one reader every path checks a line's envelope with.

A capture line (SageMaker's JSON Lines format, one record per line) holds, around the payload
bodies, an *envelope*: ``eventMetadata.eventId``, ``eventMetadata.inferenceId``,
``eventMetadata.inferenceTime``, which sides ``captureData`` holds (``endpointInput``,
``endpointOutput``), each side's ``data`` and ``encoding``, and the proxy's
``modelmon.truncated`` flags. :func:`read_envelope` checks it and refuses a record with a
:class:`~analyzer.decoding.payload_rows.PayloadError` whose ``reason`` is the word the
service's decoder counts (``DecodedBatch.bad``) and the batch readers start the bad line's
message with (``{reason}: {detail}``). The rules, in the order they are checked:

1. ``not_json``: the line does not parse (:func:`parse_record`);
2. ``not_capture_record``: not an object, ``captureData`` or ``eventMetadata`` missing or
   not an object, ``eventId`` missing, not a string or empty, ``modelmon`` not an object or
   its ``truncated`` neither a list, a string nor an object;
3. ``bad_inference_time``: ``inferenceTime`` missing or not a time
   (:func:`~analyzer.decoding.inference_time.parse_inference_time`, the one parser);
4. ``no_capture_data``: neither side (a side holding ``null`` is no side);
5. the input side, when there is one: ``truncated_input`` (cut by the proxy),
   ``bad_capture_side`` (not an object), ``no_data`` (``data`` not a string);
6. the output side, when there is one, by the same rules (``truncated_output``, …): when
   the record has an input side, an unusable output does not refuse the record (the
   decoder counts the warning ``output_{reason}``; model quality, which needs the output,
   counts ``truncated_output`` or ``no_output``); without one, it does.

A side whose ``encoding`` is ``BASE64`` (any case) is read with :func:`side_text`
(``bad_base64``, ``not_utf8``); ``CSV``, ``JSON`` and any other encoding are read verbatim.
The decoder reads both sides' text that way (a record whose input does not decode is bad, an
output with an input a warning); the batch readers, which read only the output body, read
the input's text too (without an input, the output's), so such a line is refused with the
same word on every path. The fast paths check the same rules on whole columns and leave any
batch or file they do not cover to these readers (:mod:`analyzer.decoding.record_batch`,
:mod:`analyzer.decoding.arrow_batch`, ``analyzer.ingest.model_quality_arrow``);
``tests/analyzer/test_envelope_contract.py`` runs every path on one set of cases.

``inferenceId`` is kept when it is a string (else ``None``); the join key of model quality
is the ``inferenceId`` when it is a non-empty string, else the ``eventId``
(:meth:`Envelope.key`), and a key over :data:`MAX_KEY` characters gives model quality no
prediction (``key_too_long``; data quality keeps the record). Pure (no I/O).

Examples
--------
>>> line = (
...     b'{"captureData": {"endpointInput": {"data": "1,2", "encoding": "CSV"},'
...     b' "endpointOutput": {"data": "0.5", "encoding": "CSV"}},'
...     b' "eventMetadata": {"eventId": "e1", "inferenceTime": "2024-01-01T00:00:00Z"}}'
... )
>>> envelope = read_envelope(parse_record(line))
>>> (envelope.event_id, envelope.key, envelope.output_body())
('e1', 'e1', ('0.5', 'CSV'))
>>> read_envelope({"captureData": {}, "eventMetadata": {"eventId": "e1"}}).key
Traceback (most recent call last):
...
analyzer.decoding.payload_rows.PayloadError: bad_inference_time: None
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from analyzer.decoding.inference_time import parse_inference_time
from analyzer.decoding.payload_rows import PayloadError

__all__ = [
    "MAX_KEY",
    "NOT_CAPTURE",
    "NOT_JSON",
    "VERBATIM",
    "Envelope",
    "no_output",
    "parse_record",
    "read_envelope",
    "side_text",
]

NOT_JSON = "not_json"
NOT_CAPTURE = "not_capture_record"
NO_CAPTURE_DATA = "no_capture_data"
MAX_KEY = 1024  # a join key (inferenceId or eventId) longer than this gives no prediction
VERBATIM = ("CSV", "JSON")  # encodings read as they are
_NO_FLAGS: tuple[str, ...] = ()
_make = tuple.__new__  # an Envelope without its Python-level __new__ (once per record)


class Envelope(NamedTuple):
    """A record's envelope, checked (see the module).

    ``request`` / ``response``: the sides as captured (objects with a string ``data``), or
    None when absent; ``output_problem``: why a captured output is unusable when the record
    was kept for its input (``truncated_output``, ``bad_capture_side``, ``no_data``). A
    tuple: the decoder makes one per record.
    """

    event_id: str
    inference_id: str | None
    inference_time: datetime
    request: dict[str, Any] | None
    response: dict[str, Any] | None
    output_problem: str | None = None

    @property
    def key(self) -> str:
        """The model-quality join key: the ``inferenceId``, else the ``eventId``."""
        return self.inference_id or self.event_id

    def output_body(self) -> tuple[str | None, str]:
        """The output's ``(data, encoding)`` as captured (no encoding: ``CSV``); without a
        usable one, ``(None, why)``: ``truncated_output`` or ``no_output``."""
        response = self.response
        if response is None:
            return None, no_output(self.output_problem)
        encoding = response.get("encoding")
        return response["data"], encoding if type(encoding) is str else "CSV"


def no_output(problem: str | None) -> str:
    """Why a record without a usable output gives model quality no prediction."""
    return "truncated_output" if problem == "truncated_output" else "no_output"


def parse_record(line: bytes | str) -> Any:
    """One capture line parsed (any JSON value); ``not_json`` when it does not parse."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(NOT_JSON, str(exc)) from exc


def _side(side: Any, name: str, truncated: Any) -> str | None:
    """Why one side is unusable (None: it is usable)."""
    if name in truncated:
        return f"truncated_{name}"
    if type(side) is not dict:
        return "bad_capture_side"
    if type(side.get("data")) is not str:
        return "no_data"
    return None


def read_envelope(record: Any) -> Envelope:
    """The envelope of one parsed record; :class:`PayloadError` with the reason it is refused."""
    # One call per record on the decoder's slow path: locals, the common case first.
    if type(record) is not dict:
        raise PayloadError(NOT_CAPTURE, "a capture record is a JSON object")
    capture, metadata = record.get("captureData"), record.get("eventMetadata")
    if type(capture) is not dict or type(metadata) is not dict:
        raise PayloadError(NOT_CAPTURE, "captureData and eventMetadata must be objects")
    event_id = metadata.get("eventId")
    if type(event_id) is not str or not event_id:
        raise PayloadError(NOT_CAPTURE, "eventMetadata.eventId must be a non-empty string")
    extra = record.get("modelmon")
    truncated: Any = _NO_FLAGS
    if extra is not None:
        if type(extra) is not dict:
            raise PayloadError(NOT_CAPTURE, "modelmon must be an object")
        truncated = extra.get("truncated") or _NO_FLAGS
        if type(truncated) not in (tuple, list, str, dict):
            raise PayloadError(NOT_CAPTURE, "modelmon.truncated must be a list of sides")
    moment = parse_inference_time(metadata.get("inferenceTime"))
    request, response = capture.get("endpointInput"), capture.get("endpointOutput")
    inference_id = metadata.get("inferenceId")
    if type(inference_id) is not str:
        inference_id = None
    if (
        not truncated
        and type(request) is dict
        and type(response) is dict
        and type(request.get("data")) is str
        and type(response.get("data")) is str
    ):  # the common record: both sides whole
        return _make(Envelope, (event_id, inference_id, moment, request, response, None))
    if request is None and response is None:
        raise PayloadError(NO_CAPTURE_DATA, "captureData holds neither side")
    problem = None
    if request is not None:
        why = _side(request, "input", truncated)
        if why is not None:
            raise PayloadError(why)
    if response is not None:
        problem = _side(response, "output", truncated)
        if problem is not None:
            if request is None:
                raise PayloadError(problem)
            response = None
    return _make(Envelope, (event_id, inference_id, moment, request, response, problem))


def side_text(side: dict[str, Any]) -> str:
    """A checked side's ``data`` as text: BASE64 (any case) decoded (``bad_base64``, then
    ``not_utf8``), anything else verbatim."""
    data: str = side["data"]
    encoding = side.get("encoding")
    if encoding in VERBATIM or not isinstance(encoding, str) or encoding.upper() != "BASE64":
        return data
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PayloadError("bad_base64", str(exc)) from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError("not_utf8", str(exc)) from exc
