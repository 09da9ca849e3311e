"""Benchmark: how long the event loop (where requests run) waits because of the capture writer.

One process, the real :class:`capture_proxy.sink.CaptureSink` writing to a temporary directory.
A producer submits the bench's small records (50-byte JSON request, 25-byte answer) at a fixed
rate, in bursts every millisecond, as a proxy at that request rate would; a probe measures the
event loop's lag: how much later than asked ``await asyncio.sleep(0.0005)`` returns. A request
arriving on the loop waits about that long before its first callback runs. Modes, interleaved
round by round so that load from elsewhere hits them alike:

- ``off``: the producer only (no sink): the floor of this machine;
- ``thread``: every writer slice encoded and written in the writer thread (the design before);
- ``loop``: small plain slices encoded on the loop in runs of ~0.1 ms (``_LOOP_BUDGET_S``),
  written in the thread.

Printed: p50/p99/p99.9 of the lag in µs (median over rounds), and the process CPU per record.
On a busy machine the lag is mostly the OS scheduler's; so the bench also prints, immune to
that, the **CPU time of each stretch of capture work that can hold the GIL** while a request
waits (``time.thread_time``): each writer-thread call in ``thread`` mode; each run of records
encoded on the loop between two yields and each writer-thread call in ``loop`` mode. A thread call's
time includes its ``os.write`` system time, during which the GIL is free: an upper bound.

Run: ``python bench/sink_tail.py --rate 10000 --seconds 4 --rounds 3``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from capture_proxy.exchange import Exchange
from capture_proxy.main import SWITCH_INTERVAL_S
from capture_proxy.metrics import ProxyMetrics
from capture_proxy.sink import CaptureSink
from modelmon.config import parse_config

BODY = b'{"instances": [[0.5, 1.25, 3.0, 42.0, 7.5, "CA"]]}'
ANSWER = b'{"predictions": [0.8125]}'
PROBE_S = 0.0005


def _exchange() -> Exchange:
    return Exchange(
        str(uuid.uuid4()),
        time.time(),
        None,
        None,
        BODY,
        "application/json",
        False,
        ANSWER,
        "application/json",
        False,
        200,
        0.4,
    )


def _user_s() -> float:
    return time.thread_time()  # CPU of this thread, nanosecond clock (getrusage ticks are ms)


def _timed(holds: list[float], fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        start = _user_s()
        try:
            return fn(*args)
        finally:
            holds.append((_user_s() - start) * 1e6)

    return wrapper


def _instrument(sink: CaptureSink, holds: list[float], encodes: list[float]) -> None:
    """Time each GIL-holding stretch of capture work (user CPU of its thread)."""
    sink._cycle = _timed(holds, sink._cycle)  # type: ignore[method-assign]
    sink._cycle_lines = _timed(holds, sink._cycle_lines)  # type: ignore[method-assign]
    sink._encode_run = _timed(encodes, sink._encode_run)  # type: ignore[method-assign]


async def _round(
    mode: str, rate: int, seconds: float, directory: Path
) -> tuple[list[float], float, list[float]]:
    config = parse_config(
        {
            "endpoint": {"name": "bench"},
            "proxy": {"upstream": "http://127.0.0.1:9"},
            "capture": {"dir": str(directory), "sampling_percentage": 100},
        }
    )
    sink = None
    holds: list[float] = []
    encodes: list[float] = []
    if mode != "off":
        sink = CaptureSink(config, ProxyMetrics(), encode_on_loop=mode == "loop")
        _instrument(sink, holds, encodes)
        await sink.start()
    lags: list[float] = []
    stop = time.perf_counter() + seconds
    per_ms = max(1, rate // 1000)
    records = 0

    async def produce() -> None:
        nonlocal records
        while time.perf_counter() < stop:
            for _ in range(per_ms):
                exchange = _exchange()  # the request path's share: built, handed over
                if sink is not None:
                    sink.submit(exchange)
                records += 1
            await asyncio.sleep(0.001)

    async def probe() -> None:
        while time.perf_counter() < stop:
            start = time.perf_counter()
            await asyncio.sleep(PROBE_S)
            lags.append((time.perf_counter() - start - PROBE_S) * 1e6)

    cpu = time.process_time()
    await asyncio.gather(produce(), probe())
    if sink is not None:
        await sink.close()
    cpu = time.process_time() - cpu
    if mode == "loop":  # each run encoded on the loop between yields (thread calls: in holds)
        holds = holds + encodes
    return lags, cpu / max(records, 1) * 1e6, holds


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=10_000, help="records per second")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--modes", default="off,thread,loop", help="comma-separated: off, thread, loop"
    )
    parser.add_argument(
        "--switch-interval-ms",
        type=float,
        default=None,
        help="sys.setswitchinterval for the run (default: what the proxy sets, see main.py)",
    )
    args = parser.parse_args()
    modes = tuple(args.modes.split(","))
    sys.setswitchinterval(
        args.switch_interval_ms / 1000 if args.switch_interval_ms else SWITCH_INTERVAL_S
    )
    stats: dict[str, list[tuple[float, float, float, float]]] = {m: [] for m in modes}
    all_holds: dict[str, list[float]] = {m: [] for m in modes}
    print(
        f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
        f"python {sys.version.split()[0]}, {args.rate} records/s, {args.seconds:g}s x "
        f"{args.rounds} rounds, switch interval {sys.getswitchinterval() * 1000:g} ms"
    )
    with tempfile.TemporaryDirectory(prefix="modelmon-tail-") as tmp:
        for n in range(args.rounds):
            for mode in modes:
                lags, cpu, holds = asyncio.run(
                    _round(mode, args.rate, args.seconds, Path(tmp) / f"{mode}-{n}")
                )
                all_holds[mode].extend(holds)
                row = (_pct(lags, 0.5), _pct(lags, 0.99), _pct(lags, 0.999), cpu)
                stats[mode].append(row)
                print(
                    f"  round {n} {mode:<7} p50 {row[0]:6.0f}  p99 {row[1]:6.0f}  "
                    f"p99.9 {row[2]:6.0f} us  cpu {row[3]:5.1f} us/record",
                    flush=True,
                )
    print(f"\n{'mode':<8}{'p50 us':>8}{'p99 us':>8}{'p99.9 us':>10}{'cpu us/rec':>12}")
    for mode in modes:
        cols = list(zip(*stats[mode], strict=True))
        med = [sorted(c)[len(c) // 2] for c in cols]
        print(f"{mode:<8}{med[0]:>8.0f}{med[1]:>8.0f}{med[2]:>10.0f}{med[3]:>12.1f}")
    print("\nstretches of capture work that can hold the GIL (CPU us, all rounds):")
    for mode in modes:
        holds = all_holds[mode]
        if holds:
            print(
                f"{mode:<8} n {len(holds):>6}  p50 {_pct(holds, 0.5):7.0f}  p99 "
                f"{_pct(holds, 0.99):7.0f}  p99.9 {_pct(holds, 0.999):7.0f}  max {max(holds):7.0f}"
            )
    print(f"load at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
