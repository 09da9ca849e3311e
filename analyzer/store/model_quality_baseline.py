"""The model-quality baseline files of the service: read at start, re-read when they change.

``analyzer.model_quality.baseline.statistics`` is a model-quality ``statistics.json`` (ours or
SageMaker's); ours also carries the label-free estimate's calibration under
``modelmon.calibration`` (what ``modelmon baseline --model-quality`` fits). ``constraints``
is SageMaker's model-quality ``constraints.json``. A missing or bad file never stops the
service: the monitor reports ``no_baseline`` with the reason, and a file that goes bad
after a good one was loaded keeps the good one in use (said in ``reload_error``).

Either file may be a storage URL (``s3://``, ``gs://``, ``file://``), read through fsspec
(:class:`~analyzer.store.stored_files.StoredFile`); a store that cannot be read is said in
one line naming the key and the URL, as a missing file is.

``modelmon analyze --once`` reads the files with the same :func:`load_model_quality_baseline`
and stops where the service goes on: without constraints, or with a statistics file that is
missing or cannot be used (``statistics_problem``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from analyzer.monitors.model_quality.documents import ConstraintsError, parse_constraints
from analyzer.monitors.model_quality.estimate import Calibrator
from analyzer.monitors.model_quality.evaluate import Baseline, baseline_from_statistics
from analyzer.store.stored_files import Location, StoredFile, StoreUnreadable
from modelmon.config import ModelQualityConfig

__all__ = ["ModelQualityBaseline", "ModelQualityBaselineFiles", "load_model_quality_baseline"]

log = logging.getLogger("modelmon.analyzer.model_quality")

MAX_BASELINE_BYTES = 64 * 1024 * 1024
KEY = "analyzer.model_quality.baseline"


@dataclass
class ModelQualityBaseline:
    """The parsed files; ``constraints`` is None (and ``info["error"]`` says why) without them."""

    constraints: dict[str, tuple[float, str]] | None
    baseline: Baseline | None
    calibrator: Calibrator | None
    constraints_doc: dict[str, Any] | None
    info: dict[str, Any] = field(default_factory=dict)
    # why ``baseline`` / ``calibrator`` are missing (no statistics file, or one not usable)
    statistics_problem: str | None = None


def _read_json(where: Location, name: str) -> Any:
    return orjson.loads(StoredFile(where, f"{KEY}.{name}").read(MAX_BASELINE_BYTES))


def load_model_quality_baseline(config: ModelQualityConfig) -> ModelQualityBaseline:
    """Both files, parsed; never raises (a problem is in ``info["error"]``)."""
    paths = config.baseline
    info: dict[str, Any] = {
        "statistics": str(paths.statistics),
        "constraints": str(paths.constraints),
        "error": None,
    }
    try:
        constraints_doc = _read_json(paths.constraints, "constraints")
        if not isinstance(constraints_doc, dict):
            raise ValueError("not a JSON object")
        constraints = parse_constraints(config.problem_type, constraints_doc)
    except FileNotFoundError:
        info["error"] = (
            f"no model-quality constraints at {paths.constraints} (make them with "
            "`modelmon baseline --model-quality`)"
        )
        return ModelQualityBaseline(None, None, None, None, info)
    except StoreUnreadable as exc:
        info["error"] = str(exc)
        return ModelQualityBaseline(None, None, None, None, info)
    except (OSError, ValueError, ConstraintsError) as exc:
        info["error"] = f"cannot use {paths.constraints}: {exc}"
        return ModelQualityBaseline(None, None, None, None, info)
    baseline: Baseline | None = None
    calibrator: Calibrator | None = None
    problem: str | None = None
    try:
        statistics = _read_json(paths.statistics, "statistics")
        if not isinstance(statistics, dict):
            raise ValueError("not a JSON object")
        baseline = baseline_from_statistics(config.problem_type, statistics)
        calibration = (statistics.get("modelmon") or {}).get("calibration")
        if calibration is not None:
            calibrator = Calibrator.from_json(calibration)
    except FileNotFoundError:
        problem = f"no model-quality statistics at {paths.statistics}"
        log.warning("%s: thresholds are taken as exact, no estimate", problem)
    except StoreUnreadable as exc:
        problem = info["statistics_error"] = str(exc)
        log.warning("%s", problem)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        problem = info["statistics_error"] = f"cannot use {paths.statistics}: {exc}"
        log.warning("%s", problem)
    return ModelQualityBaseline(constraints, baseline, calibrator, constraints_doc, info, problem)


class ModelQualityBaselineFiles:
    """The model-quality baseline in use, re-read when either file changes."""

    def __init__(self, config: ModelQualityConfig) -> None:
        self.config = config
        paths = config.baseline  # kept: a URL's client is made once, not at every tick
        self._files = (
            StoredFile(paths.statistics, f"{KEY}.statistics"),
            StoredFile(paths.constraints, f"{KEY}.constraints"),
        )
        self._signature = self._current_signature()
        self.current = load_model_quality_baseline(config)

    def _current_signature(self) -> tuple[Any, Any]:
        return (self._files[0].signature(), self._files[1].signature())

    def refresh(self, force: bool = False) -> bool:
        """Re-read if the files changed (blocking); True when a new baseline is in use."""
        signature = self._current_signature()
        if not force and signature == self._signature:
            return False
        self._signature = signature
        new = load_model_quality_baseline(self.config)
        if new.constraints is None and self.current.constraints is not None:
            self.current.info["reload_error"] = new.info["error"]
            log.error("model-quality baseline not reloaded: %s", new.info["error"])
            return False
        self.current = new
        log.info("model-quality baseline loaded from %s", self.config.baseline.constraints)
        return True
