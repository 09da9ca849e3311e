"""Join + metrics for N predictions and N labels, whole process, against the anchors (issue 11).

    python bench/model_quality_join.py [--rows 100000 1000000] [--workdir /tmp/mqjoin] [--sqlite]
                 [--repeat 3] [--no-nannyml] [--memory-rows 1000000000000 500000]

Per size, each in a fresh process (wall time and peak RSS of that process):

- **ours, batch** (the default): the real CLI, ``modelmon analyze --once --ground-truth GT``,
  whole process (interpreter start, imports, reading the files, the in-memory join
  ``pairs.join``, every binary metric with SageMaker's standard deviations, the verdict
  against a baseline made from 20,000 other rows, the label-free estimate over every
  prediction, the four report files). Input: N capture records (``inferenceId`` on half,
  CSV output = the score) in files of 100,000 records, and N ground-truth records in
  shuffled order in files of 100,000;
- **ours, SQLite** (``--sqlite``): the service's durable join
  (``analyzer.store.model_quality``) in batches of 50,000, then the same evaluation,
  in-process timing (as before this change);
- **floor**: scikit-learn computing accuracy, precision, recall, F1 and AUC on in-memory
  arrays (no join, no files);
- **NannyML 0.13** (in its own virtualenv at ``/work/nannyml-venv``, when present: ``python
  -m venv /work/nannyml-venv && /work/nannyml-venv/bin/pip install "nannyml==0.13.*"
  statsmodels && touch /work/nannyml-venv/.ready``; 0.13.1 imports statsmodels without
  declaring it): the realized-performance calculator and CBPE, reference = the same 20,000
  baseline rows, analysis = the N joined rows, with its usage reporting switched off. Three
  figures: **same files** (whole process: interpreter start, ``import nannyml``, pandas
  reading the same capture and ground-truth JSON Lines files (``read_json(lines=True)``,
  the nested fields taken out), the merge, both calculators); **CSV** (whole process, the
  same rows flattened beforehand into two CSV files read by ``read_csv``: its best input); and
  **compute** (the merge and both calculators on data already in memory).

Prints seconds, peak RSS (of the whole process; and of ours, of its own process and of its
workers apart, with the slope of its own between sizes: what grows with the rows, in MiB per
million rows; ``--rows 100000 1000000 3000000 --no-nannyml`` for that alone) and the ratios
NannyML / ours (each NannyML figure over our whole
process), and the load average before and after. Ours runs ``--repeat`` times (default 3;
each run printed, the median used): a run of a few seconds on a shared machine is at the
mercy of one burst of load, NannyML's minutes average over it. ``--memory-rows``: each size
again with each ``analyzer.model_quality.batch_memory_rows`` (a budget above the rows: the
join in memory; below: on disk, flat), with the md5 of the reports (equal statistics
between the two: AUC, curves and subsamples to the bit).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

NANNYML = Path("/work/nannyml-venv/bin/python")
NANNYML_READY = Path("/work/nannyml-venv/.ready")
REPO = Path(__file__).resolve().parents[1]

MAKE = """
import numpy as np, sys
n = int(sys.argv[1]); out = sys.argv[2]
rng = np.random.default_rng(0)
score = rng.beta(2, 3, n); label = (rng.random(n) < score).astype(np.int64)
np.savez(out, score=score, label=label, time=np.sort(rng.random(n) * 3600.0),
         order=rng.permutation(n))
"""

OURS = """
import resource, sys, time
import numpy as np
from sqlite_utils import Database
from analyzer.store.model_quality import (
    add_labels, add_predictions, create_tables, window_pairs)
from analyzer.monitors.model_quality.evaluate import baseline_from_statistics, evaluate_window
from analyzer.monitors.model_quality.documents import parse_constraints, suggest_constraints
from analyzer.monitors.model_quality.estimate import fit_calibrator, estimate_binary
data = np.load(sys.argv[1]); db_path = sys.argv[2]
start = time.perf_counter()
score, label, when, order = data["score"], data["label"], data["time"], data["order"]
n = score.size
db = Database(db_path)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=NORMAL")
create_tables(db)
keys = [f"id-{i}" for i in range(n)]
B = 50_000
half = order[: n // 2]
for lo in range(0, n // 2, B):  # half of the labels come before their predictions
    with db.conn:
        add_labels(db, ((keys[i], str(label[i])) for i in half[lo:lo + B]), 0.0, 3600)
for lo in range(0, n, B):
    with db.conn:
        rows = [(keys[i], None, None, float(when[i]), "1" if score[i] >= 0.5 else "0",
                 float(score[i]), None) for i in range(lo, min(n, lo + B))]
        add_predictions(db, rows, 3600)
rest = order[n // 2:]
for lo in range(0, n - n // 2, B):
    with db.conn:
        add_labels(db, ((keys[i], str(label[i])) for i in rest[lo:lo + B]), 0.0, 3600)
joined = time.perf_counter()
pairs = window_pairs(db, 0.0, 3600.0)
y = np.array(pairs.labels, dtype=np.int64); p = np.array(pairs.predictions, dtype=np.int64)
s = pairs.probabilities
base = evaluate_window("BinaryClassification", y[:20000], p[:20000], s[:20000], {}, None,
                       false_alarm_rate=0.01, min_labels=1).statistics()
cons = parse_constraints("BinaryClassification", suggest_constraints("BinaryClassification", base))
result = evaluate_window("BinaryClassification", y, p, s, cons,
                         baseline_from_statistics("BinaryClassification", base),
                         false_alarm_rate=0.01, min_labels=100)
est = estimate_binary(s, p, fit_calibrator(s[:20000], y[:20000]))
done = time.perf_counter()
print({"seconds": done - start, "join_s": joined - start, "pairs": len(pairs),
       "auc": result.metrics["auc"]["value"], "estimated_auc": est["auc"].value,
       "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
"""

FLOOR = """
import resource, sys, time
import numpy as np
from sklearn import metrics as sk
data = np.load(sys.argv[1]); start = time.perf_counter()
y, s = data["label"], data["score"]; p = (s >= 0.5).astype(np.int64)
out = [sk.accuracy_score(y, p), sk.precision_score(y, p), sk.recall_score(y, p),
       sk.f1_score(y, p), sk.roc_auc_score(y, s)]
print({"seconds": time.perf_counter() - start, "auc": out[-1],
       "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
"""

NANNY = """
import resource, sys, time, warnings
warnings.simplefilter("ignore")
import numpy as np, pandas as pd, nannyml as nml
data = np.load(sys.argv[1]); start = time.perf_counter()
n = data["score"].size
ts = pd.to_datetime(data["time"], unit="s")
preds = pd.DataFrame({"id": np.arange(n), "timestamp": ts, "y_pred_proba": data["score"],
                      "y_pred": (data["score"] >= 0.5).astype(int)})
labels = pd.DataFrame({"id": data["order"], "y_true": data["label"][data["order"]]})
frame = preds.merge(labels, on="id")
reference, analysis = frame.iloc[:20000], frame
metrics = ["roc_auc", "f1", "precision", "recall", "accuracy"]
calc = nml.PerformanceCalculator(y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="y_true",
                                 timestamp_column_name="timestamp", metrics=metrics,
                                 problem_type="classification_binary", chunk_number=1)
calc.fit(reference); realized = calc.calculate(analysis)
cbpe = nml.CBPE(y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="y_true",
                timestamp_column_name="timestamp", metrics=metrics,
                problem_type="classification_binary", chunk_number=1)
cbpe.fit(reference); estimated = cbpe.estimate(analysis.drop(columns=["y_true"]))
print({"seconds": time.perf_counter() - start,
       "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
"""


NANNY_FILES = """
import resource, sys, time, warnings
warnings.simplefilter("ignore")
import pandas as pd, nannyml as nml
folder = sys.argv[1]
reference = pd.read_csv(folder + "/reference.csv", parse_dates=["timestamp"])
preds = pd.read_csv(folder + "/predictions.csv", parse_dates=["timestamp"])
labels = pd.read_csv(folder + "/labels.csv")
start = time.perf_counter()
analysis = preds.merge(labels.drop_duplicates("id"), on="id")
metrics = ["roc_auc", "f1", "precision", "recall", "accuracy"]
calc = nml.PerformanceCalculator(y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="y_true",
                                 timestamp_column_name="timestamp", metrics=metrics,
                                 problem_type="classification_binary", chunk_number=1)
calc.fit(reference); realized = calc.calculate(analysis)
cbpe = nml.CBPE(y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="y_true",
                timestamp_column_name="timestamp", metrics=metrics,
                problem_type="classification_binary", chunk_number=1)
cbpe.fit(reference); estimated = cbpe.estimate(preds)
auc = float(realized.filter(period="analysis").to_df()[("roc_auc", "value")].iloc[0])
print({"compute_s": time.perf_counter() - start, "auc": auc})
"""

NANNY_CAPTURE = """
import glob, resource, sys, time, warnings
warnings.simplefilter("ignore")
import pandas as pd, nannyml as nml
folder = sys.argv[1]
def files(sub):
    return sorted(glob.glob(folder + "/" + sub + "/**/*.jsonl", recursive=True))
reference = pd.read_csv(folder + "/reference.csv", parse_dates=["timestamp"])
cap = pd.concat([pd.read_json(f, lines=True, dtype=False) for f in files("capture")],
                ignore_index=True)
meta = pd.DataFrame.from_records(cap["eventMetadata"].tolist())
output = pd.DataFrame.from_records([c["endpointOutput"] for c in cap["captureData"]])
preds = pd.DataFrame({"id": meta["inferenceId"].fillna(meta["eventId"]),
                      "timestamp": pd.to_datetime(meta["inferenceTime"]),
                      "y_pred_proba": output["data"].astype(float)})
preds["y_pred"] = (preds["y_pred_proba"] >= 0.5).astype(int)
gt = pd.concat([pd.read_json(f, lines=True, dtype=False) for f in files("gt")],
               ignore_index=True)
labels = pd.DataFrame({"id": [m["eventId"] for m in gt["eventMetadata"]],
                       "y_true": [int(g["data"]) for g in gt["groundTruthData"]]})
analysis = preds.merge(labels.drop_duplicates("id"), on="id")
metrics = ["roc_auc", "f1", "precision", "recall", "accuracy"]
calc = nml.PerformanceCalculator(y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="y_true",
                                 timestamp_column_name="timestamp", metrics=metrics,
                                 problem_type="classification_binary", chunk_number=1)
calc.fit(reference); realized = calc.calculate(analysis)
cbpe = nml.CBPE(y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="y_true",
                timestamp_column_name="timestamp", metrics=metrics,
                problem_type="classification_binary", chunk_number=1)
cbpe.fit(reference); estimated = cbpe.estimate(preds)
auc = float(realized.filter(period="analysis").to_df()[("roc_auc", "value")].iloc[0])
print({"auc": auc})
"""

CAPTURE = (
    '{"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT",'
    '"data":"%s","encoding":"CSV"},"endpointOutput":{"observedContentType":"text/csv",'
    '"mode":"OUTPUT","data":"%s","encoding":"CSV"}},"eventMetadata":{"eventId":"%s",%s'
    '"inferenceTime":"%s"},"eventVersion":"0"}\n'
)
TRUTH = (
    '{"groundTruthData":{"data":"%d","encoding":"CSV"},"eventMetadata":{"eventId":"%s"},'
    '"eventVersion":"0"}\n'
)
PER_FILE = 100_000
BASELINE_ROWS = 20_000


def _key(i: int) -> str:
    return f"order-{i}" if i % 2 else f"{i:08d}-0000-4000-8000-000000000000"


def make_batch(n: int, folder: Path) -> None:
    """Capture and ground-truth folders for ``n`` rows, the same rows as CSV for NannyML."""
    import numpy as np

    if (folder / "ready").exists():
        return
    rng = np.random.default_rng(0)
    score = rng.beta(2, 3, n + BASELINE_ROWS).round(6)
    label = (rng.random(score.size) < score).astype(np.int64)
    start = np.datetime64("2026-01-01T00:00:00.000")
    offsets = np.sort(rng.integers(0, 3_600_000, n)).astype("timedelta64[ms]")
    stamps = np.datetime_as_string(start + offsets, unit="ms")
    features = rng.normal(size=(n, 3)).round(3)
    keys = [_key(i) for i in range(n)]
    hour = folder / "capture" / "bench" / "AllTraffic" / "2026" / "01" / "01" / "00"
    hour.mkdir(parents=True, exist_ok=True)
    for lo in range(0, n, PER_FILE):
        lines = []
        for i in range(lo, min(n, lo + PER_FILE)):
            extra = f'"inferenceId":"{keys[i]}",' if i % 2 else ""
            event = keys[i] if not i % 2 else f"ev-{i}"
            row = f"{features[i, 0]},{features[i, 1]},{features[i, 2]},{i % 7}"
            lines.append(CAPTURE % (row, score[i], event, extra, stamps[i] + "Z"))
        (hour / f"{lo // PER_FILE:04d}.jsonl").write_text("".join(lines))
    truth = folder / "gt" / "2026" / "01" / "02" / "00"
    truth.mkdir(parents=True, exist_ok=True)
    order = rng.permutation(n)
    for lo in range(0, n, PER_FILE):
        part = order[lo : lo + PER_FILE]
        text = "".join(TRUTH % (label[i], keys[i]) for i in part)
        (truth / f"{lo // PER_FILE:04d}.jsonl").write_text(text)
    base = folder / "baseline.csv"
    base.write_text(
        "score,label\n" + "".join(f"{s},{y}\n" for s, y in zip(score[n:], label[n:], strict=True))
    )
    predicted = (score >= 0.5).astype(np.int64)
    stamp_list = [s + "Z" for s in stamps]
    (folder / "predictions.csv").write_text(
        "id,timestamp,y_pred_proba,y_pred\n"
        + "".join(f"{keys[i]},{stamp_list[i]},{score[i]},{predicted[i]}\n" for i in range(n))
    )
    (folder / "labels.csv").write_text(
        "id,y_true\n" + "".join(f"{keys[i]},{label[i]}\n" for i in order)
    )
    ref_stamps = np.datetime_as_string(
        np.datetime64("2025-12-31T00:00:00") + np.arange(BASELINE_ROWS).astype("timedelta64[s]")
    )
    (folder / "reference.csv").write_text(
        "id,timestamp,y_pred_proba,y_pred,y_true\n"
        + "".join(
            f"ref-{j},{ref_stamps[j]}Z,{score[n + j]},{predicted[n + j]},{label[n + j]}\n"
            for j in range(BASELINE_ROWS)
        )
    )
    np.savez(folder / "arrays.npz", score=score[:n], label=label[:n])
    (folder / "modelmon.yaml").write_text(
        "endpoint: {name: bench}\nproxy: {upstream: 'http://127.0.0.1:9'}\n"
        "capture: {dir: capture}\n"
        "analyzer:\n  reports_dir: reports\n"
        "  payload: {output: {format: csv, columns: [score]}}\n"
        "  model_quality:\n    problem_type: BinaryClassification\n"
        "    probability_attribute: score\n    ground_truth_attribute: label\n"
        "    baseline: {statistics: mq/statistics.json, constraints: mq/constraints.json}\n"
    )
    subprocess.run(
        [sys.executable, "-m", "modelmon", "baseline", "--config", "modelmon.yaml",
         "--model-quality", "--data", "baseline.csv"],
        cwd=folder, check=True, capture_output=True, env=_env(),
    )  # fmt: skip
    (folder / "ready").write_text("")


def _env() -> dict[str, str]:
    # NannyML reports usage to a web service unless told not to; nothing leaves here.
    return {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "NML_DISABLE_USAGE_LOGGING": "1"}


CPU_S: dict[str, float] = {}  # the last run's CPU seconds (user + system), by command


def timed(command: list[str], cwd: Path) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MB) of a whole process, from /usr/bin/time; its stdout.
    Its CPU seconds (user + system, children included) go to :data:`CPU_S`."""
    out = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M %U %S", *command],
        cwd=cwd, check=True, capture_output=True, text=True, env=_env(),
    )  # fmt: skip
    seconds, kib, user, system = out.stderr.strip().splitlines()[-1].split()
    CPU_S[" ".join(command[:3])] = float(user) + float(system)
    return float(seconds), int(kib) / 1024, out.stdout


# ``modelmon`` with the peak RSS of its own process and of its workers (the map's forked
# processes) printed last: /usr/bin/time gives only the larger of the two, and what grows with
# the rows is this process's (the workers' peak is a file's, flat in rows).
OURS_CLI = """
import atexit, resource, runpy, sys
def rss():
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"rss_mb {own:.1f} {workers:.1f}", flush=True)
atexit.register(rss)
sys.argv = ["modelmon", *sys.argv[1:]]
runpy.run_module("modelmon", run_name="__main__")
"""
OWN_RSS: dict[int, float] = {}  # rows -> peak RSS (MB) of our process itself, max of the runs


def _config(folder: Path, memory_rows: int | None) -> str:
    """The config's name: ``modelmon.yaml``, or a copy with ``batch_memory_rows`` set."""
    if memory_rows is None:
        return "modelmon.yaml"
    text = (
        (folder / "modelmon.yaml")
        .read_text()
        .replace(
            "    probability_attribute: score\n",
            f"    probability_attribute: score\n    batch_memory_rows: {memory_rows}\n",
        )
    )
    name = f"modelmon-{memory_rows}.yaml"
    (folder / name).write_text(text)
    return name


REPORTS_MD5: dict[tuple[int, int | None], str] = {}  # (rows, budget) -> md5 of the reports
STATISTICS_MD5: dict[int, set[str]] = {}  # rows -> md5s of statistics.json (one: equal)


def batch_row(
    n: int, workdir: Path, nanny: bool, repeat: int = 1, memory_rows: int | None = None
) -> str:
    import hashlib
    import shutil
    import statistics

    folder = workdir / f"batch-{n}"
    make_batch(n, folder)
    config = _config(folder, memory_rows)
    runs = []
    for _ in range(repeat):  # a run of a few seconds is at the mercy of one burst of load
        shutil.rmtree(folder / "reports", ignore_errors=True)
        runs.append(timed(
            [sys.executable, "-c", OURS_CLI, "analyze", "--once", "--config", config,
             "--ground-truth", "gt"], folder))  # fmt: skip
    ours_cpu = CPU_S[" ".join([sys.executable, "-c", OURS_CLI])]
    own = [[float(v) for v in run[2].strip().splitlines()[-1].split()[1:]] for run in runs]
    OWN_RSS[n] = max(o[0] for o in own)
    budget = "default" if memory_rows is None else f"{memory_rows:,}"
    print(f"{n:>9} batch_memory_rows {budget}: peak RSS: our process {OWN_RSS[n]:.0f} MB,"
          f" its workers {max(o[1] for o in own):.0f} MB; CPU {ours_cpu:.2f} s (last run)",
          flush=True)  # fmt: skip
    ours_s = statistics.median(run[0] for run in runs)
    ours_mb = max(run[1] for run in runs)
    if repeat > 1:
        shown = ", ".join(f"{run[0]:.2f}" for run in runs)
        print(f"{n:>9} ours, {repeat} runs: {shown} s (median below)", flush=True)
    report = next((folder / "reports").rglob("model_quality"))
    digest = hashlib.md5(usedforsecurity=False)
    for name in ("statistics.json", "constraint_violations.json", "modelmon.json"):
        digest.update((report / name).read_bytes())
    REPORTS_MD5[(n, memory_rows)] = digest.hexdigest()[:12]
    stats_md5 = hashlib.md5((report / "statistics.json").read_bytes(), usedforsecurity=False)
    STATISTICS_MD5.setdefault(n, set()).add(stats_md5.hexdigest())
    print(f"{n:>9} reports md5 {digest.hexdigest()[:12]}, statistics.json alone"
          f" {stats_md5.hexdigest()[:12]}", flush=True)  # fmt: skip
    stats = json.loads((report / "statistics.json").read_text())["binary_classification_metrics"]
    matched = json.loads((report / "modelmon.json").read_text())["labels"]["matched"]
    assert matched == n, matched
    floor = run(sys.executable, FLOOR, str(folder / "arrays.npz"))
    assert abs(stats["auc"]["value"] - floor["auc"]) < 1e-9, (stats["auc"], floor)
    line = f"{n:>9} {ours_s:>8.2f} {ours_mb:>7.0f} {floor['seconds']:>8.2f}"
    if nanny:
        same_s, same_mb, printed = timed([str(NANNYML), "-c", NANNY_CAPTURE, str(folder)], folder)
        same_cpu = CPU_S[" ".join([str(NANNYML), "-c", NANNY_CAPTURE])]
        # under load the wall ratio tends to this one (idle, ours runs on both cores)
        print(
            f"{n:>9} CPU s (user + system): ours {ours_cpu:.2f} (its last run), NannyML same"
            f" files {same_cpu:.2f} ({same_cpu / ours_cpu:.2f}x)",
            flush=True,
        )
        same = json.loads(printed.strip().splitlines()[-1].replace("'", '"'))
        assert abs(same["auc"] - floor["auc"]) < 1e-6, (same, floor)
        whole_s, whole_mb, printed = timed([str(NANNYML), "-c", NANNY_FILES, str(folder)], folder)
        theirs = json.loads(printed.strip().splitlines()[-1].replace("'", '"'))
        assert abs(theirs["auc"] - floor["auc"]) < 1e-6, (theirs, floor)
        line += (
            f" {same_s:>9.2f} {same_mb:>7.0f} {whole_s:>9.2f} {theirs['compute_s']:>9.2f}"
            f" {whole_mb:>7.0f} {same_s / ours_s:>8.2f} {whole_s / ours_s:>8.2f}"
            f" {theirs['compute_s'] / ours_s:>9.2f}"
        )
    return line


def run(python: Path | str, code: str, *args: str) -> dict[str, float]:
    out = subprocess.run([str(python), "-c", textwrap.dedent(code), *args],
                         check=True, capture_output=True, text=True, env=_env())  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"'))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mqjoin"))
    parser.add_argument("--sqlite", action="store_true", help="the service's SQLite join")
    parser.add_argument("--repeat", type=int, default=3, help="runs of ours (the median)")
    parser.add_argument("--no-nannyml", action="store_true", help="ours and the floor only")
    parser.add_argument(
        "--memory-rows", type=int, nargs="+", default=[None],
        help="analyzer.model_quality.batch_memory_rows: each size is run with each (default:"
        " the config's default)",
    )  # fmt: skip
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    nanny = NANNYML_READY.exists() and not args.no_nannyml
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)
    if not args.sqlite:
        print(f"{'rows':>9} {'ours s':>8} {'RSS MB':>7} {'floor s':>8} {'NML same':>9}"
              f" {'RSS MB':>7} {'NML csv':>9} {'compute':>9} {'RSS MB':>7} {'same/us':>8}"
              f" {'csv/us':>8} {'compute/us':>9}")  # fmt: skip
        for memory_rows in args.memory_rows:
            OWN_RSS.clear()
            for n in args.rows:
                print(batch_row(n, args.workdir, nanny, args.repeat, memory_rows), flush=True)
            sizes = sorted(OWN_RSS)
            for low, high in itertools.pairwise(sizes):  # what memory does per row: the slope
                slope = (OWN_RSS[high] - OWN_RSS[low]) / (high - low) * 1e6
                print(f"our process, batch_memory_rows {memory_rows or 'default'}, {low:,} →"
                      f" {high:,} rows: {slope:.1f} MiB per million rows"
                      f" (~{slope * 1.048576:.0f} bytes a row)", flush=True)  # fmt: skip
        if len(args.memory_rows) > 1:
            for n, digests in STATISTICS_MD5.items():
                same = "the same" if len(digests) == 1 else "DIFFERENT"
                # modelmon.json's estimate may differ in its last bits (sums in blocks)
                whole = {md5 for (rows, _), md5 in REPORTS_MD5.items() if rows == n}
                all_three = "the same" if len(whole) == 1 else f"{len(whole)} different"
                print(f"{n:>9} across the budgets: statistics.json {same}, the three report"
                      f" files {all_three}", flush=True)  # fmt: skip
        print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)
        return
    print(f"{'rows':>9} {'ours s':>8} {'join s':>7} {'RSS MB':>7} {'floor s':>8}"
          f" {'NannyML s':>10} {'RSS MB':>7} {'NannyML/ours':>13}")  # fmt: skip
    for n in args.rows:
        data = args.workdir / f"rows-{n}.npz"
        if not data.exists():
            subprocess.run([sys.executable, "-c", MAKE, str(n), str(data)], check=True)
        db = args.workdir / f"join-{n}.db"
        for old in args.workdir.glob(f"join-{n}.db*"):
            old.unlink()
        ours = run(sys.executable, OURS, str(data), str(db))
        floor = run(sys.executable, FLOOR, str(data))
        assert abs(ours["auc"] - floor["auc"]) < 1e-9, (ours, floor)
        theirs = run(NANNYML, NANNY, str(data)) if nanny else None
        line = (
            f"{n:>9} {ours['seconds']:>8.2f} {ours['join_s']:>7.2f} {ours['rss_mb']:>7.0f}"
            f" {floor['seconds']:>8.2f}"
        )
        if theirs:
            ratio = theirs["seconds"] / ours["seconds"]
            line += f" {theirs['seconds']:>10.2f} {theirs['rss_mb']:>7.0f} {ratio:>13.2f}"
        else:
            line += f" {'(no venv)':>10}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
