"""The live status document: the one stored at the last run plus cheap live parts.

The monitoring run precomputes and stores ``state``, ``monitors``, ``last_run``; the handler
adds the ingest counters (read live, so they move during a long ingest), ``stale_s`` and the
alert delivery counters (the stored document and the counters are read in one transaction by
:func:`analyzer.store.queries.read_snapshot`). Before the first run the document says
``no_data`` (or ``no_baseline``) with ``last_run`` null.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from analyzer.monitors.contract import iso, worst
from analyzer.service.monitor import MONITOR, Monitor
from analyzer.store.database import QUARANTINED
from analyzer.store.file_sources import CHANGED, GT_ERRORS, SOURCE_ERRORS
from modelmon import __version__

__all__ = ["full_status", "ingest_doc", "initial_doc"]

NO_ALERTS = {"sent": 0, "failed": 0, "pending": 0, "last_error": None, "webhooks": 0}


def ingest_doc(counters: Mapping[str, int]) -> dict[str, Any]:
    """``ingest``: records (each exactly once), bad records by reason, files fully read,
    stored bucket profiles moved to quarantine because they could not be read, failed listings
    or reads of a remote capture tree (retried), and remote objects whose size changed after
    they were read (not read again)."""
    return {
        "records": counters.get("records", 0),
        "bad_records": counters.get("bad_records", 0),
        "bad_by_reason": {
            key[4:]: value for key, value in sorted(counters.items()) if key.startswith("bad:")
        },
        "files": counters.get("files", 0),
        "quarantined_profiles": counters.get(QUARANTINED, 0),
        "source_errors": counters.get(SOURCE_ERRORS, 0),
        "changed_files": counters.get(CHANGED, 0),
    }


def initial_doc(monitor: Monitor) -> dict[str, Any]:
    """What status says before the first run."""
    state = "no_baseline" if monitor.baseline.statistics is None else "no_data"
    start, end = monitor.window(monitor.clock())
    monitors: dict[str, Any] = {
        MONITOR: {
            "state": state,
            "window": {"start": iso(start), "end": iso(end)},
            "samples": 0,
            "min_samples": monitor.config.analyzer.min_samples,
            "violations": [],
            "violations_total": 0,
            "features": {},
            "run_id": None,
            "baseline": dict(monitor.baseline.info),
        }
    }
    quality = monitor.model_quality
    if quality is not None:
        current = quality.files.current
        quality_state = "no_baseline" if current.constraints is None else "no_data"
        q_start, q_end = quality.window(monitor.clock())
        monitors["model_quality"] = {
            "state": quality_state,
            "window": {"start": iso(q_start), "end": iso(q_end)},
            "problem_type": quality.quality.problem_type,
            "samples": 0,
            "min_labels": quality.quality.min_labels,
            "labels": {},
            "metrics": {},
            "estimated": {},
            "violations": [],
            "violations_total": 0,
            "run_id": None,
            "baseline": dict(current.info),
        }
        state = worst([state, quality_state])
    return {
        "state": state,
        "monitors": monitors,
        "last_run": None,
        "last_run_epoch": None,
        "endpoint": {
            "name": monitor.config.endpoint.name,
            "variant": monitor.config.endpoint.variant,
        },
    }


def full_status(
    monitor: Monitor,
    doc: dict[str, Any] | None,
    counters: Mapping[str, int],
    alerts: dict[str, Any] | None,
) -> dict[str, Any]:
    """The document ``GET /monitor/status`` answers."""
    doc = dict(doc) if doc is not None else initial_doc(monitor)
    last = doc.get("last_run_epoch")
    doc["ingest"] = ingest_doc(counters)
    doc["stale_s"] = max(0, round(monitor.clock() - last)) if last is not None else None
    doc["alerts"] = alerts if alerts is not None else dict(NO_ALERTS)
    source = monitor.ground_truth_source()
    if source is not None:  # failed listings or reads (retried): since start, and in all
        doc["ground_truth_source"] = {**source, "source_errors": counters.get(GT_ERRORS, 0)}
    doc["analyzer"] = {
        "version": __version__,
        "ticks": monitor.ticks,
        "last_tick_s": monitor.last_tick_s,
        "last_error": monitor.last_error,
        "schedule_interval_s": monitor.config.analyzer.schedule_interval_s,
        "window_s": monitor.config.analyzer.window_s,
        "bucket_s": monitor.config.analyzer.bucket_s,
        "decode_process": process.stats() if (process := monitor.decode_process) else None,
    }
    return doc
