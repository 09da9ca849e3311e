"""Upload of sealed capture files to ``capture.upload`` (``s3://``, ``gs://``, ``file://``).

Never on the request path: the writer (or the housekeeping thread, for a gzipped seal) hands
each sealed file to :meth:`Uploader.submit`, a set insertion under a lock; one thread of the
uploader's own uploads one file at a time with fsspec (s3fs, gcsfs). The object key keeps
SageMaker's layout: ``{upload}/{endpoint}/{variant}/yyyy/mm/dd/hh/{file}``, i.e. the file's
path under ``capture.dir``.

- The local file stays until the upload succeeded and its size was read back from the store;
  then a mark is written (:mod:`capture_proxy.upload_marks`) and the normal retention applies.
  Retention never removes a file without a mark unless the disk guard says the disk is full
  (``modelmon_capture_upload_abandoned`` counts those).
- A failed attempt (store unreachable, bucket missing, access denied) is counted in
  ``modelmon_capture_upload_failures``, logged at most once a minute, and the file is tried
  again after ``upload_backoff_initial_s``, doubling up to ``upload_backoff_max_s``.
- At start the tree is walked: every sealed file without a mark (sealed before a crash or a
  restart, or by recovery) is queued again. The queue holds paths of files on disk, so it is
  bounded by what the disk and retention allow.
- Several workers (``proxy.workers``) sharing the tree: the uploader holds a ``flock`` on a
  file while it uploads it and checks the mark after taking it, so a file goes up once.
- At shutdown the files still pending are each tried once more within ``upload_drain_s``;
  what is left goes at the next start.
- For ``file://`` the copy is written under a hidden temporary name then renamed, so a reader
  of the target never sees half a file; object stores make a put visible whole.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from capture_proxy.metrics import ProxyMetrics
from capture_proxy.retention import SEALED_SUFFIXES
from capture_proxy.rotation import lock_nowait
from capture_proxy.upload_marks import is_uploaded, mark_uploaded
from modelmon.storage_url import is_local, open_url

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

__all__ = ["Uploader", "backoff_s"]

logger = logging.getLogger("modelmon.capture.upload")

_WARN_INTERVAL_S = 60.0
_BUSY_RETRY_S = 1.0  # a sibling worker holds the file: look again (it will have marked it)


def backoff_s(failures: int, initial_s: float, max_s: float) -> float:
    """Seconds before the next attempt after ``failures`` failed ones (1, 2, 4 ... x initial).

    >>> [backoff_s(n, 1.0, 5.0) for n in range(1, 6)]
    [1.0, 2.0, 4.0, 5.0, 5.0]
    """
    return min(max_s, initial_s * 2.0 ** min(failures - 1, 60))


class Uploader:
    """The upload queue and thread of one sink.

    Parameters
    ----------
    capture_dir : Path
        ``capture.dir``: keys are paths relative to it.
    root : Path
        The sink's ``{capture.dir}/{endpoint}/{variant}`` tree, walked at start.
    url : str
        ``capture.upload``.
    clock : callable, optional
        Monotonic seconds for the backoff.
    """

    def __init__(
        self,
        capture_dir: Path,
        root: Path,
        url: str,
        metrics: ProxyMetrics,
        *,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        worker_id: int = 0,
    ) -> None:
        self.url = url.rstrip("/")
        self._fs: AbstractFileSystem | None = None
        self._base = ""
        self._capture_dir = capture_dir
        self._root = root
        self._metrics = metrics
        self._initial = backoff_initial_s
        self._max = backoff_max_s
        self._clock = clock
        self._worker_id = worker_id
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, str]] = []  # (due, seq, path)
        self._failures: dict[str, int] = {}
        self._queued: set[str] = set()
        self._seq = itertools.count()
        self._stopping = False
        self._drain_until: float | None = None
        self._thread: threading.Thread | None = None
        self._last_warning = float("-inf")
        self._unlogged = 0
        self.attempts = 0  # every attempt ended (for waiters)
        metrics.upload_pending.set_function(lambda: len(self._queued))

    # -- any thread ------------------------------------------------------------------------

    def start(self) -> None:
        """Open the target (raises :class:`modelmon.storage_url.StorageUnavailable` when its
        library is missing) and start the thread, which first queues the pending files."""
        self._fs, self._base = open_url(self.url)
        self._thread = threading.Thread(
            target=self._run, name=f"capture-upload-{self._worker_id}", daemon=True
        )
        self._thread.start()

    def submit(self, path: Path) -> None:
        """Queue a sealed file now (no I/O: safe from the writer's threads)."""
        self._queue(str(path), 0.0)

    def retry_now(self) -> None:
        """Make every queued file due now (operators, tests): the backoff is skipped once."""
        with self._cond:
            self._heap = [(0.0, seq, path) for _due, seq, path in self._heap]
            heapq.heapify(self._heap)
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        """Sealed files known and not uploaded yet."""
        with self._cond:
            return len(self._queued)

    def wait_until(self, predicate: Callable[[Uploader], bool], timeout: float) -> bool:
        """Block until ``predicate(self)`` holds after an attempt (True), or ``timeout``."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def close(self, drain_s: float) -> None:
        """Try each pending file once more within ``drain_s`` seconds, then stop."""
        thread = self._thread
        with self._cond:
            self._stopping = True
            self._drain_until = self._clock() + drain_s
            self._cond.notify_all()
        if thread is not None:
            thread.join(drain_s + 5.0)
            if thread.is_alive():
                logger.warning("capture upload still running at shutdown; left for next start")

    # -- the uploader's thread ----------------------------------------------------------------

    def _queue(self, path: str, due: float) -> None:
        with self._cond:
            if path in self._queued or self._stopping:
                return
            self._queued.add(path)
            heapq.heappush(self._heap, (due, next(self._seq), path))
            self._cond.notify_all()

    def _forget(self, path: str) -> None:
        with self._cond:
            self._queued.discard(path)
            self._failures.pop(path, None)

    def _run(self) -> None:
        try:
            self._queue_pending()
        except OSError as exc:
            logger.warning("cannot walk %s for files to upload: %s", self._root, exc)
        while True:
            job = self._next()
            if job is None:
                return
            path, draining = job
            self._attempt(path, draining)
            with self._cond:
                self.attempts += 1
                self._cond.notify_all()

    def _queue_pending(self) -> None:
        found = 0
        for directory, dirs, names in os.walk(self._root):
            dirs.sort()  # hour folders in time order: the oldest files go first
            for name in sorted(names):
                if name.startswith(".") or not name.endswith(SEALED_SUFFIXES):
                    continue
                path = os.path.join(directory, name)
                if not is_uploaded(path):
                    self._queue(path, 0.0)
                    found += 1
        if found:
            logger.info("%d sealed capture files not uploaded yet under %s", found, self._root)

    def _next(self) -> tuple[str, bool] | None:
        """The next due path, waiting for it; None when stopped (and drained)."""
        with self._cond:
            while True:
                if self._stopping:
                    assert self._drain_until is not None
                    if not self._heap or self._clock() >= self._drain_until:
                        return None
                    _due, _seq, path = heapq.heappop(self._heap)
                    return path, True
                if self._heap:
                    wait = self._heap[0][0] - self._clock()
                    if wait <= 0:
                        return heapq.heappop(self._heap)[2], False
                    self._cond.wait(wait)
                else:
                    self._cond.wait()

    def _attempt(self, path: str, draining: bool) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self._forget(path)  # removed meanwhile (the disk guard)
            return
        except OSError as exc:
            self._failed(path, exc, draining)
            return
        try:
            if not lock_nowait(fd):  # a sibling worker is uploading it
                self._again(path, _BUSY_RETRY_S, draining)
                return
            if is_uploaded(path):
                self._forget(path)
                return
            size = os.fstat(fd).st_size
            try:
                self._put(path, size)
            except Exception as exc:  # any failure of the store or its library: try again
                self._failed(path, exc, draining)
                return
            mark_uploaded(path)
        except OSError as exc:
            self._failed(path, exc, draining)
            return
        finally:
            os.close(fd)
        self._metrics.uploaded_files.inc()
        self._metrics.uploaded_bytes.inc(size)
        self._forget(path)

    def _put(self, path: str, size: int) -> None:
        fs = self._fs
        assert fs is not None
        relative = Path(path).relative_to(self._capture_dir).as_posix()
        key = f"{self._base}/{relative}"
        if is_local(fs):
            parent, name = key.rsplit("/", 1)
            temp = f"{parent}/.{name}.uploading"
            fs.makedirs(parent, exist_ok=True)
            fs.put_file(path, temp)
            fs.mv(temp, key)
        else:
            fs.put_file(path, key)
        fs.invalidate_cache(key)
        stored = fs.info(key)["size"]
        if stored != size:
            raise OSError(f"{key} holds {stored} bytes after the upload, expected {size}")

    def _again(self, path: str, delay: float, draining: bool) -> None:
        with self._cond:
            if draining:
                self._queued.discard(path)  # the next start finds it again
                return
            heapq.heappush(self._heap, (self._clock() + delay, next(self._seq), path))

    def _failed(self, path: str, exc: BaseException, draining: bool) -> None:
        self._metrics.upload_failures.inc()
        with self._cond:
            failures = self._failures[path] = self._failures.get(path, 0) + 1
        delay = backoff_s(failures, self._initial, self._max)
        now = time.monotonic()
        if now - self._last_warning >= _WARN_INTERVAL_S:
            more = f" ({self._unlogged} more failures not logged)" if self._unlogged else ""
            logger.warning(
                "cannot upload %s to %s (attempt %d, next in %.3g s): %s: %s%s",
                path,
                self.url,
                failures,
                delay,
                type(exc).__name__,
                exc,
                more,
            )
            self._last_warning, self._unlogged = now, 0
        else:
            self._unlogged += 1
        self._again(path, delay, draining)
