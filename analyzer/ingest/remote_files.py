"""A capture tree behind an fsspec URL (``s3://``, ``gs://``, ``file://``): list, then read.

The same layout as a local tree, SageMaker's: ``{url}/{endpoint}/{variant}/yyyy/mm/dd/hh/*``,
written by SageMaker's Data Capture or by the proxy's ``capture.upload``. Listing walks the
hour "folders" level by level (one list request per year, month, day and hour prefix), skips
hours outside the window, keeps only sealed names (:func:`capture_files.is_sealed`: no
``.part``, nothing hidden) and stops at ``max_files`` (the listing then says it was cut, for
the caller to count and go on from the last hour). Reading is
:func:`capture_files.read_pieces` over the filesystem's file object: the same line limit
(:class:`TooLarge` pieces), offsets and gzip handling as a local file.

Credentials and endpoints come from the provider's usual places only (``AWS_*`` environment
variables, ``~/.aws``, an instance role, ``GOOGLE_APPLICATION_CREDENTIALS``); fsspec and
s3fs/gcsfs are optional extras (:mod:`modelmon.storage_url` names the one to install).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from analyzer.ingest.capture_files import (
    DEFAULT_MAX_LINE_BYTES,
    TooLarge,
    block_lines,
    hour_of,
    is_sealed,
    read_pieces,
)
from modelmon.capture_names import instance_of
from modelmon.storage_url import open_url

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

__all__ = ["DEFAULT_MAX_FILES", "RemoteCaptureTree", "RemoteFile", "RemoteListing"]

DEFAULT_MAX_FILES = 100_000
_HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """One sealed capture file of a remote tree."""

    path: str  # in the filesystem's terms: bucket/key, or /abs/path for file://
    url: str  # protocol://path, what a log line or a "read already" table keeps
    size: int  # bytes stored (compressed for .jsonl.gz)
    hour: datetime  # UTC hour of its folder
    modified: float | None = None  # when it was stored (epoch s), if the listing says

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name

    @property
    def instance(self) -> str | None:
        """The writing replica, from the name (None for SageMaker's own files)."""
        return instance_of(self.name)


@dataclass(frozen=True, slots=True)
class RemoteListing:
    files: list[RemoteFile]
    cut: bool  # max_files was reached: more files may follow the last one


class RemoteCaptureTree:
    """The ``{endpoint}/{variant}`` capture tree under ``url``.

    Parameters
    ----------
    url : str
        ``s3://bucket/prefix``, ``gs://bucket/prefix`` or ``file:///dir`` (the prefix that
        holds ``{endpoint}/``, as ``capture.upload`` or SageMaker's ``DestinationS3Uri``).
    """

    def __init__(self, url: str, endpoint: str, variant: str) -> None:
        self.url = url.rstrip("/")
        fs, base = open_url(self.url)
        self._fs: AbstractFileSystem = fs
        self._protocol = url.split("://", 1)[0]
        self.base = f"{base}/{endpoint}/{variant}"

    def _children(self, path: str) -> list[dict[str, Any]]:
        try:
            entries = self._fs.ls(path, detail=True)
        except FileNotFoundError:
            return []
        return sorted(cast(list[dict[str, Any]], entries), key=lambda e: str(e["name"]))

    def _digit_dirs(self, path: str) -> list[str]:
        found = []
        for entry in self._children(path):
            name = str(entry["name"]).rstrip("/")
            if entry.get("type") == "directory" and PurePosixPath(name).name.isdigit():
                found.append(name)
        return found

    def sealed_files(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        max_files: int = DEFAULT_MAX_FILES,
    ) -> RemoteListing:
        """Sealed files of the hours overlapping ``[start, end)`` (None: unbounded), by hour
        then name, at most ``max_files`` (``cut`` says when more may follow)."""
        start, end = _utc(start), _utc(end)
        self._fs.invalidate_cache()  # a listing is always fresh (the instance is ours alone)
        files: list[RemoteFile] = []
        for year in self._digit_dirs(self.base):
            for month in self._digit_dirs(year):
                for day in self._digit_dirs(month):
                    for hour_dir in self._digit_dirs(day):
                        hour = hour_of(Path(hour_dir))
                        if hour is None:
                            continue
                        if start is not None and hour + _HOUR <= start:
                            continue
                        if end is not None and hour >= end:
                            continue
                        for entry in self._children(hour_dir):
                            path = str(entry["name"])
                            if entry.get("type") != "file" or not is_sealed(Path(path)):
                                continue
                            if len(files) >= max_files:
                                return RemoteListing(files, cut=True)
                            url = f"{self._protocol}://{path.lstrip('/')}"
                            if self._protocol == "file":
                                url = f"file://{path}"
                            files.append(
                                RemoteFile(path, url, int(entry["size"]), hour, _modified(entry))
                            )
        return RemoteListing(files, cut=False)

    def read_pieces(
        self,
        file: RemoteFile,
        offset: int = 0,
        max_line_bytes: int | None = DEFAULT_MAX_LINE_BYTES,
    ) -> Iterator[bytes | TooLarge]:
        """:func:`capture_files.read_pieces` of a remote file: whole-line blocks and
        :class:`TooLarge` pieces; a ``.jsonl.gz`` cut short raises ``TruncatedCapture``."""

        def opener() -> BinaryIO:
            return cast(BinaryIO, self._fs.open(file.path, "rb"))

        return read_pieces(Path(file.path), offset, max_line_bytes, opener)

    def read_lines(
        self,
        file: RemoteFile,
        offset: int = 0,
        max_line_bytes: int | None = DEFAULT_MAX_LINE_BYTES,
    ) -> Iterator[bytes]:
        """The lines within the limit (each with its ``\\n``; the last may lack it)."""
        for piece in self.read_pieces(file, offset, max_line_bytes):
            if not isinstance(piece, TooLarge):
                yield from block_lines(piece)


def _modified(entry: dict[str, Any]) -> float | None:
    """When an object was stored, from a listing entry: ``LastModified`` (S3), ``mtime``
    (local files, and GCS as a datetime), ``updated`` (GCS, ISO-8601)."""
    for key in ("LastModified", "mtime", "updated"):
        value = entry.get(key)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
