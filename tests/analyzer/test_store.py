"""The SQLite store: migrations, WAL, one writer thread, atomic writes, pooled readers."""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlite_utils import Database

from analyzer.store.database import (
    MIGRATIONS,
    WAL_AUTOCHECKPOINT_PAGES,
    Store,
    StoreError,
    add_counters,
    read_counters,
    read_status_doc,
    write_status_doc,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "sub" / "modelmon.db")
    store.start()
    yield store
    store.close()


def test_schema_is_migrated_once_and_in_wal_mode(store: Store) -> None:
    tables = store.read(
        lambda c: {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    )
    assert {"files", "buckets", "hours", "counters", "runs", "status", "ground_truth"} <= tables
    mode = store.read(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
    assert mode == "wal"
    store.close()
    again = Store(store.path)
    again.start()
    applied = again.read(
        lambda c: c.execute("SELECT count(*) FROM _sqlite_migrations").fetchone()[0]
    )
    assert applied == len(MIGRATIONS.applied(Database(store.path)))
    again.close()


def test_a_failing_write_rolls_back_everything(store: Store) -> None:
    def half_then_fail(db: Database) -> None:
        add_counters(db, {"records": 5})
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        store.write(half_then_fail)
    assert store.read(read_counters).get("records") is None
    store.write(lambda db: add_counters(db, {"records": 2}))
    assert store.read(read_counters)["records"] == 2


def test_writes_from_many_threads_run_on_one_thread(store: Store) -> None:
    seen: set[str] = set()

    def bump(db: Database) -> None:
        seen.add(threading.current_thread().name)
        add_counters(db, {"n": 1})

    threads = [
        threading.Thread(target=lambda: [store.write(bump) for _ in range(50)]) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {"modelmon-sqlite-writer"}
    assert store.read(read_counters)["n"] == 200


def test_readers_are_read_only_and_see_commits(store: Store) -> None:
    assert store.read(read_status_doc) is None
    store.write(lambda db: write_status_doc(db, {"state": "ok"}))
    assert store.read(read_status_doc) == {"state": "ok"}
    with pytest.raises(sqlite3.OperationalError):
        store.read(lambda c: c.execute("DELETE FROM counters"))


async def test_async_api_does_not_block_the_loop(store: Store) -> None:
    await store.awrite(lambda db: add_counters(db, {"records": 7}))
    assert (await store.aread(read_counters))["records"] == 7


def test_closed_store_refuses_and_bad_path_says_so(tmp_path: Path) -> None:
    store = Store(tmp_path / "x.db")
    store.start()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.write(lambda db: None)
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StoreError, match=r"analyzer\.db"):
        Store(tmp_path / "file" / "m.db").start()


def test_close_leaves_a_running_read_its_connection(tmp_path: Path) -> None:
    """A read still running when the store closes (an evaluation thread a shutdown cannot
    cancel) keeps its connection to the end; it is closed then, the idle ones at once."""
    store = Store(tmp_path / "x.db")
    store.start()
    store.read(lambda conn: None)  # one idle connection in the pool
    inside, closed = threading.Event(), threading.Event()
    results: list[object] = []

    def slow(conn: sqlite3.Connection) -> object:
        inside.set()
        assert closed.wait(30)
        return conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]

    def reader() -> None:
        try:
            results.append(store.read(slow))
        except sqlite3.Error as exc:  # a connection closed under the read
            results.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    assert inside.wait(30)
    store.close()
    closed.set()
    thread.join(30)
    assert len(results) == 1 and isinstance(results[0], int)
    assert store._all_readers == []  # both closed: the idle one by close, the other after


def test_a_read_puts_its_connection_back_under_the_lock_close_drains_under(
    tmp_path: Path,
) -> None:
    """A read ending as the store closes must not put its connection back into a pool that
    close() has drained already (it would never be closed: review). The read's decision
    (closed? room in the pool?) and its put are made holding the lock close() drains under;
    the pool is wrapped to see the lock at each of its calls (instrumentation, not a fault)."""
    store = Store(tmp_path / "x.db")
    store.start()
    seen: list[bool] = []
    pool = store._readers

    class Watched(queue.Queue[sqlite3.Connection]):
        def qsize(self) -> int:
            seen.append(store._reader_lock.locked())
            return pool.qsize()

        def put(self, item: sqlite3.Connection, block: bool = True,
                timeout: float | None = None) -> None:  # fmt: skip
            seen.append(store._reader_lock.locked())
            pool.put(item, block, timeout)

        def get_nowait(self) -> sqlite3.Connection:
            return pool.get_nowait()

    store._readers = Watched()
    store.read(lambda conn: None)
    store.read(lambda conn: None)
    store.close()
    assert seen and all(seen), seen
    assert store._all_readers == []


def test_checkpoints_run_beside_the_writer_not_in_its_commit(store: Store) -> None:
    """A transaction of 2,500 pages: SQLite's own checkpoint (1,000 pages) would have run in
    its COMMIT; the writer's is only a far bound now, and the checkpoint thread copies the
    WAL into the database file after the write."""

    def fill(db: Database) -> None:  # the store's first write
        db.execute("CREATE TABLE blobs (b BLOB)")
        db.conn.executemany("INSERT INTO blobs VALUES (?)", [(bytes(4000),)] * 2500)

    store.write(fill)
    assert store.checkpointed.wait(timeout=60)
    assert store.path.stat().st_size > 2500 * 4000  # the pages are in the file now
    pages = store.write(lambda db: db.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
    assert pages == WAL_AUTOCHECKPOINT_PAGES > 10_000
