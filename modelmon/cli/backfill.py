"""``modelmon backfill``: fill the analyzer's database from an existing capture tree.

The work is :func:`analyzer.service.backfill.run_backfill`; this module parses the window and
turns its errors into one line and an exit code: 0 done (also when every file was read
already), 1 failed (the store unreachable, a task's error; what was committed stays), 2 bad
arguments or database, 4 no sealed files in the tree.
"""

from __future__ import annotations

import sys

from analyzer.ingest.batch import parse_moment
from analyzer.ingest.executor import Executor
from analyzer.service.backfill import BackfillError, run_backfill
from modelmon.config import ModelmonConfig

__all__ = ["run_backfill_command"]

EXIT_OK = 0
EXIT_USAGE = 2


def run_backfill_command(
    config: ModelmonConfig,
    source: str,
    start: str | None,
    end: str | None,
    executor: Executor,
) -> int:
    """Run the backfill; the summary on stdout, progress and errors on stderr."""
    try:
        first, last = parse_moment(start, "start"), parse_moment(end, "end")
    except ValueError as exc:
        print(f"modelmon backfill: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if first is not None and last is not None and first >= last:
        message = f"--start {first.isoformat()} is not before --end"
        print(f"modelmon backfill: {message}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = run_backfill(config, source, first, last, executor=executor)
    except BackfillError as exc:
        print(f"modelmon backfill: {exc}", file=sys.stderr)
        return exc.code
    print(result.summary(source), flush=True)
    return EXIT_OK
