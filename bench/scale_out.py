"""Scaling curve of ``modelmon analyze --once`` over many capture files, on every backend.

Run: ``python bench/scale_out.py --workdir DIR [--records 10000000] [--sizes 1000000 10000000]
[--repeat 2] [--anchors evidently whylogs] [--keep]``; small first: ``--records 200000``.

Generates ``--distinct-records`` (default ``--records``) capture records once
(``analyze_data``: 20 numeric + 5 categorical features, CSV payloads, ``--file-records``
50,000 a file, written by ``--gen-procs`` processes with seeds 100, 101, …) and a
100,000-row reference baseline, and reuses them when the workdir already holds them. Each
size of the curve is a capture tree of hard links to the first files, the generated files
again from the first when a size is larger than what was generated (the analyzer keeps no
state between files, so a repeated file costs what a new one does; it is then read from the
page cache). ``--backends`` with no value runs only the anchors.

Backends, interleaved within each round (the order rotates from round to round), whole
processes: in-process (``InProcess()`` through the API: no CLI option selects it), local
processes (the default), ``--dask-workers 1`` and ``--dask-workers 2`` (a ``LocalCluster``
started and stopped by the command), and ``--scheduler`` on a cluster this bench starts
before the rounds (``dask scheduler`` + ``dask worker --nworkers N --nthreads 1`` on
127.0.0.1), so that the cluster's start-up is outside the timing.

Per run: wall seconds, CPU seconds of the whole tree (the command, its workers, the
pre-started cluster's processes), peak RSS of the tree (summed, psutil every 0.1 s), of the
command and of the largest worker process, and the load average. Per backend: medians, the
ratio to local processes of the same run, records per second per core and CPU µs per record.

Per-task overhead: the same ``--overhead-records`` rows as files of ``--overhead-file-records``
records (many small tasks) against files of ``--file-records`` (few big ones), on every
backend: (wall(small files) − wall(big files)) / (extra tasks).

Anchors (``--anchors``): Evidently's ``DataDriftPreset`` (``bench/evidently_drift.py``) and a
whylogs profile and drift (``bench/whylogs_profile.py``), each in its own venv, on the same
rows as one CSV, against the same 100,000-row reference, each beside a local-processes run of
the same size; capped at ``--cap-s`` seconds and ``--cap-mb`` MB of tree RSS (killed, and said).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import analyze_data as data  # the bench folder is not a package
from scale_runs import PreStartedCluster, Run, run_sampled

BENCH = Path(__file__).resolve().parent
SEED0 = 100
HOUR = f"{data.START:%Y/%m/%d/%H}"
IN_PROCESS = (
    "import sys; from modelmon.config import load_config; "
    "from analyzer.ingest.batch import run_analyze_once; "
    "from analyzer.ingest.executor import InProcess; "
    "sys.exit(run_analyze_once(load_config(sys.argv[1]), executor=InProcess()))"
)
LOCAL = "local processes"


def _write_part(job: tuple[Path, int, int, int]) -> None:
    root, n, seed, per_file = job
    data.RECORDS_PER_FILE = per_file
    data.write_capture(root, n, seed=seed, payload="csv")


def part_sizes(total: int, procs: int, per_file: int) -> list[int]:
    files = total // per_file
    return [per_file * (files // procs + (1 if k < files % procs else 0)) for k in range(procs)]


def generate(workdir: Path, total: int, per_file: int, procs: int) -> list[Path]:
    """The capture files of ``total`` records, in order (part 0's files first); generated once."""
    gen = workdir / "gen"
    marker = gen / f"done-{total}-{per_file}-{procs}"
    sizes = part_sizes(total, procs, per_file)
    if not marker.exists():
        shutil.rmtree(gen, ignore_errors=True)
        gen.mkdir(parents=True)
        jobs = [(gen / f"part-{k}", n, SEED0 + k, per_file) for k, n in enumerate(sizes)]
        with get_context("fork").Pool(procs) as pool:
            pool.map(_write_part, jobs)
        marker.write_text("")
    files: list[Path] = []
    for k in range(len(sizes)):
        files.extend(sorted((gen / f"part-{k}" / "bench" / "AllTraffic" / HOUR).glob("*.jsonl")))
    return files


def cycle(files: list[Path], count: int) -> list[Path]:
    """``count`` files: ``files`` in order, again from the first when they run out."""
    return [files[i % len(files)] for i in range(count)]


def tree(workdir: Path, name: str, files: list[Path]) -> Path:
    """A capture tree of hard links to ``files``."""
    root = workdir / "trees" / name
    folder = root / "bench" / "AllTraffic" / HOUR
    if not (folder.exists() and len(list(folder.iterdir())) == len(files)):
        shutil.rmtree(root, ignore_errors=True)
        folder.mkdir(parents=True)
        for i, source in enumerate(files):
            os.link(source, folder / f"{i:05d}.jsonl")
    return root


def write_rows_csv(path: Path, rows: int, total: int, per_file: int, procs: int) -> None:
    """The first ``rows`` rows of the generated parts as one CSV (the anchors' input), in the
    order of the capture trees (the parts again from the first when they run out)."""
    if path.exists():
        return
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(data.COLUMNS)
        left = rows
        while left:
            for k, n in enumerate(part_sizes(total, procs, per_file)):
                for text, _, _ in data.chunks(min(n, left), SEED0 + k):
                    writer.writerows(text)
                left -= min(n, left)
                if left == 0:
                    break


def describe(run: Run) -> str:
    said = f"  STOPPED: {run.stopped}" if run.stopped else ""
    return (
        f"{run.wall_s:8.1f} s  cpu {run.cpu_s:8.1f} s  tree {run.tree_peak_mb:6.0f} MB  "
        f"command {run.command_peak_mb:5.0f} MB  largest worker {run.worker_peak_mb:5.0f} MB  "
        f"load {run.load:5.1f}{said}"
    )


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def summarize(
    size: int, files: int, runs: dict[str, list[Run]], cores: dict[str, int]
) -> list[dict[str, object]]:
    anchor = statistics.median(r.wall_s for r in runs[LOCAL]) if runs.get(LOCAL) else None
    print(
        f"\n{size:,} records in {files} files: {'backend':<28} {'wall s':>8} {'x local':>8} "
        f"{'rec/s/core':>10} {'cpu us/rec':>10} {'tree MB':>8} {'cmd MB':>7} {'worker MB':>9}"
    )
    rows = []
    for label, done in runs.items():
        if not done:
            continue
        wall = statistics.median(r.wall_s for r in done)
        cpu = statistics.median(r.cpu_s for r in done)
        row = {
            "size": size,
            "files": files,
            "backend": label,
            "wall_s": wall,
            "walls": [round(r.wall_s, 2) for r in done],
            "x_local": wall / anchor if anchor else None,
            "rec_s_core": size / wall / cores[label],
            "cpu_us_per_record": cpu / size * 1e6,
            "tree_mb": statistics.median(r.tree_peak_mb for r in done),
            "command_mb": statistics.median(r.command_peak_mb for r in done),
            "worker_mb": statistics.median(r.worker_peak_mb for r in done),
            "loads": [round(r.load, 1) for r in done],
        }
        rows.append(row)
        ratio = f"{wall / anchor:8.2f}" if anchor else "       -"
        print(
            f"{'':>30}{label:<28} {wall:8.1f} {ratio} {row['rec_s_core']:10,.0f} "
            f"{row['cpu_us_per_record']:10.2f} {row['tree_mb']:8.0f} {row['command_mb']:7.0f} "
            f"{row['worker_mb']:9.0f}   runs {row['walls']} loads {row['loads']}"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=10_000_000, help="the largest size")
    parser.add_argument(
        "--distinct-records",
        type=int,
        default=None,
        help="records generated (default: --records); larger sizes repeat these files",
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="default: --records")
    parser.add_argument("--file-records", type=int, default=data.RECORDS_PER_FILE)
    parser.add_argument("--gen-procs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep a temporary workdir")
    parser.add_argument(
        "--backends",
        nargs="*",
        default=["in-process", "local", "dask1", "dask2", "scheduler"],
        choices=["in-process", "local", "dask1", "dask2", "scheduler"],
    )
    parser.add_argument("--scheduler-workers", type=int, default=2)
    parser.add_argument("--overhead-records", type=int, default=200_000, help="0: skip")
    parser.add_argument("--overhead-file-records", type=int, default=500)
    parser.add_argument("--anchors", nargs="*", default=[], choices=["evidently", "whylogs"])
    parser.add_argument("--anchor-records", type=int, default=None, help="default: --records")
    parser.add_argument("--evidently", default="/work/evidently-venv/bin/python")
    parser.add_argument("--whylogs", default="/work/whylogs-venv/bin/python")
    parser.add_argument("--cap-s", type=float, default=1800.0)
    parser.add_argument("--cap-mb", type=float, default=16_000.0)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="scale-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        run_bench(args, workdir)
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def run_bench(args: argparse.Namespace, workdir: Path) -> None:
    python = sys.executable
    per_file, procs = args.file_records, args.gen_procs
    print(f"{uptime()}\ngenerating {args.records:,} records into {workdir}", flush=True)
    distinct = args.distinct_records or args.records
    files = generate(workdir, distinct, per_file, procs)
    print(f"{distinct:,} distinct records in {len(files)} files", flush=True)
    reference = workdir / "reference.csv"
    if not reference.exists():
        data.write_csv(reference, 100_000, seed=1)
    configs: dict[str, tuple[int, int, Path]] = {}  # name: (records, files, config)

    def add(name: str, records: int, root: Path, n_files: int) -> None:
        config = workdir / f"{name}.yaml"
        config.write_text(data.config_yaml(workdir, root, "csv"))
        configs[name] = (records, n_files, config)

    for size in args.sizes or [args.records]:
        chosen = cycle(files, size // per_file)
        add(f"{size}", size, tree(workdir, str(size), chosen), len(chosen))
    overhead = args.overhead_records
    if overhead:
        big = files[: overhead // per_file]
        add(f"{overhead}", overhead, tree(workdir, str(overhead), big), len(big))
        small = workdir / "trees" / f"{overhead}-small-{args.overhead_file_records}"
        if not small.exists():
            _write_part((small, overhead, SEED0, args.overhead_file_records))
        n_small = overhead // args.overhead_file_records
        add(f"{overhead}-small", overhead, small, n_small)
    any_config = next(iter(configs.values()))[2]
    subprocess.run(
        [python, "-m", "modelmon", "baseline", "--config", str(any_config), "--data",
         str(reference)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    cluster = PreStartedCluster(args.scheduler_workers) if "scheduler" in args.backends else None
    try:
        results = rounds(args, configs, cluster) if args.backends else {}
        if args.anchors:
            results["anchors"] = anchors(args, workdir, reference, cluster)
    finally:
        if cluster is not None:
            cluster.close()
    print(f"\n{uptime()}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def backend_commands(
    backends: list[str], config: Path, cluster: PreStartedCluster | None, n_workers: int
) -> dict[str, tuple[list[str], int]]:
    """label: (command, cores it may use)."""
    py = sys.executable
    analyze = [py, "-m", "modelmon", "analyze", "--once", "--config", str(config)]
    cpus = os.cpu_count() or 1
    table = {
        "in-process": ("in-process", [py, "-c", IN_PROCESS, str(config)], 1),
        "local": (LOCAL, analyze, cpus),
        "dask1": ("dask LocalCluster 1", [*analyze, "--dask-workers", "1"], 1),
        "dask2": ("dask LocalCluster 2", [*analyze, "--dask-workers", "2"], min(2, cpus)),
    }
    if cluster is not None:
        table["scheduler"] = (
            f"dask scheduler ({n_workers} w)",
            [*analyze, "--scheduler", cluster.address],
            min(n_workers, cpus),
        )
    return {table[b][0]: (table[b][1], table[b][2]) for b in backends if b in table}


def rounds(
    args: argparse.Namespace,
    configs: dict[str, tuple[int, int, Path]],
    cluster: PreStartedCluster | None,
) -> dict[str, object]:
    runs: dict[str, dict[str, list[Run]]] = {name: {} for name in configs}
    cores: dict[str, int] = {}
    for round_no in range(args.repeat):
        print(f"\nround {round_no + 1}: {uptime()}", flush=True)
        for name, (records, n_files, config) in configs.items():
            jobs = backend_commands(args.backends, config, cluster, args.scheduler_workers)
            labels = list(jobs)
            shift = round_no % len(labels)
            for label in labels[shift:] + labels[:shift]:  # rotate the order between rounds
                command, n_cores = jobs[label]
                cores[label] = n_cores
                extra = cluster.processes() if cluster and label.startswith("dask sch") else None
                run = run_sampled(command, extra=extra, cap_s=args.cap_s, cap_mb=args.cap_mb)
                runs[name].setdefault(label, []).append(run)
                print(f"  {records:>10,} / {n_files:4} files  {label:<24} {describe(run)}",
                      flush=True)  # fmt: skip
    print(f"\nafter the rounds: {uptime()}")
    summary: dict[str, object] = {}
    for name, (records, n_files, _) in configs.items():
        summary[name] = summarize(records, n_files, runs[name], cores)
    if args.overhead_records:
        summary["per_task"] = per_task(args, configs, runs)
    return summary


def per_task(
    args: argparse.Namespace,
    configs: dict[str, tuple[int, int, Path]],
    runs: dict[str, dict[str, list[Run]]],
) -> dict[str, float]:
    big, small = f"{args.overhead_records}", f"{args.overhead_records}-small"
    extra_tasks = configs[small][1] - configs[big][1]
    print(f"\nper-task cost: {args.overhead_records:,} records as {configs[small][1]} files "
          f"vs {configs[big][1]} files (+{extra_tasks} tasks)")  # fmt: skip
    costs: dict[str, float] = {}
    for label in runs[big]:
        wall_small = statistics.median(r.wall_s for r in runs[small][label])
        wall_big = statistics.median(r.wall_s for r in runs[big][label])
        costs[label] = (wall_small - wall_big) / extra_tasks * 1000
        cpu_small = statistics.median(r.cpu_s for r in runs[small][label])
        cpu_big = statistics.median(r.cpu_s for r in runs[big][label])
        costs[f"{label} cpu"] = (cpu_small - cpu_big) / extra_tasks * 1000
        print(f"  {label:<24} {costs[label]:7.2f} ms wall per task, "
              f"{costs[f'{label} cpu']:7.2f} ms CPU per task")  # fmt: skip
    if LOCAL in costs:
        for label in runs[big]:
            if label.startswith("dask"):
                print(f"  {label:<24} Dask extra over local processes: "
                      f"{costs[label] - costs[LOCAL]:7.2f} ms wall per task")  # fmt: skip
    return costs


def anchors(
    args: argparse.Namespace, workdir: Path, reference: Path, cluster: PreStartedCluster | None
) -> list[dict[str, object]]:
    """Evidently and whylogs on the first ``--anchor-records`` rows, each beside a
    local-processes ``analyze --once`` of the same rows, capped."""
    size = args.anchor_records or args.records
    per_file = args.file_records
    current = workdir / f"current-{size}.csv"
    distinct = args.distinct_records or args.records
    write_rows_csv(current, size, distinct, per_file, args.gen_procs)
    files = cycle(generate(workdir, distinct, per_file, args.gen_procs), size // per_file)
    config = workdir / f"anchor-{size}.yaml"
    config.write_text(data.config_yaml(workdir, tree(workdir, str(size), files), "csv"))
    local = backend_commands(["local"], config, cluster, args.scheduler_workers)[LOCAL][0]
    scripts = {
        "evidently": (args.evidently, BENCH / "evidently_drift.py"),
        "whylogs": (args.whylogs, BENCH / "whylogs_profile.py"),
    }
    out = []
    for name in args.anchors:
        venv_python, script = scripts[name]
        print(f"\nanchor {name}, {size:,} rows: {uptime()}", flush=True)
        ours = run_sampled(local, cap_s=args.cap_s, cap_mb=args.cap_mb)
        print(f"  {LOCAL:<24} {describe(ours)}", flush=True)
        command = [venv_python, str(script), str(reference), str(current)]
        theirs = run_sampled(command, cap_s=args.cap_s, cap_mb=args.cap_mb)
        print(f"  {name:<24} {describe(theirs)}\n    {theirs.last_line}", flush=True)
        ratio = "" if theirs.stopped else f"{theirs.wall_s / ours.wall_s:.1f}x"
        print(f"  {name} / local processes, wall: {ratio or 'did not finish'}", flush=True)
        out.append(
            {
                "anchor": name,
                "rows": size,
                "wall_s": theirs.wall_s,
                "cpu_s": theirs.cpu_s,
                "tree_mb": theirs.tree_peak_mb,
                "stopped": theirs.stopped,
                "said": theirs.last_line,
                "local_wall_s": ours.wall_s,
                "local_cpu_s": ours.cpu_s,
                "local_tree_mb": ours.tree_peak_mb,
                "load": theirs.load,
            }
        )
    return out


if __name__ == "__main__":
    main()
