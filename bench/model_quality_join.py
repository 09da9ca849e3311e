"""Join + metrics for N predictions and N labels, whole process, against the anchors (issue 11).

    python bench/model_quality_join.py [--rows 100000 1000000] [--workdir /tmp/mqjoin]

Per size, each in a fresh process (wall time and peak RSS of that process):

- **ours**: N captured predictions and N labels (arriving in shuffled order, half before
  their prediction) through ``analyzer.store.model_quality`` into a SQLite file in
  batches of 50,000, one transaction each; then the window's pairs read back and evaluated
  (every binary metric with SageMaker's standard deviations, the verdict against a baseline)
  and the label-free estimate (CBPE) for the same window;
- **floor**: scikit-learn computing accuracy, precision, recall, F1 and AUC on in-memory
  arrays (no join, no storage);
- **NannyML 0.13** (in its own virtualenv at ``/work/nannyml-venv``, when present: ``python
  -m venv /work/nannyml-venv && /work/nannyml-venv/bin/pip install "nannyml==0.13.*"
  statsmodels && touch /work/nannyml-venv/.ready``; 0.13.1 imports statsmodels without
  declaring it): the realized-performance calculator and CBPE on the same rows, joined by
  pandas in memory, with its usage reporting switched off.

Prints seconds, peak RSS and the ratio NannyML / ours.
"""

from __future__ import annotations

import argparse
import json
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


def run(python: Path | str, code: str, *args: str) -> dict[str, float]:
    out = subprocess.run(
        [str(python), "-c", textwrap.dedent(code), *args],
        check=True,
        capture_output=True,
        text=True,
        # NannyML reports usage to a web service unless told not to; nothing leaves here.
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "NML_DISABLE_USAGE_LOGGING": "1"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"'))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mqjoin"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    nanny = NANNYML_READY.exists()
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
