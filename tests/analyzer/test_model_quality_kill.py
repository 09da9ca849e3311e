"""``kill -9`` of a real ``modelmon analyzer`` in the middle of a ground-truth folder ingest,
then a restart: every label stored once, every duplicate and bad line counted once."""

from __future__ import annotations

import asyncio
import signal
import socket
import sqlite3
import sys
from pathlib import Path

import orjson
import yaml

from tests.analyzer.service_helpers import ENDPOINT, FEATURES, T0, VARIANT

FILES, PER_FILE, REPEATS = 300, 1000, 5
BAD_INDEX = 10  # line 11 of the first and of the last file is not JSON
FOLDER = T0.strftime("%Y/%m/%d/%H")


def _label(key: str) -> bytes:
    return orjson.dumps(
        {"groundTruthData": {"data": "1", "encoding": "CSV"}, "eventMetadata": {"eventId": key}}
    )


def _write_folder(root: Path) -> list[Path]:
    """FILES files of PER_FILE lines; each file after the first repeats REPEATS keys of the
    one before (duplicates), and the first and last hold one bad line."""
    folder = root / FOLDER
    folder.mkdir(parents=True)
    paths = []
    for k in range(FILES):
        lines = [_label(f"k{k}-{i}") for i in range(PER_FILE)]
        if k:
            lines[:REPEATS] = [_label(f"k{k - 1}-{500 + i}") for i in range(REPEATS)]
        if k in (0, FILES - 1):
            lines[BAD_INDEX] = b"{not json"
        path = folder / f"{k:04d}.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        paths.append(path)
    return paths


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _read_until(proc: asyncio.subprocess.Process, needle: str, lines: list[str]) -> None:
    """Read the service's log until a line holds ``needle``."""
    assert proc.stderr is not None
    while True:
        line = (await proc.stderr.readline()).decode()
        assert line, f"the analyzer exited early:\n{''.join(lines)}"
        lines.append(line)
        if needle in line:
            return


def _state(db: Path) -> tuple[int, int, int, dict[str, int]]:
    """(labels stored, files begun, lines read, model-quality counters)."""
    with sqlite3.connect(db) as conn:
        labels = conn.execute("SELECT count(*) FROM mq_labels").fetchone()[0]
        files, lines = conn.execute(
            "SELECT count(*), COALESCE(SUM(lines), 0) FROM mq_gt_files"
        ).fetchone()
        counters = dict(
            conn.execute("SELECT name, value FROM counters WHERE name LIKE 'model_quality:%'")
        )
    return int(labels), int(files), int(lines), counters


async def test_kill_9_mid_ground_truth_ingest_then_restart_counts_exactly(tmp_path: Path) -> None:
    paths = _write_folder(tmp_path / "ground_truth")
    section = {
        "listen": f"127.0.0.1:{_free_port()}",
        "db": "m.db",
        "schedule_interval_s": 3600,
        "payload": {"input": {"format": "csv", "columns": FEATURES}},
        "baseline": {"statistics": "none.json", "constraints": "none.json"},
        "model_quality": {
            "problem_type": "BinaryClassification",
            "probability_attribute": "0",
            "ground_truth": {"dir": "ground_truth"},
        },
    }
    config_path = tmp_path / "modelmon.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "endpoint": {"name": ENDPOINT, "variant": VARIANT},
                "proxy": {"upstream": "http://127.0.0.1:9"},
                "capture": {"dir": "capture"},
                "analyzer": section,
            }
        )
    )
    command = [sys.executable, "-m", "modelmon", "analyzer", "--config", str(config_path)]
    first_bad = f"ground truth {FOLDER}/0000.jsonl line {BAD_INDEX + 1}"
    last_bad = f"ground truth {FOLDER}/{FILES - 1:04d}.jsonl line {BAD_INDEX + 1}"
    lines: list[str] = []

    proc = await asyncio.create_subprocess_exec(*command, stderr=asyncio.subprocess.PIPE)
    try:
        await asyncio.wait_for(_read_until(proc, first_bad, lines), 60)
        proc.send_signal(signal.SIGKILL)  # the first file is committed, the rest under way
        await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == -signal.SIGKILL, "".join(lines)
    labels, files, read, counters = _state(tmp_path / "m.db")
    assert 1 <= files < FILES, "the ingest finished before the kill"
    assert labels == counters["model_quality:labels"]  # what was committed is consistent
    assert read == files * PER_FILE  # whole files: each is one chunk here

    lines.clear()
    proc = await asyncio.create_subprocess_exec(*command, stderr=asyncio.subprocess.PIPE)
    try:
        await asyncio.wait_for(_read_until(proc, last_bad, lines), 60)
        proc.send_signal(signal.SIGTERM)
        assert proc.stderr is not None
        await asyncio.wait_for(proc.stderr.read(), 30)
        await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, "".join(lines)
    labels, files, read, counters = _state(tmp_path / "m.db")
    duplicates = (FILES - 1) * REPEATS
    assert (files, read) == (FILES, FILES * PER_FILE)
    assert labels == FILES * PER_FILE - duplicates - 2
    assert counters["model_quality:labels"] == labels
    assert counters["model_quality:label_duplicates"] == duplicates
    assert counters["model_quality:ground_truth_bad_lines"] == 2
    assert counters["model_quality:ground_truth_files"] == FILES
    with sqlite3.connect(tmp_path / "m.db") as conn:
        offsets = dict(conn.execute("SELECT path, offset FROM mq_gt_files"))
    assert offsets == {f"{FOLDER}/{p.name}": p.stat().st_size for p in paths}
