"""How often the service's interpreter hands the GIL from one thread to another.

The service's threads share one interpreter: the event loop (``/monitor/status``, the
intake), the ingest thread (decoding and profiling, pure Python) and the store's writer
thread, whose SQLite statements and COMMITs run without the GIL. Each time the writer comes
back from SQLite it asks for the GIL, and CPython hands it over only when the holder has
run for the switch interval (5 ms by default): the busy ingest thread keeps it that long,
while the chunk it waits to hand over waits for the writer. At 1 ms, measured with
``python bench/analyzer_service.py --records 1000000 --requests 200 --model-quality
--labels after`` (docs/benchmarks.md, "The switch interval"): 139,592 → 154,709 records/s
with model quality off and 78,663 → 97,773 with it on; 0.5 and 0.2 ms measured no better.
The Dask executor raises the interval while a task runs (:mod:`analyzer.ingest.executor`):
that is a worker process of its own, with no writer thread beside the task.
"""

from __future__ import annotations

import sys

__all__ = ["SERVICE_SWITCH_INTERVAL_S", "shorten_switch_interval"]

SERVICE_SWITCH_INTERVAL_S = 0.001


def shorten_switch_interval(interval: float = SERVICE_SWITCH_INTERVAL_S) -> float:
    """Set the interpreter's switch interval to at most ``interval`` (process-wide: the
    service's process only); returns the one it had."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, interval))
    return previous
