"""Messages fed in pieces, h11's way: split at every byte offset and in random small pieces.

Requests go to the proxy that way and responses come to it that way from a bare upstream; the
answers must equal those of the unsplit message and the capture records must be identical
(less the event id, the time and the latency). One proxy per engine serves every split.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from modelmon.capture_record import decode_side
from tests.capture_proxy.conftest import StartProxy
from tests.capture_proxy.test_app import FULL, sealed_records
from tests.capture_proxy.wire_support import Answer, Settle, read_answer, send_in_pieces, splits

_RANDOM = 6  # random splits per message, besides one at every offset


def _post(body: bytes) -> bytes:
    return (
        b"POST /echo HTTP/1.1\r\nHost: m\r\nContent-Type: text/csv\r\nContent-Length: %d\r\n\r\n%s"
        % (
            len(body),
            body,
        )
    )


_GET = b"GET /echo?q=1 HTTP/1.1\r\nHost: m\r\n\r\n"

# name -> (the bytes a client sends, the body of each request in them)
REQUESTS: dict[str, tuple[bytes, list[bytes]]] = {
    "get": (_GET, [b""]),
    "post": (_post(b"1,2.5,abc\n7,8,z\n"), [b"1,2.5,abc\n7,8,z\n"]),
    "chunked": (
        b"POST /echo HTTP/1.1\r\nHost: m\r\nContent-Type: application/json\r\n"
        b'Transfer-Encoding: chunked\r\n\r\n6\r\n{"a": \r\n4;x=y\r\n[1]}\r\n0\r\n\r\n',
        [b'{"a": [1]}'],
    ),
    "pair": (_GET + _post(b"9,pair\n"), [b"", b"9,pair\n"]),
    "continue": (
        b"POST /echo HTTP/1.1\r\nHost: m\r\nExpect: 100-continue\r\n"
        b"Content-Type: text/csv\r\nContent-Length: 5\r\n\r\n1,2,3",
        [b"1,2,3"],
    ),
}


class _Client:
    """One kept-alive client connection; each exchange starts on a message boundary."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> _Client:
        host, port = url.removeprefix("http://").split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    async def exchange(self, pieces: list[bytes], answers: int, settle: Settle) -> list[Answer]:
        await send_in_pieces(self.writer, pieces, settle)
        return [await read_answer(self.reader) for _ in range(answers)]

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def _stable(record: dict[str, Any]) -> dict[str, Any]:
    """A record less what differs between two identical exchanges."""
    meta = {
        k: v for k, v in record["eventMetadata"].items() if k not in ("eventId", "inferenceTime")
    }
    extra = {k: v for k, v in record.get("modelmon", {}).items() if k != "latency_ms"}
    return {**record, "eventMetadata": meta, "modelmon": extra}


def _check_records(capture_dir: Path, expected: dict[bytes, int]) -> None:
    """As many records as exchanges per request body, all alike."""
    by_body: dict[bytes, list[dict[str, Any]]] = defaultdict(list)
    for record in sealed_records(capture_dir):
        by_body[decode_side(record["captureData"]["endpointInput"])].append(_stable(record))
    assert {body: len(records) for body, records in by_body.items()} == expected
    for body, records in by_body.items():
        assert all(r == records[0] for r in records), body


@pytest.fixture
def settle() -> AsyncIterator[Settle]:  # type: ignore[misc]
    ping = Settle()
    yield ping
    ping.close()


async def test_requests_in_pieces_get_the_answers_and_records_of_the_whole(
    start_proxy: StartProxy, tmp_path: Path, settle: Settle
) -> None:
    proxy = await start_proxy(capture=FULL)
    rng = random.Random(8)
    expected: dict[bytes, int] = defaultdict(int)
    for name, (data, bodies) in REQUESTS.items():
        client = await _Client.open(proxy.url)
        try:
            whole = await client.exchange([data], len(bodies), settle)
            assert [(status, body) for status, _, body in whole] == [(200, b) for b in bodies]
            for pieces in splits(data, rng, count=_RANDOM):
                got = await client.exchange(pieces, len(bodies), settle)
                assert got == whole, (name, [len(p) for p in pieces])
        finally:
            await client.close()
        for body in bodies:
            expected[body] += len(data) + _RANDOM
    await proxy.stop()
    _check_records(tmp_path / "capture", dict(expected))


# name -> a response as the upstream sends it (a trailer that must never become a field, an
# interim answer before the final one, a close-delimited body, no body at all).
RESPONSES: dict[str, bytes] = {
    "length": (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nX-Up: 1\r\nContent-Length: 9\r\n\r\n"
        b"0.5,0.25\n"
    ),
    "chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'7\r\n{"s": 0\r\n3;e=1\r\n.5}\r\n0\r\nX-Trailer: t\r\n\r\n'
    ),
    "interim": (
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\r\ninterim"
    ),
    "close": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nclose-delimited",
    "empty": b"HTTP/1.1 204 No Content\r\nX-Up: 2\r\n\r\n",
}


class SplitUpstream:
    """A bare upstream: ``GET /<name>/<n>`` is answered with ``ways[name][n]``, piece by piece,
    each piece read by the proxy before the next is written."""

    def __init__(self, ways: dict[str, list[list[bytes]]]) -> None:
        self.ways = ways
        self.settle = Settle()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                _, name, index = head.split(b" ", 2)[1].decode().split("/")
                await send_in_pieces(writer, self.ways[name][int(index)], self.settle)
                if name == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the proxy closed its end: this connection is done
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        self.settle.close()


async def test_responses_in_pieces_reach_the_client_and_records_as_the_whole(
    start_proxy: StartProxy, tmp_path: Path, settle: Settle
) -> None:
    rng = random.Random(9)
    ways = {name: [[data], *splits(data, rng, count=_RANDOM)] for name, data in RESPONSES.items()}
    upstream = SplitUpstream(ways)
    proxy = await start_proxy(capture=FULL, proxy={"upstream": await upstream.start()})
    client = await _Client.open(proxy.url)
    expected: dict[bytes, int] = {}
    try:
        for name, variants in ways.items():
            request = b"GET /%s/%%d HTTP/1.1\r\nHost: m\r\n\r\n" % name.encode()
            [whole] = await client.exchange([request % 0], 1, settle)
            assert b"x-trailer" not in dict(whole[1]), "a trailer became a field"
            for index in range(1, len(variants)):
                [got] = await client.exchange([request % index], 1, settle)
                assert got == whole, (name, [len(p) for p in variants[index]])
            expected[whole[2]] = len(variants)
    finally:
        await client.close()
        await upstream.stop()
    await proxy.stop()
    by_body: dict[bytes, list[dict[str, Any]]] = defaultdict(list)
    for record in sealed_records(tmp_path / "capture"):
        by_body[decode_side(record["captureData"]["endpointOutput"])].append(_stable(record))
    assert {body: len(records) for body, records in by_body.items()} == expected
    for body, records in by_body.items():
        assert all(r == records[0] for r in records), body
