"""What every monitor type is to the service: one pure evaluation of a window, and its outputs.

A monitor type (``data_quality``, ``model_quality``; bias and feature attribution later) is
a package under :mod:`analyzer.monitors` holding its config section's meaning, its baseline
builder, and a class that keeps :class:`MonitorType`: given the state of one window (a
profile, joined pairs, …: whatever the type needs, read by the service) it returns an
:class:`Evaluation`, from which the service stores a run, writes the type's three SageMaker
report files, fills ``monitors.<name>`` of ``/monitor/status``, exposes its Prometheus
gauges and alerts on a change of its state. Nothing here does I/O: the service
(:mod:`analyzer.service.monitor`) reads the window and writes what comes out.

States, from best to worst, are shared by every type (the overall state is the worst):
``ok``, ``no_data``, ``not_enough_data``, ``warning``, ``no_baseline``, ``alert``.

Examples
--------
>>> worst(["ok", "warning", "no_data"])
'warning'
>>> Gauge("modelmon_x", "help", 1.0, (("monitor", "data_quality"),)).labels
(('monitor', 'data_quality'),)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

__all__ = [
    "REPORT_FILES",
    "STATES",
    "Evaluation",
    "Gauge",
    "MonitorType",
    "iso",
    "worst",
]

STATES = ("ok", "no_data", "not_enough_data", "warning", "no_baseline", "alert")
_RANK = {state: rank for rank, state in enumerate(STATES)}
# Each type writes SageMaker's three report files for a window it reports.
REPORT_FILES = ("statistics.json", "constraints.json", "constraint_violations.json")

WindowT_contra = TypeVar("WindowT_contra", contravariant=True)


def worst(states: Iterable[str]) -> str:
    """The worst of some states (``no_data`` when there are none)."""
    return max(states, key=lambda s: _RANK.get(s, 0), default="no_data")


def iso(epoch: float) -> str:
    """``2026-11-27T07:00:05Z``."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Gauge:
    """One Prometheus sample a monitor type exposes (named like SageMaker's CloudWatch)."""

    name: str
    documentation: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


@dataclass
class Evaluation:
    """One window of one monitor type, evaluated.

    ``section`` is ``monitors.<name>`` of the status document (it holds ``state``, ``window``
    and whatever the type shows); ``violations`` are SageMaker's violation entries, as in
    ``constraint_violations.json``; ``documents`` are the type's report files for the window
    (file name → JSON document; empty when there is nothing to report); ``samples`` is what
    the window held (rows for data quality, joined labels for model quality); ``detail`` is
    what the run row keeps per feature or metric (shown by ``GET /monitor/runs/{id}``).
    """

    monitor: str
    state: str
    samples: int
    section: dict[str, Any]
    violations: list[dict[str, Any]] = field(default_factory=list)
    documents: dict[str, Any] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)


class MonitorType(Protocol[WindowT_contra]):
    """A monitor type: a name, a pure evaluation of a window, and gauges of its section."""

    name: str

    def evaluate(self, window: WindowT_contra, *, start: float, end: float) -> Evaluation:
        """Evaluate one window ``[start, end)`` against the type's baseline (pure, CPU)."""

    def gauges(self, section: Mapping[str, Any]) -> Iterable[Gauge]:
        """The Prometheus samples of the type's stored status section."""
