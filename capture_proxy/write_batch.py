"""What the capture writer handles per slice: the size and kind of a queued exchange, and the
encoded lines of a slice grouped by UTC hour (pure data: no I/O)."""

from __future__ import annotations

from capture_proxy.exchange import Exchange
from capture_proxy.inflate import is_identity

__all__ = ["Lines", "body_bytes", "compressed"]


class Lines:
    """Encoded lines grouped by the UTC hour of their records, in arrival order."""

    __slots__ = ("_group", "_last", "by_hour", "count", "size")

    def __init__(self) -> None:
        self.by_hour: dict[int, tuple[list[float], list[bytes]]] = {}
        self._group: tuple[list[float], list[bytes]] = ([], [])
        self._last: int | None = None
        self.count = 0
        self.size = 0

    def add(self, inference_time: float, line: bytes) -> None:
        hour = int(inference_time // 3600)
        if hour != self._last:  # records come in time order: one lookup per hour met
            group = self.by_hour.get(hour)
            if group is None:
                group = self.by_hour[hour] = ([], [])
            self._group = group
            self._last = hour
        self._group[0].append(inference_time)
        self._group[1].append(line)
        self.count += 1
        self.size += len(line)


def body_bytes(exchange: Exchange) -> int:
    """The body bytes an exchange holds (what ``queue_max_bytes`` counts)."""
    request, response = exchange.request_body, exchange.response_body
    return (len(request) if request is not None else 0) + (
        len(response) if response is not None else 0
    )


def compressed(exchange: Exchange) -> bool:
    """A side with a ``Content-Encoding`` to undo for the record."""
    request, response = exchange.request_content_encoding, exchange.response_content_encoding
    return (request is not None and not is_identity(request)) or (
        response is not None and not is_identity(response)
    )
