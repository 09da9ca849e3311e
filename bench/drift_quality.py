"""Statistical quality of the drift verdict (issue 3, "Measured" item 1).

    python bench/drift_quality.py [--windows 200] [--evidently-windows 6] [--k 2048]
                                  [--sizes 100 1000 10000 100000]

A baseline of 1,000,000 rows per feature (standard normal, sketched once with KLL k=2048),
windows of 100 / 1,000 / 10,000 / 100,000 rows sketched the same way as the live path.
Prints, for thresholds 0.1 and 0.02, for both of our verdicts (``analyzer.drift_verdict``:
``significant``, the default, and ``confident``; decided by
``analyzer.monitors.data_quality.drift`` itself):

- the share of windows (20 features each, same distribution) with any false violation,
  for our rule and, on the same windows, SageMaker's Simple and Robust rules;
- the detection rate when one feature's true L∞ is 1.5 × the threshold (a location shift);
- the smallest true L∞ detected in 95% of windows, per window size (bisection).

With ``/work/evidently-venv/.ready`` present, Evidently 0.7's default DataDriftPreset runs in
that venv on a subsample of the same windows (saved to a temp folder) and its verdicts are
printed beside ours.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path
from statistics import NormalDist

import numpy as np
from datasketches import kll_doubles_sketch

from analyzer.monitors.data_quality.drift import (
    VERDICTS,
    DriftDecision,
    categorical_drift,
    kll_epsilon,
    numeric_drift,
    sampling_margin,
)

K = 2048
N_BASE = 1_000_000
FEATURES = 20
SIZES = (100, 1_000, 10_000, 100_000)
THRESHOLDS = (0.1, 0.02)
ALPHA = 0.01
EVIDENTLY_PY = Path("/work/evidently-venv/bin/python")
EVIDENTLY_READY = Path("/work/evidently-venv/.ready")


Items = tuple[np.ndarray, np.ndarray, float]


def items(values: np.ndarray) -> Items:
    sk = kll_doubles_sketch(K)
    sk.update(values)
    arr = np.array(list(iter(sk)), dtype=np.float64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1], kll_epsilon(K, sk.is_estimation_mode())


def shift_for(distance: float) -> float:
    """Location shift δ of N(0,1) whose KS distance to N(0,1) is ``distance``."""
    return 2 * NormalDist().inv_cdf((1 + distance) / 2)


def oracle_d95(m: int, tau: float) -> float:
    """Smallest true L∞ that ANY test with the same false-alarm budget detects 95% of the time.

    An oracle that knows the point x* where |F_b − F_c| is largest (F ≈ 1/2 there) and the
    sign of the difference, with exact CDFs (no sketch error), runs a one-sided z-test at
    level α/F: it needs D ≥ τ + (z(1 − α/F) + z(0.95)) · 0.5 · sqrt(1/n + 1/m).
    """
    z = NormalDist().inv_cdf
    return tau + (z(1 - ALPHA / FEATURES) + z(0.95)) * 0.5 * (1 / N_BASE + 1 / m) ** 0.5


class Bench:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        t = time.perf_counter()
        self.base = [items(self.rng.normal(size=N_BASE)) for _ in range(FEATURES)]
        print(f"baseline: {FEATURES} × {N_BASE:,} rows sketched in {time.perf_counter() - t:.1f} s")

    def decide(self, f: int, window: Items, tau: float, verdict: str) -> DriftDecision:
        """The shipped verdict (``analyzer.monitors.data_quality.drift.numeric_drift``) of one
        feature's window."""
        bv, bw, be = self.base[f]
        cv, cw, ce = window
        return numeric_drift(
            (bv, bw),
            (cv, cw),
            threshold=tau,
            alpha=ALPHA / FEATURES,
            eps_base=be,
            eps_cur=ce,
            verdict=verdict,
        )

    def false_alarms(self, m: int, windows: int) -> dict[str, dict[float, float]]:
        rules = (*VERDICTS, "simple", "sm_robust")
        hits = {r: dict.fromkeys(THRESHOLDS, 0.0) for r in rules}
        margins = []
        for _ in range(windows):
            wins = [items(self.rng.normal(size=m)) for _ in range(FEATURES)]
            margins.append(
                sampling_margin(N_BASE, m, ALPHA / FEATURES) + self.base[0][2] + wins[0][2]
            )
            for tau in THRESHOLDS:
                for verdict in VERDICTS:
                    res = [self.decide(f, w, tau, verdict) for f, w in enumerate(wins)]
                    hits[verdict][tau] += any(r.violation for r in res)
                hits["simple"][tau] += any(r.distance > tau for r in res)
                hits["sm_robust"][tau] += any(r.robust > tau for r in res)
        out = {r: {t: v / windows for t, v in h.items()} for r, h in hits.items()}
        out["margin"] = {t: float(np.mean(margins)) for t in THRESHOLDS}
        return out

    def detection(self, m: int, tau: float, true_d: float, windows: int, verdict: str) -> float:
        delta = shift_for(true_d)
        hit = 0
        for w in range(windows):
            window = items(self.rng.normal(delta, size=m))
            hit += self.decide(w % FEATURES, window, tau, verdict).violation
        return hit / windows

    def smallest_detected(self, m: int, tau: float, windows: int, verdict: str) -> float:
        lo, hi = tau, min(1.0, tau + 4 * sampling_margin(N_BASE, m, ALPHA / FEATURES) + 0.05)
        if self.detection(m, tau, min(hi, 0.999), windows, verdict) < 0.95:
            return float("nan")
        for _ in range(7):
            mid = (lo + hi) / 2
            rate = self.detection(m, tau, mid, windows, verdict)
            lo, hi = (mid, hi) if rate < 0.95 else (lo, mid)
        return hi


EVIDENTLY_SCRIPT = r"""
import json, sys, numpy as np, pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
data = np.load(sys.argv[1])
cols = [f"f{i}" for i in range(data["reference"].shape[1])]
ref = pd.DataFrame(data["reference"], columns=cols)
out = []
for key in sorted(k for k in data.files if k != "reference"):
    snap = Report([DataDriftPreset()]).run(current_data=pd.DataFrame(data[key], columns=cols),
                                           reference_data=ref).dict()
    drifted, dataset = [], False
    for metric in snap["metrics"]:
        cfg = metric["config"]
        if cfg["type"].endswith("ValueDrift"):
            value, thr = metric["value"], cfg["threshold"]
            pval = "p_value" in metric["metric_name"]
            if (value < thr) if pval else (value >= thr):
                drifted.append(cfg["column"])
        elif cfg["type"].endswith("DriftedColumnsCount"):
            dataset = metric["value"]["share"] >= cfg["drift_share"]
    out.append({"key": key, "drifted": drifted, "dataset_drift": dataset})
print(json.dumps(out))
"""


def run_evidently(bench: Bench, windows: int) -> None:
    """Evidently's default verdicts on a subsample of windows (reference: 100,000 rows)."""
    ref = bench.rng.normal(size=(100_000, FEATURES))
    scen = {"null": 0.0, "shift_0.1": shift_for(0.15), "shift_0.02": shift_for(0.03)}
    with tempfile.TemporaryDirectory() as tmp:
        arrays: dict[str, np.ndarray] = {"reference": ref}
        ours: dict[str, bool] = {}
        for m in SIZES:
            for name, delta in scen.items():
                for w in range(windows):
                    x = bench.rng.normal(size=(m, FEATURES))
                    x[:, 0] += delta
                    key = f"{name}|{m:06d}|{w:02d}"
                    arrays[key] = x
                    tau = 0.02 if name == "shift_0.02" else 0.1
                    feats = range(FEATURES) if name == "null" else range(1)
                    ours[key] = any(
                        bench.decide(f, items(x[:, f]), tau, VERDICTS[0]).violation for f in feats
                    )
        path = Path(tmp) / "windows.npz"
        np.savez(path, **arrays)  # type: ignore[arg-type]
        t = time.perf_counter()
        proc = subprocess.run(
            [str(EVIDENTLY_PY), "-c", EVIDENTLY_SCRIPT, str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        took = time.perf_counter() - t
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"\nEvidently 0.7 DataDriftPreset (defaults), {windows} windows per cell, "
        f"reference = 100,000 rows (a subsample: 1M is too slow), {took:.0f} s"
    )
    print(
        f"{'scenario':<12}{'rows':>8}  {'evidently: any column':>22}  {'dataset drift':>14}"
        f"  {'ours: any':>10}"
    )
    for name in scen:
        for m in SIZES:
            sel = [r for r in rows if r["key"].startswith(f"{name}|{m:06d}|")]
            anyc = np.mean(
                [bool(r["drifted"]) if name == "null" else "f0" in r["drifted"] for r in sel]
            )
            ds = np.mean([r["dataset_drift"] for r in sel])
            our = np.mean([ours[r["key"]] for r in sel])
            print(f"{name:<12}{m:>8}  {anyc:>22.0%}  {ds:>14.0%}  {our:>10.0%}")


CAT_P = np.array([0.35, 0.25, 0.2, 0.12, 0.08])  # five categories per feature


def categorical_section(rng: np.random.Generator, windows: int) -> None:
    """Categorical LInfinity: false alarms and detection, ours against the plain rule."""
    base = [
        dict(zip("abcde", rng.multinomial(N_BASE, CAT_P).astype(float), strict=True))
        for _ in range(FEATURES)
    ]
    alpha = ALPHA / FEATURES
    print(
        "\nCategorical (5 categories, LInfinity over shares): false alarms over 20 features,"
        " detection of one feature moved by 1.5 τ (share moved from 'a' to 'e')"
    )
    print(
        f"{'rows':>8} {'τ':>6} {'FA signif.':>11} {'FA conf.':>9} {'plain FA':>9}"
        f" {'detect signif.':>15} {'detect conf.':>13}"
    )
    for m in SIZES:
        for tau in THRESHOLDS:
            fa = dict.fromkeys(VERDICTS, 0)
            det = dict.fromkeys(VERDICTS, 0)
            plain = 0
            moved = CAT_P.copy()
            moved[0] -= 1.5 * tau
            moved[4] += 1.5 * tau
            for _ in range(windows):
                same = [
                    dict(zip("abcde", rng.multinomial(m, CAT_P).astype(float), strict=True))
                    for _ in range(FEATURES)
                ]
                cur = dict(zip("abcde", rng.multinomial(m, moved).astype(float), strict=True))
                for v in VERDICTS:
                    res = [
                        categorical_drift(base[f], c, threshold=tau, alpha=alpha, verdict=v)
                        for f, c in enumerate(same)
                    ]
                    fa[v] += any(r.violation for r in res)
                    det[v] += categorical_drift(
                        base[0], cur, threshold=tau, alpha=alpha, verdict=v
                    ).violation
                plain += any(r.distance > tau for r in res)
            sig, conf = VERDICTS
            print(
                f"{m:>8} {tau:>6} {fa[sig] / windows:>11.1%} {fa[conf] / windows:>9.1%}"
                f" {plain / windows:>9.1%} {det[sig] / windows:>15.1%}"
                f" {det[conf] / windows:>13.1%}"
            )


def main() -> None:
    global K, SIZES
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=200)
    ap.add_argument("--search-windows", type=int, default=200)
    ap.add_argument("--evidently-windows", type=int, default=6)
    ap.add_argument("--seed", type=int, default=20261127)
    ap.add_argument("--k", type=int, default=K, help="KLL k of baseline and window sketches")
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--categorical-only", action="store_true")
    ap.add_argument("--false-alarms-only", action="store_true")
    ap.add_argument("--evidently-only", action="store_true")
    ap.add_argument(
        "--near-only", action="store_true", help="only: how often a true L∞ of τ / 0.9 τ fires"
    )
    args = ap.parse_args()
    K, SIZES = args.k, tuple(args.sizes)
    if args.categorical_only:
        categorical_section(np.random.default_rng(args.seed), args.windows)
        return
    bench = Bench(args.seed)
    if args.evidently_only:
        run_evidently(bench, args.evidently_windows)
        return
    if args.near_only:
        print(f"{'rows':>8} {'τ':>6} {'true L∞':>8} " + " ".join(f"{v:>12}" for v in VERDICTS))
        for m in SIZES:
            for tau in THRESHOLDS:
                for true_d in (tau, 0.9 * tau):
                    rates = [bench.detection(m, tau, true_d, args.windows, v) for v in VERDICTS]
                    print(
                        f"{m:>8} {tau:>6} {true_d:>8.3f} " + " ".join(f"{r:>12.1%}" for r in rates)
                    )
        return
    print(
        f"k={K}, ε(k)={kll_epsilon(K, True):.5f} per sketch, α={ALPHA} per window, "
        f"Bonferroni over {FEATURES} features, {args.windows} windows per cell\n"
    )
    sig, conf = VERDICTS
    print("False alarms (share of same-distribution windows with any violation, 20 features)")
    print(
        f"{'rows':>8} {'τ':>6} {'signif.':>8} {'confident':>10} {'SM Simple':>10}"
        f" {'SM Robust':>10} {'margin M':>9}"
    )
    for m in SIZES:
        t = time.perf_counter()
        fa = bench.false_alarms(m, args.windows)
        margin = fa["margin"][THRESHOLDS[0]]
        for tau in THRESHOLDS:
            print(
                f"{m:>8} {tau:>6} {fa[sig][tau]:>8.1%} {fa[conf][tau]:>10.1%}"
                f" {fa['simple'][tau]:>10.1%} {fa['sm_robust'][tau]:>10.1%} {margin:>9.4f}"
            )
        print(f"{'':>8} ({time.perf_counter() - t:.0f} s)")
    if args.false_alarms_only:
        return
    print("\nDetection (one feature at true L∞ = 1.5 τ) and smallest true L∞ detected 95%;")
    print("'at 0.9τ': how often a true L∞ just UNDER the threshold is reported as a violation")
    print(
        f"{'rows':>8} {'τ':>6} {'det. signif.':>13} {'det. conf.':>11} {'D95 signif.':>12}"
        f" {'D95 conf.':>10} {'oracle D95 conf.':>17} {'at 0.9τ sig.':>13} {'at 0.9τ conf.':>14}"
    )
    for tau in THRESHOLDS:
        for m in SIZES:
            det = {v: bench.detection(m, tau, 1.5 * tau, args.windows, v) for v in VERDICTS}
            d95 = {v: bench.smallest_detected(m, tau, args.search_windows, v) for v in VERDICTS}
            near = {v: bench.detection(m, tau, 0.9 * tau, args.windows, v) for v in VERDICTS}
            print(
                f"{m:>8} {tau:>6} {det[sig]:>13.1%} {det[conf]:>11.1%} {d95[sig]:>12.4f}"
                f" {d95[conf]:>10.4f} {oracle_d95(m, tau):>17.4f} {near[sig]:>13.1%}"
                f" {near[conf]:>14.1%}"
            )
    categorical_section(bench.rng, args.windows)
    if EVIDENTLY_READY.exists() and args.evidently_windows > 0:
        run_evidently(bench, args.evidently_windows)
    else:
        print("\nEvidently: skipped (/work/evidently-venv not ready, or --evidently-windows 0)")


if __name__ == "__main__":
    main()
