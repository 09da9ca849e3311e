"""The running analyzer service (issue 4): ingest throughput, resident memory after 1,000,000
records, and status latency with 30 days of 5-minute buckets stored.

    python bench/analyzer_service.py [--records 1000000] [--per-file 10000] [--requests 2000]
                                     [--model-quality]

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

``--model-quality`` (issue 11): each part runs twice in the same run, first as above (the
anchor), then with ``analyzer.model_quality`` on (BinaryClassification, the score as the
probability, a baseline from ``baseline.csv``'s score and label, ``window_s`` 3600) and a
label for every record posted to ``POST /monitor/ground-truth`` before the capture files
arrive (timed apart: labels/s), so the ingest keeps every prediction and joins it to its
waiting label and the tick evaluates the model-quality window (realized metrics over the
pairs of the last hour, the label-free estimate over its predictions). For the status part
both variants also ingest one hour of 10,000 labelled records before the timing, so the
status document carries a full ``monitors.model_quality`` section. Prints both figures and
the ratios (with / without); with model quality on also when every prediction was joined
(the status counts every label matched), and the CPU time of the service per record.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import math
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
from tests.analyzer.test_service_model_quality import write_quality_baseline  # noqa: E402

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


def _lines(n: int, end: datetime, span_s: float = 5400) -> list[bytes]:
    return _labelled_lines(n, end, span_s)[0]


def _labelled_lines(n: int, end: datetime, span_s: float = 5400) -> tuple[list[bytes], list[bytes]]:
    """``n`` capture records spread over ``span_s`` before ``end`` (default the last 90
    minutes), and the ground-truth line of each (its eventId, the table's label)."""
    rows, scores = read_rows("current_nodrift.csv")
    labels = _labels("current_nodrift.csv")
    spacing = timedelta(seconds=span_s / n)
    start = end - n * spacing
    out, truth = [], []
    for i in range(n):
        j = i % len(rows)
        event_id = str(uuid.uuid4())
        out.append(
            build_record(
                event_id=event_id,
                inference_time=start + i * spacing,
                request=CaptureSide("text/csv", ",".join(rows[j]), "CSV"),
                response=CaptureSide("text/csv", scores[j], "CSV"),
            )
        )
        truth.append(
            orjson.dumps(
                {
                    "groundTruthData": {"data": labels[j], "encoding": "CSV"},
                    "eventMetadata": {"eventId": event_id},
                    "eventVersion": "0",
                }
            )
        )
    return out, truth


def _labels(name: str) -> list[str]:
    with open(ROOT / "tests" / "reference" / "data" / name, newline="") as handle:
        return [row["label"] for row in csv.DictReader(handle)]


async def _post_labels(http: httpx.AsyncClient, url: str, truth: list[bytes]) -> float:
    """Every label by ``POST /monitor/ground-truth`` (bodies of 50,000 lines); seconds."""
    started = time.perf_counter()
    for first in range(0, len(truth), 50_000):
        body = b"\n".join(truth[first : first + 50_000]) + b"\n"
        response = await http.post(f"{url}/monitor/ground-truth", content=body)
        assert response.status_code == 200, response.text
    return time.perf_counter() - started


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


def _config(
    work: Path,
    port: int,
    baseline: tuple[Path, Path],
    interval: float,
    quality: tuple[Path, Path] | None = None,
) -> Path:
    doc: dict[str, Any] = {
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
    if quality is not None:
        doc["analyzer"]["model_quality"] = {
            "problem_type": "BinaryClassification",
            "probability_attribute": "0",
            "ground_truth_attribute": "0",
            "window_s": 3600,
            "min_labels": 100,
            "baseline": {"statistics": str(quality[0]), "constraints": str(quality[1])},
            "ground_truth": {"dir": str(work / "ground-truth")},
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


async def bench_ingest(
    work: Path, records: int, per_file: int, baseline: Any, quality: Any = None
) -> dict[str, Any]:
    lines, truth = _labelled_lines(records, datetime.now(UTC))
    anchor = anchor_profile(lines[: min(records, 100_000)])
    files = _stage(work / "staging", lines, per_file, datetime.now(UTC))
    del lines
    port = _port()
    proc = await _start(_config(work, port, baseline, 1.0, quality), port)
    rss = psutil.Process(proc.pid)
    idle_mb = rss.memory_info().rss / 2**20
    (work / "capture").mkdir(exist_ok=True)
    samples: list[tuple[int, float]] = []
    labels_s = math.nan
    async with httpx.AsyncClient(timeout=300) as http:
        if quality is not None:
            labels_s = await _post_labels(http, f"http://127.0.0.1:{port}", truth)
        del truth
        started = time.perf_counter()
        cpu_before = _cpu_s(rss)
        os.rename(work / "staging" / ENDPOINT, work / "capture" / ENDPOINT)
        ticks = 0
        while True:
            doc = (await http.get(f"http://127.0.0.1:{port}/monitor/status")).json()
            samples.append((doc["ingest"]["records"], rss.memory_info().rss / 2**20))
            if doc["ingest"]["records"] >= records:
                ticks = doc["analyzer"]["ticks"]
                break
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - started
        joined = math.nan
        while quality is not None:  # every prediction stored and joined to its waiting label
            section = doc.get("monitors", {}).get("model_quality") or {}
            if (section.get("labels") or {}).get("matched", 0) >= records:
                joined = time.perf_counter() - started
                ticks = doc["analyzer"]["ticks"]
                break
            await asyncio.sleep(0.2)
            doc = (await http.get(f"http://127.0.0.1:{port}/monitor/status")).json()
        while True:  # the tick that ingested the last record has evaluated and reported
            status = (await http.get(f"http://127.0.0.1:{port}/monitor/status")).json()
            if status["analyzer"]["ticks"] > ticks:
                break
            await asyncio.sleep(0.05)
        evaluated = time.perf_counter() - started
        cpu_s = _cpu_s(rss) - cpu_before
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
        "evaluated_s": evaluated,
        "joined_s": joined,
        "cpu_us_per_record": cpu_s / records * 1e6,
        "joined_per_s": records / joined,
        "last_tick_s": status["analyzer"]["last_tick_s"],
        "anchor_records_per_s": anchor,
        "idle_rss_mb": idle_mb,
        "rss_quartiles_mb": quartiles,
        "peak_rss_mb": max(mb for _, mb in samples),
        "final_rss_mb": final_mb,
        "state": status["state"],
        "labels_per_s": records / labels_s,
        "model_quality": _mq_summary(status),
        "status_bytes": len(orjson.dumps(status)),
    }


def _cpu_s(process: psutil.Process) -> float:
    """CPU seconds (user + system) of the service and its child processes so far."""
    total = 0.0
    for one in [process, *process.children(recursive=True)]:
        try:
            times = one.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _mq_summary(status: dict[str, Any]) -> str:
    section = (status.get("monitors") or {}).get("model_quality")
    if not section:
        return "off"
    auc = (section.get("metrics") or {}).get("auc", {}).get("value")
    return (
        f"{section['state']}, {section.get('samples')} pairs in the window, labels "
        f"{section.get('labels')}, auc {auc}"
    )


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


async def bench_status(
    work: Path, requests: int, baseline: Any, quality: Any = None, hour: int = 0
) -> dict[str, Any]:
    now = datetime.now(UTC)
    _fill_30_days(work / "m.db", now.timestamp())
    lines, truth = _labelled_lines(hour, now, 3000) if hour else ([], [])
    if lines:  # one hour of traffic and its labels (the folder), read at the first tick
        _stage(work / "capture", lines, 10_000, now)
        folder = work / "ground-truth" / now.strftime("%Y/%m/%d/%H")
        folder.mkdir(parents=True)
        (folder / "labels.jsonl").write_bytes(b"".join(line + b"\n" for line in truth))
    port = _port()
    proc = await _start(_config(work, port, baseline, 3600.0, quality), port)
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(timeout=60) as http:
        while True:  # until the first tick has ingested and evaluated
            if (await http.get(f"{base}/monitor/status")).json()["analyzer"]["ticks"] >= 1:
                break
            await asyncio.sleep(0.2)
        await _latency(http, f"{base}/monitor/status", 100)  # warm-up
        doc = (await http.get(f"{base}/monitor/status")).json()
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
        "status_bytes": len(orjson.dumps(doc)),
        "model_quality": _mq_summary(doc),
    }


def _print_ingest(ingest: dict[str, Any], name: str) -> None:
    labels = (
        ""
        if math.isnan(ingest["labels_per_s"])
        else (f"; labels posted first at {ingest['labels_per_s']:,.0f}/s")
    )
    joined = (
        ""
        if math.isnan(ingest["joined_s"])
        else (
            f"every prediction joined after {ingest['joined_s']:.1f} s "
            f"(= {ingest['joined_per_s']:,.0f} records/s); "
        )
    )
    print(
        f"[{name}] ingest: {ingest['records']:,} records in {ingest['files']} files, "
        f"{ingest['elapsed_s']:.1f} s = {ingest['records_per_s']:,.0f} records/s "
        f"(anchor decode+profile in-process {ingest['anchor_records_per_s']:,.0f}/s, "
        f"ratio {ingest['records_per_s'] / ingest['anchor_records_per_s']:.2f}){labels}; "
        f"{joined}evaluated after {ingest['evaluated_s']:.1f} s "
        f"(last tick {ingest['last_tick_s']:.1f} s; CPU until then "
        f"{ingest['cpu_us_per_record']:.1f} µs per record, service and reader); "
        f"final state {ingest['state']}; model quality: {ingest['model_quality']}"
    )
    print(
        f"[{name}] rss: idle {ingest['idle_rss_mb']:.0f} MB, at 25/50/75% "
        f"{'/'.join(f'{mb:.0f}' for mb in ingest['rss_quartiles_mb'])} MB, "
        f"peak {ingest['peak_rss_mb']:.0f} MB, after {ingest['records']:,} records "
        f"{ingest['final_rss_mb']:.0f} MB (goal < 300 MB, flat)"
    )


def _print_status(status: dict[str, Any], name: str) -> None:
    print(
        f"[{name}] status with 30 days stored (db {status['db_mb']:.0f} MB, document "
        f"{status['status_bytes']:,} B): p50 "
        f"{status['status_p50_ms']:.2f} ms, p99 {status['status_p99_ms']:.2f} ms "
        f"(goal < 50 ms); anchor JSON 404 p50 {status['anchor_p50_ms']:.2f} ms, p99 "
        f"{status['anchor_p99_ms']:.2f} ms, ratio p99 "
        f"{status['status_p99_ms'] / status['anchor_p99_ms']:.1f}; /monitor/runs p99 "
        f"{status['runs_p99_ms']:.2f} ms; model quality: {status['model_quality']}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--per-file", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=1, help="alternate the variants N times")
    parser.add_argument(
        "--model-quality",
        action="store_true",
        help="run each part without and with analyzer.model_quality (labels posted); ratios",
    )
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {os.getloadavg()}"
    )
    work = Path(tempfile.mkdtemp(prefix="modelmon-bench-"))
    try:
        baseline = write_baseline(work / "baseline")
        variants: list[tuple[str, Any]] = [("model quality off", None)]
        if args.model_quality:
            quality = write_quality_baseline(work / "baseline" / "model_quality")
            variants.append(("model quality on", quality))
        ingests: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in variants}
        for name, quality in variants * args.repeat:
            (work / "ingest").mkdir()
            ingest = await bench_ingest(
                work / "ingest", args.records, args.per_file, baseline, quality
            )
            _print_ingest(ingest, name)
            ingests[name].append(ingest)
            shutil.rmtree(work / "ingest")
        statuses: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in variants}
        hour = 10_000 if args.model_quality else 0
        for name, quality in variants * args.repeat:
            (work / "status").mkdir()
            status = await bench_status(work / "status", args.requests, baseline, quality, hour)
            _print_status(status, name)
            statuses[name].append(status)
            shutil.rmtree(work / "status")
        if args.model_quality:

            def best(runs: list[dict[str, Any]], key: str, low: bool = False) -> float:
                values = [run[key] for run in runs]
                return min(values) if low else max(values)

            off, s_off = ingests[variants[0][0]], statuses[variants[0][0]]

            def ratio(on: list[dict[str, Any]], off: list[dict[str, Any]], key: str) -> str:
                low = not key.endswith("per_s")  # the best run: fastest, smallest
                return f"{best(on, key, low) / best(off, key, low):.2f}"

            for name, _ in variants[1:]:
                on, s_on = ingests[name], statuses[name]
                joined_ratio = best(on, "joined_per_s") / best(off, "records_per_s")
                print(
                    f"[{name}] with/without model quality, same run (best of {args.repeat}): "
                    f"ingest records/s {ratio(on, off, 'records_per_s')}, predictions joined "
                    f"(on) against records ingested (off) {joined_ratio:.2f}, CPU per record "
                    f"{ratio(on, off, 'cpu_us_per_record')}, until evaluated "
                    f"{ratio(on, off, 'evaluated_s')}, final RSS {ratio(on, off, 'final_rss_mb')}, "
                    f"status p50 {ratio(s_on, s_off, 'status_p50_ms')}, status p99 "
                    f"{ratio(s_on, s_off, 'status_p99_ms')}; load average now {os.getloadavg()}"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
