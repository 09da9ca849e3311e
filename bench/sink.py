"""Throughput of the capture sink (issue 2): what ``submit()`` costs on the request path, and
how many records/s and bytes/s the writer turns into sealed files.

    python bench/sink.py [--records 200000] [--body-bytes 300]

Anchors measured in the same run, on the same records:

- ``to_line``: encoding alone (orjson, what the writer must pay per record at least), printed
  for the plain ``build_record`` path (``to_line_reference``: per-record content-type sets,
  ``datetime`` + ``strftime``) and for the writer's :class:`LineEncoder`, with their ratio;
- ``write``: one ``os.write`` per 1,000 pre-encoded lines to a plain file (the I/O floor).

Cases: ``submit()`` alone (records queued, writer not running: the request-path cost);
the writer end to end (submit → batches → .part → sealed .jsonl) with capture defaults,
the producer offering records as fast as the queue accepts them (sustained rate); the
same with ``compress: true``; the same with redaction of one JSON path and one CSV column.
Everything runs in one process on the event loop, as in the proxy; CPU is process time (all
threads) per record.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from capture_proxy.exchange import Exchange, LineEncoder, to_line, to_line_reference
from capture_proxy.metrics import ProxyMetrics
from capture_proxy.sink import CaptureSink
from modelmon.config import CaptureConfig, parse_config

CHUNK = 1_000


def _exchanges(n: int, body_bytes: int, start: float) -> list[Exchange]:
    pad = "z" * max(0, body_bytes - 60)
    return [
        Exchange(
            event_id=str(uuid.uuid4()),
            inference_time=start + i * 1e-4,
            inference_id=f"order-{i}",
            custom_attributes="tenant=7",
            request_body=(
                f'{{"user": {{"ssn": "123-45-{i:04d}"}}, "features": [1.5, 2, 3], "pad": "{pad}"}}'
            ).encode(),
            request_content_type="application/json",
            request_truncated=False,
            response_body=f"0.{i % 997},label-{i % 3}".encode(),
            response_content_type="text/csv",
            response_truncated=False,
            status=200,
            latency_ms=3.2,
        )
        for i in range(n)
    ]


def _anchor_to_line(exchanges: list[Exchange]) -> tuple[float, int]:
    capture = CaptureConfig()
    t0 = time.perf_counter()
    total = sum(len(to_line(e, capture)) for e in exchanges)
    return time.perf_counter() - t0, total


def _encoders(exchanges: list[Exchange], rounds: int = 3) -> tuple[float, float]:
    """Best-of-``rounds`` seconds per record: the reference path, then :class:`LineEncoder`."""
    capture = CaptureConfig()
    best_ref = best_fast = float("inf")
    for _ in range(rounds):  # interleaved, so a burst of load elsewhere hits both
        t0 = time.perf_counter()
        for e in exchanges:
            to_line_reference(e, capture)
        best_ref = min(best_ref, time.perf_counter() - t0)
        encode = LineEncoder(capture)
        t0 = time.perf_counter()
        for e in exchanges:
            encode(e)
        best_fast = min(best_fast, time.perf_counter() - t0)
    return best_ref / len(exchanges), best_fast / len(exchanges)


def _anchor_write(exchanges: list[Exchange], directory: Path) -> float:
    capture = CaptureConfig()
    lines = [to_line(e, capture) for e in exchanges]
    fd = os.open(directory / "anchor.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    t0 = time.perf_counter()
    try:
        for i in range(0, len(lines), CHUNK):
            os.write(fd, b"".join(lines[i : i + CHUNK]))
    finally:
        os.close(fd)
    return time.perf_counter() - t0


async def _submit_only(exchanges: list[Exchange], directory: Path) -> float:
    """Seconds per submit() with the writer not running (the request-path cost)."""
    config = parse_config(
        {
            "proxy": {"upstream": "http://127.0.0.1:9"},
            "capture": {"dir": str(directory), "queue_max_records": len(exchanges)},
        }
    )
    sink = CaptureSink(config, ProxyMetrics())
    submit = sink.submit
    t0 = time.perf_counter()
    for e in exchanges:
        submit(e)
    elapsed = time.perf_counter() - t0
    await sink.close()  # never started: the queued records are counted as shutdown drops
    return elapsed / len(exchanges)


def _sealed(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.name.endswith((".jsonl", ".jsonl.gz"))]


async def _end_to_end(
    exchanges: list[Exchange], directory: Path, **capture: Any
) -> dict[str, float]:
    config = parse_config(
        {
            "proxy": {"upstream": "http://127.0.0.1:9"},
            "capture": {"dir": str(directory), **capture},
        }
    )
    metrics = ProxyMetrics()
    sink = CaptureSink(config, metrics)
    await sink.start()
    cpu0, t0 = time.process_time(), time.perf_counter()
    limit = config.capture.queue_max_records
    for i in range(0, len(exchanges), CHUNK):
        # Sustained throughput: offer load as fast as the writer drains it (no drops).
        if sink.queue_depth + CHUNK > limit:
            await sink.flush()
        elif i % (4 * CHUNK) == 0:
            await asyncio.sleep(0)  # yield to the writer, as a busy proxy's loop would
        for e in exchanges[i : i + CHUNK]:
            sink.submit(e)
    await sink.close()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    files = _sealed(directory)
    dropped = sum(metrics.drop_counts.values())
    return {
        "wall": wall,
        "cpu": cpu,
        "written": len(exchanges) - dropped,
        "dropped": dropped,
        "raw_bytes": metrics.bytes_written._value.get(),
        "disk_bytes": sum(p.stat().st_size for p in files),
        "files": len(files),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--body-bytes", type=int, default=300)
    args = parser.parse_args()
    n = args.records
    exchanges = _exchanges(n, args.body_bytes, time.time())
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, {n} records")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        encode_s, encoded_bytes = _anchor_to_line(exchanges)
        write_s = _anchor_write(exchanges, root)
        print(
            f"anchor to_line : {n / encode_s:>10,.0f} rec/s  {encode_s / n * 1e6:6.2f} µs/rec"
            f"  ({encoded_bytes / n:.0f} B/line)"
        )
        print(f"anchor os.write: {n / write_s:>10,.0f} rec/s  {write_s / n * 1e6:6.2f} µs/rec")
        reference, fast = _encoders(exchanges[:50_000])
        print(
            f"encode reference (build_record): {reference * 1e6:6.2f} µs/rec"
            f"   LineEncoder: {fast * 1e6:6.2f} µs/rec   = {fast / reference:.2f}× reference"
        )
        per_submit = await _submit_only(exchanges, root / "submit")
        print(
            f"submit() only  : {per_submit * 1e6:6.3f} µs/rec"
            f"  = {per_submit / (encode_s / n):.2f}× to_line"
        )
        cases: list[tuple[str, dict[str, Any]]] = [
            ("writer plain", {"queue_max_records": 10_000}),
            ("writer gzip", {"queue_max_records": 10_000, "compress": True}),
            (
                "writer redact",
                {
                    "queue_max_records": 10_000,
                    "redact": {"json_paths": ["user.ssn"], "csv_columns": [1]},
                },
            ),
        ]
        for name, capture in cases:
            directory = root / name.replace(" ", "-")
            r = await _end_to_end(exchanges, directory, **capture)
            shutil.rmtree(directory)
            rate = r["written"] / r["wall"]
            print(
                f"{name:<15}: {rate:>10,.0f} rec/s  {r['raw_bytes'] / r['wall'] / 1e6:7.1f} MB/s"
                f"  cpu {r['cpu'] / n * 1e6:6.2f} µs/rec = {r['cpu'] / encode_s:.2f}× to_line"
                f"  dropped {r['dropped']:.0f}  files {r['files']:.0f}"
                f"  on disk {r['disk_bytes'] / max(r['raw_bytes'], 1):.2f}× raw"
            )


if __name__ == "__main__":
    asyncio.run(main())
