"""A chunk's predictions on their way to the store: encoded as blocks by the ingest thread
(``chunk_blocks``), and written by the writer in few statements (beside the busy ingest
thread the writer can wait for the GIL after each statement and each numpy step)."""

from __future__ import annotations

import hashlib
import random
import uuid
from pathlib import Path

import pytest
from sqlite_utils import Database

from analyzer.ingest.ingestor import Ingestor
from analyzer.monitors.model_quality.predictions import PredictionColumns, PredictionRow
from analyzer.store.database import Store, add_counters, read_counters
from analyzer.store.model_quality import add_labels, add_predictions, create_tables
from analyzer.store.model_quality_blocks import ChunkBlocks, chunk_blocks
from analyzer.store.model_quality_runs import RunSizes
from modelmon.config import ModelmonConfig
from tests.analyzer.service_helpers import T0, make_config, write_traffic

HOUR = 3600.0
WINDOW = 3600
SIZES = RunSizes(min_entries=300, cap=2000, page=64)  # runs built and merged within the test


@pytest.fixture
def config(tmp_path: Path) -> ModelmonConfig:
    quality = {"problem_type": "BinaryClassification", "probability_attribute": "0"}
    return make_config(tmp_path, None, model_quality=quality)


def _chunk(rng: random.Random, keys: list[str], start: float, n: int) -> list[PredictionRow]:
    """``n`` predictions over three hours, some keys repeated, some input rows absent."""
    rows: list[PredictionRow] = []
    for _ in range(n):
        key = rng.choice(keys) if rng.random() < 0.1 else str(uuid.UUID(int=rng.getrandbits(128)))
        keys.append(key)
        row = None if rng.random() < 0.2 else f'["{"x" * rng.randrange(1500)}"]'.encode()
        t = start + rng.random() * 3 * HOUR
        rows.append((key, key, None, t, rng.choice("AB"), rng.random(), row))
    return rows


def _tables(db: Database) -> dict[str, list[tuple[object, ...]]]:
    return {
        table: db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
        for table in ("mq_blocks", "mq_claims", "mq_totals", "mq_runs", "mq_labels", "mq_dirty")
    }


# the tables' digest as the store wrote them before the blocks were encoded on the ingest
# thread (e6ec211, rows given): what is stored must not change with the way it is given
@pytest.mark.parametrize(
    ("seed", "digest"),
    [(1, "561c47088954c86a"), (2, "9af29dac3d6f3a84"), (3, "4e432e4648d11a0b")],
)
def test_a_chunk_stored_as_rows_columns_or_its_blocks_stores_the_same(
    tmp_path: Path, seed: int, digest: str
) -> None:
    """Three hours a chunk, repeated keys, missing input rows, a label waiting for some,
    and small chunks after (appended to the last block): the same tables, byte for byte,
    as each other and as the store of before."""
    stored = []
    for way in ("rows", "columns", "blocks"):
        rng = random.Random(seed)
        keys: list[str] = []
        chunks = [
            _chunk(rng, keys, 10 * HOUR, 500),
            *(_chunk(rng, keys, 12 * HOUR, 3) for _ in range(4)),
            _chunk(rng, keys, 13 * HOUR, 400),  # blocks past SMALL_BLOCK_BYTES, runs built
            *(_chunk(rng, keys, 15 * HOUR, 2) for _ in range(6)),  # appended to the last block
        ]
        labels = [(key, "1") for key in rng.sample(keys, 50)]
        db = Database(tmp_path / f"{way}.db")
        create_tables(db)
        with db.conn:
            add_labels(db, labels[:25], 1.0, WINDOW)
        for rows in chunks:
            given: list[PredictionRow] | PredictionColumns | ChunkBlocks = rows
            if way == "columns":
                given = PredictionColumns.of_rows(rows)
            elif way == "blocks":
                given = chunk_blocks(rows)
            with db.conn:
                stored_n = add_predictions(db, given, WINDOW, run_sizes=SIZES)
                assert stored_n == len({row[0] for row in rows})
        with db.conn:
            add_labels(db, labels[25:], 2.0, WINDOW)
        stored.append(_tables(db))
        db.close()
    assert stored[0]["mq_blocks"] and stored[0]["mq_dirty"]
    assert stored[0] == stored[1] == stored[2]
    assert hashlib.sha256(repr(stored[0]).encode()).hexdigest()[:16] == digest


def test_the_counters_of_a_chunk_are_one_statement(tmp_path: Path) -> None:
    db = Database(tmp_path / "c.db")
    db.execute("CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    seen: list[str] = []
    db.conn.set_trace_callback(seen.append)
    with db.conn:
        add_counters(db, {f"c{i}": i for i in range(1000)} | {"zero": 0})
        add_counters(db, {"c1": 2, "c999": -999})
    db.conn.set_trace_callback(None)
    upserts = [sql for sql in seen if sql.startswith("INSERT INTO counters")]
    assert len(upserts) == 2  # 999 counters in one, then two in one
    counters = read_counters(db.conn)
    assert counters["c1"] == 3 and counters["c999"] == 0 and counters["c500"] == 500
    assert "zero" not in counters and "c0" not in counters  # nothing added: no row


def test_a_chunks_transaction_with_model_quality_is_a_few_statements(
    config: ModelmonConfig, store: Store
) -> None:
    """One chunk of the service's ingest (one file, one bucket): the join's part of its
    transaction is five statements, and its counters one (before: ten, and the counters an
    upsert each)."""
    n = write_traffic(config.capture.dir, "current_nodrift.csv", 200, T0, per_file=200)
    seen: list[str] = []
    store.write(lambda db: db.conn.set_trace_callback(seen.append))
    try:
        stats = Ingestor(store, config).run_once()
    finally:
        store.write(lambda db: db.conn.set_trace_callback(None))
    assert stats.records == n == 200
    (block,) = [i for i, sql in enumerate(seen) if sql.startswith("INSERT INTO mq_blocks")]
    begin = max(i for i, sql in enumerate(seen[:block]) if sql.startswith("BEGIN"))
    end = block + seen[block:].index("COMMIT")
    chunk = [sql for sql in seen[begin:end] if "mq_" in sql or "counters" in sql]
    tables = [sql.split(" (")[0].split(" VALUES")[0] for sql in chunk]
    assert len([sql for sql in chunk if "mq_" in sql]) == 5, tables
    assert len([sql for sql in chunk if sql.startswith("INSERT INTO counters")]) == 1, tables
    assert store.read(read_counters)["model_quality:predictions"] == n
    assert store.read(lambda conn: conn.execute("SELECT sum(n) FROM mq_blocks").fetchone())[0] == n


def test_a_key_of_another_length_in_the_chunk_hashes_as_alone(tmp_path: Path) -> None:
    """Keys of one length but one are hashed the general way, each as it would be alone."""
    keys = [str(uuid.UUID(int=i)) for i in range(100)] + ["short"]
    rows: list[PredictionRow] = [(k, k, None, 10.0, "A", 0.5, None) for k in keys]
    alone = [chunk_blocks([row]).parts[0][2].values[4] for row in rows]
    together = chunk_blocks(rows).parts[0][2].values[4]
    assert together == b"".join(blob for blob in alone if isinstance(blob, bytes))
