"""A file the config names by a local path or by a storage URL (``s3://``, ``gs://``,
``file://``): the baseline files. Read whole, and a signature that moves when it changes.

A URL is read through fsspec (:func:`modelmon.storage_url.shared_fs`: credentials only from the
provider's usual places; one client per process and scheme). An object that is not there raises
``FileNotFoundError``, as a missing local file does; a store that cannot be asked (unreachable,
access denied, the library not installed) raises :class:`StoreUnreadable`, one line naming the
config key and the URL. The signature of an object is its size, ETag and modification time (one
``HEAD`` request); of a local file, its inode, size and modification time.
"""

from __future__ import annotations

import os
from collections.abc import Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from modelmon.storage_url import StorageUnavailable, shared_fs, storage_errors

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

__all__ = ["Location", "StoreUnreadable", "StoredFile", "one_line"]

# A local path, or a storage URL (a str), as the config's FileOrUrl keys hold them.
Location = Path | str


class StoreUnreadable(OSError):
    """The store behind a URL cannot be read; the message is one line naming key and URL."""


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class StoredFile:
    """``where`` (a path or a URL) under the config key ``key`` (for the messages)."""

    def __init__(self, where: Location, key: str) -> None:
        self.where = where
        self.key = key
        self._fs: AbstractFileSystem | None = None
        self._path = ""

    @property
    def is_url(self) -> bool:
        return isinstance(self.where, str)

    def _unreadable(self, exc: BaseException) -> StoreUnreadable:
        return StoreUnreadable(f"{self.key} {self.where}: cannot read the store: {one_line(exc)}")

    def _remote(self) -> tuple[AbstractFileSystem, str]:
        if self._fs is None:
            try:
                self._fs, self._path = shared_fs(str(self.where))
            except StorageUnavailable as exc:
                raise self._unreadable(exc) from None
        return self._fs, self._path

    def read(self, max_bytes: int | None = None) -> bytes:
        """The whole file; ``ValueError`` past ``max_bytes``, ``FileNotFoundError`` when it
        is not there, :class:`StoreUnreadable` (an ``OSError``) when the store fails."""
        if isinstance(self.where, Path):
            with open(self.where, "rb") as handle:
                body = handle.read(-1 if max_bytes is None else max_bytes + 1)
        else:
            fs, path = self._remote()
            try:
                with cast(BinaryIO, fs.open(path, "rb")) as handle:
                    body = handle.read(-1 if max_bytes is None else max_bytes + 1)
            except FileNotFoundError:
                raise
            except storage_errors() as exc:
                raise self._unreadable(exc) from exc
        if max_bytes is not None and len(body) > max_bytes:
            raise ValueError(f"larger than {max_bytes} bytes")
        return body

    def signature(self) -> Hashable | None:
        """What 'changed' compares: None when absent; for a store that cannot be asked, the
        error (so that its return is a change too)."""
        if isinstance(self.where, Path):
            try:
                st = os.stat(self.where)
            except OSError:
                return None
            return (st.st_ino, st.st_size, st.st_mtime_ns)
        try:
            fs, path = self._remote()
            fs.invalidate_cache(path)
            info: dict[str, Any] = fs.info(path)
        except FileNotFoundError:
            return None
        except storage_errors() as exc:  # StoreUnreadable is an OSError
            return ("unreadable", one_line(exc))
        if info.get("type") != "file":
            return None
        return tuple(str(info.get(k)) for k in ("size", "ETag", "LastModified", "mtime"))

    def exists(self) -> bool:
        """Whether the file is there; True for a store that cannot be asked (its reader then
        says why it cannot be read)."""
        signature = self.signature()
        return signature is not None

    def __str__(self) -> str:
        return str(self.where)
