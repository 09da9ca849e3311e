"""Blocks: a capture chunk's predictions of one hour, stored as one row of columns.

``mq_blocks`` holds, per block, the columns of its predictions as blobs (rewritten only
while a quiet endpoint's chunks are appended to a small block, never by a join):
a 64-bit hash of each key (:func:`stable_key_hashes`), the inference times, the keys, the
predictions, the probabilities, both ids and the input rows. What changes when a label
joins is kept apart in ``mq_claims`` (a narrow row per block: a bit per prediction, set
when its label is joined, and how many are still unset), so that joining never rewrites a
block's wide row. A block never spans two hours (``bucket``, aligned on :data:`HOUR_S`):
a read of ``[start, end)`` finds its blocks by an index range on the hour and filters
their times with numpy.

The columns put the ones a scan reads first (hashes, then times): SQLite reads a blob
column of a row that overflows its page by walking the overflow pages from the start, so a
scan of the hashes never reads the input rows.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import orjson

from analyzer.monitors.model_quality.predictions import PredictionColumns, PredictionRow

__all__ = [
    "BLOCK_COLUMNS",
    "HOUR_S",
    "Block",
    "ChunkBlocks",
    "bits",
    "block_columns",
    "block_ids_overlapping",
    "block_rows",
    "chunk_blocks",
    "decode_rows",
    "encode_block",
    "insert_block",
    "keys_of",
    "pack",
    "predictions_of",
    "stable_key_hashes",
    "stored_predictions",
    "update_block",
]

HOUR_S = 3600
# the fixed part first, then the columns in the order reads use them (see the docstring)
BLOCK_COLUMNS = (
    "id INTEGER PRIMARY KEY, bucket INTEGER NOT NULL, n INTEGER NOT NULL,"
    " t_min REAL NOT NULL, t_max REAL NOT NULL, hashes BLOB NOT NULL, times BLOB NOT NULL,"
    " keys BLOB NOT NULL, predictions BLOB NOT NULL, probabilities BLOB NOT NULL,"
    " event_ids BLOB NOT NULL, inference_ids BLOB NOT NULL, rows BLOB NOT NULL"
)
U64 = np.dtype("<u8")
F64 = np.dtype("<f8")
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def _splitmix64(z: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    z = z + _GOLDEN
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def stable_key_hashes(keys: Sequence[str], joined: bytes | None = None) -> npt.NDArray[np.uint64]:
    """A stable 64-bit hash of each key's UTF-8 bytes, vectorized: the keys as one
    fixed-width byte array read as little-endian 64-bit words, each word folded in with
    splitmix64. A key holds no NUL (refused upstream), so a word is all zero only past the
    key's end: those are skipped, which makes the hash independent of the array's width.

    A hit is only a candidate: the caller compares the full keys. Stored, so the same in
    every process and version (unlike the batch join's
    :func:`analyzer.monitors.model_quality.pairs.key_hashes`, Python's ``hash``, which is
    only shared by forked processes and never leaves the run).
    """
    n = len(keys)
    if not n:
        return np.zeros(0, dtype=U64)
    words = _same_length_words(joined, n) if joined is not None else None
    if words is not None:
        return _hash_words(words)
    encoded = [key.encode() for key in keys]
    # an empty key (refused by both intakes) is one word of zeros: hash 0, not a width of 0
    words = np.maximum((np.fromiter(map(len, encoded), dtype=np.int64, count=n) + 7) // 8, 1)
    widths = np.unique(words)
    if widths.size == 1:  # the usual batch: keys of one shape (UUIDs, counters of one width)
        return _hash_words(
            _words(np.array(encoded, dtype=f"S{int(widths[0]) * 8}"), int(widths[0]))
        )
    # keys of several widths hashed a width at a time: one long key must not pad every
    # other key of the batch to its length (n × 3 KiB); the hash does not depend on the width
    hashes = np.zeros(n, dtype=U64)
    for width in widths.tolist():
        where = np.flatnonzero(words == width)
        group = np.array([encoded[i] for i in where.tolist()], dtype=f"S{width * 8}")
        hashes[where] = _hash_words(_words(group, width))
    return hashes


def _words(encoded: npt.NDArray[np.bytes_], width: int) -> npt.NDArray[np.uint64]:
    """Keys padded with NULs to ``width`` 64-bit words each, as a row of words a key."""
    return np.ascontiguousarray(encoded).view(U64).reshape(encoded.size, width)


def _same_length_words(joined: bytes, n: int) -> npt.NDArray[np.uint64] | None:
    """:func:`_words` of ``n`` keys straight from their NUL-joined UTF-8 bytes (the block's
    ``keys``), when every key has the same length in bytes (UUIDs: the usual chunk); else
    None. A key holds no NUL (both intakes refuse one; a caller of ``encode_block`` that
    passes one gets the general way, as before), so the bytes hold exactly ``n - 1`` of
    them, and a zero at every ``length + 1``-th place (the appended one last) means that
    every key is ``length`` bytes long."""
    if (len(joined) + 1) % n or joined.count(0) != n - 1:
        return None
    step = (len(joined) + 1) // n
    length = step - 1
    if not length:  # empty keys (refused upstream): the general way
        return None
    raw = np.frombuffer(joined + b"\x00", dtype=np.uint8).reshape(n, step)
    if raw[:, length].any():
        return None
    width = (length + 7) // 8
    padded = np.zeros((n, width * 8), dtype=np.uint8)
    padded[:, :length] = raw[:, :length]
    return padded.view(U64)


def _hash_words(words: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """:func:`stable_key_hashes` of keys as rows of NUL-padded 64-bit words (:func:`_words`)."""
    hashes = np.zeros(words.shape[0], dtype=U64)
    for column in words.T:
        hashes = np.where(column != 0, _splitmix64(hashes ^ column), hashes)
    return hashes


def insert_block(conn: sqlite3.Connection, block: Block, after: int = 0) -> int:
    """Insert a block's ``mq_blocks`` row, its id above every stored block's and above
    ``after`` (the runs' ``merged_upto``: a deleted block's id, still in a run's refs, is
    never given again); returns its id."""
    block_id = conn.execute(
        "INSERT INTO mq_blocks (id, bucket, n, t_min, t_max, hashes, times, keys, predictions,"
        " probabilities, event_ids, inference_ids, rows) VALUES"
        " ((SELECT max(coalesce(max(id), 0), ?) + 1 FROM mq_blocks),"
        " ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [after, *block.values],
    ).lastrowid
    assert block_id is not None
    return block_id


def pack(claimed: npt.NDArray[np.bool_]) -> bytes:
    """The claimed flags as bits (``mq_claims.claimed``)."""
    return np.packbits(claimed, bitorder="little").tobytes()


def bits(blob: bytes, n: int) -> npt.NDArray[np.bool_]:
    """``mq_claims.claimed`` back as one flag per prediction."""
    flags = np.unpackbits(np.frombuffer(blob, np.uint8), count=n, bitorder="little")
    return flags.astype(bool)


@dataclass(frozen=True)
class Block:
    """One block's row of ``mq_blocks`` (the values bound to its INSERT) and its keys."""

    bucket: int
    keys: list[str]
    times: npt.NDArray[np.float64]
    values: tuple[object, ...]  # bucket … rows, in BLOCK_COLUMNS' order after id


def _rows_blob(rows: Sequence[bytes | None]) -> bytes:
    """The input rows: their lengths (int32, -1 for none) then their bytes."""
    if None not in rows:  # every row kept (the usual chunk): lengths by one map
        return np.fromiter(map(len, rows), "<i4", len(rows)).tobytes() + b"".join(rows)  # type: ignore[arg-type]
    lengths = np.array([-1 if row is None else len(row) for row in rows], dtype="<i4")
    return lengths.tobytes() + b"".join(row for row in rows if row)


def decode_rows(blob: bytes, n: int) -> list[bytes | None]:
    """``mq_blocks.rows`` back as the input rows."""
    lengths = np.frombuffer(blob, "<i4", count=n)
    out: list[bytes | None] = []
    at = 4 * n
    for length in lengths.tolist():
        if length < 0:
            out.append(None)
        else:
            out.append(bytes(blob[at : at + length]))
            at += length
    return out


def encode_block(bucket: int, rows: Sequence[PredictionRow] | PredictionColumns) -> Block:
    """The block of ``rows`` (one hour's predictions of a chunk, one row per key), given as
    rows or as their columns."""
    columns = rows if isinstance(rows, PredictionColumns) else PredictionColumns.of_rows(rows)
    keys, event_ids, inference_ids, moments, predictions, probabilities, inputs = columns.lists()
    times = np.array(moments, dtype=F64)
    joined = "\x00".join(keys).encode()  # keys never hold NUL
    values = (
        bucket,
        len(rows),
        float(times.min()),
        float(times.max()),
        stable_key_hashes(keys, joined).tobytes(),
        times.tobytes(),
        joined,
        _coded(predictions),
        np.array(probabilities, dtype=F64).tobytes(),  # None → NaN
        orjson.dumps(event_ids),
        orjson.dumps(inference_ids),
        _rows_blob(inputs),
    )
    return Block(bucket, keys, times, values)


@dataclass(frozen=True)
class ChunkBlocks:
    """A chunk's predictions ready for the writer: a key's later repeats left out, split by
    the hour they were inferred in, each hour's columns with their block.

    Encoded on the ingest thread (:func:`chunk_blocks`), not on the writer's: the encoding's
    numpy steps let go of the GIL, and beside the busy ingest thread the writer waited for
    it again after each (in all ~46 ms a chunk of 10,000, measured, for 3.4–3.6 ms alone:
    the ingest then waited for the writer)."""

    parts: list[tuple[int, PredictionColumns, Block]]

    @property
    def n(self) -> int:
        """The predictions to store."""
        return sum(len(columns) for _, columns, _ in self.parts)


def chunk_blocks(rows: Sequence[PredictionRow] | PredictionColumns) -> ChunkBlocks:
    """The blocks of a chunk's predictions, given as rows or as their columns (no SQL:
    for any thread)."""
    columns = rows if isinstance(rows, PredictionColumns) else PredictionColumns.of_rows(rows)
    columns = _first_of_each_key(columns)
    if not columns:
        return ChunkBlocks([])
    return ChunkBlocks(
        [(bucket, part, encode_block(bucket, part)) for bucket, part in _by_hour(columns)]
    )


def _first_of_each_key(columns: PredictionColumns) -> PredictionColumns:
    """The rows without the later repeats of a key (the first stands, as for labels)."""
    keys = columns.keys
    if len(set(keys)) == len(keys):
        return columns
    first: dict[str, int] = {}
    for index, key in enumerate(keys):
        first.setdefault(key, index)
    return columns.take(sorted(first.values()))


def _by_hour(columns: PredictionColumns) -> list[tuple[int, PredictionColumns]]:
    """The rows split by the hour they were inferred in, each hour's in their order."""
    hours = np.floor(np.array(columns.times, dtype=F64) / HOUR_S).astype(np.int64)
    if hours.min() == hours.max():
        return [(int(hours[0]) * HOUR_S, columns)]
    return [
        (int(hour) * HOUR_S, columns.take(np.flatnonzero(hours == hour).tolist()))
        for hour in np.unique(hours).tolist()
    ]


def _coded(values: Sequence[str]) -> bytes:
    """The predictions as their distinct values (JSON, after its length) and a uint32 code
    each: a few classes stored once, and read back as shared objects (a window of a million
    predictions holds a million references, not a million strings)."""
    index: dict[str, int] = {}
    codes = np.fromiter(
        (index.setdefault(value, len(index)) for value in values), dtype="<u4", count=len(values)
    )
    head = orjson.dumps(list(index))
    return len(head).to_bytes(4, "little") + head + codes.tobytes()


def predictions_of(blob: bytes) -> npt.NDArray[np.object_]:
    """``mq_blocks.predictions`` back as an array of the predictions (shared strings)."""
    size = int.from_bytes(blob[:4], "little")
    # one None more: a 1-D array of the values whatever they hold
    values = np.array([*orjson.loads(blob[4 : 4 + size]), None], dtype=object)[:-1]
    return values[np.frombuffer(blob, "<u4", offset=4 + size)]  # type: ignore[no-any-return]


def keys_of(blob: bytes) -> list[str]:
    """``mq_blocks.keys`` back as the keys."""
    return blob.decode().split("\x00")


def block_ids_overlapping(
    conn: sqlite3.Connection, start: float, end: float
) -> list[tuple[int, int, float, float]]:
    """``(id, n, t_min, t_max)`` of the blocks holding times that may lie in ``[start,
    end)``, by id (an index range on the hour, then their time bounds)."""
    if math.isinf(start) or math.isinf(end):
        where, args = "t_max >= ? AND t_min < ?", [start, end]
    else:
        first = math.floor(start / HOUR_S) * HOUR_S
        where, args = (
            "bucket >= ? AND bucket < ? AND t_max >= ? AND t_min < ?",
            [
                first,
                end,
                start,
                end,
            ],
        )
    rows = conn.execute(f"SELECT id, n, t_min, t_max FROM mq_blocks WHERE {where} ORDER BY id",
                        args).fetchall()  # fmt: skip
    return [(int(i), int(n), float(lo), float(hi)) for i, n, lo, hi in rows]


def block_columns(conn: sqlite3.Connection, block: int) -> PredictionColumns:
    """A block's predictions as the columns they were stored from, in order."""
    row = conn.execute(
        "SELECT keys, event_ids, inference_ids, times, predictions, probabilities, rows, n"
        " FROM mq_blocks WHERE id = ?",
        [block],
    ).fetchone()
    probabilities = np.frombuffer(row[5], F64).tolist()
    return PredictionColumns(
        keys_of(row[0]),
        orjson.loads(row[1]),
        orjson.loads(row[2]),
        np.frombuffer(row[3], F64).tolist(),
        predictions_of(row[4]).tolist(),
        [None if math.isnan(p) else p for p in probabilities],
        decode_rows(row[6], row[7]),
    )


def block_rows(conn: sqlite3.Connection, block: int) -> list[PredictionRow]:
    """A block's predictions as the rows they came in as, in order."""
    return block_columns(conn, block).rows()


def update_block(conn: sqlite3.Connection, block_id: int, block: Block) -> None:
    """Rewrite a block's ``mq_blocks`` row with ``block``'s columns (it took more rows)."""
    conn.execute(
        "UPDATE mq_blocks SET (bucket, n, t_min, t_max, hashes, times, keys, predictions,"
        " probabilities, event_ids, inference_ids, rows) ="
        " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) WHERE id = ?",
        [*block.values, block_id],
    )


def _iter_rows(conn: sqlite3.Connection) -> Iterator[PredictionRow]:
    for (block,) in conn.execute("SELECT id FROM mq_blocks ORDER BY id").fetchall():
        yield from block_rows(conn, block)


def stored_predictions(conn: sqlite3.Connection) -> list[PredictionRow]:
    """Every stored prediction as the row it came in as, in the order stored (for tests,
    migrations and inspection: it reads every block)."""
    return list(_iter_rows(conn))
