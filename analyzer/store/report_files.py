"""Where SageMaker's report files go, and the one way they are written (atomically, so a reader
never sees half a file; private to the analyzer's user: 0600 files in 0700 folders)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from analyzer.store.private_files import make_folders, open_private
from modelmon.config import ModelmonConfig

__all__ = ["report_dir", "write_json_atomic", "write_reports"]


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


def write_json_atomic(path: Path, doc: Any) -> None:
    """Indented JSON under a temporary name, flushed to disk, then renamed into place."""
    make_folders(path.parent)
    body = orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(open_private(tmp), "wb") as handle:
        handle.write(body)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_reports(folder: Path, docs: Mapping[str, Any]) -> None:
    """Each ``name → document`` of a run into ``folder``."""
    for name, doc in docs.items():
        write_json_atomic(folder / name, doc)
