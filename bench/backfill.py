"""What ``modelmon backfill`` costs against the service's own ingest of the same files.

    python bench/backfill.py [--files 40] [--per-file 1000] [--hours 4]

Writes ``--files`` capture files (the reference data's rows as CSV payloads) spread over
``--hours`` hours, then, each into a fresh database, in this process:

- the anchor: the service's ingest (``Monitor.ingestor.run_once``, one thread, chunk by chunk);
- ``run_backfill`` in-process (the same decode and profile, plus the window runs and hourly
  reports of the past hours);
- ``run_backfill`` on local processes (one per core).

Prints records/s and each ratio to the anchor (same run, same files; say the machine's load).
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from analyzer.ingest.executor import InProcess, LocalProcesses, cores
from analyzer.service.backfill import run_backfill
from analyzer.service.monitor import Monitor
from analyzer.store.database import Store
from modelmon.config import ModelmonConfig
from tests.analyzer.service_helpers import make_config, write_traffic


def _config(tmp: Path, name: str, capture: Path) -> ModelmonConfig:
    config = make_config(tmp / name, None)
    return config.model_copy(update={"capture": config.capture.model_copy(update={"dir": capture})})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--per-file", type=int, default=1000)
    parser.add_argument("--hours", type=int, default=4)
    args = parser.parse_args()
    now = time.time()
    base = datetime.fromtimestamp(now // 3600 * 3600, UTC) - timedelta(hours=args.hours + 1)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        capture = tmp / "capture"
        per_hour = max(1, args.files // args.hours)
        total = 0
        for h in range(args.hours):
            n = per_hour * args.per_file
            spacing = timedelta(seconds=3000 / n)
            start = base + timedelta(hours=h)
            total += write_traffic(
                capture, "baseline.csv", n, start, per_file=args.per_file, spacing=spacing
            )
        results: dict[str, float] = {}

        config = _config(tmp, "service", capture)
        store = Store(config.analyzer.db)
        store.start()
        try:
            started = time.perf_counter()
            stats = Monitor(config, store).ingestor.run_once()
            results["service ingest (anchor)"] = time.perf_counter() - started
            assert stats.records == total, stats
        finally:
            store.close()
        for name, executor in (
            ("backfill in-process", InProcess()),
            (f"backfill local processes ({cores()})", LocalProcesses()),
        ):
            config = _config(tmp, name.replace(" ", "-"), capture)
            started = time.perf_counter()
            result = run_backfill(
                config, str(capture), executor=executor, out=io.StringIO(), clock=now
            )
            results[name] = time.perf_counter() - started
            assert result.records == total, result
        load = os.getloadavg()[0]
        print(f"{total:,} records in {per_hour * args.hours} files over {args.hours} hours; "
              f"{cores()} cores, load {load:.1f}")  # fmt: skip
        anchor = results["service ingest (anchor)"]
        for name, seconds in results.items():
            print(f"  {name:36s} {seconds:7.2f} s  {total / seconds:10,.0f} records/s  "
                  f"x{anchor / seconds:.2f} vs anchor")  # fmt: skip


if __name__ == "__main__":
    main()
