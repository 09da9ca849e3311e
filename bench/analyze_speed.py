"""Whole-process speed and peak memory: ``modelmon analyze --once`` against Evidently.

Run: ``python bench/analyze_speed.py [--sizes 100000 1000000] [--workdir DIR] [--keep]
[--repeat N] [--before DIR] [--reuse] [--analyze-only] [--no-other-arrow]``

For each size it generates seeded records (20 numeric + 5 categorical features; one capture
folder with CSV payloads, one with JSON payloads) and the same rows as one CSV, plus
same-distribution reference rows (another seed). Then it times whole processes, each under
``/usr/bin/time``:

- ``modelmon analyze --once`` on each capture folder (decode, profile, checks, reports), as
  configured by default (the Arrow fast path for CSV payloads when pyarrow is installed) and,
  unless ``--no-other-arrow``, with the other ``analyzer.arrow`` setting (``off`` for CSV
  payloads, ``csv_and_json`` for JSON payloads; a config file of its own);
- our decode+profile path alone (``analyzer.ingest.parallel.profile_capture_files``), on 1 and 2
  processes, to show where the time goes;
- ``modelmon baseline`` on a reference CSV of the same size as the current data;
- Evidently's default ``DataDriftPreset`` report on the current CSV (its own venv,
  ``--evidently``), once with a reference of the same size and once with the 100,000-row one.

It prints seconds, peak RSS and the ratio to Evidently of the same size, all from this run.
With ``--repeat N`` every process of a size runs N times, interleaved (round after round),
and the table shows medians. With ``--before DIR`` (a copy of older ``analyzer``/``modelmon``
packages, e.g. from ``git archive``) ``analyze --once`` also runs on that code, in the same
rounds, for a before/after comparison. ``--reuse`` keeps generated data that already exists;
``--analyze-only`` skips the baseline and decode+profile-only processes (shorter rounds).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import analyze_data as data  # the bench folder is not a package

BENCH = Path(__file__).resolve().parent
REFERENCE_ROWS = 100_000
OTHER_ARROW = {"csv": "off", "json": "csv_and_json"}  # the setting that is not the default
PROFILE_ONLY = (
    "import sys; from modelmon.config import load_config; "
    "from analyzer.ingest.capture_files import sealed_files; "
    "from analyzer.ingest.parallel import profile_capture_files; "
    "c = load_config(sys.argv[1]); "
    "f = sealed_files(c.capture.dir, c.endpoint.name, c.endpoint.variant, None, None); "
    "r = profile_capture_files(f, c.analyzer.payload, c.analyzer.kll_k, int(sys.argv[2]), "
    "arrow=c.analyzer.arrow); "
    "print(r.records, 'records')"
)


def timed(
    command: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds, peak RSS in MB, last output line) of one whole process."""
    report = cwd / "time.txt"
    result = subprocess.run(
        ["/usr/bin/time", "-f", "%e %U %S %M", "-o", str(report), *command],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(command)}\n{result.stderr}")
    wall, user, system, kbytes = report.read_text().split()[-4:]
    lines = (result.stdout.strip() or result.stderr.strip()).splitlines()
    cpu = float(user) + float(system)
    return float(wall), cpu, int(kbytes) / 1024, lines[-1] if lines else ""


Row = tuple[int, str, float, float, float]
Job = tuple[str, list[str], dict[str, str] | None]


def measure_rounds(rows: list[Row], size: int, jobs: list[Job], cwd: Path, repeat: int) -> None:
    """Run every job ``repeat`` times, round after round; keep the medians."""
    runs: dict[str, list[tuple[float, float, float]]] = {label: [] for label, _, _ in jobs}
    for round_no in range(repeat):
        for label, command, env in jobs:
            seconds, cpu, mb, said = timed(command, cwd, env)
            runs[label].append((seconds, cpu, mb))
            print(f"  [{round_no + 1}] {label:<46} {seconds:7.2f} s {cpu:7.2f} cpu {mb:5.0f} MB")
            if label.startswith("evidently"):
                print(f"    {said}", flush=True)
    for label, _, _ in jobs:
        wall, cpu, mb = (statistics.median(v[i] for v in runs[label]) for i in range(3))
        rows.append((size, label, wall, cpu, mb))
        walls = ", ".join(f"{v[0]:.2f}" for v in runs[label])
        print(f"  median {label:<46} {wall:7.2f} s (runs: {walls})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--evidently", default="/work/evidently-venv/bin/python")
    parser.add_argument("--repeat", type=int, default=1, help="rounds per size (medians)")
    parser.add_argument("--before", type=Path, default=None, help="older code to compare")
    parser.add_argument("--reuse", action="store_true", help="keep existing generated data")
    parser.add_argument("--analyze-only", action="store_true", help="no baseline/profile-only")
    parser.add_argument(
        "--no-other-arrow", action="store_true", help="no run with the other analyzer.arrow"
    )
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="analyze-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    evidently = Path(args.evidently)
    before_env = None
    if args.before is not None:
        before_env = {**os.environ, "PYTHONPATH": str(args.before.resolve())}
    rows: list[Row] = []
    try:
        reference = workdir / "reference.csv"
        if not (args.reuse and reference.exists()):
            data.write_csv(reference, REFERENCE_ROWS, seed=1)
        print(f"workdir {workdir}; reference {REFERENCE_ROWS:,} rows", flush=True)
        for size in args.sizes:
            run = workdir / str(size)
            run.mkdir(exist_ok=True)
            same_size = prepare(run, size, reference, args.reuse)
            print(f"\n{size:,} records ready", flush=True)
            jobs: list[Job] = [
                (
                    f"modelmon baseline ({size:,}-row reference)",
                    [python, "-m", "modelmon", "baseline", "--config", str(run / "csv.yaml"),
                     "--data", str(same_size)],
                    None,
                )
            ]  # fmt: skip
            if args.analyze_only:
                jobs.clear()
            for payload in ("csv", "json"):
                cfg = str(run / f"{payload}.yaml")
                command = [python, "-m", "modelmon", "analyze", "--config", cfg, "--once"]
                jobs.append((f"modelmon analyze --once ({payload} payloads)", command, None))
                if not args.no_other_arrow:
                    other = OTHER_ARROW[payload]
                    label = f"analyze --once ({payload}, arrow: {other})"
                    other_cfg = str(run / f"{payload}-arrow-{other}.yaml")
                    command_other = [*command[:5], other_cfg, "--once"]
                    jobs.append((label, command_other, None))
                if before_env is not None:
                    jobs.append((f"BEFORE analyze --once ({payload})", command, before_env))
                for workers in () if args.analyze_only else (1, 2):
                    label = f"decode+profile only ({payload}, {workers} proc)"
                    jobs.append((label, [python, "-c", PROFILE_ONLY, cfg, str(workers)], None))
            if evidently.exists():
                script = str(BENCH / "evidently_drift.py")
                for ref in sorted({reference, same_size}):
                    n_ref = REFERENCE_ROWS if ref == reference else size
                    label = f"evidently ({n_ref:,}-row reference)"
                    jobs.append(
                        (label, [str(evidently), script, str(ref), str(run / "current.csv")], None)
                    )
            measure_rounds(rows, size, jobs, run, args.repeat)
        print_table(rows)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def prepare(run: Path, size: int, reference: Path, reuse: bool) -> Path:
    """Generate (or with ``reuse``, keep) the data of one size; return the same-size reference."""
    current = run / "current.csv"
    fresh = not (reuse and current.exists())
    if fresh:
        data.write_csv(current, size, seed=2)
    for payload in ("csv", "json"):
        capture = run / f"capture_{payload}"
        if fresh:
            data.write_capture(capture, size, seed=2, payload=payload)
        (run / f"{payload}.yaml").write_text(data.config_yaml(run, capture, payload))
        other = OTHER_ARROW[payload]
        (run / f"{payload}-arrow-{other}.yaml").write_text(
            data.config_yaml(run, capture, payload, other)
        )
    if size == REFERENCE_ROWS:
        return reference
    same_size = run / "reference.csv"
    if fresh or not same_size.exists():
        data.write_csv(same_size, size, seed=1)
    return same_size


def print_table(rows: list[Row]) -> None:
    """Ratios against Evidently of the same size: with a same-size reference and a 100k one."""
    print(
        f"\n{'records':>10}  {'process':<46} {'wall s':>7} {'cpu s':>7} {'peak MB':>8}"
        f"  Evidently/this wall (same-size ref, 100k ref)"
    )
    anchors: dict[tuple[int, int], float] = {}
    for size, label, seconds, _, _ in rows:
        if label.startswith("evidently"):
            n_ref = REFERENCE_ROWS if label.startswith(f"evidently ({REFERENCE_ROWS:,}") else size
            anchors[(size, n_ref)] = seconds
    for size, label, seconds, cpu, mb in rows:
        ratio = ""
        if not label.startswith("evidently"):
            same, small = anchors.get((size, size)), anchors.get((size, REFERENCE_ROWS))
            parts = [f"{a / seconds:.1f}x" if a else "-" for a in (same, small)]
            ratio = "  " + ", ".join(parts)
        print(f"{size:>10,}  {label:<46} {seconds:7.2f} {cpu:7.2f} {mb:8.0f}{ratio}")


if __name__ == "__main__":
    main()
