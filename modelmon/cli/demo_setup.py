"""The work folder of ``modelmon demo``: baseline table, baseline files, ports and config.

Everything the demo needs is written here from the package itself, so the demo runs with
nothing else installed or running. The config uses fast settings (100% sampling, files
sealed every 2 s, a check every 2 s over a 30 s window) so drift shows within seconds.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from modelmon.cli.demo_model import score_row
from modelmon.cli.demo_traffic import baseline_csv_text
from modelmon.config import ModelmonConfig, load_config

__all__ = [
    "DemoPorts",
    "free_ports",
    "run_baseline",
    "write_config",
    "write_quality_baseline",
]


@dataclass(frozen=True)
class DemoPorts:
    """Where each part of the demo listens on 127.0.0.1."""

    model: int
    proxy: int
    analyzer: int


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports the kernel had free just now (bound to port 0, then released)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


async def run_baseline(root: Path, timeout_s: float) -> tuple[Path, str]:
    """Write the shipped table to ``root/baseline.csv`` and run ``modelmon baseline`` on it.

    Returns the baseline folder and the command's output; raises ``RuntimeError`` with that
    output when the command fails or takes longer than ``timeout_s``.
    """
    table = root / "baseline.csv"
    table.write_text(baseline_csv_text(), encoding="utf-8")
    out = root / "baseline"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "modelmon",
        "baseline",
        "--data",
        str(table),
        "--format",
        "csv",
        "--out",
        str(out),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"modelmon baseline did not finish within {timeout_s:.0f}s") from None
    text = output.decode("utf-8", "replace").strip()
    missing = [n for n in ("statistics.json", "constraints.json") if not (out / n).is_file()]
    if proc.returncode != 0 or missing:
        raise RuntimeError(
            f"modelmon baseline failed (exit status {proc.returncode}"
            + (f", no {', '.join(missing)}" if missing else "")
            + ")"
            + (f":\n{text}" if text else "")
        )
    return out, text


def write_quality_baseline(root: Path, seed: int = 7) -> Path:
    """The model-quality baseline of the toy model on the shipped table, in ``root/baseline/
    model_quality``: each row's true label drawn (seeded) from the model's own probability,
    then SageMaker's statistics.json and suggested constraints.json, with the calibration the
    label-free estimate needs (as ``modelmon baseline --model-quality`` writes them)."""
    from analyzer.monitors.model_quality.documents import ProblemType, suggest_constraints
    from analyzer.monitors.model_quality.estimate import fit_calibrator
    from analyzer.monitors.model_quality.evaluate import evaluate_window

    rows = [line.split(",") for line in baseline_csv_text().splitlines()[1:] if line]
    scores = np.array([score_row(row) for row in rows], dtype=np.float64)
    labels = (np.random.default_rng(seed).random(scores.size) < scores).astype(np.int64)
    predicted = (scores >= 0.5).astype(np.int64)
    kind: ProblemType = "BinaryClassification"
    result = evaluate_window(
        kind,
        labels.tolist(),
        predicted.tolist(),
        scores,
        {},
        None,
        false_alarm_rate=0.01,
        min_labels=1,
    )
    statistics = result.statistics()
    statistics["modelmon"] = {"calibration": fit_calibrator(scores, labels).to_json()}
    out = root / "baseline" / "model_quality"
    out.mkdir(parents=True, exist_ok=True)
    (out / "statistics.json").write_text(json.dumps(statistics, indent=2), encoding="utf-8")
    constraints = suggest_constraints(kind, statistics)
    (out / "constraints.json").write_text(json.dumps(constraints, indent=2), encoding="utf-8")
    return out


def write_config(
    root: Path,
    ports: DemoPorts,
    columns: list[str],
    *,
    schedule_interval_s: float = 2,
    rotate_interval_s: float = 2,
) -> ModelmonConfig:
    """Write ``root/modelmon.yaml`` for the demo and load it back (so it is validated)."""
    document = {
        "endpoint": {"name": "demo-model", "variant": "AllTraffic"},
        "proxy": {
            "listen": f"127.0.0.1:{ports.proxy}",
            "upstream": f"http://127.0.0.1:{ports.model}",
            "upstream_timeout_s": 10,
        },
        "capture": {
            "dir": "./data/capture",
            "sampling_percentage": 100,
            "rotate_interval_s": rotate_interval_s,
            "flush_interval_s": 0.5,
        },
        "analyzer": {
            "listen": f"127.0.0.1:{ports.analyzer}",
            "db": "./data/modelmon.db",
            "reports_dir": "./data/reports",
            "schedule_interval_s": schedule_interval_s,
            "bucket_s": 10,
            "window_s": 30,
            "min_samples": 100,
            # α is per window; the demo judges a new 30 s window every 2 s
            "false_alarm_rate": 0.001,
            "baseline": {
                "statistics": "./baseline/statistics.json",
                "constraints": "./baseline/constraints.json",
            },
            "payload": {
                "input": {"format": "csv", "columns": columns},
                "output": {"format": "csv", "columns": ["score"]},
            },
            "alerts": {"webhooks": [{"url": f"http://127.0.0.1:{ports.model}/hook"}]},
            "model_quality": {
                "problem_type": "BinaryClassification",
                "probability_attribute": "0",  # the score; prediction = score >= 0.5
                "window_s": 30,
                "min_labels": 200,
                "label_delay_s": 60,
                "baseline": {
                    "statistics": "./baseline/model_quality/statistics.json",
                    "constraints": "./baseline/model_quality/constraints.json",
                },
            },
        },
    }
    path = root / "modelmon.yaml"
    header = "# written by `modelmon demo`: fast settings so drift shows within seconds\n"
    path.write_text(header + yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return load_config(path)
