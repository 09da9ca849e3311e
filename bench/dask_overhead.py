"""``modelmon analyze --once`` on the local-processes backend vs a Dask ``LocalCluster``.

Run: ``python bench/dask_overhead.py [--records 1000000] [--repeat 2] [--workdir DIR]``

Generates a capture tree (``analyze_data``: 20 numeric + 5 categorical features, CSV payloads,
50,000 records per file) and a 100,000-row reference baseline, then runs whole processes, in
interleaved rounds: the default backend (local processes, one per core), ``--dask-workers 2``
(a ``LocalCluster`` of 2 processes started and stopped by the command) and, with
``--scheduler``, an already running scheduler. For each: wall seconds, peak RSS of the whole
process tree (the command and every worker, summed, sampled every 0.1 s with psutil), the
largest single process's peak, and the 1-minute load average when it started. Ratios are to
the local backend's median of the same run. On one machine Dask can only add overhead (its
processes start, the scheduler ships tasks and results); this measures what a user pays to be
able to go past one machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

import analyze_data as data  # the bench folder is not a package


def run_sampled(command: list[str]) -> tuple[float, float, float, float]:
    """(wall s, peak tree RSS MB, peak single-process RSS MB, load average at start)."""
    load = os.getloadavg()[0]
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root = psutil.Process(proc.pid)
    tree_peak = single_peak = 0.0
    while proc.poll() is None:
        total = 0.0
        try:
            members = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            members = []
        for member in members:
            try:
                rss = member.memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                continue
            total += rss
            single_peak = max(single_peak, rss)
        tree_peak = max(tree_peak, total)
        time.sleep(0.1)
    wall = time.monotonic() - started
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(command)}\n{err.decode()}")
    return wall, tree_peak, single_peak, load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--scheduler", default=None, help="also run on this scheduler")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dask-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    try:
        capture = workdir / "capture"
        if not capture.exists():
            data.write_capture(capture, args.records, seed=2, payload="csv")
        config = workdir / "csv.yaml"
        config.write_text(data.config_yaml(workdir, capture, "csv"))
        reference = workdir / "reference.csv"
        if not reference.exists():
            data.write_csv(reference, 100_000, seed=1)
        base = [python, "-m", "modelmon"]
        subprocess.run(
            [*base, "baseline", "--config", str(config), "--data", str(reference)],
            check=True,
            capture_output=True,
        )
        analyze = [*base, "analyze", "--once", "--config", str(config)]
        jobs = {
            "local processes (default)": analyze,
            "--dask-workers 2 (LocalCluster)": [*analyze, "--dask-workers", "2"],
        }
        if args.scheduler:
            jobs[f"--scheduler {args.scheduler}"] = [*analyze, "--scheduler", args.scheduler]
        files = sum(1 for _ in capture.rglob("*.jsonl"))
        print(f"{args.records:,} records in {files} files; {os.cpu_count()} cores", flush=True)
        results: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in jobs}
        for round_ in range(args.repeat):
            for label, command in jobs.items():
                result = run_sampled(command)
                results[label].append(result)
                wall, tree, single, load = result
                print(
                    f"  round {round_ + 1} {label:<34} {wall:7.1f} s  tree {tree:7.0f} MB  "
                    f"largest {single:6.0f} MB  load {load:.1f}",
                    flush=True,
                )
        anchor = statistics.median(r[0] for r in results["local processes (default)"])
        print(f"\n{'backend':<34} {'wall s':>7} {'x local':>8} {'tree MB':>8} {'largest':>8}")
        for label, runs in results.items():
            wall = statistics.median(r[0] for r in runs)
            tree = statistics.median(r[1] for r in runs)
            single = statistics.median(r[2] for r in runs)
            print(f"{label:<34} {wall:7.1f} {wall / anchor:8.2f} {tree:8.0f} {single:8.0f}")
        print(f"load average now: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
