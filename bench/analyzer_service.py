"""The running analyzer service (issue 4): ingest throughput, resident memory after 1,000,000
records, and status latency with 30 days of 5-minute buckets stored.

    python bench/analyzer_service.py [--records 1000000] [--per-file 10000] [--requests 2000]
                                     [--model-quality [--labels before|after|unsampled]]
                                     [--ingest-process auto|on|off]

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

``--labels`` (with ``--model-quality``) says when the labels come. ``before`` (the default,
as above) is the hardest case for the ingest: every chunk's keys are looked up among a
million waiting labels and every one is found and joined. ``after`` is the usual order (a
label comes late): no label waits while the capture files are read, so the ingest only
stores the predictions; the labels are posted once the status counts every record, and
"joined" is from the rename until the status counts every label matched; the service's
CPU while the labels are posted is left out of its CPU per record. ``unsampled``
posts first the labels of as many other requests (those the proxy did not keep, as when it
samples), so a million labels wait and every chunk's keys are looked up among them, none
found.

``--ingest-process`` sets the services' ``analyzer.ingest_process`` (where the chunks are
decoded: a process of its own, or the ingest thread; docs/analyzer.md); the RSS line then
also gives the service's child processes' memory and the decode process's counts.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

from analyzer.decoding.codecs import PayloadDecoder
from analyzer.monitors.data_quality.profile import DatasetProfile
from analyzer.store.database import Store, write_status_doc
from modelmon.config import PayloadConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from service_harness import (  # noqa: E402  (beside this script)
    ENDPOINT,
    PAYLOAD,
    capture_lines,
    cpu_seconds,
    free_port,
    labelled_lines,
    post_labels,
    service_config,
    stage_files,
    start_analyzer,
    stop_analyzer,
)

from tests.analyzer.service_helpers import FEATURES, write_baseline  # noqa: E402
from tests.analyzer.test_service_model_quality import write_quality_baseline  # noqa: E402


def anchor_profile(lines: list[bytes]) -> float:
    decoder = PayloadDecoder(PayloadConfig.model_validate(PAYLOAD))
    profile = DatasetProfile()
    started = time.perf_counter()
    for first in range(0, len(lines), 5000):
        profile.update(decoder.decode_lines(lines[first : first + 5000]))
    return len(lines) / (time.perf_counter() - started)


async def bench_ingest(
    work: Path,
    records: int,
    per_file: int,
    baseline: Any,
    quality: Any = None,
    labels: str = "before",
    ingest_process: str | None = None,
) -> dict[str, Any]:
    lines, truth = labelled_lines(records, datetime.now(UTC))
    if labels == "unsampled":  # a label for each of as many requests the proxy did not keep
        truth = labelled_lines(records, datetime.now(UTC))[1]
    anchor = anchor_profile(lines[: min(records, 100_000)])
    files = stage_files(work / "staging", lines, per_file, datetime.now(UTC))
    del lines
    port = free_port()
    config = service_config(work, port, baseline, 1.0, quality, ingest_process)
    proc = await start_analyzer(config, port)
    rss = psutil.Process(proc.pid)
    idle_mb = rss.memory_info().rss / 2**20
    helpers: list[float] = []
    (work / "capture").mkdir(exist_ok=True)
    samples: list[tuple[int, float]] = []
    labels_s = math.nan
    async with httpx.AsyncClient(timeout=300) as http:
        if quality is not None and labels != "after":
            labels_s = await post_labels(http, f"http://127.0.0.1:{port}", truth)
            del truth
        started = time.perf_counter()
        cpu_before = cpu_seconds(rss)
        os.rename(work / "staging" / ENDPOINT, work / "capture" / ENDPOINT)
        ticks = 0
        while True:
            doc = (await http.get(f"http://127.0.0.1:{port}/monitor/status")).json()
            samples.append((doc["ingest"]["records"], rss.memory_info().rss / 2**20))
            helpers.append(helpers_mb(rss))
            if doc["ingest"]["records"] >= records:
                ticks = doc["analyzer"]["ticks"]
                break
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - started
        joined = math.nan
        labels_cpu = 0.0
        if quality is not None and labels == "after":  # then every label, timed apart
            cpu_labels = cpu_seconds(rss)
            labels_s = await post_labels(http, f"http://127.0.0.1:{port}", truth)
            labels_cpu = cpu_seconds(rss) - cpu_labels  # the intake's, kept apart below
            del truth
        while quality is not None and labels != "unsampled":  # every prediction joined
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
        cpu_s = cpu_seconds(rss) - cpu_before - labels_cpu
    final_mb = rss.memory_info().rss / 2**20
    helpers_final = helpers_mb(rss)
    await stop_analyzer(proc)
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
        "helpers_peak_mb": max(helpers, default=0.0),
        "helpers_final_mb": helpers_final,
        "decode_process": status["analyzer"].get("decode_process"),
        "state": status["state"],
        "labels_per_s": records / labels_s,
        "labels": labels,
        "model_quality": _mq_summary(status),
        "status_bytes": len(orjson.dumps(status)),
    }


def helpers_mb(process: psutil.Process) -> float:
    """The resident memory of the service's child processes, summed (MB)."""
    total = 0
    for child in process.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


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
    lines = capture_lines(1000, datetime.fromtimestamp(now, UTC))
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
    lines, truth = labelled_lines(hour, now, 3000) if hour else ([], [])
    if lines:  # one hour of traffic and its labels (the folder), read at the first tick
        stage_files(work / "capture", lines, 10_000, now)
        folder = work / "ground-truth" / now.strftime("%Y/%m/%d/%H")
        folder.mkdir(parents=True)
        (folder / "labels.jsonl").write_bytes(b"".join(line + b"\n" for line in truth))
    port = free_port()
    proc = await start_analyzer(service_config(work, port, baseline, 3600.0, quality), port)
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
    await stop_analyzer(proc)

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


_LABELS = {
    "before": "each before its prediction",
    "after": "each after its prediction",
    "unsampled": "for other requests, first: every one waits",
}


def _print_ingest(ingest: dict[str, Any], name: str) -> None:
    labels = (
        ""
        if math.isnan(ingest["labels_per_s"])
        else (f"; labels ({_LABELS[ingest['labels']]}) posted at {ingest['labels_per_s']:,.0f}/s")
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
        f"{ingest['final_rss_mb']:.0f} MB (goal < 300 MB, flat); its child processes "
        f"(the decoding worker, the forkserver, the resource tracker: RSS summed, shared "
        f"pages counted in each) peak {ingest['helpers_peak_mb']:.0f} MB, after "
        f"{ingest['helpers_final_mb']:.0f} MB; decode process {ingest['decode_process']}"
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
    parser.add_argument(
        "--labels",
        choices=sorted(_LABELS),
        default="before",
        help="with --model-quality: every label posted before the capture files arrive (each "
        "prediction joins its waiting label), after them (joined as the labels come), or "
        "labels of other requests posted first (each chunk's keys looked up among a "
        "million waiting labels and none found, as when the proxy samples)",
    )
    parser.add_argument(
        "--ingest-process",
        choices=["auto", "on", "off"],
        help="the services' analyzer.ingest_process (default: the config's default, auto)",
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
                work / "ingest", args.records, args.per_file, baseline, quality, args.labels,
                args.ingest_process,
            )  # fmt: skip
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
                joined = (
                    ""  # (no label of theirs: none joined)
                    if math.isnan(joined_ratio)
                    else f"predictions joined (on) against records ingested (off) "
                    f"{joined_ratio:.2f}, "
                )
                print(
                    f"[{name}] with/without model quality, same run (best of {args.repeat}): "
                    f"ingest records/s {ratio(on, off, 'records_per_s')}, {joined}CPU per record "
                    f"{ratio(on, off, 'cpu_us_per_record')}, until evaluated "
                    f"{ratio(on, off, 'evaluated_s')}, final RSS {ratio(on, off, 'final_rss_mb')}, "
                    f"status p50 {ratio(s_on, s_off, 'status_p50_ms')}, status p99 "
                    f"{ratio(s_on, s_off, 'status_p99_ms')}; load average now {os.getloadavg()}"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
