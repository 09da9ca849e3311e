"""The baseline files of the service: read at start, re-read when they change.

Each file is a local path or a storage URL (``s3://``, ``gs://``, ``file://``: read through
fsspec, :class:`~analyzer.store.stored_files.StoredFile`). :class:`BaselineFiles` keeps the
parsed baseline and a signature of both files (inode, size, modification time; an object's
size, ETag and modification time). :meth:`BaselineFiles.refresh` (called at the start of
every tick, and at once on SIGHUP) re-reads them when the signature moved. A reload is
atomic: both files are parsed completely first, and only a baseline that parses replaces the
one in use; a half-written or invalid file keeps the old baseline, and the error is logged
and shown in ``monitors.data_quality.baseline.reload_error``. Without a baseline yet, the
error says where the service looks and that it will pick the files up when they appear. A
store that cannot be read is said in one line naming the key and the URL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import orjson

from analyzer.monitors.data_quality.statistics_format import (
    BaselineStatistics,
    Constraints,
    parse_constraints,
    parse_statistics,
)
from analyzer.store.stored_files import StoredFile, StoreUnreadable
from modelmon.config import BaselineConfig

__all__ = ["Baseline", "BaselineFiles", "load_baseline"]

log = logging.getLogger("modelmon.analyzer.baseline")

Signature = tuple[Hashable | None, Hashable | None]
KEY = "analyzer.baseline"


@dataclass
class Baseline:
    """The baseline files, parsed; ``info["error"]`` says why there is none."""

    statistics: BaselineStatistics | None
    constraints: Constraints | None
    constraints_doc: dict[str, Any] | None
    info: dict[str, Any] = field(default_factory=dict)


def _read_json(file: StoredFile) -> dict[str, Any]:
    doc = orjson.loads(file.read())
    if not isinstance(doc, dict):
        raise ValueError("the top level is not a JSON object")
    return doc


def _no_baseline_text(paths: BaselineConfig) -> str:
    return (
        f"no baseline statistics at {paths.statistics}: run `modelmon baseline --data "
        "TRAINING.csv` (or set analyzer.baseline.statistics); the running service picks the "
        "files up when they appear, no restart needed"
    )


def load_baseline(paths: BaselineConfig) -> Baseline:
    """Read both files; a missing or bad file gives a baseline with an error (never raises)."""
    info: dict[str, Any] = {
        "statistics": str(paths.statistics),
        "constraints": str(paths.constraints),
        "error": None,
    }
    try:
        statistics = parse_statistics(_read_json(StoredFile(paths.statistics, f"{KEY}.statistics")))
    except FileNotFoundError:
        info["error"] = _no_baseline_text(paths)
        return Baseline(None, None, None, info)
    except StoreUnreadable as exc:
        info["error"] = str(exc)
        return Baseline(None, None, None, info)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        info["error"] = f"cannot use {paths.statistics}: {exc}"
        return Baseline(None, None, None, info)
    try:
        constraints_doc = _read_json(StoredFile(paths.constraints, f"{KEY}.constraints"))
    except FileNotFoundError:
        log.warning("no %s: SageMaker's default constraints apply", paths.constraints)
        constraints_doc = {"version": 0.0, "features": []}
    except StoreUnreadable as exc:
        info["error"] = str(exc)
        return Baseline(None, None, None, info)
    except (OSError, ValueError) as exc:
        info["error"] = f"cannot use {paths.constraints}: {exc}"
        return Baseline(None, None, None, info)
    try:
        constraints = parse_constraints(constraints_doc)
    except (ValueError, KeyError, TypeError) as exc:
        info["error"] = f"cannot use {paths.constraints}: {exc}"
        return Baseline(None, None, None, info)
    return Baseline(statistics, constraints, constraints_doc, info)


class BaselineFiles:
    """The baseline in use, re-read when its files change (see the module docstring)."""

    def __init__(
        self, paths: BaselineConfig, *, clock_iso: Callable[[], str] | None = None
    ) -> None:
        self.paths = paths
        self._clock_iso = clock_iso
        # kept: a URL's client is made once, not at every tick
        self._files = (
            StoredFile(paths.statistics, f"{KEY}.statistics"),
            StoredFile(paths.constraints, f"{KEY}.constraints"),
        )
        self.reloads = 0
        self._signature = self._current_signature()
        self.current = load_baseline(paths)
        self.current.info["loaded_at"] = self._now()
        self.current.info["reload_error"] = None

    def _now(self) -> str | None:
        return self._clock_iso() if self._clock_iso is not None else None

    def _current_signature(self) -> Signature:
        return (self._files[0].signature(), self._files[1].signature())

    def changed(self) -> bool:
        """Whether either file moved (created, replaced, resized, touched or removed)."""
        return self._current_signature() != self._signature

    def refresh(self, force: bool = False) -> bool:
        """Re-read the files if they changed (or ``force``); True when a new baseline is in use.

        Blocking (file reads and parsing): call it off the event loop.
        """
        signature = self._current_signature()
        if not force and signature == self._signature:
            return False
        self._signature = signature
        old = self.current
        new = load_baseline(self.paths)
        if new.statistics is None and old.statistics is not None:
            # Keep what works: a half-written, invalid or removed file does not replace it.
            error = new.info["error"]
            if error != old.info.get("reload_error"):
                log.error("baseline not reloaded, the previous one stays in use: %s", error)
            old.info["reload_error"] = error
            return False
        new.info["loaded_at"] = self._now() if new.statistics is not None else None
        new.info["reload_error"] = None
        self.current = new
        if new.statistics is not None:
            self.reloads += 1
            log.info(
                "baseline %s from %s (%d features)",
                "loaded" if old.statistics is None else "reloaded",
                self.paths.statistics,
                len(new.statistics.features),
            )
            return True
        if new.info["error"] != old.info.get("error"):
            log.warning("%s", new.info["error"])
        return False
