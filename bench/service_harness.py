"""The running analyzer as benchmarks drive it: SageMaker capture records of
``current_nodrift.csv`` rows (with their labels), capture files staged by hour, a config
file, a ``modelmon analyzer`` subprocess on a free port, labels posted, and the CPU time of
the service. Used by ``bench/analyzer_service.py`` and ``bench/model_quality_steady.py``.
"""

from __future__ import annotations

import asyncio
import csv
import signal
import socket
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import yaml

from modelmon.capture_record import CaptureSide, build_record

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.analyzer.service_helpers import FEATURES, read_rows  # noqa: E402

__all__ = [
    "ENDPOINT",
    "PAYLOAD",
    "ROOT",
    "VARIANT",
    "capture_lines",
    "cpu_seconds",
    "free_port",
    "labelled_lines",
    "post_labels",
    "service_config",
    "stage_files",
    "start_analyzer",
    "stop_analyzer",
]

ENDPOINT, VARIANT = "bench", "AllTraffic"
PAYLOAD = {
    "input": {"format": "csv", "columns": FEATURES},
    "output": {"format": "csv", "columns": ["score"]},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def capture_lines(n: int, end: datetime, span_s: float = 5400) -> list[bytes]:
    return labelled_lines(n, end, span_s)[0]


def labelled_lines(n: int, end: datetime, span_s: float = 5400) -> tuple[list[bytes], list[bytes]]:
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


async def post_labels(http: httpx.AsyncClient, url: str, truth: list[bytes]) -> float:
    """Every label by ``POST /monitor/ground-truth`` (bodies of 50,000 lines); seconds."""
    started = time.perf_counter()
    for first in range(0, len(truth), 50_000):
        body = b"\n".join(truth[first : first + 50_000]) + b"\n"
        response = await http.post(f"{url}/monitor/ground-truth", content=body)
        assert response.status_code == 200, response.text
    return time.perf_counter() - started


def stage_files(folder: Path, lines: list[bytes], per_file: int, moment: datetime) -> int:
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


def service_config(
    work: Path,
    port: int,
    baseline: tuple[Path, Path],
    interval: float,
    quality: tuple[Path, Path] | None = None,
    ingest_process: str | None = None,
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
    if ingest_process is not None:  # else the default (auto)
        doc["analyzer"]["ingest_process"] = ingest_process
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


async def start_analyzer(config: Path, port: int) -> asyncio.subprocess.Process:
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


async def stop_analyzer(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGTERM)
    await proc.wait()


def cpu_seconds(process: psutil.Process) -> float:
    """CPU seconds (user + system) of the service and its child processes so far."""
    total = 0.0
    for one in [process, *process.children(recursive=True)]:
        try:
            times = one.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total
