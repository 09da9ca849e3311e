"""Ground-truth intake under a hostile body (issue 9, item 4): time, answer size, the analyzer's
peak RSS, and how long ``/monitor/health`` takes while the body is being taken.

    python bench/ground_truth_intake.py [--mib 16] [--kind bad|crafted|good]

A real ``modelmon analyzer`` is started as a subprocess (``analyzer.ground_truth.
max_body_bytes`` raised to fit the body). One ``POST /monitor/ground-truth`` sends ``--mib``
MiB of ``x\\n`` lines (``bad``), of the costliest bad line known (``crafted``: it passes the
cheap checks and fails in the JSON parser), or of minimal valid records (``good``, the memory
worst case: every line becomes a stored row); meanwhile ``GET /monitor/health`` is sent one
after the other and timed, and the service's RSS sampled. Anchor, same run: health p50/max
before the POST (the idle round trip), so the figures are ratios on a noisy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import yaml


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _body(mib: int, kind: str) -> bytes:
    size = mib * 1024 * 1024
    line = {
        "bad": b"x\n",
        "crafted": b'{"groundTruthData""eventMetadata"}\n',
        "good": b'{"groundTruthData":{"data":"1"},"eventMetadata":{"eventId":"e-000000000"}}\n',
    }[kind]
    return (line * (size // len(line) + 1))[:size]


async def _health_loop(http: httpx.AsyncClient, url: str, stop: asyncio.Event) -> list[float]:
    took: list[float] = []
    while not stop.is_set() and len(took) < 100_000:
        started = time.perf_counter()
        response = await http.get(url)
        took.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return took


async def _rss_loop(proc: psutil.Process, stop: asyncio.Event, peak: list[int]) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        await asyncio.sleep(0.05)


async def main(mib: int, kind: str) -> None:
    body = _body(mib, kind)
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        config = {
            "proxy": {"upstream": "http://127.0.0.1:9"},
            "analyzer": {
                "listen": f"127.0.0.1:{port}",
                "db": f"{tmp}/m.db",
                "reports_dir": f"{tmp}/reports",
                "ground_truth": {"max_body_bytes": len(body) + 1024},
            },
            "capture": {"dir": f"{tmp}/capture"},
        }
        path = Path(tmp) / "m.yaml"
        path.write_text(yaml.safe_dump(config))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "modelmon", "analyzer", "--config", str(path),
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(timeout=600) as http, httpx.AsyncClient() as probe:
                for _ in range(600):
                    try:
                        await probe.get(f"{base}/monitor/health")
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
                idle = [0.0]
                stop_idle = asyncio.Event()
                task = asyncio.ensure_future(
                    _health_loop(probe, f"{base}/monitor/health", stop_idle)
                )
                await asyncio.sleep(2)
                stop_idle.set()
                idle = await task
                ps = psutil.Process(proc.pid)
                rss_before = ps.memory_info().rss
                stop = asyncio.Event()
                peak = [rss_before]
                rss = asyncio.ensure_future(_rss_loop(ps, stop, peak))
                busy = asyncio.ensure_future(_health_loop(probe, f"{base}/monitor/health", stop))
                started = time.perf_counter()
                response = await http.post(f"{base}/monitor/ground-truth", content=body)
                elapsed = time.perf_counter() - started
                stop.set()
                during = await busy
                await rss
                answer = response.content
        finally:
            proc.terminate()
            await proc.wait()
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(f"body: {len(body):,} bytes of {kind} lines; answer {response.status_code}, "
          f"{len(answer):,} bytes in {elapsed:.1f} s")  # fmt: skip
    print(f"analyzer RSS: {rss_before / 2**20:.0f} MiB before, peak {peak[0] / 2**20:.0f} MiB")
    print(
        f"health idle (anchor): p50 {statistics.median(idle):.1f} ms, max {max(idle):.1f} ms "
        f"({len(idle)} requests)"
    )
    print(
        f"health during the POST: p50 {statistics.median(during):.1f} ms, max "
        f"{max(during):.1f} ms ({len(during)} requests); max/idle-p50 "
        f"{max(during) / statistics.median(idle):.0f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=16)
    parser.add_argument("--kind", choices=("bad", "crafted", "good"), default="bad")
    args = parser.parse_args()
    asyncio.run(main(args.mib, args.kind))
