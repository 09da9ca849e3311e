"""Whole-process speed and peak memory: ``modelmon analyze --once`` against Evidently.

Run: ``python bench/analyze_speed.py [--sizes 100000 1000000] [--workdir DIR] [--keep]``

For each size it generates seeded records (20 numeric + 5 categorical features; one capture
folder with CSV payloads, one with JSON payloads) and the same rows as one CSV, plus
same-distribution reference rows (another seed). Then it times whole processes, each under
``/usr/bin/time``:

- ``modelmon analyze --once`` on each capture folder (decode, profile, checks, reports);
- our decode+profile path alone (``analyzer.parallel.profile_capture_files``), on 1 and 2
  processes, to show where the time goes;
- ``modelmon baseline`` on a reference CSV of the same size as the current data;
- Evidently's default ``DataDriftPreset`` report on the current CSV (its own venv,
  ``--evidently``), once with a reference of the same size and once with the 100,000-row one.

It prints seconds, peak RSS and the ratio to Evidently of the same size, all from this run.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import analyze_data as data  # the bench folder is not a package

BENCH = Path(__file__).resolve().parent
REFERENCE_ROWS = 100_000
PROFILE_ONLY = (
    "import sys; from modelmon.config import load_config; "
    "from analyzer.capture_files import sealed_files; "
    "from analyzer.parallel import profile_capture_files; "
    "c = load_config(sys.argv[1]); "
    "f = sealed_files(c.capture.dir, c.endpoint.name, c.endpoint.variant, None, None); "
    "r = profile_capture_files(f, c.analyzer.payload, c.analyzer.kll_k, int(sys.argv[2])); "
    "print(r.records, 'records')"
)


def timed(command: list[str], cwd: Path) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds, peak RSS in MB, last output line) of one whole process."""
    report = cwd / "time.txt"
    result = subprocess.run(
        ["/usr/bin/time", "-f", "%e %U %S %M", "-o", str(report), *command],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(command)}\n{result.stderr}")
    wall, user, system, kbytes = report.read_text().split()[-4:]
    lines = (result.stdout.strip() or result.stderr.strip()).splitlines()
    cpu = float(user) + float(system)
    return float(wall), cpu, int(kbytes) / 1024, lines[-1] if lines else ""


Row = tuple[int, str, float, float, float]


def measure(rows: list[Row], size: int, label: str, command: list[str], cwd: Path) -> str:
    seconds, cpu, mb, said = timed(command, cwd)
    rows.append((size, label, seconds, cpu, mb))
    print(f"  {label:<46} {seconds:7.2f} s {cpu:7.2f} cpu {mb:7.0f} MB", flush=True)
    return said


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--evidently", default="/work/evidently-venv/bin/python")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="analyze-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    evidently = Path(args.evidently)
    script = str(BENCH / "evidently_drift.py")
    rows: list[Row] = []
    try:
        reference = workdir / "reference.csv"
        data.write_csv(reference, REFERENCE_ROWS, seed=1)
        print(f"workdir {workdir}; reference {REFERENCE_ROWS:,} rows", flush=True)
        for size in args.sizes:
            run = workdir / str(size)
            run.mkdir(exist_ok=True)
            current = run / "current.csv"
            data.write_csv(current, size, seed=2)
            for payload in ("csv", "json"):
                capture = run / f"capture_{payload}"
                data.write_capture(capture, size, seed=2, payload=payload)
                (run / f"{payload}.yaml").write_text(data.config_yaml(run, capture, payload))
            same_size = reference
            if size != REFERENCE_ROWS:
                same_size = run / "reference.csv"
                data.write_csv(same_size, size, seed=1)
            print(f"\n{size:,} records generated", flush=True)
            measure(
                rows, size, f"modelmon baseline ({size:,}-row reference)",
                [python, "-m", "modelmon", "baseline", "--config", str(run / "csv.yaml"),
                 "--data", str(same_size)],
                run,
            )  # fmt: skip
            for payload in ("csv", "json"):
                cfg = str(run / f"{payload}.yaml")
                command = [python, "-m", "modelmon", "analyze", "--config", cfg, "--once"]
                measure(rows, size, f"modelmon analyze --once ({payload} payloads)", command, run)
                for workers in (1, 2):
                    label = f"decode+profile only ({payload}, {workers} proc)"
                    command = [python, "-c", PROFILE_ONLY, cfg, str(workers)]
                    measure(rows, size, label, command, run)
            if evidently.exists():
                for ref in sorted({reference, same_size}):
                    n_ref = REFERENCE_ROWS if ref == reference else size
                    label = f"evidently ({n_ref:,}-row reference)"
                    command = [str(evidently), script, str(ref), str(current)]
                    said = measure(rows, size, label, command, run)
                    print(f"    {said}")
        print_table(rows)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


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
