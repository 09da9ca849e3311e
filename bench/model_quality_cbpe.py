"""Label-free estimate on covariate shift: ours against NannyML 0.13's CBPE, same windows.

    python bench/model_quality_cbpe.py [--windows 20] [--sizes 1000 10000 100000]

The setting of ``bench/model_quality_verdict.py``'s estimate columns: a calibrated binary
model (score ~ Beta(2, 3), label ~ Bernoulli(score), prediction = score ≥ 0.5), a 20,000-row
reference, and windows under a covariate shift that keeps calibration (score ~ Beta(3, 2)).
The windows are drawn once, here (seed 0; the same generator and distribution as the verdict
bench, not its exact draws, which interleave with its other windows), and both estimators
see exactly them:

- **ours**: ``fit_calibrator`` on the reference, ``estimate_binary`` per window;
- **NannyML 0.13** CBPE (in ``/work/nannyml-venv``, usage reporting off): fitted on the
  same reference, one chunk per window (``chunk_size`` = the window's size, windows
  concatenated in order).

``--tables current_covariate.csv current_nodrift.csv``: instead, the project's reference
tables (``tests/reference/data``): both fitted on ``baseline.csv``, each table estimated as
one window and as windows of 1,000 rows, beside the realized AUC (whether the AUC
estimate's offset on a table is ours or the method's).

Prints, per window size, the mean absolute error of the estimated accuracy, F1 and AUC
against the realized ones (computed on the window's labels), for both, and how often the
realized value fell inside each one's band (ours: the 95% band; NannyML's: its
``lower/upper_confidence_boundary``, ± 3 sampling errors).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyzer.monitors.model_quality.estimate import estimate_binary, fit_calibrator
from analyzer.monitors.model_quality.metrics import binary_metrics

NANNYML = Path("/work/nannyml-venv/bin/python")
NAMES = {"accuracy": "accuracy", "f1": "f1", "auc": "roc_auc"}

NANNY = """
import json, sys, warnings
warnings.simplefilter("ignore")
import numpy as np, pandas as pd, nannyml as nml
data = np.load(sys.argv[1]); n = int(sys.argv[2])
def frame(score, label, start):
    seconds = pd.to_timedelta(np.arange(score.size), "s")
    return pd.DataFrame({"timestamp": pd.Timestamp(start) + seconds, "y_pred_proba": score,
                         "y_pred": (score >= 0.5).astype(int), "y_true": label})
reference = frame(data["ref_score"], data["ref_label"], "2025-01-01")
analysis = frame(data["score"], data["label"], "2026-01-01").drop(columns=["y_true"])
cbpe = nml.CBPE(y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="y_true",
                timestamp_column_name="timestamp", metrics=["roc_auc", "f1", "accuracy"],
                problem_type="classification_binary", chunk_size=n)
cbpe.fit(reference)
df = cbpe.estimate(analysis).filter(period="analysis").to_df()
out = {}
for metric in ("roc_auc", "f1", "accuracy"):
    out[metric] = {key: df[(metric, key)].tolist()
                   for key in ("value", "lower_confidence_boundary", "upper_confidence_boundary")}
print(json.dumps(out))
"""


TABLE_NANNY = """
import json, sys, warnings
warnings.simplefilter("ignore")
import numpy as np, pandas as pd, nannyml as nml
ref, cur, n = pd.read_csv(sys.argv[1]), pd.read_csv(sys.argv[2]), int(sys.argv[3])
def frame(df, start):
    seconds = pd.to_timedelta(np.arange(len(df)), "s")
    return pd.DataFrame({"timestamp": pd.Timestamp(start) + seconds, "y_pred_proba": df.score,
                         "y_pred": (df.score >= 0.5).astype(int), "y_true": df.label})
cbpe = nml.CBPE(y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="y_true",
                timestamp_column_name="timestamp", metrics=["roc_auc"],
                problem_type="classification_binary", chunk_size=n)
cbpe.fit(frame(ref, "2025-01-01"))
analysis = frame(cur, "2026-01-01").drop(columns=["y_true"])
df = cbpe.estimate(analysis).filter(period="analysis").to_df()
print(json.dumps(df[("roc_auc", "value")].tolist()))
"""
TABLES = Path(__file__).resolve().parents[1] / "tests" / "reference" / "data"


def _columns(path: Path) -> tuple[np.ndarray, np.ndarray]:
    table = np.genfromtxt(path, delimiter=",", names=True, dtype=None, encoding="utf-8")
    return table["score"].astype(np.float64), table["label"].astype(np.int64)


def tables(names: list[str]) -> None:
    """Ours and NannyML's AUC estimate on whole reference tables, beside the realized AUC."""
    rs, ry = _columns(TABLES / "baseline.csv")
    calibrator = fit_calibrator(rs, ry)
    print(f"{'table':>24} {'rows':>6} {'windows':>7} {'realized':>9} {'ours':>7} {'NannyML':>8}")
    for name in names:
        s, y = _columns(TABLES / name)
        for n in (s.size, 1_000):
            starts = range(0, s.size - n + 1, n)
            realized = [float(binary_metrics(y[i:i + n], (s[i:i + n] >= 0.5).astype(np.int64),
                                             s[i:i + n])["auc"]) for i in starts]  # fmt: skip
            ours = [estimate_binary(s[i:i + n], (s[i:i + n] >= 0.5).astype(np.int64),
                                    calibrator, seed=k)["auc"].value
                    for k, i in enumerate(starts)]  # fmt: skip
            done = subprocess.run(
                [str(NANNYML), "-c", textwrap.dedent(TABLE_NANNY), str(TABLES / "baseline.csv"),
                 str(TABLES / name), str(n)],
                check=True, capture_output=True, text=True,
                env={"PATH": "/usr/bin:/bin", "NML_DISABLE_USAGE_LOGGING": "1"},
            )  # fmt: skip
            theirs = json.loads(done.stdout.strip().splitlines()[-1])[: len(realized)]
            print(f"{name:>24} {n:>6} {len(realized):>7} {np.mean(realized):>9.4f}"
                  f" {np.mean(ours):>7.4f} {np.mean(theirs):>8.4f}")  # fmt: skip


def draw(rng: np.random.Generator, n: int, a: float = 2, b: float = 3):
    score = rng.beta(a, b, n)
    y = (rng.random(n) < score).astype(np.int64)
    return y, (score >= 0.5).astype(np.int64), score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=20)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--tables", nargs="+", metavar="CSV", help="reference tables instead")
    args = parser.parse_args()
    if args.tables:
        tables(args.tables)
        return
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    rng = np.random.default_rng(0)
    yr, _, sr = draw(rng, 20_000)
    calibrator = fit_calibrator(sr, yr)
    print(f"{'labels':>8} {'metric':>9} {'MAE ours':>9} {'MAE NannyML':>12}"
          f" {'in band ours':>13} {'in band NannyML':>16}")  # fmt: skip
    for n in args.sizes:
        windows = [draw(rng, n, a=3, b=2) for _ in range(args.windows)]
        ours: dict[str, list[float]] = {name: [] for name in NAMES}
        inside: dict[str, int] = dict.fromkeys(NAMES, 0)
        realized: dict[str, list[float]] = {name: [] for name in NAMES}
        for w, (y, p, s) in enumerate(windows):
            estimated = estimate_binary(s, p, calibrator, seed=w)
            truth = binary_metrics(y, p, s)
            for name in NAMES:
                realized[name].append(float(truth[name]))
                ours[name].append(abs(estimated[name].value - float(truth[name])))
                inside[name] += estimated[name].low <= float(truth[name]) <= estimated[name].high
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "windows.npz"
            np.savez(
                path,
                ref_score=sr,
                ref_label=yr,
                score=np.concatenate([s for _, _, s in windows]),
                label=np.concatenate([y for y, _, _ in windows]),
            )
            done = subprocess.run(
                [str(NANNYML), "-c", textwrap.dedent(NANNY), str(path), str(n)],
                check=True, capture_output=True, text=True,
                env={"PATH": "/usr/bin:/bin", "NML_DISABLE_USAGE_LOGGING": "1"},
            )  # fmt: skip
        theirs = json.loads(done.stdout.strip().splitlines()[-1])
        for name, metric in NAMES.items():
            values = np.array(theirs[metric]["value"][: args.windows])
            low = np.array(theirs[metric]["lower_confidence_boundary"][: args.windows])
            high = np.array(theirs[metric]["upper_confidence_boundary"][: args.windows])
            truth = np.array(realized[name])
            error = float(np.mean(np.abs(values - truth)))
            covered = float(np.mean((low <= truth) & (truth <= high)))
            print(
                f"{n:>8} {name:>9} {np.mean(ours[name]):>9.4f} {error:>12.4f}"
                f" {inside[name] / args.windows:>13.2f} {covered:>16.2f}",
                flush=True,
            )
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
