"""The capture sink: sampled exchanges in, sealed SageMaker capture files out.

The request path calls :meth:`CaptureSink.submit`, which only appends to a deque bounded by
records (``queue_max_records``) and by body bytes (``queue_max_bytes``), with no I/O, no
encoding, no syscall: when a bound is reached or the disk guard says the disk is full, the
record is dropped and counted, and the response is never touched.

One writer task drains the queue in slices of at most 128 records and 1 MiB of bodies. A slice
of small records that need no redaction and no decoding (the usual case) is encoded on the
event loop, ~0.1 ms of encoding at a time with the loop free for requests in between, and only
written in an ``asyncio.to_thread`` call; any other slice is redacted, decoded (within
``max_capture_bytes``), encoded (one :class:`capture_proxy.exchange.LineEncoder`) and written
in the thread. So the event loop never waits on disk, and a request never waits long for a
writer thread that holds the GIL. A slice's bytes stay counted against ``queue_max_bytes``
until they are written: the queue and the writer together never hold more than the budget.

The writer runs a cycle when ``submit`` has filled a slice, when :meth:`flush` / :meth:`tick`
asks, and at least every ``flush_interval_s``; each cycle writes what was queued when it
began, seals files due by size, age or hour (:mod:`capture_proxy.rotation`, judged by the
injectable ``clock``), re-checks free disk space at most once a second, and has retention run
at most once a minute of ``clock`` time (:mod:`capture_proxy.retention`). The slow work (the
gzip of a sealed file, the retention walk) runs in a housekeeping thread of its own, never
inside a writer cycle.

Every sampled record handed to :meth:`submit` is counted exactly once: in
``modelmon_capture_records`` when it is written to a file, or in
``modelmon_capture_dropped{reason}`` when it is not (or it is still queued).

A failed write drops and counts that batch (``write_error``); the next cycle tries again,
so capture resumes on its own once the disk is writable. ``start`` first seals the
``.part`` files a crashed process left (:mod:`capture_proxy.recovery`); ``close`` drains
the queue and seals every file.

With ``capture.upload`` each sealed file is handed to an :class:`capture_proxy.upload.Uploader`
(a thread of its own, started after recovery, closed last), and retention holds back the files
it has not uploaded yet.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from capture_proxy.exchange import Exchange, LineEncoder
from capture_proxy.metrics import ProxyMetrics
from capture_proxy.recovery import recover_parts
from capture_proxy.redact import Redactor
from capture_proxy.retention import UploadHold, enforce_retention, free_disk_fraction
from capture_proxy.rotation import CaptureFiles, make_dirs
from capture_proxy.upload import Uploader
from capture_proxy.write_batch import Lines, body_bytes, compressed
from modelmon.capture_names import sanitize_instance
from modelmon.config import ModelmonConfig

__all__ = ["CaptureSink"]

logger = logging.getLogger("modelmon.capture.sink")

DISK_CHECK_INTERVAL_S = 1.0
RETENTION_INTERVAL_S = 60.0
# Records that wake the writer, and the most encoded and written per thread call. Measured
# (docs/benchmarks-proxy.md): 1024 let the writer thread hold the GIL for ~3 ms at a time,
# which starved the event loop (a GIL convoy: p99 25-30 ms, +5 µs CPU per request); 128
# keeps each hold well under a millisecond for ~0.2 µs per record of thread hand-offs.
_BATCH = 128
# The most body bytes handed to one thread call (a single larger record goes alone).
_SLICE_BYTES = 1 << 20
# Encoded lines held before they are written (a slice whose bodies inflate a lot).
_WRITE_BYTES = 4 << 20
# Slices of small records without redaction or decoding are encoded on the event loop, in
# runs of ~_LOOP_BUDGET_S between which requests go first; the thread only
# writes. Measured: with the encoding in the writer thread, a request that arrived while the
# thread held the GIL waited for it (the 1-connection p99 was 1.4-3.4 ms against 0.1-0.8 off).
_LIGHT_BYTES = 16 * 1024
_INFLATE_GUESS = 32
# Encoding on the loop yields to requests after this much time (checked after each record),
# not after a count: a run costs the same wall time on a fast machine and a slow one. Measured:
# runs of 32 records took ~0.3-1 ms on a slow machine, the p99 a request could wait behind one.
_LOOP_BUDGET_S = 0.0001


class CaptureSink:
    """Queue, writer task and files of the capture of one proxy process.

    Parameters
    ----------
    config : ModelmonConfig
        ``capture.*`` and ``endpoint.*`` are used.
    metrics : ProxyMetrics
        ``captured``, ``dropped`` by reason, ``queue_depth``, ``bytes_written``,
        ``files_sealed``, ``files_removed`` and ``redact_unredactable`` are kept here.
    clock : callable, optional
        Epoch seconds; decides rotation by age and hour, and retention age. Tests inject one.
    worker_id : int, optional
        This process's index among ``proxy.workers``; names the writer task and its logs.
        File ownership between workers needs no id: see :mod:`capture_proxy.rotation`.
    encode_on_loop : bool, optional
        Encode small plain slices on the event loop (default); False puts every slice in the
        writer thread, as before (``bench/sink_tail.py`` compares the two).
    """

    def __init__(
        self,
        config: ModelmonConfig,
        metrics: ProxyMetrics,
        *,
        clock: Callable[[], float] = time.time,
        worker_id: int = 0,
        encode_on_loop: bool = True,
    ) -> None:
        capture = config.capture
        self._capture = capture
        self._metrics = metrics
        self._clock = clock
        self.worker_id = worker_id
        self._encode_on_loop = encode_on_loop  # False: every slice in the thread (bench/)
        self.root = capture.dir / config.endpoint.name / config.endpoint.variant
        self._redactor = Redactor(capture.redact, on_unredactable=metrics.redact_unredactable.inc)
        self._encode = LineEncoder(capture, on_cut=metrics.truncated.inc)
        self._housekeeping = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"capture-housekeeping-{worker_id}"
        )
        self.uploader: Uploader | None = None
        if capture.upload is not None:
            self.uploader = Uploader(
                capture.dir,
                self.root,
                capture.upload,
                metrics,
                backoff_initial_s=capture.upload_backoff_initial_s,
                backoff_max_s=capture.upload_backoff_max_s,
                worker_id=worker_id,
            )
        self.instance = capture.instance_id or sanitize_instance(socket.gethostname())
        self._files = CaptureFiles(
            self.root,
            max_file_bytes=capture.max_file_bytes,
            rotate_interval_s=capture.rotate_interval_s,
            compress=capture.compress,
            metrics=metrics,
            defer=self._housekeeping.submit,
            instance=self.instance,
            on_sealed=None if self.uploader is None else self.uploader.submit,
        )
        # (exchange, body bytes, slice weight, light), sized once by submit (see _take).
        self._pending: deque[tuple[Exchange, int, int, bool]] = deque()
        self._max_records = capture.queue_max_records
        self._max_bytes = capture.queue_max_bytes
        self._held_bytes = 0  # bodies queued or in the writer's hands, until written
        self._wake_at = max(1, min(_BATCH, capture.queue_max_records // 8))
        self._wake = asyncio.Event()
        self._waiters: list[asyncio.Future[None]] = []
        self._retention_due = False
        self._last_retention = float("-inf")
        self._last_disk_check = float("-inf")
        self._disk_full = False
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        metrics.queue_depth.set_function(lambda: len(self._pending))
        metrics.queue_bytes.set_function(lambda: self._held_bytes)

    @property
    def queue_depth(self) -> int:
        """Records waiting for the writer."""
        return len(self._pending)

    @property
    def disk_full(self) -> bool:
        """The disk guard's cached verdict (refreshed by the writer at most once a second)."""
        return self._disk_full

    @property
    def held_bytes(self) -> int:
        """Body bytes queued or in the writer's hands (bounded by ``queue_max_bytes``)."""
        return self._held_bytes

    def submit(self, exchange: Exchange) -> bool:
        """Queue one sampled exchange; False when it was dropped (and counted) instead."""
        pending = self._pending
        if self._disk_full:
            self._metrics.drop("disk_full")
            return False
        if len(pending) >= self._max_records:
            self._metrics.drop("queue_full")
            return False
        if self._closing:
            self._metrics.drop("shutdown")
            return False
        size = body_bytes(exchange)
        if self._held_bytes + size > self._max_bytes:
            self._metrics.drop("queue_bytes")
            return False
        if compressed(exchange):
            # A compressed body may inflate (up to max_capture_bytes a side): it weighs so in a
            # slice, up to 32x its size, so that a gzip bomb gets a thread call of its own.
            weight = max(size, min(self._capture.max_capture_bytes, size * _INFLATE_GUESS))
            pending.append((exchange, size, weight, False))
        else:
            pending.append((exchange, size, size, size <= _LIGHT_BYTES))
        self._held_bytes += size
        if len(pending) >= self._wake_at and not self._wake.is_set():
            self._wake.set()
        return True

    async def start(self) -> None:
        """Recover what a crash left, check the disk, then start the writer task."""
        if self._task is not None:
            return
        await asyncio.to_thread(self._startup, self._clock())
        if self.uploader is not None:
            self.uploader.start()  # walks the tree for files sealed but not uploaded
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"capture-writer-{self.worker_id}"
        )

    async def flush(self) -> None:
        """Return once everything submitted before the call is in its ``.part`` file."""
        await self._request_cycle()

    async def tick(self) -> None:
        """:meth:`flush`, and run retention now whatever its schedule (for tests and ops)."""
        self._retention_due = True
        await self._request_cycle()

    async def close(self) -> None:
        """Drain the queue, seal every file and stop the writer. Safe to call again."""
        self._closing = True
        task = self._task
        if task is not None:
            self._wake.set()
            # wait() rather than await: the caller is not cancelled if the writer was, and
            # a cancelled close() leaves the writer draining, still owned by the sink.
            await asyncio.wait([task])
            if task.cancelled():
                logger.warning("capture writer was cancelled; .part files left for recovery")
        if self._pending:
            self._metrics.drop("shutdown", len(self._pending))
            self._pending.clear()
            self._held_bytes = 0
        # The gzip of the files sealed last and a running retention walk finish first.
        await asyncio.to_thread(self._housekeeping.shutdown, True)
        if self.uploader is not None:
            await asyncio.to_thread(self.uploader.close, self._capture.upload_drain_s)

    async def _request_cycle(self) -> None:
        task = self._task
        if task is None or task.done():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._wake.set()
        await waiter

    def _take(self, left: int) -> tuple[list[Exchange], int, bool]:
        """The next slice (at most ``left`` records), its body bytes, and whether every record
        of it is light (small, nothing to decode)."""
        pending = self._pending
        part: list[Exchange] = []
        size = cost = 0
        light = True
        for _ in range(min(left, _BATCH, len(pending))):
            exchange, nxt, weight, small = pending[0]
            if part and cost + weight > _SLICE_BYTES:
                break
            pending.popleft()
            part.append(exchange)
            size += nxt
            cost += weight
            light = light and small
        return part, size, light

    def _done_when_housekept(self, waiters: list[asyncio.Future[None]]) -> None:
        """Resolve ``waiters`` once the housekeeping submitted so far has run (off the writer:
        it never waits for a gzip or a retention walk)."""
        if not waiters:
            return
        try:
            barrier = asyncio.wrap_future(self._housekeeping.submit(_nothing))
        except RuntimeError:  # shut down (a cancelled close): nothing more will run
            _resolve(waiters)
            return
        barrier.add_done_callback(lambda _: _resolve(waiters))

    async def _run(self) -> None:
        waiters: list[asyncio.Future[None]] = []
        try:
            while True:
                if not self._closing and not self._wake.is_set():
                    try:
                        async with asyncio.timeout(self._capture.flush_interval_s):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
                self._wake.clear()
                # Waiters first, then the queue: all a waiter submitted before asking is drained.
                waiters, self._waiters = self._waiters, []
                final = self._closing
                left = len(self._pending)
                while True:
                    # At most _BATCH records and _SLICE_BYTES per thread call: the thread holds
                    # the GIL for a fraction of a millisecond at a time, and the records stay
                    # counted against queue_max_bytes until written.
                    part, size, light = self._take(left)
                    left -= len(part)
                    last = left <= 0 or not self._pending
                    try:
                        if part and light and self._encode_on_loop and not self._redactor.enabled:
                            lines = await self._encoded(part)
                            await asyncio.to_thread(
                                self._cycle_lines, lines, self._clock(), final and last
                            )
                        else:
                            await asyncio.to_thread(
                                self._cycle, part, self._clock(), final and last
                            )
                    except Exception:  # a bug in one cycle must not end capture for good
                        logger.exception("capture writer cycle failed (%d records)", len(part))
                    finally:
                        self._held_bytes -= size
                    if last:
                        break
                self._done_when_housekept(waiters)
                waiters = []
                if final:
                    return
        finally:
            # Stopped (closed, or cancelled with the loop): nothing more will be written, so
            # a pending flush() has nothing left to wait for.
            _resolve(waiters + self._waiters)
            self._waiters = []

    # -- the writer's thread -------------------------------------------------------------

    def _startup(self, now: float) -> None:
        try:
            make_dirs(self.root)
            result = recover_parts(self.root, self._capture.compress)
            self._metrics.files_sealed.inc(len(result.sealed))
        except OSError as exc:
            logger.warning("capture dir %s not usable at start: %s", self.root, exc)
        self._check_disk(force=True)
        self._last_retention = now
        self._retention(now)

    def _check_disk(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_disk_check < DISK_CHECK_INTERVAL_S:
            return
        self._last_disk_check = now
        try:
            full = free_disk_fraction(self._capture.dir) < self._capture.min_free_disk_fraction
        except OSError as exc:
            self._files.warn("statvfs", "cannot check free space on %s: %s", self._capture.dir, exc)
            return
        if full != self._disk_full:
            logger.warning(
                "capture disk guard: %s (min free fraction %s)",
                "disk full, dropping records" if full else "space available again",
                self._capture.min_free_disk_fraction,
            )
        self._disk_full = full

    def _cycle(self, batch: list[Exchange], now: float, final: bool) -> None:
        """One slice encoded (redaction and decoding included) and written, in the thread."""
        self._check_disk()
        if batch:
            if self._disk_full:
                self._metrics.drop("disk_full", len(batch))
            else:
                self._write(batch, now)
        self._housekeep(now, final)

    def _cycle_lines(self, lines: Lines, now: float, final: bool) -> None:
        """One slice already encoded on the event loop, written, in the thread."""
        self._check_disk()
        if lines.count:
            if self._disk_full:
                self._metrics.drop("disk_full", lines.count)
            else:
                self._write_lines(lines, now)
        self._housekeep(now, final)

    def _housekeep(self, now: float, final: bool) -> None:
        self._files.rotate(now)
        if final:
            self._files.close_all()
        if self._retention_due or now - self._last_retention >= RETENTION_INTERVAL_S:
            self._retention_due = False
            self._last_retention = now
            self._housekeeping.submit(self._retention, now)

    def _retention(self, now: float) -> None:
        """Runs in the housekeeping thread (and once at start)."""
        hold = None if self.uploader is None else UploadHold(disk_full=self._disk_full)
        try:
            removed = enforce_retention(
                self.root,
                now,
                self._capture.retention_max_age_h * 3600.0,
                self._capture.retention_max_bytes,
                hold=hold,
            )
        except OSError as exc:
            logger.warning("capture retention failed under %s: %s", self.root, exc)
            return
        if removed:
            self._metrics.files_removed.inc(len(removed))
        if hold is not None and hold.removed_pending:
            self._metrics.upload_abandoned.inc(hold.removed_pending)

    def _line(self, exchange: Exchange) -> bytes | None:
        """The record's line (redacted when configured); None, counted, when it cannot be."""
        try:
            if self._redactor.enabled:
                cut = exchange.request_truncated or exchange.response_truncated
                exchange = self._redactor.prepare(exchange, self._capture)  # masks every side
                if not cut and (exchange.request_truncated or exchange.response_truncated):
                    self._metrics.truncated.inc()  # a body that inflated past the limit
            return self._encode(exchange)
        except Exception:  # one bad record is dropped and counted, not the batch
            logger.exception("cannot encode capture record %s", exchange.event_id)
            self._metrics.drop("encode_error")
            return None

    def _write(self, batch: list[Exchange], now: float) -> None:
        lines = Lines()
        for exchange in batch:
            line = self._line(exchange)
            if line is not None:
                lines.add(exchange.inference_time, line)
                if lines.size >= _WRITE_BYTES:  # bodies inflated a lot: write as we go
                    self._write_lines(lines, now)
                    lines = Lines()
        self._write_lines(lines, now)

    def _write_lines(self, lines: Lines, now: float) -> None:
        for hour, (times, group) in lines.by_hour.items():
            written = self._files.write(hour, times, group, now)
            self._metrics.captured.inc(written)
            if written < len(group):
                self._metrics.drop("write_error", len(group) - written)

    # -- on the event loop -----------------------------------------------------------------

    async def _encoded(self, part: list[Exchange]) -> Lines:
        """``part`` encoded on the loop in runs of ~``_LOOP_BUDGET_S``, requests going first in
        between: no other thread holds the GIL while a request waits (the thread only writes).

        A run also encodes at least as many records as were submitted while the previous run
        waited, so the writer keeps pace with the requests however slow encoding is.
        """
        lines = Lines()
        pending = self._pending
        done = self._encode_run(part, 0, lines, 0)
        while done < len(part):
            queued = len(pending)  # only submit() changes it until this task runs again
            await asyncio.sleep(0)
            done = self._encode_run(part, done, lines, len(pending) - queued)
        return lines

    def _encode_run(self, part: list[Exchange], start: int, lines: Lines, at_least: int) -> int:
        """Encode ``part[start:]`` into ``lines`` until ``_LOOP_BUDGET_S`` has passed and at
        least ``at_least`` (and one) records are done; returns the index reached."""
        clock = time.perf_counter
        deadline = clock() + _LOOP_BUDGET_S
        encode = self._encode  # no redaction on the loop (see _run): _line without its call
        add = lines.add
        i = start
        end = len(part)
        least = start + at_least
        while i < end:
            exchange = part[i]
            i += 1
            try:
                line = encode(exchange)
            except Exception:  # one bad record is dropped and counted, not the batch
                logger.exception("cannot encode capture record %s", exchange.event_id)
                self._metrics.drop("encode_error")
            else:
                add(exchange.inference_time, line)
            if i >= least and clock() >= deadline:
                break
        return i


def _nothing() -> None:
    return None


def _resolve(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)
