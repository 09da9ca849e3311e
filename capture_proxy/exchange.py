"""What the request path hands to capture: the raw parts of one sampled exchange.

The request path only fills an :class:`Exchange` (no encoding, no JSON) and ``put_nowait``\\ s it;
the writer turns it into a SageMaker capture line with :func:`to_line`, off the event loop.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from modelmon.capture_record import (
    CaptureSide,
    RecordEncoder,
    build_record,
    choose_encoding,
    encode_side,
)
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
    # capture_proxy.tee.hand_over builds it positionally (cheaper): keep the field order.
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


class LineEncoder:
    """:func:`to_line` for one capture config, with what does not change between records kept.

    The writer makes one and calls it per record; the content-type sets, the time text of
    the current second and the split custom attributes live in a
    :class:`~modelmon.capture_record.RecordEncoder`.

    Examples
    --------
    >>> config = CaptureConfig()
    >>> exchange = Exchange("e-1", 1772600400.5, None, None, b'{"x": 1}', "application/json",
    ...                     False, b"0.5", "text/csv", False, 200, 2.0)
    >>> LineEncoder(config)(exchange) == to_line(exchange, config)
    True
    """

    __slots__ = ("_records",)

    def __init__(self, config: CaptureConfig) -> None:
        self._records = RecordEncoder(config.csv_content_types, config.json_content_types)

    def _side(
        self,
        body: bytes,
        content_type: str | None,
        truncated: bool,
        content_encoding: str | None,
        redact: Callable[[bytes, str], bytes] | None,
        mode: str,
    ) -> dict[str, str]:
        records = self._records
        if content_encoding is None:
            encoding = records.encoding(content_type)
        else:
            body, ok = _decoded(body, content_encoding, truncated)
            encoding = records.encoding(content_type) if ok else "BASE64"
        if redact is not None and encoding != "BASE64" and not truncated:
            body = redact(body, encoding)
        return records.side(body, content_type, encoding, truncated, mode)

    def __call__(
        self, exchange: Exchange, redact: Callable[[bytes, str], bytes] | None = None
    ) -> bytes:
        """The JSON line for ``exchange``; ``redact(body, encoding)`` masks configured fields."""
        request = response = None
        truncated: list[str] | None = None
        body = exchange.request_body
        if body is not None:
            request = self._side(
                body,
                exchange.request_content_type,
                exchange.request_truncated,
                exchange.request_content_encoding,
                redact,
                "INPUT",
            )
            if exchange.request_truncated:
                truncated = ["input"]
        body = exchange.response_body
        if body is not None:
            response = self._side(
                body,
                exchange.response_content_type,
                exchange.response_truncated,
                exchange.response_content_encoding,
                redact,
                "OUTPUT",
            )
            if exchange.response_truncated:
                truncated = [*truncated, "output"] if truncated else ["output"]
        return self._records.line(
            exchange.event_id,
            exchange.inference_time,
            request,
            response,
            exchange.inference_id,
            exchange.custom_attributes,
            exchange.status,
            exchange.latency_ms,
            truncated,
        )


def to_line(
    exchange: Exchange,
    config: CaptureConfig,
    redact: Callable[[bytes, str], bytes] | None = None,
) -> bytes:
    """The JSON line for one ``exchange`` (``redact(body, encoding)`` masks configured fields);
    a writer encoding many records holds one :class:`LineEncoder` instead."""
    return LineEncoder(config)(exchange, redact)


def to_line_reference(
    exchange: Exchange,
    config: CaptureConfig,
    redact: Callable[[bytes, str], bytes] | None = None,
) -> bytes:
    """:func:`to_line` the plain way (:func:`~modelmon.capture_record.build_record`), record by
    record: the definition the fast encoders are tested and benchmarked against."""
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
