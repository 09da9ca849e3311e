"""The capture record: SageMaker's Data Capture JSON Lines format, written by the proxy and read
by the analyzer. This is the only definition of the schema (a leaf module: no I/O).

A record is one JSON object per line::

    {"captureData": {"endpointInput": {...}, "endpointOutput": {...}},
     "eventMetadata": {"eventId": ..., "inferenceId": ..., "inferenceTime": ...,
                       "customAttributes": [...]},
     "eventVersion": "0"}

Our additions live in extra keys that SageMaker's readers ignore: ``modelmon`` at the top level
holds ``status``, ``latency_ms`` and ``truncated`` (a list of the sides cut at
``max_capture_bytes``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

__all__ = [
    "EXTRA_KEY",
    "CaptureSide",
    "Encoding",
    "bare_media_type",
    "build_record",
    "choose_encoding",
    "decode_side",
    "encode_side",
    "format_inference_time",
    "parse_inference_time",
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


def parse_inference_time(text: str) -> datetime:
    """Read SageMaker's ``2022-04-18T00:21:48Z`` (and fractional seconds, offsets)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


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
    if extra:
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
