"""The sorted runs of the blocks' key hashes on a real SQLite file: each rule of
:mod:`analyzer.store.model_quality_runs` (built, merged, capped, the last block kept out,
retention, bounded catch-up, m010), and the pages a lookup reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlite_utils import Database

import analyzer.store.model_quality_runs as runs_module
from analyzer.monitors.model_quality.predictions import PredictionRow
from analyzer.store.database import MIGRATIONS, Store
from analyzer.store.model_quality import (
    RunSizes,
    add_labels,
    add_predictions,
    label_counts,
    prune,
    window_pairs,
)
from analyzer.store.model_quality_migrations import _add_block
from analyzer.store.model_quality_runs import _pages_for, merged_upto
from tests.analyzer.test_model_quality_store import WINDOW, open_db

HOUR = 3600.0


def prediction(key: str, t: float) -> PredictionRow:
    return (key, key, None, t, key, 0.5, None)  # the prediction names its key


def chunk(db: Database, hour: int, keys: list[str], sizes: RunSizes) -> None:
    with db.conn:
        add_predictions(db, [prediction(k, hour * HOUR + i) for i, k in enumerate(keys)],
                        WINDOW, run_sizes=sizes)  # fmt: skip


def runs_of(db: Database) -> list[tuple[int, int, int, int]]:
    """``(first_block, last_block, n, tier)`` of each run, in block order."""
    return [
        tuple(row)
        for row in db.execute(
            "SELECT first_block, last_block, n, tier FROM mq_runs ORDER BY first_block"
        ).fetchall()
    ]


def joined(db: Database, keys: list[str], received: float = 1e6) -> list[str]:
    """Post labels for ``keys``; the predictions they joined (each names its key)."""
    with db.conn:
        add_labels(db, [(k, "1") for k in keys], received, WINDOW)
    return sorted(window_pairs(db.conn, 0, 1e9).predictions)


def test_a_run_is_built_then_four_are_merged(tmp_path: Path) -> None:
    db = open_db(tmp_path / "m.db")
    sizes = RunSizes(min_entries=4, cap=1000, page=3)
    seen = []
    for hour in range(6):  # a block an hour (a chunk of another hour is never appended)
        chunk(db, hour, [f"h{hour}-{i}" for i in range(4)], sizes)
        seen.append([(first, last, tier) for first, last, _, tier in runs_of(db)])
    assert seen == [
        [],  # the only block is the last: never in a run
        [(1, 1, 0)],
        [(1, 1, 0), (2, 2, 0)],
        [(1, 1, 0), (2, 2, 0), (3, 3, 0)],
        [(1, 4, 1)],  # the fourth built, the four merged (one call)
        [(1, 4, 1), (5, 5, 0)],
    ]
    joined_pages = "mq_run_pages p JOIN mq_runs r ON r.id = p.run WHERE r.first_block = 1"
    pages = db.execute(f"SELECT count(*) FROM {joined_pages}").fetchone()[0]
    fences = db.execute("SELECT length(fences) FROM mq_runs WHERE first_block = 1").fetchone()
    assert (runs_of(db)[0][2], pages, fences[0]) == (16, 6, 6 * 8)  # 16 entries, pages of 3
    keys = [f"h{hour}-{i}" for hour in range(6) for i in range(4)]
    assert joined(db, keys) == sorted(keys)


def test_past_the_cap_runs_stay_apart(tmp_path: Path) -> None:
    db = open_db(tmp_path / "m.db")
    sizes = RunSizes(min_entries=4, cap=15, page=2)  # four runs of 4: 16 entries, over
    for hour in range(8):
        chunk(db, hour, [f"h{hour}-{i}" for i in range(4)], sizes)
    assert [(first, n, tier) for first, _, n, tier in runs_of(db)] == [
        (block, 4, 0) for block in range(1, 8)
    ]
    keys = [f"h{hour}-{i}" for hour in range(8) for i in range(4)]
    assert joined(db, keys) == sorted(keys)


def test_the_last_block_is_never_in_a_run(tmp_path: Path) -> None:
    """Chunks appended to the last block change its hashes: it stays in level 0."""
    db = open_db(tmp_path / "m.db")
    sizes = RunSizes(min_entries=3, cap=1000, page=2)
    chunk(db, 0, [f"a{i}" for i in range(5)], sizes)
    chunk(db, 1, ["b0", "b1", "b2"], sizes)
    assert runs_of(db) == [(1, 1, 5, 0)]  # block 2 holds enough, but is the last
    chunk(db, 1, ["b3", "b4"], sizes)  # appended to block 2
    chunk(db, 1, ["b5"], sizes)  # again: block 2 built after the first append would miss b5
    assert db.execute("SELECT id, n FROM mq_blocks ORDER BY id").fetchall() == [(1, 5), (2, 6)]
    assert runs_of(db) == [(1, 1, 5, 0)]
    assert joined(db, ["b5", "b4", "a3", "b0"]) == ["a3", "b0", "b4", "b5"]


def _three_hours(db: Database, sizes: RunSizes) -> None:
    """Blocks 1, 2 (hours 0, 1; "k" in both) in one run; block 3 (hour 2) in level 0 after
    block 4 (hour 3)."""
    chunk(db, 0, ["k", "a1", "a2"], sizes)
    chunk(db, 1, ["b0", "k", "b2"], sizes)
    chunk(db, 2, ["c0", "c1"], sizes)
    chunk(db, 3, ["d0"], sizes)
    assert runs_of(db) == [(1, 2, 6, 0)]


def test_refs_to_blocks_retention_deleted_are_skipped(tmp_path: Path) -> None:
    db = open_db(tmp_path / "m.db")
    _three_hours(db, RunSizes(min_entries=6, cap=1000, page=2))
    with db.conn:
        assert prune(db, before=HOUR) == (3, 0)  # block 1, whose "k" was first
    assert runs_of(db) == [(1, 2, 6, 0)]  # block 2 is left: the run stays, with block 1's refs
    assert joined(db, ["k", "a1", "c1"]) == ["c1", "k"]  # k: the copy of block 2
    assert window_pairs(db.conn, HOUR, 2 * HOUR).predictions == ["k"]
    # the next merge drops the stale refs
    sizes = RunSizes(min_entries=1, cap=1000, page=2)
    for hour in (4, 5, 6):
        chunk(db, hour, [f"e{hour}"], sizes)
    assert runs_of(db)[0] == (1, 5, 3 + 2 + 1 + 1, 1)


def test_a_run_whose_blocks_are_all_gone_is_dropped(tmp_path: Path) -> None:
    db = open_db(tmp_path / "m.db")
    _three_hours(db, RunSizes(min_entries=6, cap=1000, page=2))
    with db.conn:
        assert prune(db, before=2 * HOUR) == (6, 0)
    assert runs_of(db) == []
    assert db.execute("SELECT count(*) FROM mq_run_pages").fetchone()[0] == 0
    assert joined(db, ["k", "c0"]) == ["c0"]


def test_retention_of_the_last_block_keeps_the_run_of_the_block_left_last(
    tmp_path: Path,
) -> None:
    """Late data made the last block of an old hour; retention deletes it: the block before
    becomes the last, and its id + 1 the next block's. The run holding the block left last
    stays (review: dropping it put a merged run of up to a million entries back in level
    0), since a block in a run is never appended to: the next chunk of its hour makes a
    new block, in level 0."""
    db = open_db(tmp_path / "m.db")
    sizes = RunSizes(min_entries=2, cap=1000, page=2)
    for hour in (5, 6, 7):
        chunk(db, hour, [f"h{hour}-0", f"h{hour}-1"], sizes)
    chunk(db, 0, ["late"], sizes)  # block 4, hour 0
    assert runs_of(db) == [(1, 1, 2, 0), (2, 2, 2, 0), (3, 3, 2, 0)]
    with db.conn:
        prune(db, before=HOUR)  # block 4 goes: block 3 is the last
    assert runs_of(db) == [(1, 1, 2, 0), (2, 2, 2, 0), (3, 3, 2, 0)] and merged_upto(db.conn) == 3
    chunk(db, 7, ["h7-2"], sizes)  # not appended to block 3 (in a run): block 4 again
    assert db.execute("SELECT max(id), count(*) FROM mq_blocks").fetchone() == (4, 4)
    assert db.execute("SELECT n FROM mq_blocks WHERE id = 3").fetchone() == (2,)
    assert joined(db, ["h7-2", "h5-1", "h7-0"]) == ["h5-1", "h7-0", "h7-2"]


def test_retention_of_one_late_block_keeps_a_merged_run(tmp_path: Path) -> None:
    """The review's case: the call that stores a late record's block (the last) builds the
    fourth tier-0 run and merges the four; retention then deletes only the late block. The
    merged run (reaching the block left last) stays: level 0 is empty, not 160 predictions."""
    db = open_db(tmp_path / "m.db")
    sizes = RunSizes(min_entries=10, cap=10_000, page=4)
    for c in range(16):  # each chunk its own block (its own hour): 16 × 10 predictions
        chunk(db, 10_000 + c, [f"k{c}-{i}" for i in range(10)], sizes)
    chunk(db, 0, ["late"], sizes)
    last = db.execute("SELECT max(id) FROM mq_blocks").fetchone()[0]
    assert runs_of(db)[-1][1:] == (last - 1, 40, 1)  # merged, reaching the block before
    with db.conn:
        assert prune(db, before=HOUR)[0] == 1
    assert merged_upto(db.conn) == last - 1
    level0 = db.execute("SELECT count(*) FROM mq_blocks WHERE id > ?", [last - 1]).fetchone()
    assert level0 == (0,)
    assert joined(db, ["k15-9", "k0-0"]) == ["k0-0", "k15-9"]


def test_tiny_blocks_make_a_run_by_their_count(tmp_path: Path) -> None:
    """Late data beside live data: each chunk's record of another hour than the last block's
    makes a block of one. The claims' bytes overestimate such blocks 8 times, so the cheap
    check passed and every chunk read every level-0 block without building (review):
    MANY_BLOCKS closed blocks make a run whatever they hold."""
    db = open_db(tmp_path / "m.db")
    sizes = RunSizes(min_entries=100_000, cap=10**7, page=64)
    for c in range(runs_module.MANY_BLOCKS + 2):
        chunk(db, 5 + c % 2, [f"t{c}"], sizes)  # hours 5, 6, 5, 6, …: a block each
    assert runs_of(db) == [(1, runs_module.MANY_BLOCKS, runs_module.MANY_BLOCKS, 0)]
    assert joined(db, ["t0", "t7"]) == ["t0", "t7"]


def test_an_upgraded_database_catches_up_a_bounded_step_per_chunk(tmp_path: Path) -> None:
    """Blocks stored before the runs (level 0, however many): a chunk builds one run of
    the fewest first blocks that hold ``min_entries``, and makes one merge; the labels are
    found meanwhile (level 0 scanned)."""
    db = open_db(tmp_path / "m.db")
    never = RunSizes(min_entries=10**9)
    for hour in range(20):
        chunk(db, hour, [f"h{hour}-{i}" for i in range(5)], never)
    assert runs_of(db) == []
    sizes = RunSizes(min_entries=9, cap=1000, page=4)
    chunk(db, 20, ["new"], sizes)
    assert runs_of(db) == [(1, 2, 10, 0)]  # one run, 19 closed blocks still in level 0
    assert joined(db, ["h0-1", "h15-2"]) == ["h0-1", "h15-2"]
    for hour in range(21, 25):
        chunk(db, hour, [f"x{hour}"], sizes)
    assert runs_of(db) == [(1, 8, 40, 1), (9, 10, 10, 0)]  # four built, merged, one more
    for hour in range(25, 40):
        chunk(db, hour, [f"x{hour}"], sizes)
    assert merged_upto(db.conn) >= 20  # every block of before is in a run
    assert len(joined(db, ["h19-4", "x30", "new", "h3-3"], 2e6)) == 6


def test_m010_on_a_database_made_by_m009(tmp_path: Path) -> None:
    """A database of blocks and no runs (as m009's code stored them): m010 adds the tables,
    the blocks are level 0, the join goes on and builds runs."""
    path = tmp_path / "m.db"
    db = Database(path)
    db.execute("PRAGMA journal_mode=WAL")
    MIGRATIONS.apply(db, stop_before="m010_model_quality_runs")
    # as main's m009 left it (the join's create_tables, which m008 and m009 run, now makes them)
    db.execute("DROP TABLE mq_runs")
    db.execute("DROP TABLE mq_run_pages")
    with db.conn:
        for hour in range(3):
            _add_block(db.conn, hour * 3600, [prediction(f"h{hour}-{i}", hour * HOUR + i)
                                              for i in range(4)])  # fmt: skip
        db.execute("INSERT OR REPLACE INTO mq_totals VALUES ('unclaimed', 12)")
    db.close()
    store = Store(path)
    store.start()
    try:
        assert "m010_model_quality_runs" in {m.name for m in MIGRATIONS.applied(Database(path))}
        assert store.write(lambda d: add_labels(d, [("h1-2", "1")], 1e6, WINDOW)) == (1, 0)
        sizes = RunSizes(min_entries=4, cap=1000, page=2)
        store.write(lambda d: add_predictions(d, [prediction("n", 3 * HOUR)], WINDOW,
                                              run_sizes=sizes))  # fmt: skip
        assert store.read(merged_upto) == 1
        store.write(lambda d: add_labels(d, [("h0-3", "0"), ("n", "1")], 1e6, WINDOW))
        counts = store.read(lambda c: label_counts(c, 1e6, 0.0))
    finally:
        store.close()
    assert (counts.matched, counts.unlabeled) == (3, 10)


@pytest.mark.parametrize("seed", range(5))
def test_the_pages_of_a_hash_hold_all_its_entries_and_few_more(seed: int) -> None:
    """Hashes tied across pages (few distinct values) and spread ones: the pages a lookup
    reads hold every entry of each hash; a hash in no fence reads one page."""
    rng = np.random.default_rng(seed)
    distinct = rng.integers(1, 50)
    scale = np.uint64(1 << 56)
    stored = np.sort(rng.integers(0, distinct, 400).astype(np.uint64) * scale)
    page = int(rng.integers(1, 9))
    fences = stored[::page]
    wanted = np.unique(rng.choice(np.arange(distinct + 2, dtype=np.uint64), 5)) * scale
    pages = set(_pages_for(fences, wanted).tolist())
    needed = {i // page for i in np.flatnonzero(np.isin(stored, wanted)).tolist()}
    assert needed <= pages
    for h in wanted:
        one = set(_pages_for(fences, np.array([h], dtype=np.uint64)).tolist())
        holding = {i // page for i in np.flatnonzero(stored == h).tolist()}
        assert len(one) <= len(holding) + 1
    spread = np.arange(0, 4000, 10, dtype=np.uint64)
    assert _pages_for(spread[::4], np.array([15], dtype=np.uint64)).tolist() == [0]
    assert _pages_for(spread[::4], np.array([41, 5000], dtype=np.uint64)).tolist() == [1, 99]


def test_retention_of_a_runs_last_blocks_and_the_last_keeps_the_merged_run(
    tmp_path: Path,
) -> None:
    """The third review's case: a merged run ends at a late block, and retention deletes it
    and the last block (both of old hours). The run stays with the blocks it has left:
    a new block's id is above every run's, so the deleted ids are never given again."""
    db = open_db(tmp_path / "m.db")
    sizes = RunSizes(min_entries=10, cap=10_000, page=4)
    for c in range(15):  # 15 live blocks of 10, each its own hour
        chunk(db, 10_000 + c, [f"k{c}-{i}" for i in range(10)], sizes)
    chunk(db, 0, [f"late0-{i}" for i in range(10)], sizes)  # block 16: late (hour 0)
    chunk(db, 1, ["late1"], sizes)  # block 17, late: builds block 16's run and merges
    assert runs_of(db)[-1][1::2] == (16, 1)  # a merged run ends at the late block 16
    with db.conn:
        prune(db, before=2 * HOUR)  # blocks 16 and 17 go: 15 is the last
    assert runs_of(db)[-1][1::2] == (16, 1) and merged_upto(db.conn) == 16
    assert db.execute("SELECT count(*) FROM mq_blocks WHERE id > 16").fetchone() == (0,)
    chunk(db, 10_015, ["new"], sizes)  # not id 16, which the run's refs still name: 17
    assert db.execute("SELECT max(id) FROM mq_blocks").fetchone() == (17,)
    assert joined(db, ["k14-9", "k0-0", "new"]) == ["k0-0", "k14-9", "new"]


def test_many_tiny_blocks_are_built_into_runs_all_at_once(tmp_path: Path) -> None:
    """A backfill not sorted by time: each record its own hour, hundreds of blocks a chunk.
    MANY_BLOCKS starts a build; the build then takes every closed level-0 block (up to
    ``min_entries``), not 512 (third review: level 0 grew by ~1,500 blocks a chunk)."""
    db = open_db(tmp_path / "m.db")
    sizes = RunSizes(min_entries=100_000, cap=10**7, page=64)
    per_chunk = runs_module.MANY_BLOCKS + 300
    for c in range(3):
        keys = [f"b{c}-{i}" for i in range(per_chunk)]
        with db.conn:
            add_predictions(db, [prediction(k, (1000 + c * per_chunk + i) * HOUR)
                                 for i, k in enumerate(keys)], WINDOW, run_sizes=sizes)  # fmt: skip
        level0 = db.execute(
            "SELECT count(*) FROM mq_blocks WHERE id > ?", [merged_upto(db.conn)]
        ).fetchone()[0]
        assert level0 == 1, (c, level0)  # the last block only
    assert joined(db, ["b0-0", "b2-7"]) == ["b0-0", "b2-7"]
