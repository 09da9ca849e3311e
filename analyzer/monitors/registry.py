"""The monitor types the service knows, by name: what a stored status section turns into.

The service builds each configured type itself (it knows their baselines); readers of a
stored status document (Prometheus, the HTML report) only need the type's pure functions of
its section, found here by the section's name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from analyzer.monitors.contract import Gauge
from analyzer.monitors.data_quality.monitor import DataQuality
from analyzer.monitors.model_quality.monitor import ModelQuality

__all__ = ["GAUGES", "section_gauges"]

GAUGES: dict[str, Callable[[Mapping[str, Any]], Iterable[Gauge]]] = {
    DataQuality.name: DataQuality.gauges,
    ModelQuality.name: ModelQuality.gauges,
}


def section_gauges(name: str, section: Mapping[str, Any]) -> Iterable[Gauge]:
    """The gauges of one monitor's status section (none for a type this build does not know)."""
    gauges = GAUGES.get(name)
    return gauges(section) if gauges is not None else ()
