"""The capture record: SageMaker's Data Capture JSON Lines format, written by the proxy and read
by the analyzer. This is the only definition of the schema (a leaf module: no I/O).

A record is one JSON object per line::

    {"captureData": {"endpointInput": {...}, "endpointOutput": {...}},
     "eventMetadata": {"eventId": ..., "inferenceId": ..., "inferenceTime": ...,
                       "customAttributes": [...]},
     "eventVersion": "0"}

Our additions live in extra keys that SageMaker's readers ignore: ``modelmon`` at the top level
holds ``status``, ``latency_ms``, ``truncated`` (the sides whose ``data`` is not the whole
body: cut at ``max_capture_bytes``, raw or once decoded, or sent only in part) and
``partial`` (``["input"]`` when the upstream answered before the client had sent its whole
body). A reader must not parse a side listed in ``truncated`` as a complete document.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

__all__ = [
    "EXTRA_KEY",
    "CaptureSide",
    "Encoding",
    "RecordEncoder",
    "bare_media_type",
    "build_record",
    "choose_encoding",
    "decode_side",
    "encode_side",
    "format_inference_time",
    "parse_record_line",
]

Encoding = Literal["CSV", "JSON", "BASE64"]
EXTRA_KEY = "modelmon"


def bare_media_type(content_type: str | None) -> str:
    """``Text/CSV; charset=utf-8`` → ``text/csv`` (parameters dropped, lower case)."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def choose_encoding(
    content_type: str | None, csv_types: Iterable[str], json_types: Iterable[str]
) -> Encoding:
    """SageMaker's rule: CSV or JSON by the configured lists, else BASE64."""
    media = bare_media_type(content_type)
    if media and media in {t.lower() for t in csv_types}:
        return "CSV"
    if media and media in {t.lower() for t in json_types}:
        return "JSON"
    return "BASE64"


@dataclass(frozen=True, slots=True)
class CaptureSide:
    """One side of an exchange as it goes into a record."""

    content_type: str
    data: str
    encoding: Encoding
    truncated: bool = False


def encode_side(
    body: bytes, content_type: str | None, encoding: Encoding, truncated: bool
) -> CaptureSide:
    """Text encodings keep the body verbatim; bytes that are not UTF-8 fall back to BASE64."""
    if encoding != "BASE64" and not truncated:
        try:
            return CaptureSide(content_type or "", body.decode("utf-8"), encoding, truncated)
        except UnicodeDecodeError:
            pass
    return CaptureSide(
        content_type or "", base64.b64encode(body).decode("ascii"), "BASE64", truncated
    )


def format_inference_time(moment: datetime) -> str:
    """ISO-8601 UTC with a ``Z``, to the millisecond (SageMaker writes seconds; both parse)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def build_record(
    *,
    event_id: str,
    inference_time: datetime,
    request: CaptureSide | None,
    response: CaptureSide | None,
    inference_id: str | None = None,
    custom_attributes: str | None = None,
    status: int | None = None,
    latency_ms: float | None = None,
    request_partial: bool = False,
) -> bytes:
    """One JSON line (with its trailing newline) for an exchange."""
    capture: dict[str, Any] = {}
    truncated: list[str] = []
    if request is not None:
        capture["endpointInput"] = {
            "observedContentType": request.content_type,
            "mode": "INPUT",
            "data": request.data,
            "encoding": request.encoding,
        }
        if request.truncated:
            truncated.append("input")
    if response is not None:
        capture["endpointOutput"] = {
            "observedContentType": response.content_type,
            "mode": "OUTPUT",
            "data": response.data,
            "encoding": response.encoding,
        }
        if response.truncated:
            truncated.append("output")
    metadata: dict[str, Any] = {
        "eventId": event_id,
        "inferenceTime": format_inference_time(inference_time),
    }
    if inference_id is not None:
        metadata["inferenceId"] = inference_id
    if custom_attributes:
        metadata["customAttributes"] = [
            part.strip() for part in custom_attributes.split(",") if part.strip()
        ]
    record: dict[str, Any] = {
        "captureData": capture,
        "eventMetadata": metadata,
        "eventVersion": "0",
    }
    extra: dict[str, Any] = {}
    if status is not None:
        extra["status"] = status
    if latency_ms is not None:
        extra["latency_ms"] = round(latency_ms, 3)
    if truncated:
        extra["truncated"] = truncated
    if request_partial:
        extra["partial"] = ["input"]
    if extra:
        record[EXTRA_KEY] = extra
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


_CACHE_MAX = 256  # distinct content types / custom attributes kept per encoder
_MILLIS = [f"{ms:03d}Z" for ms in range(1000)]


def _round3(value: float) -> float:
    """``round(value, 3)``, exactly, without its decimal-string round trip when it is safe.

    ``k / 1000`` is the double nearest to k/1000, which is what ``round`` returns; ``k`` is
    right when ``value * 1000`` (relative error below 2**-53) is not within 1e-6 of a tie.
    """
    scaled = value * 1000.0
    if -1e9 < scaled < 1e9:  # False for inf and nan
        k = round(scaled)
        if k and abs(abs(scaled - k) - 0.5) > 1e-6:  # k == 0 would lose the sign of -0.0
            return k / 1000.0
    return round(value, 3)


class RecordEncoder:
    """The bytes of :func:`build_record` for many records, at a fraction of the cost.

    What :func:`build_record` recomputes per record is kept here: the content-type sets
    (and the encoding of each content type seen), the ``YYYY-MM-DDTHH:MM:SS.`` text of the
    current second (the time is an epoch float, no ``datetime`` per record) and the split
    custom attributes. Each record is one dict built once and one ``orjson.dumps``. The
    output is byte for byte what :func:`encode_side` + :func:`build_record` give.

    Parameters
    ----------
    csv_types, json_types : iterable of str
        The configured content types (``capture.csv_content_types`` / ``json_content_types``).

    Examples
    --------
    >>> encoder = RecordEncoder(["text/csv"], ["application/json"])
    >>> encoder.encoding("Application/JSON; charset=utf-8"), encoder.encoding("image/png")
    ('JSON', 'BASE64')
    >>> encoder.inference_time(1772600400.0015)
    '2026-03-04T05:00:00.001Z'
    >>> side = encoder.side(b"1,2", "text/csv", "CSV", False, "INPUT")
    >>> line = encoder.line("e-1", 1772600400.25, side, None, None, "a=1, b", 200, 1.5, None)
    >>> line == build_record(
    ...     event_id="e-1", inference_time=datetime.fromtimestamp(1772600400.25, UTC),
    ...     request=encode_side(b"1,2", "text/csv", "CSV", False), response=None,
    ...     custom_attributes="a=1, b", status=200, latency_ms=1.5)
    True
    """

    __slots__ = ("_attributes", "_csv", "_json", "_kinds", "_second")

    def __init__(self, csv_types: Iterable[str], json_types: Iterable[str]) -> None:
        self._csv = frozenset(t.lower() for t in csv_types)
        self._json = frozenset(t.lower() for t in json_types)
        self._kinds: dict[str | None, Encoding] = {}
        self._attributes: dict[str, list[str]] = {}
        # (second, its "YYYY-MM-DDTHH:MM:SS." text), replaced as one object: thread-safe.
        self._second: tuple[float, str] = (math.nan, "")  # nan: the first call computes it

    def encoding(self, content_type: str | None) -> Encoding:
        """:func:`choose_encoding` with the configured lists, cached per content type."""
        kind = self._kinds.get(content_type)
        if kind is None:
            media = bare_media_type(content_type)
            if media and media in self._csv:
                kind = "CSV"
            elif media and media in self._json:
                kind = "JSON"
            else:
                kind = "BASE64"
            if len(self._kinds) >= _CACHE_MAX:
                self._kinds.clear()
            self._kinds[content_type] = kind
        return kind

    def inference_time(self, epoch: float) -> str:
        """:func:`format_inference_time` of ``datetime.fromtimestamp(epoch, UTC)``."""
        # datetime rounds to the microsecond half-even from modf's fraction; so do we.
        fraction, second = math.modf(epoch)
        micro = round(fraction * 1e6)
        if micro >= 1_000_000:
            micro -= 1_000_000
            second += 1.0
        elif micro < 0:
            micro += 1_000_000
            second -= 1.0
        cached = self._second
        if cached[0] != second:
            moment = datetime.fromtimestamp(int(second), UTC)
            cached = (second, moment.strftime("%Y-%m-%dT%H:%M:%S."))
            self._second = cached
        return cached[1] + _MILLIS[micro // 1000]

    @staticmethod
    def side(
        body: bytes, content_type: str | None, encoding: Encoding, truncated: bool, mode: str
    ) -> dict[str, str]:
        """The ``endpointInput``/``endpointOutput`` object (``mode`` INPUT/OUTPUT), as
        :func:`encode_side` would store it."""
        if encoding != "BASE64" and not truncated:
            try:
                data = body.decode("utf-8")
            except UnicodeDecodeError:
                encoding = "BASE64"
                data = binascii.b2a_base64(body, newline=False).decode("ascii")
        else:
            encoding = "BASE64"
            data = binascii.b2a_base64(body, newline=False).decode("ascii")
        return {
            "observedContentType": content_type or "",
            "mode": mode,
            "data": data,
            "encoding": encoding,
        }

    def line(
        self,
        event_id: str,
        epoch: float,
        request: dict[str, str] | None,
        response: dict[str, str] | None,
        inference_id: str | None,
        custom_attributes: str | None,
        status: int | None,
        latency_ms: float | None,
        truncated: list[str] | None,
        partial: list[str] | None = None,
    ) -> bytes:
        """One JSON line; ``truncated`` lists the sides cut (``input``/``output``), ``partial``
        those the client did not finish sending."""
        capture: dict[str, Any] = {}
        if request is not None:
            capture["endpointInput"] = request
        if response is not None:
            capture["endpointOutput"] = response
        metadata: dict[str, Any] = {
            "eventId": event_id,
            "inferenceTime": self.inference_time(epoch),
        }
        if inference_id is not None:
            metadata["inferenceId"] = inference_id
        if custom_attributes:
            parts = self._attributes.get(custom_attributes)
            if parts is None:
                parts = [p.strip() for p in custom_attributes.split(",") if p.strip()]
                if len(self._attributes) >= _CACHE_MAX:
                    self._attributes.clear()
                self._attributes[custom_attributes] = parts
            metadata["customAttributes"] = parts
        record: dict[str, Any] = {
            "captureData": capture,
            "eventMetadata": metadata,
            "eventVersion": "0",
        }
        if status is not None or latency_ms is not None or truncated or partial:
            extra: dict[str, Any] = {}
            if status is not None:
                extra["status"] = status
            if latency_ms is not None:
                extra["latency_ms"] = _round3(latency_ms)
            if truncated:
                extra["truncated"] = truncated
            if partial:
                extra["partial"] = partial
            record[EXTRA_KEY] = extra
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def parse_record_line(line: bytes | str) -> dict[str, Any]:
    """Parse one line; raises ``ValueError`` when it is not a capture record."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(record, dict) or not isinstance(record.get("captureData"), dict):
        raise ValueError("not a capture record: no captureData object")
    return record


def decode_side(side: dict[str, Any]) -> bytes:
    """The raw bytes of one side of a record, whatever its encoding."""
    data = side.get("data")
    if not isinstance(data, str):
        raise ValueError("capture side has no string data")
    if str(side.get("encoding", "")).upper() == "BASE64":
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"bad BASE64 data: {exc}") from exc
    return data.encode("utf-8")
