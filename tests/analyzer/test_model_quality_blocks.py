"""The join's blocks on a real SQLite file: the key hash, collisions, the label's scan of old
blocks, which of two stored predictions of a key gets its label, reads inside a block."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from sqlite_utils import Database

import analyzer.store.model_quality_blocks as blocks
import analyzer.store.model_quality_claims as claims
from analyzer.monitors.model_quality.predictions import PredictionRow
from analyzer.store.model_quality import (
    LabelCounts,
    add_labels,
    add_predictions,
    create_tables,
    label_counts,
    predictions_between,
    prune,
    window_pairs,
)
from analyzer.store.model_quality_blocks import stable_key_hashes, stored_predictions
from tests.analyzer.test_model_quality_store import WINDOW, open_db, take_dirty_windows


def prediction(key: str, t: float, yhat: str = "1") -> PredictionRow:
    return (key, key, None, t, yhat, 0.5, None)


def test_the_key_hash_is_stable_and_does_not_depend_on_the_other_keys() -> None:
    keys = ["a", "abcdefgh", "abcdefghi", "7f1c1c7e-0b0e-4f57-9c1e-2f6d5b8c9a10", "é"]
    pinned = [0x4F5DA978776A9DB1, 0x541F1300220C7A6F, 0x6B74ADEBEAB07B40,
              0x64ED8E8A3B1B7D66, 0x250EA5D6468287CF]  # fmt: skip
    assert stable_key_hashes(keys).tolist() == pinned  # stored: must never change
    assert stable_key_hashes(keys, "\x00".join(keys).encode()).tolist() == pinned
    uuids = [keys[3], "0" * 8 + keys[3][8:]]  # one length: the joined bytes' way
    assert stable_key_hashes(uuids, "\x00".join(uuids).encode())[0] == pinned[3]
    assert [int(stable_key_hashes([k])[0]) for k in keys] == pinned  # whatever the array's width
    assert len(set(stable_key_hashes([f"k{i}" for i in range(10_000)]).tolist())) == 10_000


def _one_hash(keys: Sequence[str], joined: bytes | None = None) -> npt.NDArray[np.uint64]:
    return np.zeros(len(keys), dtype=np.dtype("<u8"))


@pytest.mark.parametrize(
    "keys",
    [
        [str(uuid.UUID(int=i)) for i in range(1000)],  # one length: read from the joined bytes
        [f"k{i}" for i in range(10)],
        ["éé", "abcd", "z\u20ac"],  # 4 bytes each, not 4 characters each
        ["ab", "c", "def"],  # 9 bytes with the NUL appended, 3 keys: not one length
        ["abc", "de", "f"],
        ["x" * 17, "y" * 17],
        ["abcdefgh", "12345678", "éééé"],  # 8 bytes each: one word, no padding
        ["a\x00b\x00c", "d"],  # a NUL (refused upstream) must not pass for a separator
        ["a"],
    ],
)
def test_the_hash_from_the_joined_keys_is_the_hash_of_each(keys: list[str]) -> None:
    """The block's NUL-joined keys, given, hash as the keys do one by one."""
    joined = "\x00".join(keys).encode()
    each = [int(stable_key_hashes([key])[0]) for key in keys]
    assert stable_key_hashes(keys, joined).tolist() == each
    assert stable_key_hashes(keys).tolist() == each
    same = blocks._same_length_words(joined, len(keys))
    assert (same is not None) == (len({len(key.encode()) for key in keys}) == 1)


@pytest.mark.parametrize("few_hits", [0, 8])  # the keys' blob split, or searched
def test_keys_of_one_hash_are_told_apart_by_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, few_hits: int
) -> None:
    """Every key forced to one hash: a hit is only a candidate, the full key decides."""
    monkeypatch.setattr(blocks, "stable_key_hashes", _one_hash)
    monkeypatch.setattr(claims, "stable_key_hashes", _one_hash)
    monkeypatch.setattr(claims, "_FEW_HITS", few_hits)
    db = open_db(tmp_path / "m.db")
    with db.conn:
        add_predictions(db, [prediction("a", 10.0, "A"), prediction("b", 20.0, "B")], WINDOW)
        add_predictions(db, [prediction("c", 4000.0, "C")], WINDOW)
        # c hits a and b in the first block (same hash), is found in the second
        assert add_labels(db, [("c", "1"), ("zz", "0")], 30.0, WINDOW) == (2, 0)
        assert add_labels(db, [("b", "0")], 40.0, WINDOW) == (1, 0)
    assert take_dirty_windows(db) == [0, 3600]
    assert window_pairs(db.conn, 0, 3600).predictions == ["B"]
    assert window_pairs(db.conn, 3600, 7200).predictions == ["C"]
    assert label_counts(db.conn, 50.0, 0.0) == LabelCounts(
        matched=2, unmatched=1, pending=0, awaiting=0, unlabeled=1
    )


def test_a_label_finds_its_prediction_in_an_old_block(tmp_path: Path) -> None:
    db = open_db(tmp_path / "m.db")
    with db.conn:
        for hour in range(48):  # a block an hour, two days
            rows = [prediction(f"h{hour}-{i}", hour * 3600.0 + i) for i in range(100)]
            add_predictions(db, rows, WINDOW)
        add_labels(db, [("h0-7", "1"), ("h47-99", "0")], 200_000.0, WINDOW)
    assert take_dirty_windows(db) == [0, 47 * 3600]
    assert window_pairs(db.conn, 0, 3600).labels == ["1"]
    assert window_pairs(db.conn, 47 * 3600, 48 * 3600).labels == ["0"]
    counts = label_counts(db.conn, 200_000.0, 0.0)
    assert (counts.matched, counts.unlabeled) == (2, 4798)


@pytest.mark.parametrize("label_first", [False, True])
def test_the_first_of_two_stored_predictions_of_a_key_gets_its_label(
    tmp_path: Path, label_first: bool
) -> None:
    """A key stored by two chunks: the first stored one is joined (the label found by the
    scan, or a waiting label claimed by the first chunk); the later stays unlabelled."""
    db = open_db(tmp_path / "m.db")
    with db.conn:
        if label_first:
            add_labels(db, [("k", "1")], 0.0, WINDOW)
        add_predictions(db, [prediction("k", 10.0, "first")], WINDOW)
        add_predictions(db, [prediction("k", 7300.0, "later"), prediction("j", 7301.0)], WINDOW)
        if not label_first:
            add_labels(db, [("k", "1")], 8000.0, WINDOW)
    assert take_dirty_windows(db) == [0]
    assert window_pairs(db.conn, 0, 3600).predictions == ["first"]
    assert len(window_pairs(db.conn, 7200, 10_800)) == 0
    assert [row[4] for row in stored_predictions(db.conn)] == ["first", "later", "1"]
    assert label_counts(db.conn, 9000.0, 0.0) == LabelCounts(
        matched=1, unmatched=0, pending=0, awaiting=0, unlabeled=2
    )
    with db.conn:  # the first one's block goes, with the label joined to it
        assert prune(db, before=3600.0) == (1, 1)
    assert label_counts(db.conn, 9000.0, 0.0) == LabelCounts(0, 0, 0, 0, 2)


def test_reads_inside_a_block_go_by_each_prediction_s_time(tmp_path: Path) -> None:
    """One block (one chunk, one hour) with a gap: windows, the edges' test and the counts
    across the label wait's cutoff see each prediction's own time."""
    db = open_db(tmp_path / "m.db")
    with db.conn:
        rows = [prediction(f"k{i}", t) for i, t in enumerate([100.0, 200.0, 2000.0, 3000.0])]
        add_predictions(db, rows, 60)
        add_labels(db, [("k1", "0"), ("k3", "1")], 3500.0, 60)
    assert take_dirty_windows(db) == [180, 3000]
    assert window_pairs(db.conn, 150, 2500).labels == ["0"]
    assert predictions_between(db.conn, 300, 1999) is False  # inside the block's bounds
    assert predictions_between(db.conn, 300, 2001) is True
    for cutoff, awaiting in [(0.0, 2), (150.0, 1), (2500.0, 0)]:
        counts = label_counts(db.conn, 3500.0, 3500.0 - cutoff)
        assert (counts.awaiting, counts.unlabeled) == (awaiting, 2 - awaiting), cutoff


def test_a_pruned_label_batch_never_lends_its_id_to_the_next(tmp_path: Path) -> None:
    """Retention deletes a label batch whose joined label stays (its prediction's block is
    kept), naming it by (batch, pos). A later batch must not take its id (review): its bit
    would let the old label join a later copy of its key, take an unrelated label's bit, or
    (pos past the new batch's size) fail every capture chunk's transaction."""
    db = Database(tmp_path / "m.db")
    create_tables(db)
    with db.conn:
        add_predictions(db, [prediction("k", 10.0, "first"), prediction("late", 3000.0, "x")], 3600)
        assert add_labels(db, [("a0", "0"), ("b0", "0"), ("k", "1")], 100.0, 3600) == (3, 0)
        prune(db, 200.0)  # the batch goes (a0, b0 waiting); k stays joined, naming (1, 2)
        add_labels(db, [("a", "0"), ("b", "0")], 4000.0, 3600)
    ids = [row[0] for row in db.execute("SELECT id FROM mq_label_batches")]
    assert ids == [2]
    with db.conn:  # k captured again, a's prediction: k's label is not joined twice
        add_predictions(db, [prediction("k", 4100.0, "second"), prediction("a", 4200.0, "A")],
                        3600)  # fmt: skip
    assert window_pairs(db.conn, 3600, 7200).predictions == ["A"]
    assert window_pairs(db.conn, 0, 3600).predictions == ["first"]
    counts = label_counts(db.conn, 5000.0, 0.0)
    assert (counts.matched, counts.unmatched) == (2, 1)  # k and a; b still alone


def test_one_long_key_does_not_pad_the_batch() -> None:
    """Keys hashed a width at a time: the same hashes as one by one, and a batch of short
    keys with one of 3 KiB does not make an n × 3 KiB array (review: 120 MiB for 40,000)."""
    import tracemalloc

    keys = [f"{i:08x}-0b0e-4f57-9c1e-2f6d5b8c9a10" for i in range(40_000)]
    keys[123] = "键" * 1024  # 3 KiB of UTF-8, within MAX_KEY's 1,024 characters
    keys[7] = "a"
    tracemalloc.start()
    hashes = stable_key_hashes(keys)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [int(stable_key_hashes([k])[0]) for k in keys[:200]] == hashes[:200].tolist()
    assert peak < 16 * 1024 * 1024, peak


def test_a_quiet_endpoints_chunks_fill_one_block_an_hour(tmp_path: Path) -> None:
    """Chunks of 3 predictions (a quiet endpoint): appended to the hour's last block while it
    holds fewer than SMALL_BLOCK, so the labels' scan steps through a few rows, not one a
    chunk. The join is as with a block a chunk: labels joined before an append stay joined,
    a waiting label is claimed by an appended chunk, a key stored twice joins its first,
    a chunk of another hour (or after a block of another hour) starts a block."""
    db = open_db(tmp_path / "m.db")
    with db.conn:
        add_labels(db, [("w", "0")], 0.0, WINDOW)  # waits for its prediction
        for c in range(4):  # hour 0: 12 predictions in 4 chunks; "d" in chunks 1 and 3
            keys = ["d" if c in (1, 3) and i == 1 else f"c{c}-{i}" for i in range(3)]
            add_predictions(db, [prediction(k, 100.0 * c + i, f"{c}") for i, k in
                                 enumerate(keys)], WINDOW)  # fmt: skip
            if c == 1:
                assert add_labels(db, [("c0-0", "1"), ("d", "1")], 150.0, WINDOW) == (2, 0)
        add_predictions(db, [prediction("w", 500.0, "w")], WINDOW)  # claims the waiting label
        add_predictions(db, [prediction("h1", 3700.0, "h1")], WINDOW)  # the next hour
        add_predictions(db, [prediction("late", 600.0, "late")], WINDOW)  # hour 0 again
    blocks = db.execute("SELECT bucket, n FROM mq_blocks ORDER BY id").fetchall()
    assert blocks == [(0, 13), (3600, 1), (0, 1)]
    assert [row[0] for row in stored_predictions(db.conn)][:4] == ["c0-0", "c0-1", "c0-2", "c1-0"]
    pairs = window_pairs(db.conn, 0, 3600)
    assert sorted(zip(pairs.predictions, pairs.labels, strict=True)) == [
        ("0", "1"), ("1", "1"), ("w", "0")]  # fmt: skip
    assert label_counts(db.conn, 9000.0, 0.0) == LabelCounts(
        matched=3, unmatched=0, pending=0, awaiting=0, unlabeled=12
    )
    with db.conn:  # the later "d" (chunk 3) is a prediction of its own, never joined
        add_labels(db, [("c3-2", "0")], 9000.0, WINDOW)
    assert len(window_pairs(db.conn, 0, 3600)) == 4


def test_retention_finds_old_label_batches_by_an_index_range(tmp_path: Path) -> None:
    """A batch row a POST (a label a request makes many): prune's reads of the batches are
    index ranges, never a scan of the table (each statement prune runs, explained)."""
    db = open_db(tmp_path / "m.db")
    with db.conn:
        for i in range(50):
            add_labels(db, [(f"k{i}", "1")], float(i), WINDOW)
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    with db.conn:
        prune(db, before=25.0)
    db.conn.set_trace_callback(None)
    reads = [sql for sql in statements if sql.lstrip().upper().startswith("SELECT")]
    assert any("mq_label_batches" in sql for sql in reads)
    for sql in reads:
        plan = " ".join(str(row[3]) for row in db.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "SCAN mq_label_batches" not in plan, (sql, plan)
    assert db.execute("SELECT count(*) FROM mq_label_batches").fetchone()[0] == 25


def test_appends_stop_at_the_blocks_bytes(tmp_path: Path) -> None:
    """Chunks of one prediction with a 4,000-byte input row: an append rewrites the block,
    so a block takes chunks only while it holds fewer than SMALL_BLOCK_BYTES (64 KiB:
    16 such rows), not up to SMALL_BLOCK predictions (the rewrites of a thousand 4 KiB rows
    wrote 4.1 GB of WAL for 1,000 predictions: review)."""
    db = open_db(tmp_path / "m.db")
    with db.conn:
        for i in range(40):
            row = (f"k{i}", f"k{i}", None, float(i), "1", 0.5, b'"' + b"x" * 3998 + b'"')
            add_predictions(db, [row], WINDOW)
    sizes = [n for (n,) in db.execute("SELECT n FROM mq_blocks ORDER BY id")]
    assert sizes == [17, 17, 6]  # 16 rows are under 64 KiB, the 17th takes it past
    assert [row[0] for row in stored_predictions(db.conn)] == [f"k{i}" for i in range(40)]


def test_a_chunk_claims_the_labels_of_many_batches_at_once(tmp_path: Path) -> None:
    """Labels in random order: one chunk joins labels of several batches, whose bits are all
    written by one statement; a batch's labels already joined and a pruned batch's label
    (joined before it went) are not taken again."""
    db = Database(tmp_path / "m.db")
    create_tables(db)
    with db.conn:
        add_predictions(db, [prediction("old", 40.0)], 3600)
        add_labels(db, [("old", "1"), ("gone", "0")], 20.0, 3600)  # batch 1: old joins
        prune(db, 30.0)  # batch 1 goes with "gone"; "old" stays joined (its block at 40 too)
        for b in range(5):  # batches 2..6: keys b0..b2
            add_labels(db, [(f"{b}{i}", str(i % 2)) for i in range(3)], 100.0 + b, 3600)
        add_predictions(db, [prediction("11", 150.0)], 3600)  # joins one label of batch 3
    keys = ["old", "00", "02", "11", "12", "21", "40", "41", "42", "new"]
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    with db.conn:
        assert add_predictions(db, [prediction(k, 200.0) for k in keys], 3600) == 10
    db.conn.set_trace_callback(None)
    touching = [sql for sql in statements if "mq_label_batches" in sql]
    assert len(touching) == 2, touching  # the batches' bits read once, written once
    waiting = db.execute("SELECT id, waiting, joined, n FROM mq_label_batches ORDER BY id")
    joined = {batch: (left, blocks.bits(blob, n).tolist()) for batch, left, blob, n in waiting}
    assert joined == {
        2: (1, [True, False, True]),
        3: (1, [False, True, True]),
        4: (2, [False, True, False]),
        5: (3, [False, False, False]),
        6: (0, [True, True, True]),
    }
    counts = label_counts(db.conn, 300.0, 3600.0)
    assert (counts.matched, counts.pending) == (9, 7)
    # "old" and "11" were stored again: their later copies stay unlabelled
    assert sorted(window_pairs(db.conn, 0, 3600).predictions) == ["1"] * 9


def test_a_key_given_twice_to_claim_waiting_takes_its_label_once(tmp_path: Path) -> None:
    """``add_predictions`` gives each key once, but ``claim_waiting`` is the module's own
    contract (review): a key twice in one call joins its label once, at its first place, and
    the batch's count of waiting labels stays that of its unset bits."""
    db = Database(tmp_path / "m.db")
    create_tables(db)
    with db.conn:
        add_labels(db, [("k", "1"), ("other", "0")], 1.0, 3600)
        flags = claims.claim_waiting(db.conn, 1, ["x", "k", "k"])
    assert flags.tolist() == [False, True, False]
    (waiting, blob, n) = db.execute("SELECT waiting, joined, n FROM mq_label_batches").fetchone()
    assert (waiting, blocks.bits(blob, n).tolist()) == (1, [True, False])


def test_an_empty_key_hashes_to_zero() -> None:
    """Both intakes refuse an empty key; the hash still gives one (a width of 0 words failed
    numpy's view, review), and the other keys of the batch keep theirs."""
    assert stable_key_hashes([""]).tolist() == [0]
    assert stable_key_hashes(["", "abc"]).tolist() == [0, *stable_key_hashes(["abc"]).tolist()]
