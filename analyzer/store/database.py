"""The analyzer's SQLite store: one writer thread, many readers, schema by migrations.

All writes go through one dedicated thread that owns the only writing connection (datasette's
write queue): a caller hands it a function, the thread runs it inside one transaction and
hands back the result through a future. So an ingest step (bucket profiles, the file's read
offset and the counters) commits atomically or not at all, and no two writers ever contend.
Readers use their own connections from a small pool; the database is in WAL mode, so reads
never wait for the writer.

Schema changes are ``sqlite_utils.Migrations`` steps, applied once at start by the writer
thread, in order, each in its own transaction.

A new database is created 0600 in 0700 folders (SQLite gives its ``-wal`` and ``-shm``
files the database's mode). The file's identity is noted at start: :meth:`Store.file_problem`
says when it was deleted or replaced under the running service (the writer would go on
writing into a file nobody can open again, and all state would be gone at the restart).

Examples
--------
>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as tmp:
...     store = Store(pathlib.Path(tmp) / "m.db")
...     store.start()
...     store.write(lambda db: add_counters(db, {"records": 3}))
...     store.read(read_counters)["records"]
...     store.close()
3
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlite_utils import Database, Migrations

from analyzer.store.multi_row import insert_rows
from analyzer.store.private_files import make_folders, open_private

__all__ = [
    "MIGRATIONS",
    "QUARANTINED",
    "Store",
    "StoreError",
    "add_counters",
    "quarantine_bucket",
    "read_counters",
    "read_status_doc",
    "write_status_doc",
]

T = TypeVar("T")
log = logging.getLogger("modelmon.analyzer.store")

MIGRATIONS = Migrations("modelmon-analyzer")


@MIGRATIONS()
def m001_initial(db: Database) -> None:
    """Files read, bucket profiles, hours to report, counters, runs, status, ground truth."""
    db.table("files").create(
        {"path": str, "offset": int, "lines": int, "records": int, "bad": int, "done": int},
        pk="path",
    )
    db.table("buckets").create(
        {"start": int, "width": int, "profile": bytes, "records": int, "updated_at": float},
        pk="start",
    )
    db.table("hours").create({"hour": int, "version": int, "reported_version": int}, pk="hour")
    db.table("counters").create({"name": str, "value": int}, pk="name")
    db.table("runs").create(
        {
            "id": int,
            "kind": str,
            "time": str,
            "time_epoch": float,
            "hour": str,
            "window_start": str,
            "window_end": str,
            "state": str,
            "samples": int,
            "features": str,
            "violations": str,
            "report_dir": str,
        },
        pk="id",
    )
    db.table("runs").create_index(["kind", "time_epoch"])
    db.table("runs").create_index(["time_epoch"])
    db.table("run_reports").create(
        {"run_id": int, "name": str, "body": bytes}, pk=("run_id", "name")
    )
    db.table("status").create({"id": int, "doc": str, "updated_at": float}, pk="id")
    db.table("ground_truth").create(
        {
            "id": int,
            "event_id": str,
            "inference_id": str,
            "inference_time": str,
            "data": str,
            "encoding": str,
            "received_at": float,
        },
        pk="id",
    )
    db.table("ground_truth").create_index(["event_id"])
    db.table("ground_truth").create_index(["inference_id"])


@MIGRATIONS()
def m002_quarantine(db: Database) -> None:
    """Stored profiles that cannot be read, moved aside (never merged, never deleted)."""
    db.table("quarantine").create(
        {"id": int, "kind": str, "key": int, "blob": bytes, "error": str, "at": float}, pk="id"
    )


@MIGRATIONS()
def m003_model_quality(db: Database) -> None:
    """The model-quality join: predictions, labels, windows to evaluate again, and the read
    state of the ground-truth folder (see :mod:`analyzer.store.model_quality`)."""
    from analyzer.store.model_quality_labels import create_label_file_tables
    from analyzer.store.model_quality_migrations import create_tables_v1

    create_tables_v1(db)
    create_label_file_tables(db)


@MIGRATIONS()
def m004_model_quality_totals(db: Database) -> None:
    """Row totals of the join, kept as rows change so that label counts never scan a table;
    counted once here for a database filled before they were kept."""
    from analyzer.store.model_quality_migrations import recount_totals_v1

    recount_totals_v1(db)


@MIGRATIONS()
def m005_run_detail(db: Database) -> None:
    """How much of a run is still stored (2 full, 1 summary, 0 bare: analyzer.store.retention),
    indexed so that each run finds the rows to summarize without scanning the history."""
    db.execute("ALTER TABLE runs ADD COLUMN detail INTEGER NOT NULL DEFAULT 2")
    db.table("runs").create_index(["detail", "kind", "time_epoch"])


@MIGRATIONS()
def m006_file_size(db: Database) -> None:
    """The size of a remote capture object when it was read (``analyzer.capture_url``): an
    object is immutable once sealed, so URL and size say whether it was read; NULL for a
    local file (its offset says how far it was read)."""
    db.execute("ALTER TABLE files ADD COLUMN size INTEGER")


@MIGRATIONS()
def m007_model_quality_no_key_index(db: Database) -> None:
    """The join's predictions without their random-key index (each chunk inserted a row per
    prediction into it: most of the pages a chunk wrote); existing rows kept."""
    from analyzer.store.model_quality_migrations import drop_key_index

    drop_key_index(db)


@MIGRATIONS()
def m008_model_quality_blocks(db: Database) -> None:
    """The join's predictions as blocks (a chunk's predictions of one hour in one row of
    columns) instead of a row each, and the labels in batches whose bits say which are
    joined (``mq_label_batches``) instead of the lone halves' tables; rows, pairs and
    counts kept
    (:func:`analyzer.store.model_quality_migrations.to_blocks`)."""
    from analyzer.store.model_quality_migrations import to_blocks

    to_blocks(db)


@MIGRATIONS()
def m009_model_quality_label_keys(db: Database) -> None:
    """The label batches' keys in a table of their own (``mq_label_keys``), apart from the
    bits a join rewrites (:func:`analyzer.store.model_quality_migrations.label_keys_apart`)."""
    from analyzer.store.model_quality_migrations import label_keys_apart

    label_keys_apart(db)


@MIGRATIONS()
def m010_model_quality_runs(db: Database) -> None:
    """The tables of the blocks' key hashes in sorted runs (a label's lookup without a scan
    of every block): no conversion, every block starts in level 0 and is built into runs a
    bounded step per chunk (:mod:`analyzer.store.model_quality_runs`)."""
    from analyzer.store.model_quality_runs import create_tables

    create_tables(db.conn)


class StoreError(Exception):
    """The store cannot be opened or used (a bad path, a full disk, a closed store)."""


_STOP = object()
WAL_LIMIT_BYTES = 16 << 20
# The writer's page cache (SQLite's default is 2 MiB). A chunk of model-quality predictions
# inserts 10,000 random keys (uuids) into the join's key indexes, dirtying thousands of
# pages in one transaction: with 2 MiB they spill and are read back mid-transaction. Pages
# are allocated as used, so a small database costs no more.
WRITER_CACHE_KIB = 64 << 10
# Checkpoints (WAL pages copied into the database file, then fsync) run on a thread of their
# own, at most once a CHECKPOINT_EVERY_S while writes come: SQLite's automatic one ran in
# the writer's COMMIT once the WAL passed 1,000 pages, i.e. at nearly every ingest chunk
# (a chunk of random-key index inserts writes thousands of pages), and the ingest waited on
# its fsyncs. Copying less often also copies a page rewritten by several commits once. The
# writer's own automatic checkpoint stays as a bound on the WAL should that thread lag.
CHECKPOINT_EVERY_S = 1.0
WAL_AUTOCHECKPOINT_PAGES = 16384


class Store:
    """SQLite at ``path``: writes on one thread, reads on pooled connections."""

    def __init__(self, path: Path, *, readers: int = 4) -> None:
        self.path = Path(path)
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._readers: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._all_readers: list[sqlite3.Connection] = []
        self._max_readers = readers
        self._reader_lock = threading.Lock()
        self._closed = False
        self._identity: tuple[int, int] | None = None
        self._lost_logged = False
        self._wrote = threading.Event()  # a transaction committed: the WAL grew
        self._stopping = threading.Event()
        self._checkpoints: threading.Thread | None = None
        self.checkpointed = threading.Event()  # set after each checkpoint (for tests)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Open the database, apply migrations, and start the writer thread."""
        try:
            make_folders(self.path.parent)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of analyzer.db {self.path}: {exc}") from exc
        try:
            os.close(open_private(self.path, os.O_RDWR | os.O_CREAT))
            found = os.stat(self.path)
        except OSError as exc:
            raise StoreError(f"cannot open analyzer.db {self.path}: {exc}") from exc
        self._identity = (found.st_dev, found.st_ino)
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._writer, args=(ready,), name="modelmon-sqlite-writer", daemon=True
        )
        self._thread.start()
        ready.result()
        self._checkpoints = threading.Thread(
            target=self._checkpointer, name="modelmon-sqlite-checkpoint", daemon=True
        )
        self._checkpoints.start()

    def close(self) -> None:
        """Finish queued writes, stop the writer, close the idle read connections (one in
        use by a read still running, e.g. an evaluation thread a shutdown cannot cancel, is
        closed by that read when it ends: closing it under a running statement crashes the
        process in sqlite3)."""
        with self._reader_lock:  # a read ending now sees it and closes its own connection
            if self._closed:
                return
            self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
        if self._checkpoints is not None:
            self._stopping.set()
            self._wrote.set()
            self._checkpoints.join()
        with self._reader_lock:
            idle = []
            while True:
                try:
                    idle.append(self._readers.get_nowait())
                except queue.Empty:
                    break
            for conn in idle:
                if conn in self._all_readers:
                    self._all_readers.remove(conn)
        for conn in idle:
            conn.close()

    def _writer(self, ready: concurrent.futures.Future[None]) -> None:
        try:
            db = Database(self.path)
            # Freed pages go back to the file system (PRAGMA incremental_vacuum, run by
            # analyzer.store.retention); effective only while the file has no table yet.
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            db.execute("PRAGMA journal_mode=WAL")
            # The WAL file is cut back to this size at each checkpoint (not its high mark).
            db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=5000")
            db.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
            db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            MIGRATIONS.apply(db)
        except (sqlite3.Error, OSError) as exc:
            ready.set_exception(StoreError(f"cannot open analyzer.db {self.path}: {exc}"))
            return
        ready.set_result(None)
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    break
                fn, future = item
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    with db.atomic():
                        result = fn(db)
                except BaseException as exc:  # handed to the caller, who decides
                    future.set_exception(exc)
                else:
                    self._wrote.set()
                    future.set_result(result)
        finally:
            db.close()

    def _checkpointer(self) -> None:
        """Copy the WAL into the database after writes (``PASSIVE``: never waits for the
        writer or a reader), at most once a :data:`CHECKPOINT_EVERY_S`, on its own
        connection, so the fsyncs happen beside the writer instead of inside its COMMIT."""
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            while not self._stopping.is_set():
                self._wrote.wait()
                self._wrote.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the writer's own checkpoint still bounds the WAL
                    log.warning("WAL checkpoint failed (retried after the next write): %s", exc)
                else:
                    self.checkpointed.set()
                self._stopping.wait(CHECKPOINT_EVERY_S)
        finally:
            conn.close()

    def file_problem(self) -> str | None:
        """Why the database file is not the one opened at start (deleted, replaced), or None.

        Blocking (one ``stat``); the first time a problem is seen it is logged as an error.
        """
        if self._identity is None:
            return None
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            problem = (
                f"the database file {self.path} was deleted while the analyzer runs: what it "
                "stores now is lost at the next restart; restore the file or restart to start "
                "over empty"
            )
        except OSError as exc:
            problem = f"the database file {self.path} cannot be checked: {exc}"
        else:
            if (found.st_dev, found.st_ino) == self._identity:
                return None
            problem = (
                f"the database file {self.path} was replaced while the analyzer runs: the "
                "analyzer still writes to the old one; restart it to use the new file"
            )
        if not self._lost_logged:
            self._lost_logged = True
            log.error("%s", problem)
        return problem

    # -- writes ----------------------------------------------------------------------------
    def submit(self, fn: Callable[[Database], T]) -> concurrent.futures.Future[T]:
        """Queue ``fn(db)`` to run in one transaction on the writer thread."""
        if self._closed or self._thread is None:
            raise StoreError("the store is closed")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put((fn, future))
        return future

    def write(self, fn: Callable[[Database], T]) -> T:
        """Run ``fn(db)`` in one transaction and wait for it (from a thread, not the loop)."""
        return self.submit(fn).result()

    async def awrite(self, fn: Callable[[Database], T]) -> T:
        """Run ``fn(db)`` in one transaction without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(fn))

    # -- reads -----------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        try:
            return self._readers.get_nowait()
        except queue.Empty:
            pass
        conn = sqlite3.connect(
            f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=5.0
        )
        with self._reader_lock:
            self._all_readers.append(conn)
        return conn

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on a read connection, in one read transaction: every read of
        ``fn`` sees the same state of the database, whatever commits meanwhile (blocking;
        from a thread)."""
        if self._closed:
            raise StoreError("the store is closed")
        conn = self._reader()
        try:
            conn.execute("BEGIN")
            return fn(conn)
        finally:
            if conn.in_transaction:
                conn.rollback()
            with self._reader_lock:  # close() drains under this lock: none put back after
                kept = self._readers.qsize() < self._max_readers and not self._closed
                if kept:
                    self._readers.put(conn)
                elif conn in self._all_readers:
                    self._all_readers.remove(conn)
            if not kept:
                conn.close()

    async def aread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on a read connection off the event loop."""
        return await asyncio.to_thread(self.read, fn)


# -- small shared queries ------------------------------------------------------------------


def add_counters(db: Database | sqlite3.Connection, deltas: Mapping[str, int]) -> None:
    """Add to named counters (inside the caller's transaction), in one statement: beside
    the busy ingest thread the writer can wait for the GIL after each of its statements."""
    insert_rows(
        db.conn if isinstance(db, Database) else db,
        "INSERT INTO counters(name, value)",
        [(name, int(delta)) for name, delta in deltas.items() if delta],
        " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
    )


def read_counters(conn: sqlite3.Connection) -> dict[str, int]:
    """Every counter by name."""
    return {name: int(value) for name, value in conn.execute("SELECT name, value FROM counters")}


def write_status_doc(db: Database, doc: Mapping[str, Any]) -> None:
    """Replace the precomputed status document."""
    db.execute(
        "INSERT INTO status(id, doc, updated_at) VALUES (1, ?, ?) "
        "ON CONFLICT(id) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at",
        [orjson.dumps(doc).decode(), time.time()],
    )


def read_status_doc(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """The last precomputed status document, if a run has happened."""
    row = conn.execute("SELECT doc FROM status WHERE id = 1").fetchone()
    if row is None:
        return None
    doc: dict[str, Any] = orjson.loads(row[0])
    return doc


QUARANTINED = "quarantined_profiles"


def quarantine_bucket(db: Database, start: int, error: str, now: float) -> bool:
    """Move the bucket at ``start`` to ``quarantine`` and count it (inside the caller's
    transaction); False when it is no longer there (already moved)."""
    row = db.execute("SELECT profile FROM buckets WHERE start = ?", [start]).fetchone()
    if row is None:
        return False
    db.execute(
        "INSERT INTO quarantine(kind, key, blob, error, at) VALUES ('bucket', ?, ?, ?, ?)",
        [start, row[0], error[:2000], now],
    )
    db.execute("DELETE FROM buckets WHERE start = ?", [start])
    add_counters(db, {QUARANTINED: 1})
    log.error(
        "the stored profile of bucket %d cannot be read (%s): moved to the quarantine table",
        start,
        error,
    )
    return True
