"""Whole-process speed and peak memory of ``modelmon analyze --once`` against Evidently.

    python bench/analyze_speed.py --rows 100000 [--rows 1000000] [--format csv|json]

Writes N capture records (one row each: 20 numeric + 5 categorical features, CSV or JSON
payloads) in 10,000-record files, a baseline from another 100,000 rows, and the same rows as a
CSV table. Then times, as whole processes in the same run: ``modelmon analyze --once`` over
the capture files, and Evidently 0.7's default DataDriftPreset report on the rows loaded from
CSV (in /work/evidently-venv, when ready). Peak RSS from ``/usr/bin/time -v``.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import yaml

from analyzer.profile import profile_rows
from analyzer.statistics_format import statistics_json, suggest_constraints
from modelmon.capture_record import CaptureSide, build_record

NUMERIC = [f"n{i}" for i in range(20)]
CATEGORICAL = [f"c{i}" for i in range(5)]
COLUMNS = NUMERIC + CATEGORICAL
EVIDENTLY_PY = Path("/work/evidently-venv/bin/python")
EVIDENTLY_READY = Path("/work/evidently-venv/.ready")
PER_FILE = 10_000
HOUR = datetime(2026, 11, 27, 7, tzinfo=UTC)

EVIDENTLY = r"""
import sys, pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
ref, cur = pd.read_csv(sys.argv[1]), pd.read_csv(sys.argv[2])
snap = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
print(snap.dict()["metrics"][0]["value"])
"""


def table(rng: np.random.Generator, n: int, shift: float) -> dict[str, list[str]]:
    cols: dict[str, list[str]] = {}
    for i, name in enumerate(NUMERIC):
        values = rng.normal(100.0 * (i + 1) + shift * (i + 1), 10.0 * (i + 1), size=n)
        cols[name] = [f"{v:.4f}" for v in values]
    for i, name in enumerate(CATEGORICAL):
        labels = np.array([f"v{j}" for j in range(4 + 2 * i)])
        cols[name] = list(labels[rng.integers(0, len(labels), size=n)])
    return cols


def write_inputs(tmp: Path, n: int, fmt: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = table(rng, 100_000, 0.0)
    profile = profile_rows(base)
    (tmp / "base").mkdir()
    (tmp / "base" / "statistics.json").write_text(json.dumps(statistics_json(profile)))
    (tmp / "base" / "constraints.json").write_text(json.dumps(suggest_constraints(profile)))
    for name, cols in (("reference.csv", base),):
        with (tmp / name).open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(COLUMNS)
            w.writerows(zip(*(cols[c] for c in COLUMNS), strict=True))
    folder = tmp / "capture" / "ep" / "AllTraffic" / HOUR.strftime("%Y/%m/%d/%H")
    folder.mkdir(parents=True)
    with (tmp / "current.csv").open("w", newline="") as table_fh:
        writer = csv.writer(table_fh)
        writer.writerow(COLUMNS)
        for start in range(0, n, PER_FILE):
            cols = table(rng, min(PER_FILE, n - start), 3.0)
            rows = list(zip(*(cols[c] for c in COLUMNS), strict=True))
            writer.writerows(rows)
            lines = []
            for i, row in enumerate(rows):
                if fmt == "csv":
                    side = CaptureSide("text/csv", ",".join(row), "CSV")
                else:
                    body = {"instances": [dict(zip(COLUMNS, _typed(row), strict=True))]}
                    side = CaptureSide("application/json", json.dumps(body), "JSON")
                lines.append(
                    build_record(
                        event_id=str(uuid.uuid4()),
                        inference_time=HOUR + timedelta(milliseconds=start + i),
                        request=side,
                        response=CaptureSide("text/csv", "0.5", "CSV"),
                    )
                )
            (folder / f"{start // PER_FILE:06d}-{uuid.uuid4()}.jsonl").write_bytes(b"".join(lines))
    payload = {"format": fmt, "columns": COLUMNS if fmt == "csv" else []}
    config = {
        "endpoint": {"name": "ep"},
        "proxy": {"upstream": "http://127.0.0.1:9"},
        "capture": {"dir": "capture"},
        "analyzer": {
            "reports_dir": "reports",
            "baseline": {
                "statistics": "base/statistics.json",
                "constraints": "base/constraints.json",
            },
            "payload": {"input": payload, "output": {"format": "csv", "columns": ["score"]}},
        },
    }
    (tmp / "modelmon.yaml").write_text(yaml.safe_dump(config))


def _typed(row: tuple[str, ...]) -> list[object]:
    return [float(v) for v in row[: len(NUMERIC)]] + list(row[len(NUMERIC) :])


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, stdout) of a whole process."""
    t = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    took = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed: {proc.stderr[-2000:]}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    return took, (int(rss.group(1)) / 1024 if rss else float("nan")), proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, action="append")
    ap.add_argument("--format", choices=["csv", "json"], default="csv")
    ap.add_argument("--no-evidently", action="store_true")
    args = ap.parse_args()
    print(
        f"{'rows':>9} {'format':>6} {'modelmon s':>10} {'MB':>6} {'evidently s':>11} {'MB':>6} "
        f"{'speed-up':>8}"
    )
    for n in args.rows or [100_000]:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            write_inputs(tmp, n, args.format, seed=n)
            ours, ours_mb, out = timed(
                [
                    sys.executable,
                    "-m",
                    "modelmon",
                    "analyze",
                    "--once",
                    "--config",
                    str(tmp / "modelmon.yaml"),
                ]
            )
            assert f"{n:,} rows" in out, out[-2000:]
            ev, ev_mb = float("nan"), float("nan")
            if EVIDENTLY_READY.exists() and not args.no_evidently:
                ev, ev_mb, _ = timed(
                    [
                        str(EVIDENTLY_PY),
                        "-c",
                        EVIDENTLY,
                        str(tmp / "reference.csv"),
                        str(tmp / "current.csv"),
                    ]
                )
            print(
                f"{n:>9,} {args.format:>6} {ours:>10.1f} {ours_mb:>6.0f} {ev:>11.1f} "
                f"{ev_mb:>6.0f} {ev / ours:>7.1f}×",
                flush=True,
            )


if __name__ == "__main__":
    main()
