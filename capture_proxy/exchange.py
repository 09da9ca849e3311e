"""What the request path hands to capture: the raw parts of one sampled exchange.

The request path only fills an :class:`Exchange` (no encoding, no JSON) and ``put_nowait``\\ s it;
the writer turns it into a SageMaker capture line with :func:`to_line`, off the event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from capture_proxy.inflate import ESCAPE_CHECK_BYTES, escapes_within_bound, inflate, is_identity
from modelmon.capture_record import (
    CaptureSide,
    Encoding,
    RecordEncoder,
    build_record,
    choose_encoding,
    encode_side,
)
from modelmon.config import CaptureConfig


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
    # The upstream answered before the client had sent its whole body: the request side is
    # a part (``request_truncated`` is set too) and the record says so (``modelmon.partial``).
    request_partial: bool = False


def plain_body(
    body: bytes, content_encoding: str | None, truncated: bool, limit: int
) -> tuple[bytes, bool, bool]:
    """``(body as the model saw it, decoded, cut)``: ``Content-Encoding`` undone within
    ``limit`` bytes (:func:`capture_proxy.inflate.inflate`); ``(raw, False, truncated)`` when
    it cannot be (an unknown coding, bad data, or a raw body already cut)."""
    if is_identity(content_encoding):
        return body, True, truncated
    if truncated:
        return body, False, True
    decoded = inflate(body, content_encoding or "", limit)
    if decoded is None:
        return body, False, False
    return decoded[0], True, decoded[1]


def _text_encoding(encoding: Encoding, body: bytes, truncated: bool) -> Encoding:
    """BASE64 for a cut side, or for a text side whose JSON escaping would over-double it."""
    if encoding == "BASE64" or truncated or not escapes_within_bound(body):
        return "BASE64"
    return encoding


_PARTIAL = ["input"]


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

    __slots__ = ("_limit", "_on_cut", "_records")

    def __init__(self, config: CaptureConfig, on_cut: Callable[[], None] | None = None) -> None:
        self._records = RecordEncoder(config.csv_content_types, config.json_content_types)
        self._limit = config.max_capture_bytes
        self._on_cut = on_cut  # called for a record cut here (a body that inflates too far)

    def _side(
        self,
        body: bytes,
        content_type: str | None,
        truncated: bool,
        content_encoding: str | None,
        redact: Callable[[bytes, str], bytes] | None,
        mode: str,
    ) -> tuple[dict[str, str], bool]:
        """The side's object, and whether it is cut (a decoded body can be cut here)."""
        records = self._records
        encoding = records.encoding(content_type)
        if content_encoding is not None:
            body, ok, truncated = plain_body(body, content_encoding, truncated, self._limit)
            if not ok:
                encoding = "BASE64"
        if redact is not None and encoding != "BASE64" and not truncated:
            body = redact(body, encoding)
        if encoding != "BASE64" and len(body) > ESCAPE_CHECK_BYTES:
            encoding = _text_encoding(encoding, body, truncated)
        return records.side(body, content_type, encoding, truncated, mode), truncated

    def __call__(
        self, exchange: Exchange, redact: Callable[[bytes, str], bytes] | None = None
    ) -> bytes:
        """The JSON line for ``exchange``; ``redact(body, encoding)`` masks configured fields."""
        request = response = None
        truncated: list[str] | None = None
        records = self._records
        body = exchange.request_body
        if (
            body is not None
            and redact is None
            and exchange.request_content_encoding is None
            and len(body) <= ESCAPE_CHECK_BYTES
        ):
            # The usual small plain side (what _side does for it, without the call).
            cut = exchange.request_truncated
            request = records.side(
                body,
                exchange.request_content_type,
                records.encoding(exchange.request_content_type),
                cut,
                "INPUT",
            )
            if cut:
                truncated = ["input"]
        elif body is not None:
            request, cut = self._side(
                body,
                exchange.request_content_type,
                exchange.request_truncated,
                exchange.request_content_encoding,
                redact,
                "INPUT",
            )
            if cut:
                truncated = ["input"]
        body = exchange.response_body
        if (
            body is not None
            and redact is None
            and exchange.response_content_encoding is None
            and len(body) <= ESCAPE_CHECK_BYTES
        ):
            cut = exchange.response_truncated
            response = records.side(
                body,
                exchange.response_content_type,
                records.encoding(exchange.response_content_type),
                cut,
                "OUTPUT",
            )
            if cut:
                truncated = [*truncated, "output"] if truncated else ["output"]
        elif body is not None:
            response, cut = self._side(
                body,
                exchange.response_content_type,
                exchange.response_truncated,
                exchange.response_content_encoding,
                redact,
                "OUTPUT",
            )
            if cut:
                truncated = [*truncated, "output"] if truncated else ["output"]
        line = records.line(
            exchange.event_id,
            exchange.inference_time,
            request,
            response,
            exchange.inference_id,
            exchange.custom_attributes,
            exchange.status,
            exchange.latency_ms,
            truncated,
            _PARTIAL if exchange.request_partial and request is not None else None,
        )
        if (
            truncated
            and self._on_cut is not None
            and not (exchange.request_truncated or exchange.response_truncated)
        ):
            self._on_cut()  # the request path counted those it cut itself
        return line


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
    limit = config.max_capture_bytes
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
        plain, ok, truncated = plain_body(body, content_encoding, truncated, limit)
        encoding: Encoding = (
            choose_encoding(content_type, config.csv_content_types, config.json_content_types)
            if ok
            else "BASE64"
        )
        if redact is not None and encoding != "BASE64" and not truncated:
            plain = redact(plain, encoding)
        encoding = _text_encoding(encoding, plain, truncated)
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
        request_partial=exchange.request_partial and sides[0] is not None,
    )
