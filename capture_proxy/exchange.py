"""What the request path hands to capture: the raw parts of one sampled exchange.

The request path only fills an :class:`Exchange` (no encoding, no JSON) and ``put_nowait``\\ s it;
the writer turns it into a SageMaker capture line with :func:`to_line`, off the event loop.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from modelmon.capture_record import CaptureSide, build_record, choose_encoding, encode_side
from modelmon.config import CaptureConfig

# Decoders for Content-Encoding values we can undo for the record (the client still gets the
# compressed bytes). Anything else is captured as BASE64 of what went over the wire.
_MAX_DECODED = 64 * 1024 * 1024


def _gunzip(body: bytes) -> bytes:
    return zlib.decompressobj(wbits=47).decompress(body, _MAX_DECODED)


def _inflate(body: bytes) -> bytes:
    try:
        return zlib.decompressobj().decompress(body, _MAX_DECODED)
    except zlib.error:
        return zlib.decompressobj(wbits=-15).decompress(body, _MAX_DECODED)


_DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": _gunzip,
    "x-gzip": _gunzip,
    "deflate": _inflate,
}


@dataclass(slots=True)
class Exchange:
    event_id: str
    inference_time: float  # seconds since the epoch, UTC
    inference_id: str | None
    custom_attributes: str | None
    request_body: bytes | None  # None when capture.mode has no input
    request_content_type: str | None
    request_truncated: bool
    response_body: bytes | None  # None when capture.mode has no output
    response_content_type: str | None
    response_truncated: bool
    status: int
    latency_ms: float
    request_content_encoding: str | None = None
    response_content_encoding: str | None = None


def _decoded(body: bytes, content_encoding: str | None, truncated: bool) -> tuple[bytes, bool]:
    """The body as the model saw it; ``(raw, False)`` when it cannot be decoded."""
    if not content_encoding or content_encoding.strip().lower() in ("", "identity"):
        return body, True
    decoder = _DECODERS.get(content_encoding.strip().lower())
    if decoder is None or truncated:
        return body, False
    try:
        return decoder(body), True
    except (zlib.error, EOFError):
        return body, False


def to_line(
    exchange: Exchange,
    config: CaptureConfig,
    redact: Callable[[bytes, str], bytes] | None = None,
) -> bytes:
    """The JSON line for ``exchange``; ``redact(body, encoding)`` masks configured fields."""
    sides: list[CaptureSide | None] = []
    for body, content_type, truncated, content_encoding in (
        (
            exchange.request_body,
            exchange.request_content_type,
            exchange.request_truncated,
            exchange.request_content_encoding,
        ),
        (
            exchange.response_body,
            exchange.response_content_type,
            exchange.response_truncated,
            exchange.response_content_encoding,
        ),
    ):
        if body is None:
            sides.append(None)
            continue
        plain, ok = _decoded(body, content_encoding, truncated)
        encoding = (
            choose_encoding(content_type, config.csv_content_types, config.json_content_types)
            if ok
            else "BASE64"
        )
        if redact is not None and encoding != "BASE64" and not truncated:
            plain = redact(plain, encoding)
        sides.append(encode_side(plain, content_type, encoding, truncated))
    return build_record(
        event_id=exchange.event_id,
        inference_time=datetime.fromtimestamp(exchange.inference_time, UTC),
        request=sides[0],
        response=sides[1],
        inference_id=exchange.inference_id,
        custom_attributes=exchange.custom_attributes,
        status=exchange.status,
        latency_ms=exchange.latency_ms,
    )
