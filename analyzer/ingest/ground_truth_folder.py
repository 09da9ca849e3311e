"""The ground-truth folder (``analyzer.model_quality.ground_truth.dir``), read exactly once.

SageMaker's layout: ``{dir}/{yyyy}/{mm}/{dd}/{hh}/*.jsonl``, each line a ground-truth record
(``groundTruthData``, ``eventMetadata.eventId``) as ``POST /monitor/ground-truth`` takes.
Each tick reads every file on from its remembered offset, in chunks of whole lines; a chunk's
labels, the bad lines found in it and the file's new offset are committed in one transaction
(:func:`analyzer.store.model_quality_labels.commit_file_chunk`), so a ``kill -9`` at any
moment loses or doubles nothing and a restart goes on where the last commit ended. Lines
appended to a file later are read at a later tick. A last line without its newline is read
only once the file has not changed for :data:`SETTLE_S` (it may still be being written).

A bad line (not a record, a label that ``ground_truth_attribute`` cannot read or that the
problem type cannot count, an eventId over the join key's limit, longer than
``analyzer.ground_truth.max_line_bytes``) is counted, logged with its file and line number
(the first :data:`LOGGED_PER_FILE` of a file) and kept for the status; the rest of the file
is stored. An entry of the layout that is no regular file (a directory named ``*.jsonl``, a
symlink loop or a symlink to nothing) is skipped, logged and counted once
(``model_quality:ground_truth_not_files``), and looked at again at every tick; so is a file
now shorter than what was read of it (rewritten: ``model_quality:ground_truth_shrunk_files``;
its lines are not read again). The folder
may be a storage URL (``s3://``, ``gs://``, ``file://``):
:class:`~analyzer.ingest.remote_ground_truth.RemoteGroundTruthFolder` lists it by prefix and
reads each object with the same chunks and commits. Each tick also applies the retention
(``analyzer.retention_days``) to the join, and forgets the read state of files gone from disk
once their hour is past it
(:func:`analyzer.store.retention.forget_label_files`).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from analyzer.ingest.capture_files import TooLarge, read_pieces
from analyzer.ingest.ground_truth import GroundTruthIntake, merge_bad_lines, read_labels
from analyzer.ingest.remote_files import CaptureFile, RemoteFile, opener_of
from analyzer.monitors.model_quality.labels import LabelReader
from analyzer.store.database import Store, add_counters
from analyzer.store.model_quality import prune
from analyzer.store.model_quality_labels import FileChunk, commit_file_chunk, file_offsets
from analyzer.store.retention import forget_label_files
from modelmon.config import ModelmonConfig

__all__ = ["CHUNK_BYTES", "LOGGED_PER_FILE", "SETTLE_S", "FolderStats", "GroundTruthFolder"]

log = logging.getLogger("modelmon.analyzer.ground_truth")

CHUNK_BYTES = 4 * 1024 * 1024
SETTLE_S = 60.0
LOGGED_PER_FILE = 10
MAX_SAID = 10_000  # entries that cannot be read, each logged and counted once
NOT_FILES = "model_quality:ground_truth_not_files"

_NOT_THERE = frozenset((errno.ENOENT, errno.ENOTDIR, errno.ELOOP))


def _regular(path: Path) -> os.stat_result | None:
    """``path``'s status when it is a regular file; None for another entry of the layout (a
    directory named ``*.jsonl``, a symlink that loops or leads nowhere); an ``OSError`` for
    one that cannot be looked at (a permission) or is gone."""
    try:
        found = path.stat()
    except OSError as exc:
        if exc.errno in _NOT_THERE and path.is_symlink():  # lstat: the link itself is there
            return None
        raise
    return found if stat.S_ISREG(found.st_mode) else None


SHRUNK = "model_quality:ground_truth_shrunk_files"
_NOT_A_FILE = "not a regular file (a directory, a symlink loop or to nothing); skipped"
_SHRUNK = (
    "now {size} bytes, shorter than the {offset} already read: rewritten? Its lines are not "
    "read again (a file is read once; write new labels to a new file)"
)
_PATTERN = "[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]/[0-9][0-9]/*.jsonl"


@dataclass
class FolderStats:
    """What one pass read."""

    files: int = 0
    chunks: int = 0
    labels: int = 0
    duplicates: int = 0
    bad_lines: int = 0
    pruned: tuple[int, int] = (0, 0)
    files_forgotten: int = 0  # read states of files gone from disk, past retention


class GroundTruthFolder:
    """Reads new ground-truth lines into the join; :meth:`run_once` is blocking."""

    def __init__(
        self,
        store: Store,
        config: ModelmonConfig,
        *,
        clock: Callable[[], float] = time.time,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        quality = config.analyzer.model_quality
        if quality is None:
            raise ValueError("analyzer.model_quality is not configured")
        self._store = store
        root = quality.ground_truth.dir
        self._root = root if isinstance(root, Path) else None  # a URL: the remote subclass
        self._window_s = quality.window_s
        self._reader = LabelReader(quality.ground_truth_attribute, quality.problem_type)
        self._limits = config.analyzer.ground_truth
        self._retention_s = config.analyzer.retention_days * 86400
        self._chunk_bytes = max(chunk_bytes, self._limits.max_line_bytes + 1)
        self._clock = clock
        self._said: set[tuple[str, str]] = set()
        self._too_long = (
            f"longer than {self._limits.max_line_bytes} bytes "
            "(analyzer.ground_truth.max_line_bytes); skipped"
        )

    def run_once(self) -> FolderStats:
        """Read what is new in the folder, then apply the retention."""
        stats = FolderStats()
        listed = False  # only what was listed says which files are gone from disk
        oldest: str | None = None
        if self._root is not None and self._root.is_dir():
            files = sorted(self._root.glob(_PATTERN))
            listed = True
            oldest = files[0].relative_to(self._root).as_posix() if files else None
            known = self._store.read(file_offsets) if files else {}
            for path in files:
                rel = path.relative_to(self._root).as_posix()
                offset, lines = known.get(rel, (0, 0))
                try:
                    found = _regular(path)
                    if found is None:
                        self._say_once(rel, NOT_FILES, _NOT_A_FILE)
                        continue
                    size = found.st_size
                    if size > offset:
                        self._read_file(path, rel, offset, lines, stats)
                    elif size < offset:  # rewritten shorter: its new lines are never read
                        self._say_once(rel, SHRUNK, _SHRUNK.format(offset=offset, size=size))
                except FileNotFoundError:
                    log.warning("%s: removed before it was read; skipped", rel)
                except OSError as exc:
                    log.error("%s: unreadable after line %d (%s); read again next tick", rel,
                              lines, exc)  # fmt: skip
        before = self._clock() - self._retention_s
        stats.pruned = self._store.write(lambda db: prune(db, before))
        if listed:
            stats.files_forgotten = self._store.write(
                lambda db: forget_label_files(db, oldest, before)
            )
        return stats

    def _say_once(self, rel: str, counter: str, what: str) -> None:
        """Log and count once (per process, for the first :data:`MAX_SAID` entries) an entry
        of the layout that cannot be read; it is looked at again every tick."""
        said = (rel, counter)
        if said in self._said or len(self._said) >= MAX_SAID:
            return
        self._said.add(said)
        log.warning("%s: %s", rel, what)
        self._store.write(lambda db: add_counters(db, {counter: 1}))

    def _read_file(
        self, path: CaptureFile, rel: str, offset: int, lines: int, stats: FolderStats
    ) -> None:
        logged = 0
        for chunk in self._chunks(path, rel, offset, lines):
            received_at = self._clock()
            done = self._store.write(
                partial(commit_file_chunk, chunk=chunk, received_at=received_at,
                        window_s=self._window_s)
            )  # fmt: skip
            if done is None:
                log.warning("%s: offset moved under us (another reader?); skipped", rel)
                return
            stats.chunks += 1
            stats.files += int(chunk.start == 0)
            stats.labels += done[0]
            stats.duplicates += done[1]
            stats.bad_lines += chunk.bad_count
            for line, error in chunk.bad_lines:
                if logged < LOGGED_PER_FILE:
                    log.warning("ground truth %s line %d: %s", rel, line, error)
                logged += 1
        if logged > LOGGED_PER_FILE:
            log.warning("ground truth %s: %d more bad lines", rel, logged - LOGGED_PER_FILE)

    def _settled(self, path: CaptureFile) -> bool:
        if isinstance(path, RemoteFile):
            return True  # a stored object is whole
        return path.stat().st_mtime <= self._clock() - SETTLE_S

    def _chunks(self, path: CaptureFile, rel: str, offset: int, lines: int) -> Iterator[FileChunk]:
        """Chunks of whole lines from ``offset``: each parsed, its labels read."""
        limit = self._limits.max_line_bytes
        pieces: list[bytes | None] = []  # None: a line too long, skipped
        size = 0
        start = offset
        name, opener = opener_of(path)
        for piece in read_pieces(name, offset, limit, opener):
            if isinstance(piece, TooLarge):
                pieces.append(None)
                size += piece.size
                continue
            if not piece.endswith(b"\n") and not self._settled(path):
                end = piece.rfind(b"\n") + 1  # the unfinished last line waits
                if end:
                    pieces.append(piece[:end])
                    size += end
                break
            pieces.append(piece)
            size += len(piece)
            if size >= self._chunk_bytes:
                chunk = self._parse(rel, start, pieces, size, lines)
                yield chunk
                start, lines, pieces, size = chunk.end, chunk.lines, [], 0
        if size:
            yield self._parse(rel, start, pieces, size, lines)

    def _parse(
        self, rel: str, start: int, pieces: list[bytes | None], size: int, lines: int
    ) -> FileChunk:
        limits = self._limits
        intake = GroundTruthIntake(
            max_line_bytes=limits.max_line_bytes,
            max_bad_lines_shown=max(limits.max_bad_lines_shown, LOGGED_PER_FILE),
            received_at=0.0,
        )
        long_lines: list[tuple[int, str]] = []
        for piece in pieces:
            if piece is None:  # blocks end with a newline: the intake's count is exact here
                long_lines.append((lines + intake.lines + 1, self._too_long))
                piece = b"\n"  # a blank line to the intake, so the numbering goes on
            intake.feed(piece)
        intake.finish()
        chunk = FileChunk(rel, start, start + size, lines + intake.lines)
        shown = max(limits.max_bad_lines_shown, LOGGED_PER_FILE)
        read = read_labels(intake.rows, intake.row_lines, self._reader, shown)
        chunk.labels, chunk.skipped = read.labels, read.skipped
        chunk.bad_count = intake.bad_count + len(long_lines) + read.refused
        chunk.bad_lines = merge_bad_lines(
            ((lines + b["line"], b["error"]) for b in intake.bad_lines),
            long_lines,
            ((lines + number, error) for number, error in read.bad_lines),
            shown=shown,
        )
        return chunk
