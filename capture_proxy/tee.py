"""What the request path does for capture, shared by both engines: decide, tee, hand over.

Everything here is cheap and never blocks: the filter (:mod:`capture_proxy.filters`), a
sampling call, a bounded copy of the first ``max_capture_bytes`` of each body, an event id,
and a non-blocking ``submit``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from capture_proxy.exchange import Exchange
from capture_proxy.filters import CaptureFilter
from capture_proxy.metrics import ProxyMetrics
from modelmon.config import ModelmonConfig

if TYPE_CHECKING:
    from capture_proxy.sink import CaptureSink

__all__ = [
    "CUSTOM_ATTRIBUTES_HEADER",
    "EVENT_ID_HEADER",
    "CaptureHooks",
    "EventIds",
    "Tee",
    "eligible",
    "hand_over",
    "sampling_key",
    "start_capture",
    "status_eligible",
]

log = logging.getLogger("modelmon.proxy.capture")

EVENT_ID_HEADER = "X-Modelmon-Event-Id"
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"

_BATCH = 256


class EventIds:
    """Random (version 4) UUID strings, like ``str(uuid.uuid4())`` at a fraction of the cost.

    The randomness comes from ``os.urandom`` in batches of 256 ids, so the hot path pays a
    slice and a format instead of a syscall and a ``UUID`` object per request.

    Examples
    --------
    >>> import uuid
    >>> ids = EventIds()
    >>> value = ids.next()
    >>> uuid.UUID(value).version, str(uuid.UUID(value)) == value, value != ids.next()
    (4, True, True)
    """

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0

    def next(self) -> str:
        pos = self._pos
        if pos >= len(self._buf):
            self._buf = os.urandom(16 * _BATCH)
            pos = 0
        self._pos = pos + 16
        h = self._buf[pos : pos + 16].hex()
        # version nibble 4, variant bits 10xx (RFC 9562 §5.4)
        variant = "89ab"[int(h[16], 16) & 3]
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"


class Tee:
    """Keeps the first ``limit`` bytes of a stream; remembers whether there was more.

    ``complete`` is False while a streamed body is being read: an engine that streams a
    request body sets it to False at the start and back to True when the client's body
    ended, so that an exchange answered before that is recorded as partial.
    """

    __slots__ = ("chunks", "complete", "limit", "size", "truncated")

    def __init__(self, limit: int) -> None:
        self.chunks: list[bytes] = []
        self.limit = limit
        self.size = 0
        self.truncated = False
        self.complete = True

    def add(self, chunk: bytes) -> None:
        room = self.limit - self.size
        if len(chunk) > room:
            self.truncated = True
            if room <= 0:
                return
            chunk = chunk[:room]
        if chunk:
            self.chunks.append(chunk)
            self.size += len(chunk)

    def body(self) -> bytes:
        chunks = self.chunks
        if not chunks:
            return b""
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


@dataclass(frozen=True, slots=True)
class CaptureHooks:
    """What the forwarders need from capture: a sampling decision and a non-blocking submit."""

    sample: Callable[[str | None], bool]
    submit: Callable[[Exchange], bool]
    filter: CaptureFilter
    metrics: ProxyMetrics
    inference_id_headers: tuple[str, ...]
    max_capture_bytes: int
    capture_input: bool
    capture_output: bool
    event_ids: EventIds


async def start_capture(
    config: ModelmonConfig,
    metrics: ProxyMetrics,
    *,
    clock: Callable[[], float],
    worker_id: int,
) -> tuple[CaptureSink, CaptureHooks]:
    """Start the sink (recovering files a crash left) and the hooks both engines call."""
    from capture_proxy.sampling import Sampler
    from capture_proxy.sink import CaptureSink

    capture = config.capture
    sink = CaptureSink(config, metrics, clock=clock, worker_id=worker_id)
    await sink.start()
    hooks = CaptureHooks(
        sample=Sampler(
            capture.sampling_percentage, key=sampling_key(capture.sampling_key_env)
        ).sample,
        submit=sink.submit,
        filter=CaptureFilter(capture.filters),
        metrics=metrics,
        inference_id_headers=tuple(capture.inference_id_headers),
        max_capture_bytes=capture.max_capture_bytes,
        capture_input="input" in capture.mode,
        capture_output="output" in capture.mode,
        event_ids=EventIds(),
    )
    return sink, hooks


def sampling_key(name: str | None) -> bytes | None:
    """The secret of ``capture.sampling_key_env``; None (and a warning) when it is not set."""
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        log.warning("capture.sampling_key_env names %s, which is not set: unkeyed sampling", name)
        return None
    return value.encode("utf-8", "surrogateescape")


def eligible(capture: CaptureHooks | None, method: str | bytes, path: str) -> CaptureHooks | None:
    """``capture`` when ``capture.filters`` let this request be captured, else None (counted)."""
    if capture is None:
        return None
    reason = capture.filter.reason(method, path)
    if reason is None:
        return capture
    capture.metrics.filter_out(reason)
    return None


def status_eligible(capture: CaptureHooks, status: int) -> bool:
    """True when a response of ``status`` may be captured; counted when it may not."""
    if capture.filter.status_ok(status):
        return True
    capture.metrics.filter_out("status")
    return False


def hand_over(
    capture: CaptureHooks,
    *,
    event_id: str,
    started: float,
    t0: float,
    inference_id: str | None,
    custom_attributes: str | None,
    tee_in: Tee | bytes | None,
    tee_out: Tee | bytes | None,
    request_type: str | None,
    request_encoding: str | None,
    response_type: str | None,
    response_encoding: str | None,
    status: int,
) -> None:
    """Build the :class:`Exchange` of a finished response and submit it; never raises.

    ``started`` is the epoch time the request arrived, ``t0`` its ``perf_counter``. A side is
    a :class:`Tee` of a streamed body, or the bytes of a whole one (kept up to
    ``max_capture_bytes`` here: no Tee for the usual small body), or None (not captured).
    """
    # Positional arguments and no helper calls: this runs once per captured request.
    limit = capture.max_capture_bytes
    if tee_in is None:
        request_body, req_truncated, partial = None, False, False
    elif type(tee_in) is bytes:
        partial = False
        req_truncated = len(tee_in) > limit
        request_body = tee_in[:limit] if req_truncated else tee_in
    else:
        assert isinstance(tee_in, Tee)
        partial = not tee_in.complete
        request_body, req_truncated = tee_in.body(), tee_in.truncated or partial
    if tee_out is None:
        response_body, resp_truncated = None, False
    elif type(tee_out) is bytes:
        resp_truncated = len(tee_out) > limit
        response_body = tee_out[:limit] if resp_truncated else tee_out
    else:
        assert isinstance(tee_out, Tee)
        response_body, resp_truncated = tee_out.body(), tee_out.truncated
    if req_truncated or resp_truncated:
        capture.metrics.truncated.inc()
    exchange = Exchange(
        event_id,
        started,
        inference_id,
        custom_attributes,
        request_body,
        request_type,
        req_truncated,
        response_body,
        response_type,
        resp_truncated,
        status,
        (time.perf_counter() - t0) * 1000.0,
        request_encoding,
        response_encoding,
        partial,
    )
    try:
        capture.submit(exchange)
    except Exception:  # capture must never change the response: count it and go on
        log.exception("capture submit failed; record dropped")
        capture.metrics.drop("encode_error")
