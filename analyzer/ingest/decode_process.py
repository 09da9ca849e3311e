"""The service's chunks decoded in a process of its own (``analyzer.ingest_process``).

The ingest thread decodes, profiles and extracts each chunk (:class:`ChunkDecoder`), the
writer thread commits the one before; both in one interpreter, so each waits for the GIL the
other holds. With a second core, one worker process does most of the decoding and sends
back the profiles' bytes, the counts and the predictions; the parent's threads read lines,
take the results back, encode the predictions' blocks, write, and decode one chunk in three
themselves (the one read while two wait for the worker; :mod:`analyzer.ingest.ingestor`).

The worker holds no state that matters: a chunk's decode depends only on its lines and its
:class:`DecodeSpec` (sent with each chunk), so the worker can die at any moment. A chunk
whose worker died is decoded on the ingest thread instead, counted (``fallbacks``), and the
next chunk starts a new worker (``restarts`` counts the deaths); nothing of a chunk is
committed before its decode returned, so no record is lost or counted twice. The worker
is started with ``forkserver`` (``spawn`` where there is none): never forked from the
service's threads.
"""

from __future__ import annotations

import fcntl
import logging
import multiprocessing
import os
import pickle
import shutil
import signal
import tempfile
import threading
from array import array
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import accumulate, pairwise
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

from analyzer.ingest.chunk_decode import ChunkDecoder, Decoded, DecodeSpec
from analyzer.monitors.data_quality.profile import DatasetProfile
from analyzer.monitors.model_quality.predictions import Extracted

__all__ = ["DecodeProcess", "Shipped", "Ticket", "decode_file", "landed", "packed", "unpacked"]

log = logging.getLogger("modelmon.analyzer.ingest")

# what the worker sends back: the profiles as bytes, the good records, the bad by reason,
# the predictions
Shipped = tuple[dict[int, bytes], int, Counter[str], Extracted | None]

_LENGTH = array("q")
_decoder: ChunkDecoder | None = None  # the worker's, for the spec of the last chunk


def packed(lines: list[bytes]) -> tuple[bytes, bytes]:
    """A chunk's lines as their lengths and one blob (written to the worker's file)."""
    return array("q", map(len, lines)).tobytes(), b"".join(lines)


def unpacked(data: bytes, n_lines: int) -> list[bytes]:
    """The lines :func:`packed` took (its two parts, joined, in ``data``)."""
    head = n_lines * _LENGTH.itemsize
    lengths = array("q")
    lengths.frombytes(data[:head])
    ends = list(accumulate(lengths, initial=head))
    return [data[start:end] for start, end in pairwise(ends)]


def decode_file(spec: DecodeSpec, source: str, n_lines: int, target: str) -> None:
    """The worker's task: a :func:`packed` chunk read from ``source`` (then removed) and
    decoded (:meth:`ChunkDecoder.decode`), the result pickled to ``target`` (the profiles as
    bytes). The predictions' blocks are left to the ingest thread: encoded here, they came
    back as twice the bytes of the columns (measured: 5.8 MB for 10,000 records against 2.7,
    pickled in 5.1 ms against 2.2)."""
    global _decoder
    path = Path(source)
    data = path.read_bytes()
    path.unlink()
    if _decoder is None or _decoder.spec != spec:
        _decoder = ChunkDecoder(spec)
    profiles, records, bad, extracted = _decoder.decode(unpacked(data, n_lines))
    del data
    shipped = {start: profile.to_bytes() for start, profile in profiles.items()}
    Path(target).write_bytes(pickle.dumps((shipped, records, bad, extracted), 5))


def landed(shipped: Shipped) -> Decoded:
    """The worker's result as the ingest thread's own decode gives it."""
    blobs, records, bad, extracted = shipped
    profiles = {start: DatasetProfile.from_bytes(blob) for start, blob in blobs.items()}
    return profiles, records, bad, extracted


def _context() -> BaseContext:
    """``forkserver`` with this module preloaded (a worker forked from it starts in ms), else
    ``spawn``."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _worker_started(alive: Connection) -> None:
    """In the worker, first: Ctrl-C is left to the service (which ends the worker), and the
    worker ends itself once the service is gone. ``alive`` is the read end of a pipe whose
    write end only the service holds. Without it a service killed with ``kill -9`` left the
    worker and the forkserver running, holding its stderr: the executor's queues never tell
    the worker, and every forkserver child holds the forkserver's own liveness pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        try:
            alive.recv_bytes()  # nothing is ever sent: returns only at EOF
        except (EOFError, OSError):
            pass
        os._exit(0)

    threading.Thread(target=watch, name="modelmon-decode-parent", daemon=True).start()


def _memory_folder() -> Path | None:
    """``/dev/shm`` when this process may write there, else None (the temporary folder)."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else None


FOLDER_PREFIX = "modelmon-decode-"


def _new_folder(parent: Path | None) -> tuple[Path, int]:
    """A fresh hand-over folder in ``parent`` (named after this process) and the descriptor
    of its lock (held while the folder is in use), once the ones of services that are gone
    (killed: their last chunks' files stayed) are removed."""
    parent = Path(tempfile.gettempdir()) if parent is None else parent
    for old in parent.glob(f"{FOLDER_PREFIX}*-*"):
        if _abandoned(old):
            shutil.rmtree(old, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-", dir=parent))
    lock = os.open(folder / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: no one else holds it
    return folder, lock


LOCK_NAME = "lock"  # no dot: not a chunk's file (N.in, N.out)


def _abandoned(folder: Path) -> bool:
    """Is ``folder`` a hand-over folder no live service uses? Its lock is free (the lock, not
    the process id in its name: a service in another process-id namespace sharing /dev/shm
    may have any id, alive or not, in ours); a folder with no lock (made an instant ago, or
    by an older version) by the id in its name."""
    try:
        lock = os.open(folder / LOCK_NAME, os.O_RDWR)
    except FileNotFoundError:
        pid = folder.name[len(FOLDER_PREFIX) :].split("-", 1)[0]
        return pid.isdigit() and not _pid_alive(int(pid))
    except OSError:  # not ours to judge (another user's, not a folder)
        return False
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(lock)
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


@dataclass
class Ticket:
    """A chunk queued to the worker: its decode's future, its input and result files, and the
    pool it was queued to (a death it reports is that pool's, not a newer one's)."""

    future: Future[None]
    source: Path
    target: Path
    pool: ProcessPoolExecutor


class DecodeProcess:
    """One worker process decoding chunks in the order they are given; :meth:`close` ends it.

    ``folder``: where the chunks and results are handed over (a fresh folder in it, removed
    by :meth:`close`); by default ``/dev/shm`` (memory) where there is one, else the system's
    temporary folder. ``max_deaths``: after this many
    workers died in a row (no chunk decoded between), no other is started: every chunk is
    then decoded on the ingest thread (``given_up``)."""

    def __init__(self, *, folder: Path | None = None, max_deaths: int = 3) -> None:
        self._pool: ProcessPoolExecutor | None = None
        # the pipe whose write end, closed, ends the worker (_worker_started)
        self._alive: tuple[Connection, Connection] | None = None
        self._lock = threading.Lock()
        self._parent = folder if folder is not None else _memory_folder()
        self._folder: Path | None = None
        self._folder_lock: int | None = None  # its lock's descriptor (_new_folder)
        self._seq = 0
        self._deaths = 0
        self._max_deaths = max_deaths
        self.chunks = 0  # decoded by the worker
        self.here = 0  # decoded on the ingest thread while the worker had two queued
        self.fallbacks = 0  # chunks decoded on the ingest thread while it was on
        self.restarts = 0  # workers that died (each replaced at the next chunk, unless given up)
        self.given_up = False
        self._closed = False  # close() was called: no worker (nor folder) is started again

    def submit(self, spec: DecodeSpec, lines: list[bytes]) -> Ticket | None:
        """Queue a chunk's decode (a new worker when the last one died); None when the caller
        is to decode it itself (the process given up or closed, or its hand-over folder could
        not be made, or its input could not be written)."""
        with self._lock:
            if self._closed:  # a pass still running at the service's shutdown
                return None
            if self.given_up:
                self.fallbacks += 1
                return None
            try:
                pool, folder = self._started()
            except OSError as exc:  # tried again at the next chunk
                self.fallbacks += 1
                log.warning("a chunk decoded on the ingest thread: no decoding process (%s)", exc)
                return None
            self._seq += 1
            source, target = folder / f"{self._seq}.in", folder / f"{self._seq}.out"
        try:
            with source.open("wb") as out:
                out.writelines(packed(lines))
            future = pool.submit(decode_file, spec, str(source), len(lines), str(target))
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):  # the folder removed: the next chunk's is new
                with self._lock:
                    if self._folder == folder:
                        self._folder = None
            self._fell_back(source, target, f"its input could not be written ({exc})")
            return None
        except BrokenProcessPool as exc:
            self._died(pool, source, target, exc)
            return None
        except RuntimeError as exc:  # shut down by close() since taken above (a race at exit)
            self._fell_back(source, target, f"the decoding process is closing ({exc})")
            return None
        return Ticket(future, source, target, pool)

    def _started(self) -> tuple[ProcessPoolExecutor, Path]:
        """The hand-over folder and the worker's pool, each made when missing (under the
        lock)."""
        if self._folder is None:
            self._unlock()
            self._folder, self._folder_lock = _new_folder(self._parent)
        if self._pool is None:
            context = _context()
            self._alive = context.Pipe(duplex=False)
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=context,
                initializer=_worker_started,
                initargs=(self._alive[0],),
            )
        return self._pool, self._folder

    def result(self, ticket: Ticket) -> Decoded | None:
        """A queued decode's result; None when its worker died or its result could not be
        read (the caller decodes the chunk itself: counted as a fallback; the next chunk
        starts a new worker). A decode that raised raises here (as on the ingest thread)."""
        try:
            ticket.future.result()
            data = ticket.target.read_bytes()
            ticket.target.unlink()
        except BrokenProcessPool as exc:
            self._died(ticket.pool, ticket.source, ticket.target, exc)
            return None
        except OSError as exc:
            self._fell_back(ticket.source, ticket.target, f"its result could not be read ({exc})")
            return None
        with self._lock:
            self.chunks += 1
            self._deaths = 0
        return landed(pickle.loads(data))

    def decoded_here(self) -> None:
        """Count a chunk the ingest thread decodes itself while the worker is busy."""
        with self._lock:
            self.here += 1

    def discard(self, ticket: Ticket) -> None:
        """A queued decode whose result will not be taken (its pass failed, or its file was
        found stale): its files are removed once it is done (else they would stay in memory,
        in ``/dev/shm``, until :meth:`close`)."""

        def remove(_: Future[None]) -> None:
            ticket.source.unlink(missing_ok=True)
            ticket.target.unlink(missing_ok=True)

        ticket.future.add_done_callback(remove)

    def _fell_back(self, source: Path, target: Path, why: str) -> None:
        with self._lock:
            self.fallbacks += 1
        source.unlink(missing_ok=True)
        target.unlink(missing_ok=True)
        log.warning("a chunk decoded on the ingest thread: %s", why)

    def _died(
        self, pool: ProcessPoolExecutor | None, source: Path, target: Path, exc: BaseException
    ) -> None:
        """Count a chunk whose worker died; drop the pool (the next chunk starts another),
        or give the process up after ``max_deaths`` deaths in a row."""
        with self._lock:
            dropped = pool is not None and self._pool is pool
            if dropped:
                self._pool = None
                self._end_pipe()
                self._deaths += 1
                self.restarts += 1
                if self._deaths >= self._max_deaths:
                    self.given_up = True
        self._fell_back(source, target, f"the decoding process died ({exc})")
        if dropped and pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
            if self.given_up:
                log.error(
                    "the decoding process died %d times in a row: the ingest thread decodes "
                    "every chunk from now on (analyzer.ingest_process)",
                    self._max_deaths,
                )

    def worker_pids(self) -> list[int]:
        """The worker's process id, once started (none: not started, or died and not yet
        started again)."""
        with self._lock:
            pool = self._pool
        return list(getattr(pool, "_processes", None) or {}) if pool is not None else []

    def _end_pipe(self) -> None:
        """Close the worker's liveness pipe (under the lock)."""
        if self._alive is not None:
            for end in self._alive:
                end.close()
            self._alive = None

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"chunks": self.chunks, "here": self.here, "fallbacks": self.fallbacks,
                    "restarts": self.restarts, "given_up": self.given_up}  # fmt: skip

    def close(self) -> None:
        """End the worker (waits for the chunk it decodes, if any) and remove the folder."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            folder, self._folder = self._folder, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        with self._lock:
            self._end_pipe()
            self._unlock()

    def _unlock(self) -> None:
        """Let go of the hand-over folder's lock (under the lock)."""
        if self._folder_lock is not None:
            os.close(self._folder_lock)
            self._folder_lock = None
