"""Statistical quality of the model-quality verdict and of the label-free estimate (issue 11).

    python bench/model_quality_verdict.py [--windows 200] [--sizes 100 1000 10000 100000]

A calibrated binary model (score ~ Beta(2, 3), label ~ Bernoulli(score), prediction
score ≥ 0.5); the baseline is 20,000 of its rows, its thresholds SageMaker's suggestion
(each metric's baseline value). Prints, per window size:

- the share of unchanged windows in ``alert`` (our false alarms, all 11 metrics together),
  in ``warning``, and where SageMaker's rule (worse than the threshold at all) fires;
- the detection rate of a true accuracy drop of 0.05 (labels flipped at random);
- for a covariate shift that keeps calibration (score ~ Beta(3, 2)), the mean absolute
  error of the estimated accuracy, F1 and AUC against the realized ones, and how often the
  realized value falls inside the estimate's band.

Regression (errors N(0, 0.5), drop: N(0, 0.55)) gets the same false-alarm and detection
rows.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from analyzer.monitors.model_quality.documents import parse_constraints, suggest_constraints
from analyzer.monitors.model_quality.estimate import estimate_binary, fit_calibrator
from analyzer.monitors.model_quality.evaluate import baseline_from_statistics, evaluate_window
from analyzer.monitors.model_quality.metrics import binary_metrics

ALPHA = 0.01
BINARY = "BinaryClassification"


def draw(rng: np.random.Generator, n: int, flip: float = 0.0, a: float = 2, b: float = 3):
    score = rng.beta(a, b, n)
    y = (rng.random(n) < score).astype(np.int64)
    if flip:
        swap = rng.random(n) < flip
        y[swap] = 1 - y[swap]
    return y, (score >= 0.5).astype(np.int64), score


def binary_rows(windows: int, sizes: list[int]) -> None:
    rng = np.random.default_rng(0)
    yb, pb, sb = draw(rng, 20_000)
    base = evaluate_window(BINARY, yb, pb, sb, {}, None, false_alarm_rate=ALPHA, min_labels=1)
    stats = base.statistics()
    constraints = parse_constraints(BINARY, suggest_constraints(BINARY, stats))
    baseline = baseline_from_statistics(BINARY, stats)
    accuracy = stats["binary_classification_metrics"]["accuracy"]["value"]
    flip = 0.05 / (2 * accuracy - 1)  # flipping a share f of labels moves accuracy by f(2a−1)
    calibrator = fit_calibrator(sb, yb)
    print(f"binary: baseline 20,000 rows, accuracy {accuracy:.4f}, {len(constraints)} metrics")
    print(
        f"{'labels':>8} {'alert':>7} {'warning':>8} {'SageMaker':>10} {'drop .05':>9}"
        f" {'MAE acc':>8} {'MAE f1':>7} {'MAE auc':>8} {'in band':>8} {'ms/win':>7}"
    )
    for n in sizes:
        start = time.perf_counter()
        alert = warning = sagemaker = detected = inside = checked = 0
        errors: dict[str, list[float]] = {"accuracy": [], "f1": [], "auc": []}
        for w in range(windows):
            y, p, s = draw(rng, n)
            r = evaluate_window(
                BINARY, y, p, s, constraints, baseline, false_alarm_rate=ALPHA,
                min_labels=100, seed=w,
            )  # fmt: skip
            alert += r.state == "alert"
            warning += r.state == "warning"
            sagemaker += any(d.sagemaker_violation for d in r.decisions.values())
            y, p, s = draw(rng, n, flip=flip)
            r = evaluate_window(
                BINARY, y, p, s, constraints, baseline, false_alarm_rate=ALPHA,
                min_labels=100, seed=w,
            )  # fmt: skip
            detected += r.decisions["accuracy"].state == "alert"
            if w < max(20, windows // 10):
                y, p, s = draw(rng, n, a=3, b=2)
                estimated = estimate_binary(s, p, calibrator, seed=w)
                realized = binary_metrics(y, p, s)
                for name, bucket in errors.items():
                    bucket.append(abs(estimated[name].value - float(realized[name])))
                    est = estimated[name]
                    inside += est.low <= float(realized[name]) <= est.high
                    checked += 1
        elapsed = (time.perf_counter() - start) * 1000 / windows
        print(
            f"{n:>8} {alert / windows:>7.3f} {warning / windows:>8.3f}"
            f" {sagemaker / windows:>10.3f} {detected / windows:>9.3f}"
            f" {np.mean(errors['accuracy']):>8.4f} {np.mean(errors['f1']):>7.4f}"
            f" {np.mean(errors['auc']):>8.4f} {inside / checked:>8.3f} {elapsed:>7.0f}"
        )


def regression_rows(windows: int, sizes: list[int]) -> None:
    rng = np.random.default_rng(1)
    truth = rng.normal(size=20_000)
    base = evaluate_window(
        "Regression", truth, truth + rng.normal(0, 0.5, 20_000), None, {}, None,
        false_alarm_rate=ALPHA, min_labels=1,
    )  # fmt: skip
    stats = base.statistics()
    constraints = parse_constraints("Regression", suggest_constraints("Regression", stats))
    baseline = baseline_from_statistics("Regression", stats)
    print("regression: baseline 20,000 rows, error N(0, 0.5); drop: error N(0, 0.55)")
    print(f"{'labels':>8} {'alert':>7} {'warning':>8} {'SageMaker':>10} {'drop':>7}")
    for n in sizes:
        alert = warning = sagemaker = detected = 0
        for w in range(windows):
            t = rng.normal(size=n)
            r = evaluate_window(
                "Regression", t, t + rng.normal(0, 0.5, n), None, constraints, baseline,
                false_alarm_rate=ALPHA, min_labels=100, seed=w,
            )  # fmt: skip
            alert += r.state == "alert"
            warning += r.state == "warning"
            sagemaker += any(d.sagemaker_violation for d in r.decisions.values())
            r = evaluate_window(
                "Regression", t, t + rng.normal(0, 0.55, n), None, constraints, baseline,
                false_alarm_rate=ALPHA, min_labels=100, seed=w,
            )  # fmt: skip
            detected += r.state == "alert"
        print(
            f"{n:>8} {alert / windows:>7.3f} {warning / windows:>8.3f}"
            f" {sagemaker / windows:>10.3f} {detected / windows:>7.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1_000, 10_000, 100_000])
    parser.add_argument("--regression-only", action="store_true")
    args = parser.parse_args()
    if not args.regression_only:
        binary_rows(args.windows, args.sizes)
    regression_rows(args.windows, args.sizes)


if __name__ == "__main__":
    main()
