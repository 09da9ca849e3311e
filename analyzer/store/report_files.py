"""Where SageMaker's report files go, and the one way they are written (atomically, so a reader
never sees half a file; private to the analyzer's user: 0600 files in 0700 folders).

``analyze --once --out s3://…`` writes the same bytes to an fsspec URL instead
(:func:`report_folder`, :func:`write_reports` with a URL folder): one object per file, each
put whole (an object store has no half-written objects)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from analyzer.store.private_files import make_folders, open_private
from modelmon.config import ModelmonConfig

__all__ = [
    "ReportFolder",
    "report_dir",
    "report_folder",
    "subfolder",
    "write_json",
    "write_json_atomic",
    "write_reports",
]

# A local folder, or a URL (``s3://bucket/prefix/…``, a str) for the report files.
ReportFolder = Path | str


def report_dir(config: ModelmonConfig, hour: datetime) -> Path:
    """``{reports_dir}/{endpoint}/{schedule}/yyyy/mm/dd/hh`` for the UTC hour of ``hour``.

    Raises ``ValueError`` if the names would lead outside ``reports_dir`` (the config's
    patterns already refuse separators and ``..``; this is the second lock).
    """
    root = config.analyzer.reports_dir
    folder = root / config.endpoint.name / config.analyzer.schedule_name / f"{hour:%Y/%m/%d/%H}"
    if not folder.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"report folder {folder} is outside analyzer.reports_dir {root}")
    return folder


def report_folder(config: ModelmonConfig, hour: datetime, out: str | None = None) -> ReportFolder:
    """:func:`report_dir`, or with ``out`` (a URL standing for ``analyzer.reports_dir``)
    ``{out}/{endpoint}/{schedule}/yyyy/mm/dd/hh``, SageMaker's layout under its S3Uri."""
    if out is None:
        return report_dir(config, hour)
    names = (config.endpoint.name, config.analyzer.schedule_name, f"{hour:%Y/%m/%d/%H}")
    return "/".join((out.rstrip("/"), *names))


def subfolder(folder: ReportFolder, name: str) -> ReportFolder:
    return folder / name if isinstance(folder, Path) else f"{folder}/{name}"


def _body(doc: Any) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


def write_json_atomic(path: Path, doc: Any) -> None:
    """Indented JSON under a temporary name, flushed to disk, then renamed into place."""
    make_folders(path.parent)
    body = _body(doc)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(open_private(tmp), "wb") as handle:
        handle.write(body)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json(where: Path | str, doc: Any) -> None:
    """:func:`write_json_atomic` to a path, or the same bytes to a storage URL (one object
    put whole; for ``file://``, a temporary name moved into place). The store's errors are
    raised as they come (``OSError`` or the provider's)."""
    if isinstance(where, Path):
        write_json_atomic(where, doc)
        return
    from modelmon.storage_url import is_local, open_url

    fs, path = open_url(where)
    if not is_local(fs):
        fs.pipe_file(path, _body(doc))
        return
    parent, _, name = path.rpartition("/")
    tmp = f"{parent}/.{name}.tmp"
    fs.makedirs(parent, exist_ok=True)
    fs.pipe_file(tmp, _body(doc))
    fs.mv(tmp, path)


def write_reports(folder: ReportFolder, docs: Mapping[str, Any]) -> None:
    """Each ``name → document`` of a run into ``folder`` (a URL: one object each, the same
    bytes; the store's errors are raised as they come, ``OSError`` or the provider's)."""
    if isinstance(folder, Path):
        for name, doc in docs.items():
            write_json_atomic(folder / name, doc)
        return
    from modelmon.storage_url import open_url

    fs, base = open_url(folder)
    for name, doc in docs.items():
        fs.pipe_file(f"{base}/{name}", _body(doc))
