"""Peak RSS of ``modelmon baseline --model-quality`` from a capture folder, by rows and budget.

    python bench/model_quality_baseline_memory.py [--rows 100000 1000000 3000000]
        [--memory-rows 1000000000000 500000] [--workdir /tmp/mqjoin] [--out /tmp/mqbaseline]
        [--table]

``--table``: from a CSV table instead (``score,label``, the same pairs, written once beside
the folders), the path of a baseline from a validation set.

The capture and ground-truth folders are ``bench/model_quality_join.py``'s (staged there
once, in ``--workdir``, and only read here): N capture records (the CSV output is the score)
in files of 100,000, N ground-truth records in shuffled order. For each size and each
``analyzer.model_quality.batch_memory_rows`` (10¹²: the join in memory; the default
500,000: past it, on disk, the calibrator fitted on a sample of 250,000 pairs), the real
command in a fresh process: wall seconds, CPU seconds (user + system, the map's workers
included), the peak RSS of the whole process (``/usr/bin/time``) and of our process alone
apart from its map workers, and the slope of ours between sizes (what grows with the rows,
MiB per million rows). Then, per size: whether ``constraints.json`` and the metrics of
``statistics.json`` are the same bytes whatever the budget (md5), and how far the sampled
calibrator is from the one fitted on every pair (the mean and largest absolute difference
of the calibrated probability over the window's scores; the accuracy each estimates on them).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_quality_join import CPU_S, OURS_CLI, make_batch, timed

CONFIG = """\
proxy: {{upstream: 'http://127.0.0.1:9'}}
analyzer:
  payload: {{output: {{format: csv, columns: [score]}}}}
  model_quality:
    problem_type: BinaryClassification
    probability_attribute: score
    ground_truth_attribute: label
    batch_memory_rows: {budget}
"""


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()[:12]


def table_of(folder: Path) -> Path:
    """The folder's pairs as a CSV table ``score,label`` (written once)."""
    import numpy as np

    table = folder / "table.csv"
    if not table.exists():
        arrays = np.load(folder / "arrays.npz")
        scores, labels = arrays["score"].tolist(), arrays["label"].tolist()
        with table.open("w") as out:
            out.write("score,label\n")
            out.writelines(f"{s!r},{int(y)}\n" for s, y in zip(scores, labels, strict=True))
    return table


def run_one(folder: Path, out: Path, budget: int, table: bool = False) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    config = out / "modelmon.yaml"
    config.write_text(CONFIG.format(budget=budget))
    data = ["--data", str(table_of(folder))] if table else [
        "--data", str(folder / "capture"), "--ground-truth", str(folder / "gt")]  # fmt: skip
    command = [sys.executable, "-c", OURS_CLI, "baseline", "--config", str(config),
               "--model-quality", *data, "--out", str(out / "baseline")]  # fmt: skip
    seconds, whole_mb, stdout = timed(command, out)
    own, workers = (float(v) for v in stdout.strip().splitlines()[-1].split()[1:])
    statistics = json.loads((out / "baseline" / "statistics.json").read_text())
    calibration = statistics.pop("modelmon")["calibration"]
    return {
        "seconds": seconds,
        "cpu": CPU_S[" ".join(command[:3])],
        "whole_mb": whole_mb,
        "own_mb": own,
        "workers_mb": workers,
        "on_disk": "joined on disk" in stdout,
        "metrics_md5": _md5(json.dumps(statistics, sort_keys=True).encode()),
        "constraints_md5": _md5((out / "baseline" / "constraints.json").read_bytes()),
        "calibration": calibration,
    }


def compare_calibrations(folder: Path, runs: dict[int, dict[str, Any]]) -> None:
    import numpy as np

    from analyzer.monitors.model_quality.estimate import Calibrator, estimate_binary

    scores = np.load(folder / "arrays.npz")["score"]
    predicted = (scores >= 0.5).astype(np.int64)
    full_budget = max(runs)
    full = Calibrator.from_json(runs[full_budget]["calibration"])
    full_q = full(scores)
    full_accuracy = estimate_binary(scores, predicted, full)["accuracy"]
    for budget, run in sorted(runs.items()):
        if budget == full_budget:
            continue
        calibration = run["calibration"]
        sampled = Calibrator.from_json(calibration)
        difference = np.abs(sampled(scores) - full_q)
        accuracy = estimate_binary(scores, predicted, sampled)["accuracy"]
        print(
            f"    budget {budget:,}: calibrator of {calibration['rows']:,} pairs"
            f" (sampled from {calibration.get('sampled_from', calibration['rows']):,}),"
            f" trusted {calibration['trusted']}; |q − q_full| mean {difference.mean():.5f},"
            f" max {difference.max():.5f}; estimated accuracy {accuracy.value:.5f}"
            f" [{accuracy.low:.5f}, {accuracy.high:.5f}] vs the full fit's"
            f" {full_accuracy.value:.5f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000, 3_000_000])
    parser.add_argument("--memory-rows", type=int, nargs="+",
                        default=[1_000_000_000_000, 500_000])  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mqjoin"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/mqbaseline"))
    parser.add_argument("--table", action="store_true", help="from a CSV table of the pairs")
    args = parser.parse_args()
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)
    print(f"{'rows':>9} {'budget':>17} {'disk':>5} {'wall s':>7} {'CPU s':>7} {'RSS MB':>7}"
          f" {'ours MB':>8} {'workers':>8} {'metrics md5':>13} {'constraints':>13}")  # fmt: skip
    own: dict[int, dict[int, float]] = {budget: {} for budget in args.memory_rows}
    for n in args.rows:
        folder = args.workdir / f"batch-{n}"
        make_batch(n, folder)
        runs = {}
        for budget in args.memory_rows:
            run = run_one(folder, args.out / f"rows-{n}-budget-{budget}", budget, args.table)
            runs[budget] = run
            own[budget][n] = run["own_mb"]
            print(f"{n:>9} {budget:>17,} {'yes' if run['on_disk'] else 'no':>5}"
                  f" {run['seconds']:>7.2f} {run['cpu']:>7.2f} {run['whole_mb']:>7.0f}"
                  f" {run['own_mb']:>8.0f} {run['workers_mb']:>8.0f}"
                  f" {run['metrics_md5']:>13} {run['constraints_md5']:>13}",
                  flush=True)  # fmt: skip
        same = len({(r["metrics_md5"], r["constraints_md5"]) for r in runs.values()}) == 1
        print(f"    metrics and constraints across the budgets: "
              f"{'the same' if same else 'DIFFERENT'}", flush=True)  # fmt: skip
        compare_calibrations(folder, runs)
    for budget, peaks in own.items():
        for low, high in itertools.pairwise(sorted(peaks)):
            slope = (peaks[high] - peaks[low]) / (high - low) * 1e6
            print(f"our process, budget {budget:,}, {low:,} → {high:,} rows:"
                  f" {slope:.1f} MiB per million rows", flush=True)  # fmt: skip
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)


if __name__ == "__main__":
    main()
