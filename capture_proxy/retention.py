"""Retention of sealed capture files: by age, then by total size, oldest first.

Only sealed files (``.jsonl``, ``.jsonl.gz``) under one endpoint/variant root are considered;
a ``.part`` is never touched. Age is the file's modification time (when it was last written,
i.e. about when it was sealed) against the sink's clock. Hour directories emptied by a
removal are removed too once their hour is two hours past, so a writer (or a sibling worker)
never loses the directory of the hour it writes. Runs in the writer's thread.
"""

from __future__ import annotations

import calendar
import logging
import os
from pathlib import Path

__all__ = ["SEALED_SUFFIXES", "enforce_retention"]

logger = logging.getLogger("modelmon.capture.retention")

SEALED_SUFFIXES = (".jsonl", ".jsonl.gz")
_DIR_GRACE_S = 2 * 3600


def _sealed_files(root: Path) -> list[tuple[float, str, int]]:
    found: list[tuple[float, str, int]] = []
    for directory, _dirs, names in os.walk(root):
        for name in names:
            if name.endswith(SEALED_SUFFIXES):
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


def enforce_retention(root: Path, now: float, max_age_s: float, max_bytes: int) -> list[Path]:
    """Remove sealed files older than ``max_age_s``, then the oldest while over ``max_bytes``.

    Returns the files removed. Files removed meanwhile by a sibling worker are skipped.
    """
    removed: list[Path] = []
    kept: list[tuple[float, str, int]] = []
    total = 0
    for mtime, path, size in _sealed_files(root):
        if now - mtime > max_age_s:
            if _remove(path):
                removed.append(Path(path))
        else:
            kept.append((mtime, path, size))
            total += size
    for _mtime, path, size in kept:
        if total <= max_bytes:
            break
        if _remove(path):
            removed.append(Path(path))
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
