"""Which sealed capture files are uploaded: an empty hidden mark beside each one.

``X.jsonl`` uploaded has ``.X.jsonl.uploaded`` next to it, written after the upload was
verified. Readers skip hidden names, so the analyzer never sees a mark. A file without a
mark is pending: found again at the next start, held back from retention (unless the disk
guard says the disk is full), removed with its file. A crash between the upload and the mark
uploads the file once more at the next start, to the same key (same bytes): never two objects.
"""

from __future__ import annotations

import os

__all__ = ["MARK_SUFFIX", "is_mark", "is_uploaded", "mark_of", "mark_uploaded", "marked_file"]

MARK_SUFFIX = ".uploaded"


def mark_of(path: str) -> str:
    """The mark's path for the sealed file ``path``."""
    head, name = os.path.split(path)
    return os.path.join(head, f".{name}{MARK_SUFFIX}")


def is_mark(name: str) -> bool:
    return name.startswith(".") and name.endswith(MARK_SUFFIX)


def marked_file(mark: str) -> str:
    """The sealed file a mark stands for."""
    head, name = os.path.split(mark)
    return os.path.join(head, name[1 : -len(MARK_SUFFIX)])


def is_uploaded(path: str) -> bool:
    return os.path.exists(mark_of(path))


def mark_uploaded(path: str) -> None:
    fd = os.open(mark_of(path), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.close(fd)
