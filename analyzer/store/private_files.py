"""Files and folders the analyzer creates are its owner's only (0600 files, 0700 folders),
like the proxy's capture files: the database, the reports and the baseline hold the data's
values (categories, ranges), so nobody else on the machine should read them by default.
Existing files and folders keep the mode they have (an operator may have chosen it)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["FILE_MODE", "FOLDER_MODE", "make_folders", "open_private"]

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def make_folders(folder: Path) -> None:
    """``mkdir -p`` where every folder created is 0700."""
    missing: list[Path] = []
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for path in reversed(missing):
        try:
            path.mkdir(mode=FOLDER_MODE)
        except FileExistsError:
            pass  # made by another process meanwhile
        else:
            os.chmod(path, FOLDER_MODE)  # mkdir's mode is narrowed by the umask, never widened


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """``os.open`` creating the file 0600 (a file that exists keeps its mode)."""
    return os.open(path, flags | os.O_CLOEXEC, FILE_MODE)
