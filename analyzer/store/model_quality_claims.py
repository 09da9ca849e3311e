"""Which prediction a label is joined to: both arrivals (:mod:`analyzer.store.model_quality`).

What a join changes is kept in two narrow, arrival-ordered places, never in a row found by
its key: the prediction's bit in its block's ``mq_claims`` row, and the label's bit in its
batch's ``mq_label_batches`` row (the labels of one ``add_labels`` call, in order; a label
row names its batch and position). So a chunk that joins 10,000 waiting labels rewrites a
few narrow rows, not 10,000 random pages of the labels' b-tree (which its COMMIT would
write to the WAL): the labels' table is read by key, and written only by inserts and
retention.

- A chunk arrives while labels wait: its keys are probed among the labels (read only); a
  label whose batch bit is unset is joined to the chunk's block.
- A label arrives: its key's hash is looked up in the sorted runs of the blocks' hashes
  (:mod:`analyzer.store.model_quality_runs`), then in the few blocks not in a run yet
  (level 0, scanned in id order); each hit confirmed by the full key, the first stored
  prediction of a key is joined.
"""

from __future__ import annotations

import math
import sqlite3
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import orjson

from analyzer.store import model_quality_runs as runs
from analyzer.store.model_quality_blocks import F64, U64, bits, keys_of, pack, stable_key_hashes
from analyzer.store.model_quality_window import CHANGES, LABELS, UNCLAIMED, WAITING
from analyzer.store.multi_row import insert_rows

__all__ = ["add_label_batch", "add_labels", "add_totals", "claim_waiting", "mark_windows"]

_LOW_BITS = 20
_LOW = np.uint64((1 << _LOW_BITS) - 1)
_FEW_HITS = 8  # up to this many hits in a block, the keys' blob is searched, not split


def add_totals(conn: sqlite3.Connection, deltas: dict[str, int]) -> None:
    """Add to the kept totals (``mq_totals``)."""
    insert_rows(
        conn,
        "INSERT INTO mq_totals",
        [(name, delta) for name, delta in deltas.items() if delta],
        " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
    )  # one statement (multi_row: the writer waits for the GIL after each)


def add_label_batch(
    conn: sqlite3.Connection, received_at: float, keys: list[str], joined: npt.NDArray[np.bool_]
) -> int:
    """A new label batch's row (its bits) and its keys' row; returns its id."""
    batch = conn.execute(
        "INSERT INTO mq_label_batches (received_at, n, waiting, joined) VALUES (?, ?, ?, ?)",
        [received_at, len(keys), int((~joined).sum()), pack(joined)],
    ).lastrowid
    assert batch is not None
    conn.execute("INSERT INTO mq_label_keys VALUES (?, ?)", [batch, orjson.dumps(keys)])
    return batch


def mark_windows(conn: sqlite3.Connection, times: Iterable[float], window_s: int) -> None:
    """Bump the version of each window (by inference time) a label just joined in."""
    width = int(window_s)
    starts = sorted({math.floor(t / width) * width for t in times})
    conn.executemany(
        "INSERT INTO mq_dirty VALUES (?, 1)"
        " ON CONFLICT (window_start) DO UPDATE SET version = version + 1",
        [(start,) for start in starts],
    )


def claim_waiting(conn: sqlite3.Connection, block: int, keys: list[str]) -> npt.NDArray[np.bool_]:
    """Join the waiting labels of a just-stored block's keys to it; returns the block's
    claimed flags. The keys' labels are probed by key (read only); a label joined before
    (its batch bit set, or its batch gone) is not taken: the first stored prediction of a
    key keeps it."""
    # per label found: the key's index in ``keys`` (json_each's key), its batch and position,
    # as three JSON arrays in one row: one step of SQLite (run without the GIL) for the
    # chunk's 10,000 lookups, where a row each was a step each, and no key comes back
    (found,) = conn.execute(
        "SELECT json_array(json_group_array(j.key), json_group_array(l.batch),"
        " json_group_array(l.pos)) FROM json_each(?) j JOIN mq_labels l ON l.key = j.value",
        [orjson.dumps(keys).decode()],
    ).fetchone()
    claimed = np.zeros(len(keys), dtype=bool)
    columns = orjson.loads(found)
    if not columns[0]:
        return claimed
    rows = np.array(columns, dtype=np.int64).T
    rows = rows[np.argsort(rows[:, 1], kind="stable")]
    batches, starts = np.unique(rows[:, 1], return_index=True)
    stored = {
        batch: rest
        for batch, *rest in conn.execute(
            "SELECT id, received_at, n, waiting, joined FROM mq_label_batches WHERE id IN"
            " (SELECT value FROM json_each(?))",
            [orjson.dumps(batches.tolist()).decode()],
        )
    }  # a batch not there was pruned: its labels still stored were joined before it went
    changed: list[tuple[int, float, int, int, bytes]] = []
    for batch, part in zip(batches.tolist(), np.split(rows, starts[1:]), strict=True):
        if batch not in stored:
            continue
        received_at, n, waiting, blob = stored[batch]
        joined = bits(blob, n)
        part = part[part[:, 2] < n]  # no position past the batch (an id is never reused)
        part = part[~joined[part[:, 2]]]
        # a key given twice takes its label once, at its first place
        part = part[np.unique(part[:, 2], return_index=True)[1]]
        if part.size:
            joined[part[:, 2]] = True
            changed.append((batch, received_at, n, waiting - len(part), pack(joined)))
            claimed[part[:, 0]] = True
    # every batch's bits in one statement (labels in random order touch many batches a
    # chunk): each row exists, so each insert is the update (no ``UPDATE … FROM``: SQLite
    # 3.33; an upsert needs 3.24)
    insert_rows(
        conn,
        "INSERT INTO mq_label_batches (id, received_at, n, waiting, joined)",
        changed,
        " ON CONFLICT (id) DO UPDATE SET waiting = excluded.waiting, joined = excluded.joined",
    )
    return claimed


def _find_first(conn: sqlite3.Connection, keys: list[str]) -> dict[int, list[tuple[int, str]]]:
    """block id → ``(position, key)`` of the first stored prediction of each key found: run
    by run in block order (:mod:`analyzer.store.model_quality_runs`: a run's candidates from
    its pages, or its blocks' hashes scanned for a batch that needs most of the run), then
    the level-0 blocks' hashes scanned; each hit confirmed by the key, in block then
    position order, until every key is found."""
    wanted = set(keys)
    unsorted = stable_key_hashes(keys)
    by_hash: dict[int, list[str]] = defaultdict(list)
    for value, key in zip(unsorted.tolist(), keys, strict=True):
        by_hash[value].append(key)
    hashes = np.unique(unsorted)
    # a hash's low bits first (one gather a stored hash, ~18x faster than a binary search
    # of each), then the few candidates exactly
    table = np.zeros(1 << _LOW_BITS, dtype=bool)
    table[(hashes & _LOW).astype(np.intp)] = True
    found: dict[int, list[tuple[int, str]]] = {}
    lookup = _Lookup(conn, hashes, table, by_hash, wanted, found)
    for part in runs.lookup(conn, hashes):  # the runs' blocks precede level 0's
        if isinstance(part, runs.Entries):
            lookup.confirm(part)
        else:
            lookup.scan("id BETWEEN ? AND ?", part)
        if not wanted:
            return found
    lookup.scan("id > ?", (runs.merged_upto(conn),))
    return found


@dataclass
class _Lookup:
    """One label batch's lookup: the keys still wanted and those found (block id →
    ``(position, key)``)."""

    conn: sqlite3.Connection
    hashes: npt.NDArray[np.uint64]  # sorted, unique
    table: npt.NDArray[np.bool_]  # their low bits
    by_hash: dict[int, list[str]]
    wanted: set[str]
    found: dict[int, list[tuple[int, str]]]

    def scan(self, where: str, args: tuple[int, ...]) -> None:
        """The blocks ``where`` says, in id order, their hashes read one block at a time."""
        hashes = self.hashes
        for block, blob in self.conn.execute(
            f"SELECT id, hashes FROM mq_blocks WHERE {where} ORDER BY id", args
        ):
            stored = np.frombuffer(blob, U64)
            candidates = np.flatnonzero(self.table[(stored & _LOW).astype(np.intp)])
            if not candidates.size:
                continue
            at = np.minimum(np.searchsorted(hashes, stored[candidates]), len(hashes) - 1)
            hits = candidates[hashes[at] == stored[candidates]]
            if not hits.size:
                continue
            keys = self.conn.execute("SELECT keys FROM mq_blocks WHERE id = ?", [block])
            self._take(int(block), _confirmed(keys.fetchone()[0], hits.tolist(),
                                              stored[hits].tolist(), self.by_hash))  # fmt: skip
            if not self.wanted:
                return

    def confirm(self, hits: runs.Entries) -> None:
        """A run's hits, in block then position order."""
        order = np.lexsort((hits.positions, hits.blocks))
        blocks, starts = np.unique(hits.blocks[order], return_index=True)
        bounds = np.append(starts, order.size).tolist()
        for block, lo, hi in zip(blocks.tolist(), bounds[:-1], bounds[1:], strict=True):
            row = self.conn.execute("SELECT keys FROM mq_blocks WHERE id = ?", [block]).fetchone()
            if row is None:  # retention deleted it: its entries stay until the run's merge
                continue
            at = order[lo:hi]
            self._take(block, _confirmed(row[0], hits.positions[at].tolist(),
                                         hits.hashes[at].tolist(), self.by_hash))  # fmt: skip
            if not self.wanted:
                return

    def _take(self, block: int, confirmed: list[tuple[int, str]]) -> None:
        for i, key in confirmed:
            if key in self.wanted:  # the first stored prediction of its key
                self.wanted.discard(key)
                self.found.setdefault(block, []).append((i, key))


def _confirmed(
    blob: bytes, hits: list[int], hashes: list[int], by_hash: dict[int, list[str]]
) -> list[tuple[int, str]]:
    """``(position, key)`` of the hits (positions in order, with their stored hashes) whose
    stored key is one of the keys of that hash (a hit of another key of the same hash is
    dropped). A few hits look each key up in the keys' blob (a key is NUL-delimited: its
    position is the NULs before it); more split the whole blob."""
    if len(hits) > _FEW_HITS:
        block_keys = keys_of(blob)
        return [(i, block_keys[i]) for i, h in zip(hits, hashes, strict=True)
                if block_keys[i] in by_hash[h]]  # fmt: skip
    padded = b"\x00" + blob + b"\x00"
    out = []
    for i, h in zip(hits, hashes, strict=True):
        for key in by_hash[h]:
            at = padded.find(b"\x00" + key.encode() + b"\x00")
            if at >= 0 and padded.count(b"\x00", 0, at) == i:
                out.append((i, key))
    return out


def _claim_predictions(
    conn: sqlite3.Connection, found: dict[int, list[tuple[int, str]]]
) -> list[float]:
    """Set the claimed bits of the predictions found; returns their inference times."""
    times: list[float] = []
    for block, hits in found.items():
        n, claimed_blob, times_blob = conn.execute(
            "SELECT b.n, c.claimed, b.times FROM mq_blocks b JOIN mq_claims c"
            " ON c.block = b.id WHERE b.id = ?",
            [block],
        ).fetchone()
        positions = [i for i, _ in hits]
        claimed = bits(claimed_blob, n)
        claimed[positions] = True
        conn.execute(
            "UPDATE mq_claims SET claimed = ?, unclaimed = unclaimed - ? WHERE block = ?",
            [pack(claimed), len(positions), block],
        )
        times.extend(np.frombuffer(times_blob, F64)[positions].tolist())
    return times


def add_labels(
    db: sqlite3.Connection,
    rows: Iterable[tuple[str, str]],
    received_at: float,
    window_s: int,
) -> tuple[int, int]:
    """Store ``(key, label)`` pairs; returns ``(new, duplicates)``.

    The first label for a key stands; a later one for the same key (in the batch or
    stored) is a duplicate and is counted, not applied. The new labels are one batch
    (``mq_label_batches``); each joins the first stored prediction of its key (found through
    the runs of the blocks' hashes and the level-0 blocks) and marks its window, or waits.
    """
    conn = db
    batch: dict[str, str] = {}
    total = 0
    for key, label in rows:
        total += 1
        batch.setdefault(key, label)
    stored = {
        key
        for (key,) in conn.execute(
            "SELECT key FROM mq_labels WHERE key IN (SELECT value FROM json_each(?))",
            [orjson.dumps(list(batch)).decode()],
        )
    }
    new = sorted(key for key in batch if key not in stored)  # in key order: the b-tree's
    if not new:
        return 0, total
    found = _find_first(conn, new)  # the batch is stored with its joined bits already set
    flags = np.zeros(len(new), dtype=bool)
    if found:
        position = {key: pos for pos, key in enumerate(new)}
        flags[[position[key] for hits in found.values() for _, key in hits]] = True
    batch_id = add_label_batch(conn, received_at, new, flags)
    insert_rows(
        conn,
        "INSERT INTO mq_labels",
        [(key, batch[key], received_at, batch_id, pos) for pos, key in enumerate(new)],
    )
    joined = 0
    if found:
        times = _claim_predictions(conn, found)
        mark_windows(conn, times, window_s)
        joined = len(times)
    add_totals(
        conn, {LABELS: len(new), WAITING: len(new) - joined, UNCLAIMED: -joined, CHANGES: len(new)}
    )
    return len(new), total - len(new)
