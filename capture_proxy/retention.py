"""Retention of sealed capture files: by age, then by total size, oldest first.

Only sealed files (``.jsonl``, ``.jsonl.gz``) under one endpoint/variant root are considered;
a ``.part`` is never touched. Age is the file's modification time (when it was last written,
i.e. about when it was sealed) against the sink's clock. With ``capture.upload`` on, a file
not yet uploaded (no mark, :mod:`capture_proxy.upload_marks`) is held back unless the disk
guard says the disk is full; then it goes like any other and is counted. A removed file's mark
goes with it (and a mark whose file is gone is removed). Hour directories emptied by a
removal are removed too once their hour is two hours past, so a writer (or a sibling worker)
never loses the directory of the hour it writes. Runs in the writer's thread.
"""

from __future__ import annotations

import calendar
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from capture_proxy.upload_marks import is_mark, is_uploaded, mark_of, marked_file

__all__ = ["SEALED_SUFFIXES", "UploadHold", "enforce_retention", "free_disk_fraction"]

logger = logging.getLogger("modelmon.capture.retention")

SEALED_SUFFIXES = (".jsonl", ".jsonl.gz")
_DIR_GRACE_S = 2 * 3600


@dataclass(slots=True)
class UploadHold:
    """Retention with uploads on: files not uploaded are kept unless ``disk_full``;
    ``removed_pending`` counts those removed all the same (the disk guard needed the room)."""

    disk_full: bool = False
    removed_pending: int = 0


def _sealed_files(root: Path) -> list[tuple[float, str, int]]:
    found: list[tuple[float, str, int]] = []
    for directory, _dirs, names in os.walk(root):
        for name in names:
            if is_mark(name):
                mark = os.path.join(directory, name)
                if not os.path.exists(marked_file(mark)):
                    _remove(mark)  # its file went before it (a crash between the two)
            elif name.endswith(SEALED_SUFFIXES):
                path = os.path.join(directory, name)
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue
                found.append((st.st_mtime, path, st.st_size))
    found.sort()
    return found


def _hour_start(root: Path, directory: Path) -> float | None:
    try:
        year, month, day, hour = (int(part) for part in directory.relative_to(root).parts)
        return float(calendar.timegm((year, month, day, hour, 0, 0)))
    except ValueError:
        return None


def _prune_dirs(root: Path, directories: set[Path], now: float) -> None:
    for directory in sorted(directories, reverse=True):
        start = _hour_start(root, directory)
        if start is None or now - start < _DIR_GRACE_S:
            continue
        current = directory
        while current != root:
            try:
                current.rmdir()
            except OSError:
                break  # not empty (or gone): stop going up
            current = current.parent


def enforce_retention(
    root: Path,
    now: float,
    max_age_s: float,
    max_bytes: int,
    *,
    hold: UploadHold | None = None,
) -> list[Path]:
    """Remove sealed files older than ``max_age_s``, then the oldest while over ``max_bytes``.

    Returns the files removed. Files removed meanwhile by a sibling worker are skipped. With
    ``hold``, files not uploaded yet are kept (they still count in the total) unless
    ``hold.disk_full``.
    """
    removed: list[Path] = []
    kept: list[tuple[float, str, int]] = []
    total = 0

    def remove(path: str) -> bool:
        """False when the file is held back for its upload."""
        pending = hold is not None and not is_uploaded(path)
        if pending and hold is not None and not hold.disk_full:
            return False
        if _remove(path):
            removed.append(Path(path))
            if pending and hold is not None:
                hold.removed_pending += 1
                logger.warning("disk full: removed %s before it was uploaded", path)
            elif hold is not None:
                _remove(mark_of(path))
        return True

    for mtime, path, size in _sealed_files(root):
        if now - mtime > max_age_s and remove(path):
            continue
        kept.append((mtime, path, size))  # held back files stay counted
        total += size
    for _mtime, path, size in kept:
        if total <= max_bytes:
            break
        if remove(path):
            total -= size
    _prune_dirs(root, {path.parent for path in removed}, now)
    if removed:
        logger.info("retention removed %d capture files under %s", len(removed), root)
    return removed


def _remove(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        logger.warning("retention cannot remove %s: %s", path, exc)
        return False
    return True


def free_disk_fraction(path: Path) -> float:
    """Share of the filesystem holding ``path`` (or its nearest existing parent) still free."""
    current = path
    while True:
        try:
            st = os.statvfs(current)
            break
        except (FileNotFoundError, NotADirectoryError):
            if current.parent == current:
                return 1.0
            current = current.parent
    return st.f_bavail / st.f_blocks if st.f_blocks else 1.0
