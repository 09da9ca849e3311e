"""The running service under steady traffic with model quality on (issue 11): how much of its
time goes to evaluating the rolling window again, and how far the ingest lags.

    python bench/model_quality_steady.py [--window-records 300000] [--rate 4000] [--seconds 60]

A real ``modelmon analyzer`` (``schedule_interval_s: 1``, model quality on as in
``bench/analyzer_service.py``) first ingests ``--window-records`` labelled records spread over
the last 55 minutes (so the rolling hour holds that many pairs: evaluating it takes seconds).
Then, for ``--seconds``, one capture file of ``--rate`` records stamped "now" is sealed into
the capture folder every second and their labels are posted: with traffic flowing, the join
changes at every tick. Every 0.25 s the bench reads ``/monitor/status``. Printed: the records
offered and ingested in the phase, the ingest's lag (records offered but not yet counted, in
seconds of traffic: mean and max), the ticks and their duration, how many status readings
carried a ``deferred`` evaluation, the service's CPU (share of one core) and when the lag was
gone after the phase. Compare trees with ``PYTHONPATH=<tree>`` (e.g. before and after a change,
back to back); the machine is shared: the load is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from service_harness import (  # beside this script; puts the checkout on the path for tests
    ENDPOINT,
    VARIANT,
    cpu_seconds,
    free_port,
    labelled_lines,
    post_labels,
    service_config,
    stage_files,
    start_analyzer,
    stop_analyzer,
)

from tests.analyzer.service_helpers import write_baseline
from tests.analyzer.test_service_model_quality import write_quality_baseline


def _seal(capture: Path, lines: list[bytes], moment: datetime) -> None:
    """One capture file, written aside then renamed in (the ingest reads sealed files)."""
    folder = capture / ENDPOINT / VARIANT / moment.strftime("%Y/%m/%d/%H")
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{moment:%M-%S}-000-{uuid.uuid4()}.jsonl"
    (folder / (name + ".part")).write_bytes(b"".join(lines))
    os.rename(folder / (name + ".part"), folder / name)


async def _status(http: httpx.AsyncClient, base: str) -> dict[str, Any]:
    doc: dict[str, Any] = (await http.get(f"{base}/monitor/status")).json()
    return doc


async def run(work: Path, window_records: int, rate: int, seconds: int) -> dict[str, Any]:
    baseline = write_baseline(work / "baseline")
    quality = write_quality_baseline(work / "baseline" / "model_quality")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    lines, truth = labelled_lines(window_records, datetime.now(UTC), 3300)
    stage_files(work / "staging", lines, 10_000, datetime.now(UTC))
    del lines
    proc = await start_analyzer(service_config(work, port, baseline, 1.0, quality), port)
    service = psutil.Process(proc.pid)
    capture = work / "capture"
    capture.mkdir(exist_ok=True)
    async with httpx.AsyncClient(timeout=300) as http:
        await post_labels(http, base, truth)
        del truth
        os.rename(work / "staging" / ENDPOINT, capture / ENDPOINT)
        while True:  # the window loaded, joined and evaluated once
            doc = await _status(http, base)
            section = doc["monitors"].get("model_quality") or {}
            if (section.get("labels") or {}).get("matched", 0) >= window_records:
                break
            await asyncio.sleep(0.25)
        loaded = doc["ingest"]["records"]
        cpu_before, started = cpu_seconds(service), time.perf_counter()
        offered, lags, ticks_s, deferred, readings = 0, [], [], 0, 0
        next_file = started
        last_tick = doc["analyzer"]["ticks"]
        while time.perf_counter() - started < seconds:
            now = time.perf_counter()
            if now >= next_file:
                batch, labels = labelled_lines(rate, datetime.now(UTC), 1.0)
                _seal(capture, batch, datetime.now(UTC))
                await post_labels(http, base, labels)
                offered += rate
                next_file += 1.0
            doc = await _status(http, base)
            readings += 1
            lags.append(max(0, loaded + offered - doc["ingest"]["records"]) / rate)
            deferred += "deferred" in (doc["monitors"].get("model_quality") or {})
            if doc["analyzer"]["ticks"] != last_tick:
                last_tick = doc["analyzer"]["ticks"]
                ticks_s.append(doc["analyzer"]["last_tick_s"])
            await asyncio.sleep(0.25)
        phase_s = time.perf_counter() - started
        cpu_s = cpu_seconds(service) - cpu_before
        ingested = doc["ingest"]["records"] - loaded
        caught_up = None
        while time.perf_counter() - started < seconds + 300:
            doc = await _status(http, base)
            if doc["ingest"]["records"] >= loaded + offered:
                caught_up = time.perf_counter() - started - phase_s
                break
            await asyncio.sleep(0.25)
    await stop_analyzer(proc)
    return {
        "offered": offered,
        "ingested": ingested,
        "lag_mean_s": statistics.fmean(lags),
        "lag_max_s": max(lags),
        "ticks": len(ticks_s),
        "tick_mean_s": statistics.fmean(ticks_s) if ticks_s else float("nan"),
        "tick_max_s": max(ticks_s, default=float("nan")),
        "deferred_share": deferred / readings,
        "cpu_share": cpu_s / phase_s,
        "caught_up_s": caught_up,
        "pairs": (doc["monitors"].get("model_quality") or {}).get("samples"),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--window-records", type=int, default=300_000)
    parser.add_argument("--rate", type=int, default=4000, help="records offered per second")
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {os.getloadavg()}",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="modelmon-steady-"))
    try:
        found = await run(work, args.window_records, args.rate, args.seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    caught = found["caught_up_s"]
    print(
        f"window {args.window_records:,} pairs loaded; {args.seconds} s at {args.rate:,} "
        f"records/s: offered {found['offered']:,}, ingested in the phase "
        f"{found['ingested']:,}; ingest lag mean {found['lag_mean_s']:.1f} s, max "
        f"{found['lag_max_s']:.1f} s; {found['ticks']} ticks, mean {found['tick_mean_s']:.2f} s, "
        f"max {found['tick_max_s']:.2f} s; status readings with a deferred evaluation "
        f"{found['deferred_share']:.0%}; service CPU {found['cpu_share']:.0%} of a core; lag "
        f"gone {'never' if caught is None else f'{caught:.1f} s'} after the phase; window "
        f"{found['pairs']} pairs at the end; load average now {os.getloadavg()}"
    )


if __name__ == "__main__":
    asyncio.run(main())
