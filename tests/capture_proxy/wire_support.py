"""Byte-level helpers for the proxy tests that feed messages in pieces (both directions).

:class:`Settle` waits until the event loop has polled its sockets once more, so a piece
written before it has been read by the proxy (everything runs in one loop) and the next
piece arrives as a read of its own: a message split at an offset reaches the parser split
there. :func:`read_answer` reads one final answer (1xx skipped) framed either way.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Awaitable, Callable

# Fields that differ between two identical exchanges (or are the proxy's own re-framing).
VOLATILE = frozenset({b"date", b"x-modelmon-event-id", b"content-length", b"transfer-encoding"})

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


class Settle:
    """``await settle()``: one more trip through the loop's I/O poll (a socketpair ping)."""

    def __init__(self) -> None:
        self._tx, self._rx = socket.socketpair()
        self._rx.setblocking(False)

    async def __call__(self) -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def ready() -> None:
            self._rx.recv(64)
            if not done.done():
                done.set_result(None)

        loop.add_reader(self._rx.fileno(), ready)
        try:
            self._tx.send(b"x")
            await done
        finally:
            loop.remove_reader(self._rx.fileno())

    def close(self) -> None:
        self._tx.close()
        self._rx.close()


async def send_in_pieces(
    writer: asyncio.StreamWriter, pieces: list[bytes], settle: Callable[[], Awaitable[None]]
) -> None:
    """Write each piece as a read of its own at the other end."""
    for index, piece in enumerate(pieces):
        writer.write(piece)
        await writer.drain()
        if index < len(pieces) - 1:
            await settle()


def splits(data: bytes, rng: random.Random, count: int, largest: int = 7) -> list[list[bytes]]:
    """``data`` split at every offset, then ``count`` times in random pieces of 1..largest."""
    ways = [[data[:i], data[i:]] for i in range(1, len(data))]
    for _ in range(count):
        pieces, at = [], 0
        while at < len(data):
            step = rng.randint(1, largest)
            pieces.append(data[at : at + step])
            at += step
        ways.append(pieces)
    return ways


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    """One final response (interim 1xx skipped): status, fields less VOLATILE, body decoded."""
    async with asyncio.timeout(10):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            if not 100 <= status < 200:
                break
        fields = []
        for line in head.split(b"\r\n")[1:]:
            if line:
                name, _, value = line.partition(b":")
                fields.append((name.strip().lower(), value.strip()))
        names = dict(fields)
        if status in (204, 304):
            body = b""
        elif b"content-length" in names:
            body = await reader.readexactly(int(names[b"content-length"]))
        elif names.get(b"transfer-encoding") == b"chunked":
            body = b""
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await _trailers(reader)
                    break
                body += (await reader.readexactly(size + 2))[:-2]
        else:
            body = await reader.read()
    return status, [f for f in fields if f[0] not in VOLATILE], body


async def _trailers(reader: asyncio.StreamReader) -> None:
    while await reader.readuntil(b"\r\n") != b"\r\n":
        pass
