"""Where SageMaker's report files go, and the one way they are written (atomically, so a reader
never sees half a file)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from modelmon.config import ModelmonConfig

__all__ = ["report_dir", "write_json_atomic", "write_reports"]


def report_dir(config: ModelmonConfig, hour: datetime) -> Path:
    """``{reports_dir}/{endpoint}/{schedule}/yyyy/mm/dd/hh`` for the UTC hour of ``hour``."""
    return (
        config.analyzer.reports_dir
        / config.endpoint.name
        / config.analyzer.schedule_name
        / f"{hour:%Y/%m/%d/%H}"
    )


def write_json_atomic(path: Path, doc: Any) -> None:
    """Indented JSON under a temporary name, flushed to disk, then renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(body)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_reports(folder: Path, docs: Mapping[str, Any]) -> None:
    """Each ``name → document`` of a run into ``folder``."""
    for name, doc in docs.items():
        write_json_atomic(folder / name, doc)
