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
    Opener,
    TooLarge,
    block_lines,
    hour_of,
    is_sealed,
    read_pieces,
)
from modelmon.capture_names import instance_of
from modelmon.storage_url import open_url, shared_fs, storage_errors

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

__all__ = [
    "DEFAULT_MAX_FILES",
    "CaptureFile",
    "NotATree",
    "RemoteCaptureTree",
    "RemoteFile",
    "RemoteFolder",
    "RemoteListing",
    "opener_of",
    "remote_folder_files",
    "remote_input",
]

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

    def __str__(self) -> str:
        return self.url


# A capture file to read: on this machine, or behind a URL (a task of a map carries either;
# a worker opens a remote one itself, no content goes through the scheduler).
CaptureFile = Path | RemoteFile


def _client(url: str) -> AbstractFileSystem:
    """This process's client for the scheme (a forked or Dask worker makes its own)."""
    return shared_fs(url)[0]


def opener_of(file: CaptureFile) -> tuple[Path, Opener | None]:
    """The name and the opener :func:`capture_files.read_pieces` takes for ``file`` (None: a
    local file, opened as such); a remote file is opened with this process's client."""
    if isinstance(file, Path):
        return file, None

    def opener() -> BinaryIO:
        return cast(BinaryIO, _client(file.url).open(file.path, "rb"))

    return Path(file.path), opener


class NotATree(Exception):
    """The URL cannot be read as a capture tree (one line: no bucket, a file, unreachable)."""


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
        self._root = base
        self.where = f"{endpoint}/{variant}" if endpoint else ""
        self.base = f"{base}/{self.where}" if endpoint else base

    @classmethod
    def folder(cls, url: str) -> RemoteCaptureTree:
        """The ``yyyy/mm/dd/hh`` folders right under ``url`` (SageMaker's ground-truth
        layout: ``{url}/yyyy/mm/dd/hh/*.jsonl``)."""
        return cls(url, "", "")

    def check(self) -> None:
        """Raise :class:`NotATree` when the URL cannot hold the tree: its bucket does not
        exist, it names a file, or the store cannot be read (before a listing would call any
        of these "empty"). An existing but empty prefix passes: it is an empty tree."""
        try:
            self._check()
        except storage_errors() as exc:
            raise NotATree(f"{self.url}: cannot read the store: {_one_line(exc)}") from exc

    def _check(self) -> None:
        try:
            info: dict[str, Any] | None = self._fs.info(self._root)
        except FileNotFoundError:
            info = None
        if info is not None and info.get("type") == "file":
            hint = f" (give the prefix that holds {self.where}/yyyy/…)" if self.where else ""
            raise NotATree(f"{self.url} is a file, not a folder{hint}")
        if info is None and self._protocol == "file":
            raise NotATree(f"{self.url}: no such folder")
        if info is None:
            bucket = self._root.split("/", 1)[0]
            try:
                self._fs.info(bucket)
            except FileNotFoundError:
                raise NotATree(f"{self.url}: the bucket {bucket!r} does not exist") from None

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


def remote_folder_files(url: str, max_files: int = DEFAULT_MAX_FILES) -> list[RemoteFile]:
    """The sealed files of the ``yyyy/mm/dd/hh`` folders under ``url`` (a ground-truth folder
    in SageMaker's layout), by hour then name; :class:`InputError` past ``max_files``."""
    from analyzer.ingest.table_readers import InputError

    listing = RemoteCaptureTree.folder(url).sealed_files(max_files=max_files)
    if listing.cut:
        raise InputError(f"{url}: more than {max_files:,} ground-truth files")
    return listing.files


@dataclass(frozen=True, slots=True)
class RemoteFolder:
    """The sealed files under a URL (any depth), in the order a local folder's are read."""

    url: str
    files: list[RemoteFile]

    def __str__(self) -> str:
        return self.url


_EPOCH = datetime.fromtimestamp(0, UTC)


def remote_input(url: str) -> RemoteFile | RemoteFolder:
    """What ``modelmon baseline --data URL`` reads: the object at ``url``, or the sealed files
    under it as a prefix (path order, as :func:`table_readers.capture_files_under` sorts a
    local folder's). ``FileNotFoundError`` when there is neither; :class:`NotATree` (one
    line) when the store cannot be read."""
    fs, base = open_url(url)
    protocol = url.split("://", 1)[0]

    def remote(entry: dict[str, Any]) -> RemoteFile:
        path = str(entry["name"])
        where = f"file://{path}" if protocol == "file" else f"{protocol}://{path.lstrip('/')}"
        hour = hour_of(Path(path).parent) or _EPOCH
        return RemoteFile(path, where, int(entry.get("size") or 0), hour, _modified(entry))

    try:
        try:
            info: dict[str, Any] = fs.info(base)
        except FileNotFoundError:
            info = {"type": "directory"}  # an S3 prefix is no object: listed below
        if info.get("type") == "file":
            return remote({**info, "name": base})
        found = cast(dict[str, dict[str, Any]], fs.find(base, detail=True))
    except FileNotFoundError:
        raise
    except storage_errors() as exc:
        raise NotATree(f"{url}: cannot read the store: {_one_line(exc)}") from exc
    entries = [e for e in found.values() if e.get("type") == "file"]
    files = [remote(e) for e in entries if is_sealed(Path(str(e["name"])))]
    if not entries:
        raise FileNotFoundError(url)
    return RemoteFolder(url, sorted(files, key=lambda f: PurePosixPath(f.path)))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


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
