"""The capture files the writer has open: one ``.part`` per UTC hour, appended, sealed, rotated.

Runs in the writer's thread only (one call at a time), never on the event loop.

File life: ``{root}/yyyy/mm/dd/hh/{mm-ss-SSS}-{instance}-{uuid}.jsonl.part`` is created 0600
(directories 0700) when the first record of that hour arrives (the name's time is that
record's; ``instance`` names this host, :mod:`modelmon.capture_names`), appended
with one ``os.write`` per batch (no user-space buffer: what is written survives ``kill -9``),
and sealed, i.e. renamed to ``.jsonl`` (or gzipped to ``.jsonl.gz`` through a ``.jsonl.gz.part``
temporary, then the ``.part`` removed), when it reaches ``max_file_bytes``, when it is
``rotate_interval_s`` old, when the clock leaves its hour, and at close. A sealed file is
never opened for writing again; ``on_sealed`` hears of it (the uploader's queue) after its
lock is released.

Ownership between processes (``proxy.workers > 1`` share the tree): the writer holds an
exclusive ``flock`` on every ``.part`` it has open, from creation until after it is sealed.
The kernel drops the lock when the process dies (``kill -9`` included), so crash recovery
(:mod:`capture_proxy.recovery`) seals exactly the ``.part`` files whose lock it can take.
"""

from __future__ import annotations

import errno
import fcntl
import gzip
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from capture_proxy.metrics import ProxyMetrics
from modelmon.capture_names import capture_stem

__all__ = ["CaptureFiles", "lock_nowait", "make_dirs", "seal_part"]

logger = logging.getLogger("modelmon.capture.files")

PART = ".jsonl.part"
GZ_PART = ".jsonl.gz.part"
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
_COPY_CHUNK = 1 << 20
WARN_INTERVAL_S = 60.0  # the same kind of failure is logged at most once a minute


def make_dirs(path: Path) -> None:
    """``mkdir -p`` with every directory it creates at mode 0700."""
    missing: list[Path] = []
    current = path
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            if not directory.is_dir():
                raise


def lock_nowait(fd: int) -> bool:
    """Take the exclusive ``flock`` on ``fd``; False when another open file holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def seal_part(part: Path, compress: bool) -> Path:
    """Turn ``X.jsonl.part`` into ``X.jsonl`` or ``X.jsonl.gz``; the caller owns the part.

    A failed compression (disk full ...) falls back to the plain rename, which needs no space.
    Raises ``OSError`` when even the rename fails; the ``.part`` then stays for recovery.
    """
    final = part.with_name(part.name[: -len(".part")])
    if compress:
        gz_final = final.with_name(final.name + ".gz")
        gz_temp = final.with_name(final.name + ".gz.part")
        try:
            fd = os.open(gz_temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with (
                os.fdopen(fd, "wb") as raw,
                gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz,
                part.open("rb") as source,
            ):
                shutil.copyfileobj(source, gz, _COPY_CHUNK)
            os.replace(gz_temp, gz_final)
        except OSError as exc:
            logger.warning("cannot gzip %s (%s); sealing it uncompressed", part, exc)
            gz_temp.unlink(missing_ok=True)
        else:
            part.unlink()
            return gz_final
    os.replace(part, final)
    return final


@dataclass(slots=True)
class _OpenFile:
    path: Path
    fd: int
    hour: int  # UTC hour of its records, in hours since the epoch
    created: float  # by the sink's clock
    size: int = 0


def _hour_dir(root: Path, hour: int) -> Path:
    t = time.gmtime(hour * 3600)
    return root / f"{t.tm_year:04d}" / f"{t.tm_mon:02d}" / f"{t.tm_mday:02d}" / f"{t.tm_hour:02d}"


class CaptureFiles:
    """The open ``.part`` files of one writer, keyed by UTC hour."""

    def __init__(
        self,
        root: Path,
        *,
        max_file_bytes: int,
        rotate_interval_s: float,
        compress: bool,
        metrics: ProxyMetrics,
        defer: Callable[..., Future[None]] | None = None,
        instance: str = "host",
        on_sealed: Callable[[Path], None] | None = None,
    ) -> None:
        self.root = root
        self._instance = instance
        self._on_sealed = on_sealed
        # Runs a compressing seal elsewhere (the sink's housekeeping thread), so that the
        # writer goes on while a big file is gzipped; None: inline.
        self._defer = defer
        self._warned: dict[str, tuple[float, int]] = {}
        self._max_bytes = max_file_bytes
        self._interval = rotate_interval_s
        self._compress = compress
        self._metrics = metrics
        self._open: dict[int, _OpenFile] = {}
        self.sealed = 0  # files sealed by this writer, for the caller's retention trigger

    @property
    def open_paths(self) -> list[Path]:
        return [f.path for f in self._open.values()]

    def write(self, hour: int, times: list[float], lines: list[bytes], now: float) -> int:
        """Append ``lines`` (all of UTC ``hour``); the number written before any error.

        A file that would pass ``max_file_bytes`` is sealed first (a single line larger than
        the limit gets a file of its own). On an ``OSError`` the file is cut back to its last
        complete batch and sealed, and the rest of ``lines`` is not written.
        """
        done = 0
        try:
            while done < len(lines):
                f = self._open.get(hour)
                if f is None:
                    f = self._create(hour, times[done], now)
                end, size = done, f.size
                rest = lines[done:] if done else lines
                total = sum(map(len, rest))
                if size + total <= self._max_bytes:  # the usual case: all of it fits
                    end, size = len(lines), size + total
                while end < len(lines) and (size + len(lines[end]) <= self._max_bytes or size == 0):
                    size += len(lines[end])
                    end += 1
                if end == done:
                    self._seal(f)
                    continue
                self._append(f, b"".join(lines[done:end]))
                done = end
                if f.size >= self._max_bytes:
                    self._seal(f)
        except OSError as exc:
            self._metrics.write_errors.inc()
            self.warn("write", "cannot write capture records under %s: %s", self.root, exc)
        return done

    def warn(self, kind: str, message: str, *args: object) -> None:
        """Log a warning at most once per ``WARN_INTERVAL_S`` per ``kind``, with how many of
        the same were not logged meanwhile (a full disk fails every write)."""
        now = time.monotonic()
        last, skipped = self._warned.get(kind, (float("-inf"), 0))
        if now - last < WARN_INTERVAL_S:
            self._warned[kind] = (last, skipped + 1)
            return
        self._warned[kind] = (now, 0)
        if skipped:
            message += f" ({skipped} more like this in the last {WARN_INTERVAL_S:.0f} s)"
        logger.warning(message, *args)

    def rotate(self, now: float) -> int:
        """Seal files that are ``rotate_interval_s`` old or whose hour is over; how many."""
        current_hour = int(now // 3600)
        due = [
            f
            for f in self._open.values()
            if now - f.created >= self._interval or f.hour < current_hour
        ]
        for f in due:
            self._seal(f)
        return len(due)

    def close_all(self) -> None:
        for f in list(self._open.values()):
            self._seal(f)

    def _create(self, hour: int, first_time: float, now: float) -> _OpenFile:
        directory = _hour_dir(self.root, hour)
        make_dirs(directory)
        t = time.gmtime(first_time)
        millisecond = int(first_time * 1000) % 1000
        for _ in range(5):
            stem = capture_stem(t.tm_min, t.tm_sec, millisecond, self._instance, str(uuid.uuid4()))
            path = directory / f"{stem}{PART}"
            fd = os.open(path, _OPEN_FLAGS, 0o600)
            # A starting sibling may be recovering this (empty) file between our open and our
            # lock: then either its lock beats ours or the path no longer names our inode.
            if lock_nowait(fd):
                try:
                    if os.stat(path).st_ino == os.fstat(fd).st_ino:
                        opened = self._open[hour] = _OpenFile(path, fd, hour, now)
                        return opened
                except FileNotFoundError:
                    pass
            os.close(fd)
        raise OSError(errno.EAGAIN, "could not create an unclaimed capture file", str(directory))

    def _append(self, f: _OpenFile, data: bytes) -> None:
        view = memoryview(data)
        written = 0
        try:
            while written < len(view):
                written += os.write(f.fd, view[written:])
        except OSError:
            # Keep the file made of whole lines: drop the partial batch, then seal what is left.
            try:
                os.ftruncate(f.fd, f.size)
            except OSError as exc:
                self.warn("cut", "cannot cut %s back after a failed write: %s", f.path, exc)
                self._forget(f)  # leave the .part to crash recovery, which cuts the tail
            else:
                self._seal(f)
            raise
        f.size += written
        self._metrics.bytes_written.inc(written)

    def _forget(self, f: _OpenFile) -> None:
        if self._open.get(f.hour) is f:
            del self._open[f.hour]
        os.close(f.fd)

    def _seal(self, f: _OpenFile) -> None:
        if self._compress and self._defer is not None and f.size:
            # Out of the open set now (new records go to a new file); gzipped, renamed and
            # unlocked in the housekeeping thread. The lock stays held until then.
            if self._open.get(f.hour) is f:
                del self._open[f.hour]
            try:
                self._defer(self._seal_now, f)
                return
            except RuntimeError:  # the executor is shut down: seal here
                pass
        self._seal_now(f)

    def _seal_now(self, f: _OpenFile) -> None:
        sealed: Path | None = None
        try:
            if f.size == 0:
                f.path.unlink(missing_ok=True)
            else:
                sealed = seal_part(f.path, self._compress)
                self.sealed += 1
                self._metrics.files_sealed.inc()
        except OSError as exc:
            self.warn("seal", "cannot seal %s (%s); recovery will at the next start", f.path, exc)
        finally:
            self._forget(f)  # closing the fd releases the lock, after the rename
        if sealed is not None and self._on_sealed is not None:
            self._on_sealed(sealed)
