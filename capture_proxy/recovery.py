"""Crash recovery at start: seal the ``.part`` files a dead writer left behind.

Every ``*.jsonl.part`` under the endpoint's capture root whose ``flock`` can be taken belongs
to no live process (a live writer, in this process or a sibling worker, holds the lock on each
file it has open; the kernel releases it when the process dies). Such a file is cut after its
last newline (a ``kill -9`` mid-write leaves at most one partial line, at the end) and sealed
like any other, or removed when nothing complete is left. A ``.jsonl.part`` whose sealed twin
already exists (a crash between the gzip rename and the unlink) is removed; a stray
``.jsonl.gz.part`` (a compression cut short) is removed when its source is not locked.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from capture_proxy.rotation import GZ_PART, PART, lock_nowait, seal_part

__all__ = ["RecoveryResult", "cut_partial_line", "recover_parts"]

logger = logging.getLogger("modelmon.capture.recovery")

_TAIL_CHUNK = 64 * 1024


@dataclass(slots=True)
class RecoveryResult:
    sealed: list[Path]
    removed: list[Path]
    skipped_live: int = 0


def cut_partial_line(fd: int) -> int:
    """Truncate the file after its last ``\\n``; its new size (0 when it holds no newline)."""
    size = os.fstat(fd).st_size
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            break
        end = start
    else:
        keep = 0
    if keep != size:
        os.ftruncate(fd, keep)
    return keep


def _same_file(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _recover_one(part: Path, compress: bool, result: RecoveryResult) -> None:
    try:
        fd = os.open(part, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # sealed by its owner meanwhile
    try:
        if not lock_nowait(fd):
            result.skipped_live += 1
            return
        if not _same_file(part, fd):
            return  # renamed or removed by its owner between our open and our lock
        final = part.with_name(part.name[: -len(".part")])
        if final.exists() or final.with_name(final.name + ".gz").exists():
            part.unlink()
            result.removed.append(part)
            return
        if cut_partial_line(fd) == 0:
            part.unlink()
            result.removed.append(part)
            return
        result.sealed.append(seal_part(part, compress))
    finally:
        os.close(fd)  # after the rename: the lock is held throughout


def _remove_stray_gzip(temp: Path) -> None:
    source = temp.with_name(temp.name[: -len(GZ_PART)] + PART)
    try:
        fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        temp.unlink(missing_ok=True)
        return
    try:
        if lock_nowait(fd):
            temp.unlink(missing_ok=True)
    finally:
        os.close(fd)


def recover_parts(root: Path, compress: bool) -> RecoveryResult:
    """Seal or remove every unowned ``.part`` under ``root``; errors are logged, not raised."""
    result = RecoveryResult([], [])
    for directory, _dirs, names in os.walk(root):
        for name in sorted(names):
            path = Path(directory) / name
            try:
                if name.endswith(GZ_PART):
                    _remove_stray_gzip(path)
                elif name.endswith(PART):
                    _recover_one(path, compress, result)
            except OSError as exc:
                logger.warning("cannot recover %s: %s", path, exc)
    if result.sealed or result.removed:
        logger.info(
            "recovered capture files under %s: %d sealed, %d empty removed",
            root,
            len(result.sealed),
            len(result.removed),
        )
    return result
