"""The running analyzer service (issue 4): ingest throughput, resident memory after 1,000,000
records, and status latency with 30 days of 5-minute buckets stored.

    python bench/analyzer_service.py [--records 1000000] [--per-file 10000] [--requests 2000]

Part 1, ingest. Capture files (SageMaker records of ``current_nodrift.csv`` rows, written
with ``modelmon.capture_record.build_record``) are staged first, then moved into the capture
folder of a running ``modelmon analyzer`` (``schedule_interval_s: 1``, the reference baseline)
in one rename, so the clock measures the service alone: from the rename until
``/monitor/status`` counts every record. The service's RSS is sampled while it ingests.
Anchor, same run: the pure decode + profile of the same lines in this process (no SQLite,
no HTTP), records/s.

Part 2, status latency. A database is filled as 30 days of service life would leave it:
8,640 five-minute bucket profiles (each a real 1,000-record profile), 43,200 window runs,
720 hourly runs with their three reports. A service is started on it and ``GET
/monitor/status`` is timed sequentially over one keep-alive connection. Anchor, same run:
a ``GET`` of an unknown path (the JSON 404 from the same middleware: HTTP round trip alone).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import yaml

from analyzer.decoding.codecs import PayloadDecoder
from analyzer.monitors.data_quality.profile import DatasetProfile
from analyzer.store.database import Store, write_status_doc
from modelmon.capture_record import CaptureSide, build_record
from modelmon.config import PayloadConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.analyzer.service_helpers import FEATURES, read_rows, write_baseline  # noqa: E402

ENDPOINT, VARIANT = "bench", "AllTraffic"
PAYLOAD = {
    "input": {"format": "csv", "columns": FEATURES},
    "output": {"format": "csv", "columns": ["score"]},
}


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _lines(n: int, end: datetime) -> list[bytes]:
    rows, scores = read_rows("current_nodrift.csv")
    spacing = timedelta(seconds=5400 / n)  # spread over the last 90 minutes
    start = end - n * spacing
    out = []
    for i in range(n):
        j = i % len(rows)
        out.append(
            build_record(
                event_id=str(uuid.uuid4()),
                inference_time=start + i * spacing,
                request=CaptureSide("text/csv", ",".join(rows[j]), "CSV"),
                response=CaptureSide("text/csv", scores[j], "CSV"),
            )
        )
    return out


def _stage(folder: Path, lines: list[bytes], per_file: int, moment: datetime) -> int:
    files = 0
    for first in range(0, len(lines), per_file):
        batch = lines[first : first + per_file]
        record_time = orjson.loads(batch[0])["eventMetadata"]["inferenceTime"]
        hour = datetime.fromisoformat(record_time.replace("Z", "+00:00"))
        target = folder / ENDPOINT / VARIANT / hour.strftime("%Y/%m/%d/%H")
        target.mkdir(parents=True, exist_ok=True)
        (target / f"{hour:%M-%S}-000-{uuid.uuid4()}.jsonl").write_bytes(b"".join(batch))
        files += 1
    return files


def _config(work: Path, port: int, baseline: tuple[Path, Path], interval: float) -> Path:
    doc = {
        "endpoint": {"name": ENDPOINT, "variant": VARIANT},
        "proxy": {"upstream": "http://127.0.0.1:9"},
        "capture": {"dir": "capture"},
        "analyzer": {
            "listen": f"127.0.0.1:{port}",
            "db": "m.db",
            "reports_dir": "reports",
            "schedule_interval_s": interval,
            "payload": PAYLOAD,
            "baseline": {"statistics": str(baseline[0]), "constraints": str(baseline[1])},
        },
    }
    path = work / "modelmon.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


async def _start(config: Path, port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "modelmon",
        "--log-level",
        "WARNING",
        "analyzer",
        "--config",
        str(config),
    )
    async with httpx.AsyncClient() as http:
        for _ in range(600):
            try:
                await http.get(f"http://127.0.0.1:{port}/monitor/health")
                return proc
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise RuntimeError("the analyzer did not start")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGTERM)
    await proc.wait()


def anchor_profile(lines: list[bytes]) -> float:
    decoder = PayloadDecoder(PayloadConfig.model_validate(PAYLOAD))
    profile = DatasetProfile()
    started = time.perf_counter()
    for first in range(0, len(lines), 5000):
        profile.update(decoder.decode_lines(lines[first : first + 5000]))
    return len(lines) / (time.perf_counter() - started)


async def bench_ingest(work: Path, records: int, per_file: int, baseline: Any) -> dict[str, Any]:
    lines = _lines(records, datetime.now(UTC))
    anchor = anchor_profile(lines[: min(records, 100_000)])
    files = _stage(work / "staging", lines, per_file, datetime.now(UTC))
    del lines
    port = _port()
    proc = await _start(_config(work, port, baseline, 1.0), port)
    rss = psutil.Process(proc.pid)
    idle_mb = rss.memory_info().rss / 2**20
    (work / "capture").mkdir(exist_ok=True)
    started = time.perf_counter()
    os.rename(work / "staging" / ENDPOINT, work / "capture" / ENDPOINT)
    samples: list[tuple[int, float]] = []
    async with httpx.AsyncClient(timeout=30) as http:
        while True:
            ingest = (await http.get(f"http://127.0.0.1:{port}/monitor/status")).json()["ingest"]
            samples.append((ingest["records"], rss.memory_info().rss / 2**20))
            if ingest["records"] >= records:
                break
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - started
        status = (await http.get(f"http://127.0.0.1:{port}/monitor/status")).json()
    final_mb = rss.memory_info().rss / 2**20
    await _stop(proc)
    quartiles = [
        next((mb for n, mb in samples if n >= records * q // 4), final_mb) for q in (1, 2, 3)
    ]
    return {
        "records": records,
        "files": files,
        "elapsed_s": elapsed,
        "records_per_s": records / elapsed,
        "anchor_records_per_s": anchor,
        "idle_rss_mb": idle_mb,
        "rss_quartiles_mb": quartiles,
        "peak_rss_mb": max(mb for _, mb in samples),
        "final_rss_mb": final_mb,
        "state": status["state"],
    }


def _fill_30_days(db: Path, now: float) -> None:
    lines = _lines(1000, datetime.fromtimestamp(now, UTC))
    profile = DatasetProfile()
    profile.update(PayloadDecoder(PayloadConfig.model_validate(PAYLOAD)).decode_lines(lines))
    blob = profile.to_bytes()
    features = {
        name: {"state": "ok", "distance": 0.01, "threshold": 0.1, "psi": 0.001, "js": 0.01}
        for name in FEATURES
    }
    store = Store(db)
    store.start()
    first = int(now - 30 * 86400) // 300 * 300

    def fill(conn: Any) -> None:
        for start in range(first, int(now) // 300 * 300, 300):
            conn.execute("INSERT INTO buckets VALUES (?, 300, ?, 1000, ?)", [start, blob, now])
            if start % 3600 == 0:
                conn.execute("INSERT INTO hours VALUES (?, 1, 1)", [start])
        report = zlib.compress(orjson.dumps({"violations": [], "blob": "x" * 20000}))
        feats = orjson.dumps(features).decode()
        for minute in range(30 * 1440):
            moment = first + minute * 60
            iso = datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            kind = "hourly" if minute % 60 == 0 else "window"
            cur = conn.execute(
                "INSERT INTO runs(kind, time, time_epoch, hour, window_start, window_end, state, "
                "samples, features, violations) VALUES (?, ?, ?, ?, ?, ?, 'ok', 12000, ?, '[]')",
                [kind, iso, moment, iso if kind == "hourly" else None, iso, iso, feats],
            )
            if kind == "hourly":
                for name in ("statistics.json", "constraints.json", "constraint_violations.json"):
                    conn.execute(
                        "INSERT INTO run_reports VALUES (?, ?, ?)", [cur.lastrowid, name, report]
                    )
        conn.execute("INSERT INTO counters VALUES ('records', ?)", [8640 * 1000])
        write_status_doc(conn, {"state": "ok", "monitors": {}, "last_run_epoch": now})

    store.write(fill)
    store.close()


async def _latency(http: httpx.AsyncClient, url: str, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        response = await http.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code in (200, 404), response.text
    return sorted(times)


def _db_mb(work: Path) -> float:
    return sum(p.stat().st_size for p in work.glob("m.db*")) / 2**20


async def bench_status(work: Path, requests: int, baseline: Any) -> dict[str, Any]:
    _fill_30_days(work / "m.db", time.time())
    port = _port()
    proc = await _start(_config(work, port, baseline, 3600.0), port)
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(timeout=30) as http:
        await _latency(http, f"{base}/monitor/status", 100)  # warm-up
        status = await _latency(http, f"{base}/monitor/status", requests)
        anchor = await _latency(http, f"{base}/monitor/nothing-here", requests)
        runs = await _latency(http, f"{base}/monitor/runs", max(requests // 10, 50))
    size_mb = _db_mb(work)
    await _stop(proc)

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))]

    return {
        "db_mb": size_mb,
        "status_p50_ms": statistics.median(status),
        "status_p99_ms": pct(status, 0.99),
        "anchor_p50_ms": statistics.median(anchor),
        "anchor_p99_ms": pct(anchor, 0.99),
        "runs_p99_ms": pct(runs, 0.99),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--per-file", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    work = Path(tempfile.mkdtemp(prefix="modelmon-bench-"))
    try:
        baseline = write_baseline(work / "baseline")
        (work / "ingest").mkdir()
        ingest = await bench_ingest(work / "ingest", args.records, args.per_file, baseline)
        print(
            f"ingest: {ingest['records']:,} records in {ingest['files']} files, "
            f"{ingest['elapsed_s']:.1f} s = {ingest['records_per_s']:,.0f} records/s "
            f"(anchor decode+profile in-process {ingest['anchor_records_per_s']:,.0f}/s, "
            f"ratio {ingest['records_per_s'] / ingest['anchor_records_per_s']:.2f}); "
            f"final state {ingest['state']}"
        )
        print(
            f"rss: idle {ingest['idle_rss_mb']:.0f} MB, at 25/50/75% "
            f"{'/'.join(f'{mb:.0f}' for mb in ingest['rss_quartiles_mb'])} MB, "
            f"peak {ingest['peak_rss_mb']:.0f} MB, after {ingest['records']:,} records "
            f"{ingest['final_rss_mb']:.0f} MB (goal < 300 MB, flat)"
        )
        shutil.rmtree(work / "ingest")
        (work / "status").mkdir()
        status = await bench_status(work / "status", args.requests, baseline)
        print(
            f"status with 30 days stored (db {status['db_mb']:.0f} MB): p50 "
            f"{status['status_p50_ms']:.2f} ms, p99 {status['status_p99_ms']:.2f} ms "
            f"(goal < 50 ms); anchor JSON 404 p50 {status['anchor_p50_ms']:.2f} ms, p99 "
            f"{status['anchor_p99_ms']:.2f} ms, ratio p99 "
            f"{status['status_p99_ms'] / status['anchor_p99_ms']:.1f}; /monitor/runs p99 "
            f"{status['runs_p99_ms']:.2f} ms"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
