"""Sorted runs of the blocks' key hashes: where a new label finds its prediction's candidates
without reading every block (an LSM of the hashes of :mod:`analyzer.store.model_quality_blocks`).

A **run** covers a stretch of block ids: every stored prediction of its blocks as an entry
``(hash, block, position)``, sorted by hash (ties by block, then position), in **pages** of
a few thousand entries (``mq_run_pages``: the hashes as one blob, the refs as another), with
each page's first hash (its fence) in the run's row (``mq_runs``). A lookup reads the fences,
computes with one ``np.searchsorted`` the pages that can hold the batch's hashes and reads
only those, by primary key; its cost follows the runs and the batch, not the predictions.

The runs partition the blocks ``id <= merged_upto`` (the largest ``last_block``) into
consecutive ranges; the blocks after it (**level 0**) are scanned as before
(:mod:`analyzer.store.model_quality_claims`), and there are few of them: once the closed ones
hold :attr:`RunSizes.min_entries` predictions, or number :data:`MANY_BLOCKS`, the next chunk
makes a run of them. The last block is never put in a run: a quiet endpoint's chunks are
appended to it (its hashes change); a block in a run is never appended to, should
retention leave it last, and a new block's id is above every run's (``insert_block``), so a
run's refs never name a block stored after it. Four neighbouring runs of one tier are merged
into one of the next (size-tiered), unless that makes one of more than
:attr:`RunSizes.cap` entries: a merge never holds the writer for long. A call builds at most
one run and, after a build, makes at most one merge (what a merge needs changes only then,
or at retention), so a database upgraded with millions of predictions in level 0 catches
up a bounded step per chunk (correct meanwhile, just slower), and a chunk that builds
nothing costs a few small queries.

Retention deletes blocks and leaves their entries (skipped at lookup: the block is gone),
dropped at the run's next merge; a run none of whose blocks is left goes.

SQLite's integers are signed: the hashes are kept in blobs, never in columns.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import orjson

from analyzer.store.model_quality_blocks import U64
from analyzer.store.multi_row import insert_rows

__all__ = [
    "DEFAULT_SIZES",
    "Entries",
    "RunSizes",
    "create_tables",
    "lookup",
    "maintain",
    "merged_upto",
    "prune_runs",
]

U32 = np.dtype("<u4")
I64 = np.dtype("<i8")
FAN_IN = 4  # runs of one tier merged into one of the next
MANY_BLOCKS = 512  # closed level-0 blocks that make a run whatever they hold
_SPAN = 1 << 32  # a ref names its block as an offset from the run's first block (uint32)


@dataclass(frozen=True)
class RunSizes:
    """How runs are made: ``min_entries`` closed level-0 predictions make a run, no merge
    makes one of more than ``cap`` entries, a page holds ``page`` entries."""

    min_entries: int = 65_536
    # tier 2 at chunks of 10,000 (16 × ~70,000) and no more: a merge of four of those (4.5M
    # entries) took 0.75 s of the writer's CPU, one of tier 2 ~0.07 s
    cap: int = 1_500_000
    page: int = 4_096

    def __post_init__(self) -> None:
        if min(self.min_entries, self.cap, self.page) < 1:
            raise ValueError(f"run sizes must be positive: {self}")


DEFAULT_SIZES = RunSizes()


@dataclass(frozen=True)
class Entries:
    """Entries of a run (or of several, concatenated): hash, block id, position."""

    hashes: npt.NDArray[np.uint64]
    blocks: npt.NDArray[np.int64]
    positions: npt.NDArray[np.uint32]

    def take(self, index: npt.NDArray[np.intp]) -> Entries:
        return Entries(self.hashes[index], self.blocks[index], self.positions[index])

    @staticmethod
    def join(parts: list[Entries]) -> Entries:
        """The parts' entries one after the other."""
        if not parts:
            return Entries(np.zeros(0, U64), np.zeros(0, I64), np.zeros(0, U32))
        return Entries(
            np.concatenate([e.hashes for e in parts]),
            np.concatenate([e.blocks for e in parts]),
            np.concatenate([e.positions for e in parts]),
        )


def create_tables(conn: sqlite3.Connection) -> None:
    """The runs' tables (idempotent; migration m010 and the join's ``create_tables``)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS mq_runs (id INTEGER PRIMARY KEY,"
        " first_block INTEGER NOT NULL, last_block INTEGER NOT NULL, n INTEGER NOT NULL,"
        " tier INTEGER NOT NULL, fences BLOB NOT NULL)"
    )
    conn.execute(
        "CREATE TABLE IF NOT EXISTS mq_run_pages (run INTEGER NOT NULL, page INTEGER NOT NULL,"
        " hashes BLOB NOT NULL, refs BLOB NOT NULL, PRIMARY KEY (run, page))"
    )


def merged_upto(conn: sqlite3.Connection) -> int:
    """The last block id in a run (0: none); the blocks after it are level 0."""
    return int(conn.execute("SELECT coalesce(max(last_block), 0) FROM mq_runs").fetchone()[0])


def _write_run(
    conn: sqlite3.Connection, first: int, last: int, tier: int, entries: Entries, page: int
) -> None:
    n = len(entries.hashes)
    run = conn.execute(
        "INSERT INTO mq_runs (first_block, last_block, n, tier, fences) VALUES (?, ?, ?, ?, ?)",
        [first, last, n, tier, entries.hashes[::page].tobytes()],
    ).lastrowid
    offsets = (entries.blocks - first).astype(U32)
    positions = entries.positions.astype(U32)
    insert_rows(  # one statement, not a GIL hand-off a page (``executemany``)
        conn,
        "INSERT INTO mq_run_pages",
        [
            (run, p, entries.hashes[at : at + page].tobytes(),
             offsets[at : at + page].tobytes() + positions[at : at + page].tobytes())
            for p, at in enumerate(range(0, n, page))
        ],
    )  # fmt: skip


def _decode(first: int, rows: list[tuple[bytes, bytes]]) -> Entries:
    """Pages' ``(hashes, refs)`` rows as entries, in the pages' order."""
    if not rows:
        return Entries.join([])
    hashes, blocks, positions = [], [], []
    for hash_blob, refs in rows:
        page = np.frombuffer(hash_blob, U64)
        hashes.append(page)
        blocks.append(np.frombuffer(refs, U32, count=page.size))
        positions.append(np.frombuffer(refs, U32, offset=4 * page.size))
    return Entries(
        np.concatenate(hashes),
        np.concatenate(blocks).astype(I64) + first,
        np.concatenate(positions),
    )


def _delete_runs(conn: sqlite3.Connection, runs: list[int]) -> None:
    ids = orjson.dumps(runs).decode()
    conn.execute("DELETE FROM mq_run_pages WHERE run IN (SELECT value FROM json_each(?))", [ids])
    conn.execute("DELETE FROM mq_runs WHERE id IN (SELECT value FROM json_each(?))", [ids])


def _build(conn: sqlite3.Connection, upto: int, sizes: RunSizes, last: int | None) -> bool:
    """A run (tier 0) of the first closed level-0 blocks, once they hold ``min_entries``
    predictions (the fewest blocks in id order that do) or, tiny blocks, once they number
    :data:`MANY_BLOCKS` (then all of them, up to ``min_entries``); False when neither.
    ``last``: the last block's id, read when None."""
    if last is None:
        (last,) = conn.execute("SELECT max(id) FROM mq_blocks").fetchone()
        if last is None:
            return False
    # at most 8 predictions a byte of their claimed bits: an upper bound from narrow rows
    # (a block's row is a page of its own), so that most chunks stop here; and the blocks
    # counted: tiny blocks (late data beside live, each chunk a block) make a run once
    # MANY_BLOCKS of them wait, whatever they hold
    (blocks, bits) = conn.execute(
        "SELECT count(*), coalesce(sum(length(claimed)), 0) FROM mq_claims"
        " WHERE block > ? AND block < ?",
        [upto, last],
    ).fetchone()
    if 8 * bits < sizes.min_entries and blocks < MANY_BLOCKS:
        return False
    cursor = conn.execute(
        "SELECT id, n FROM mq_blocks WHERE id > ? AND id < ? ORDER BY id", [upto, last]
    )
    picked: list[tuple[int, int]] = []
    total, full = 0, False
    while not full and (rows := cursor.fetchmany(256)):
        for block, n in rows:
            if picked and block - picked[0][0] >= _SPAN:  # its refs could not name it
                full = True  # a run of those before it
                break
            picked.append((int(block), int(n)))
            total += int(n)
            if total >= sizes.min_entries:
                full = True
                break
    cursor.close()
    full = full or len(picked) >= MANY_BLOCKS  # every closed level-0 block, however many
    if not full:
        return False
    first, end = picked[0][0], picked[-1][0]
    blobs = conn.execute(
        "SELECT hashes FROM mq_blocks WHERE id BETWEEN ? AND ? ORDER BY id", [first, end]
    ).fetchall()
    counts = np.array([n for _, n in picked], dtype=np.int64)
    entries = Entries(
        np.concatenate([np.frombuffer(blob, U64) for (blob,) in blobs]),
        np.repeat(np.array([b for b, _ in picked], dtype=I64), counts),
        _ranges(np.zeros(len(picked), np.int64), counts).astype(U32),
    )
    _write_run(conn, first, end, 0, entries.take(np.argsort(entries.hashes, kind="stable")),
               sizes.page)  # fmt: skip
    return True


def _merge(conn: sqlite3.Connection, sizes: RunSizes) -> bool:
    """The first :data:`FAN_IN` neighbouring runs of one tier whose entries fit in ``cap``
    merged into one of the next tier (the refs to blocks gone dropped); False if none."""
    runs = conn.execute(
        "SELECT id, first_block, last_block, n, tier FROM mq_runs ORDER BY first_block"
    ).fetchall()
    for at in range(len(runs) - FAN_IN + 1):
        group = runs[at : at + FAN_IN]
        if (len({row[4] for row in group}) == 1 and sum(row[3] for row in group) <= sizes.cap
                and group[-1][2] - group[0][1] < _SPAN):  # fmt: skip
            break
    else:
        return False
    parts = [
        _decode(first, conn.execute(
            "SELECT hashes, refs FROM mq_run_pages WHERE run = ? ORDER BY page", [run]
        ).fetchall())
        for run, first, *_ in group
    ]  # fmt: skip
    entries = Entries.join(parts)
    first, last = group[0][1], group[-1][2]
    alive = np.zeros(last - first + 1, dtype=bool)
    alive[[row[0] - first for row in conn.execute(
        "SELECT id FROM mq_blocks WHERE id BETWEEN ? AND ?", [first, last]
    ).fetchall()]] = True  # fmt: skip
    if not alive.all():
        entries = entries.take(np.flatnonzero(alive[entries.blocks - first]))
    # the runs are in block order and each is sorted by (hash, block, position): a stable
    # sort by hash keeps that order within a hash
    entries = entries.take(np.argsort(entries.hashes, kind="stable"))
    _delete_runs(conn, [row[0] for row in group])
    if len(entries.hashes):
        _write_run(conn, first, last, group[0][4] + 1, entries, sizes.page)
    return True


def maintain(
    conn: sqlite3.Connection,
    sizes: RunSizes = DEFAULT_SIZES,
    *,
    upto: int | None = None,
    last: int | None = None,
) -> tuple[bool, bool]:
    """After a chunk's blocks (the writer's transaction): at most one run built from level 0
    and, after a build, one merge (a merge a build makes possible, or one left from the
    last build); returns ``(built, merged)``. ``upto`` (:func:`merged_upto`) and ``last``
    (the last block's id) when the caller knows them: a statement less each."""
    built = _build(conn, merged_upto(conn) if upto is None else upto, sizes, last)
    return built, built and _merge(conn, sizes)


def prune_runs(conn: sqlite3.Connection) -> int:
    """After retention deleted blocks: the runs none of whose blocks is left go. The others
    stay, whichever of their blocks went: a new block's id is above every run's
    (``insert_block``), so a deleted block's id, still in a run's refs (skipped at lookup,
    dropped at its merge), never names another block; and a block in a run is never
    appended to (``_store_block``), should retention leave it last. Returns the runs
    dropped."""
    gone = [
        run
        for (run,) in conn.execute(
            "SELECT id FROM mq_runs r WHERE NOT EXISTS (SELECT 1 FROM"
            " mq_blocks WHERE id BETWEEN r.first_block AND r.last_block)",
        )
    ]
    if gone:
        _delete_runs(conn, gone)
    return len(gone)


def _ranges(starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Every integer of each ``[start, end)``, concatenated in order."""
    counts = ends - starts
    total = int(counts.sum())
    if not total:
        return np.zeros(0, np.int64)
    shift = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    return shift + np.arange(total, dtype=np.int64)


def _pages_for(
    fences: npt.NDArray[np.uint64], hashes: npt.NDArray[np.uint64]
) -> npt.NDArray[np.int64]:
    """The pages that can hold any of ``hashes`` (sorted): a hash's entries start in the
    last page whose fence is below it (or the first equal to it) and end in the last whose
    fence is at most it."""
    lo = np.searchsorted(fences, hashes, "left")
    hi = np.searchsorted(fences, hashes, "right")
    starts, ends = np.maximum(lo - 1, 0), hi  # pages [starts, ends), counted in one pass
    covered = np.bincount(starts, minlength=fences.size + 1) - np.bincount(
        ends, minlength=fences.size + 1
    )
    return np.flatnonzero(np.cumsum(covered[:-1]) > 0)


def _run_candidates(
    conn: sqlite3.Connection, run: int, first: int, pages: npt.NDArray[np.int64], total: int,
    hashes: npt.NDArray[np.uint64],
) -> Entries | None:  # fmt: skip
    """The entries of one run whose hash is one of ``hashes``: the hashes of the ``pages``
    that can hold them read by primary key, then the refs of only the pages with a hit."""
    if 2 * pages.size > total:  # most of the run: its pages in one range, the rest skipped
        wanted = set(pages.tolist())
        rows = [row for row in conn.execute(
            "SELECT page, hashes FROM mq_run_pages WHERE run = ? ORDER BY page", [run]
        ) if row[0] in wanted]  # fmt: skip
    else:
        rows = conn.execute(
            "SELECT page, hashes FROM mq_run_pages WHERE run = ? AND page IN"
            " (SELECT value FROM json_each(?)) ORDER BY page",
            [run, orjson.dumps(pages.tolist()).decode()],
        ).fetchall()
    parts = [np.frombuffer(blob, U64) for _, blob in rows]
    stored = np.concatenate(parts) if len(parts) > 1 else parts[0]
    lo = np.searchsorted(stored, hashes, "left").astype(np.int64)
    match = stored[np.minimum(lo, stored.size - 1)] == hashes
    if not match.any():
        return None
    lo, matched = lo[match], hashes[match]  # the ends searched only for the hashes found
    hit = _ranges(lo, np.searchsorted(stored, matched, "right").astype(np.int64))
    starts = np.cumsum([0, *(part.size for part in parts)])[:-1]
    row_of = np.searchsorted(starts, hit, "right") - 1
    within = hit - starts[row_of]
    numbers = np.array([page for page, _ in rows], dtype=np.int64)
    held = np.unique(row_of)
    refs = dict(
        conn.execute(
            "SELECT page, refs FROM mq_run_pages WHERE run = ? AND page IN"
            " (SELECT value FROM json_each(?))",
            [run, orjson.dumps(numbers[held].tolist()).decode()],
        ).fetchall()
    )
    blocks = np.empty(hit.size, dtype=I64)
    positions = np.empty(hit.size, dtype=U32)
    bounds = np.searchsorted(row_of, np.append(held, len(rows))).tolist()
    for i, row in enumerate(held.tolist()):
        at = slice(bounds[i], bounds[i + 1])
        size = parts[row].size
        blob = refs[int(numbers[row])]
        blocks[at] = np.frombuffer(blob, U32, count=size)[within[at]]
        positions[at] = np.frombuffer(blob, U32, offset=4 * size)[within[at]]
    return Entries(stored[hit], blocks + first, positions)


def lookup(
    conn: sqlite3.Connection, hashes: npt.NDArray[np.uint64]
) -> Iterator[Entries | tuple[int, int]]:
    """Run by run in block order, where the stored predictions of ``hashes`` (sorted,
    unique) may be: a run's entries of those hashes, or the ``(first, last)`` block range
    of a run to scan instead. A batch that needs more than half of a run's pages reads as
    many bytes of hashes either way: the run's blocks are scanned when they are fewer rows
    than those pages (big blocks; no refs to read), else its pages are read in one range."""
    for run, first, last, blob in conn.execute(
        "SELECT id, first_block, last_block, fences FROM mq_runs ORDER BY first_block"
    ).fetchall():
        fences = np.frombuffer(blob, U64)
        pages = _pages_for(fences, hashes)
        if 2 * pages.size > fences.size and last - first + 1 <= pages.size:
            yield first, last  # its blocks' hashes: as many bytes, fewer rows, no refs
        elif pages.size and (
            entries := _run_candidates(conn, run, first, pages, fences.size, hashes)
        ):
            yield entries
