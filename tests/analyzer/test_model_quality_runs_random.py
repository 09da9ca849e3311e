"""The join with tiny runs against a brute-force join of every stored row: random chunks
(small ones appended, late ones of old hours, keys stored twice), label batches (one label
and many, unknown keys), retention; the runs' invariants checked at every step, and every
rule (built, merged, capped, stale refs, level 0) seen."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from sqlite_utils import Database

import analyzer.store.model_quality_blocks as blocks
import analyzer.store.model_quality_claims as claims
from analyzer.store.model_quality import (
    RunSizes,
    add_labels,
    add_predictions,
    label_counts,
    prune,
)
from analyzer.store.model_quality_blocks import U64, bits, stable_key_hashes
from analyzer.store.model_quality_runs import merged_upto
from tests.analyzer.test_model_quality_store import (
    _first_rows,
    brute_counts,
    open_db,
    prediction,
)

SIZES = RunSizes(min_entries=10, cap=70, page=4)


def claimed(db: Database) -> list[int]:
    """The claimed predictions, as positions in :func:`stored_predictions`' order."""
    out: list[int] = []
    at = 0
    for n, blob in db.execute(
        "SELECT b.n, c.claimed FROM mq_blocks b JOIN mq_claims c ON c.block = b.id ORDER BY b.id"
    ):
        out.extend((at + np.flatnonzero(bits(blob, n))).tolist())
        at += n
    return out


def brute_claimed(db: Database) -> list[int]:
    """What a label joins: the first stored prediction of its key."""
    rows, first = _first_rows(db)
    labels = {key for (key,) in db.execute("SELECT key FROM mq_labels")}
    return sorted(i for i in first if rows[i][0] in labels)


def check_runs(db: Database, seen: set[str]) -> None:
    """The runs partition the blocks up to ``merged_upto`` (which may hold the last block, or
    exceed every block left, after retention: a new block's id is above it), each sorted by
    (hash, block, position) with the right fences, holding every prediction of its blocks
    left; notes which rules the state shows."""
    last = db.execute("SELECT coalesce(max(id), 0) FROM mq_blocks").fetchone()[0]
    upto = merged_upto(db.conn)
    if upto >= last and last:
        seen.add("a run holds the last block, or ends past it")
    stored = {
        block: np.frombuffer(blob, U64)
        for block, blob in db.execute("SELECT id, hashes FROM mq_blocks")
    }
    covered: set[int] = set()
    previous = 0
    runs = db.execute(
        "SELECT id, first_block, last_block, n, tier, fences FROM mq_runs ORDER BY first_block"
    ).fetchall()
    for i in range(len(runs) - 3):
        group = runs[i : i + 4]
        if len({row[4] for row in group}) == 1 and sum(row[3] for row in group) > SIZES.cap:
            seen.add("capped")  # four of a tier left apart
    for run, first, end, n, tier, fences in runs:
        seen.add(f"tier {min(tier, 1)}")
        assert previous < first <= end
        previous = end
        pages = db.execute(
            "SELECT hashes, refs FROM mq_run_pages WHERE run = ? ORDER BY page", [run]
        ).fetchall()
        assert np.frombuffer(fences, U64).tolist() == [
            int(np.frombuffer(h, U64)[0]) for h, _ in pages
        ]
        hashes = np.concatenate([np.frombuffer(h, U64) for h, _ in pages])
        refs = [(np.frombuffer(r, "<u4", count=len(h) // 8), np.frombuffer(r, "<u4",
                 offset=len(h) // 2)) for h, r in pages]  # fmt: skip
        at_block = np.concatenate([o for o, _ in refs]).astype(np.int64) + first
        at_pos = np.concatenate([p for _, p in refs]).astype(np.int64)
        assert len(hashes) == n
        order = np.lexsort((at_pos, at_block, hashes))
        assert (order == np.arange(n)).all()
        alive = np.isin(at_block, list(stored))
        if not alive.all():
            seen.add("stale refs")
        entries = set(zip(at_block[alive].tolist(), at_pos[alive].tolist(), strict=True))
        for block in range(first, end + 1):
            if block in stored:
                covered.add(block)
                want = {(block, i) for i in range(len(stored[block]))}
                assert want <= entries, (block, run)
        for block, pos, value in zip(at_block[alive].tolist(), at_pos[alive].tolist(),
                                     hashes[alive].tolist(), strict=True):  # fmt: skip
            assert int(stored[block][pos]) == value
    assert covered == {block for block in stored if block <= upto}
    if last - upto > 1:
        seen.add("level 0")


def _few_hashes(keys: Sequence[str], joined: bytes | None = None) -> npt.NDArray[np.uint64]:
    return stable_key_hashes(keys, joined) & np.uint64(7)  # eight hashes: ties across every page


@pytest.mark.parametrize(("seed", "collide"), [(1, False), (2, False), (3, True), (4, True)])
def test_the_join_with_runs_equals_a_brute_force_join(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, collide: bool
) -> None:
    if collide:
        monkeypatch.setattr(blocks, "stable_key_hashes", _few_hashes)
        monkeypatch.setattr(claims, "stable_key_hashes", _few_hashes)
    db = open_db(tmp_path / "m.db")
    rng = random.Random(seed)
    keys = [f"k{i}" for i in range(600)]
    seen: set[str] = set()
    for step in range(200):
        now = 20_000.0 + step * 900.0
        with db.conn:
            action = rng.random()
            if action < 0.5:
                size = rng.choice([1, 2, 3, 8, 30])
                late = rng.random() < 0.15  # an old hour: a block after the last one
                moments = [now - (rng.random() * 15_000 if late else rng.random() * 600)
                           for _ in range(size)]  # fmt: skip
                rows = [prediction(k, t) for k, t in zip(rng.sample(keys, size), moments,
                                                         strict=True)]  # fmt: skip
                add_predictions(db, rows, 300, run_sizes=SIZES)
            elif action < 0.93:
                size = rng.choice([1, 1, 2, 5, 40])
                picked = rng.sample(keys, size) + [f"none{rng.random()}"] * rng.randint(0, 1)
                add_labels(db, [(k, rng.choice("01")) for k in picked], now, 300)
            else:
                prune(db, before=now - rng.choice([5_000, 12_000]))
        check_runs(db, seen)
        assert claimed(db) == brute_claimed(db), step
        for delay in (0.0, 3_000.0):
            assert label_counts(db.conn, now, delay) == brute_counts(db, now, delay), step
    assert {"tier 0", "tier 1", "capped", "stale refs", "level 0"} <= seen, seen
