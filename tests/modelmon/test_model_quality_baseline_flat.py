"""``modelmon baseline --model-quality`` from a capture folder past ``batch_memory_rows``.

The real command (a subprocess, real files) with a budget far below the rows joins and
evaluates on disk as ``analyze --once`` does (``model_quality_spilled``): the metrics are the
in-memory path's (binary and multiclass to the bit; a regression's r2 to 1e-12: the labels'
spread summed in blocks), ``TMPDIR`` is left empty, and the calibrator is fitted on a seeded
sample of at most half the budget's pairs: the same bytes on a re-run, the full fit when the
pairs fit in the sample, close to the full fit otherwise (tolerance below).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analyzer.ingest.model_quality_files import BadLines
from analyzer.ingest.model_quality_spill import Sink
from analyzer.ingest.model_quality_spilled import calibration_pairs
from analyzer.monitors.model_quality.estimate import estimate_binary, fit_calibrator
from modelmon.cli.model_quality_baseline import run_model_quality_baseline
from modelmon.config import load_config
from tests.modelmon.test_model_quality_baseline import config, ground_truth_line, write_capture

N = 2400  # predictions; labels for all but 100, 5 repeated, 3 of unknown ids


def write_window(root: Path, problem: str) -> int:
    """The capture folder and the ground-truth folder; returns the pairs that join."""
    rng = np.random.default_rng(11)
    if problem == "BinaryClassification":
        score = rng.beta(2, 3, N).round(3)  # ties, on both sides of range edges
        outputs = [f"{s}" for s in score]
        labels = [str(int(y)) for y in rng.random(N) < score]
    elif problem == "MulticlassClassification":
        names = np.array(["cat", "dog", "owl", "emu"])
        truth = rng.choice(names, N)
        outputs = list(np.where(rng.random(N) < 0.6, truth, rng.choice(names, N)))
        labels = list(truth)
    else:
        truth = rng.normal(size=N) * 3 + 1
        outputs = [f"{t + e:.6f}" for t, e in zip(truth, rng.normal(size=N), strict=True)]
        labels = [f"{t:.6f}" for t in truth]
    keys = [f"inf-{i}" if i % 2 else f"ev-{i}" for i in range(N)]
    rows = [(f"ev-{i}", keys[i] if i % 2 else None, out) for i, out in enumerate(outputs)]
    write_capture(root / "capture", rows)
    order = rng.permutation(N)[: N - 100]
    lines = [ground_truth_line(keys[i], labels[i]) for i in order]
    lines += [ground_truth_line(keys[i], labels[i]) for i in order[:5]]  # repeats: first stands
    lines += [ground_truth_line(f"unknown-{j}", labels[j]) for j in range(3)]
    truth_dir = root / "gt" / "2026" / "03" / "01" / "12"
    truth_dir.mkdir(parents=True)
    (truth_dir / "labels.jsonl").write_text("".join(lines))
    return N - 100


ATTRIBUTES: dict[str, dict[str, Any]] = {
    "BinaryClassification": {"probability_attribute": "0"},
    "MulticlassClassification": {"inference_attribute": "0"},
    "Regression": {"inference_attribute": "0"},
}


def baseline(root: Path, problem: str, budget: int | None, out: str) -> dict[str, Any]:
    """Run the command with ``budget`` (None: the default, in memory here); the files written,
    as bytes and parsed, and its stdout. ``TMPDIR`` is a folder of its own, left empty."""
    cfg = config(root, problem_type=problem, **ATTRIBUTES[problem],
                 **({"batch_memory_rows": budget} if budget is not None else {}))  # fmt: skip
    spill = root / f"tmp-{out}"
    spill.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "modelmon", "baseline", "--config", str(cfg), "--model-quality",
         "--data", "capture", "--ground-truth", "gt", "--out", out],
        cwd=root, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TMPDIR": str(spill)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert ("joined on disk" in done.stdout) == (budget is not None), done.stdout
    assert list(spill.iterdir()) == []  # the temporary files went
    files = {name: (root / out / name).read_bytes()
             for name in ("statistics.json", "constraints.json")}  # fmt: skip
    return {"bytes": files, "stdout": done.stdout,
            "statistics": json.loads(files["statistics.json"])}  # fmt: skip


def test_past_the_budget_a_binary_baseline_is_the_in_memory_one(tmp_path: Path) -> None:
    pairs = write_window(tmp_path, "BinaryClassification")
    memory = baseline(tmp_path, "BinaryClassification", None, "memory")
    assert f"{pairs:,} labelled predictions" in memory["stdout"]
    # 2,400 predictions + 2,303 labels = 4,703 rows: 4,600 is past the budget, and its sample
    # (2,300 pairs) holds all 2,300: every byte as in memory, the calibration's too
    whole = baseline(tmp_path, "BinaryClassification", 4600, "whole")
    assert whole["bytes"] == memory["bytes"]
    # 300: a sample of 150 of the 2,300 pairs; the metrics still every bit as in memory
    small = baseline(tmp_path, "BinaryClassification", 300, "small")
    assert small["bytes"]["constraints.json"] == memory["bytes"]["constraints.json"]
    sampled = small["statistics"].pop("modelmon")["calibration"]
    full = memory["statistics"].pop("modelmon")["calibration"]
    assert small["statistics"] == memory["statistics"]  # floats compared as doubles
    assert (sampled["rows"], sampled["sampled_from"], full["rows"]) == (150, pairs, pairs)
    assert "sampled_from" not in full
    assert f"a seeded sample of 150 of the {pairs:,} labelled predictions" in small["stdout"]
    again = baseline(tmp_path, "BinaryClassification", 300, "again")
    assert again["bytes"] == small["bytes"]  # a re-run: the same sample, the same bytes


@pytest.mark.parametrize("problem", ["MulticlassClassification", "Regression"])
def test_past_the_budget_the_other_problem_types(tmp_path: Path, problem: str) -> None:
    write_window(tmp_path, problem)
    memory = baseline(tmp_path, problem, None, "memory")
    disk = baseline(tmp_path, problem, 300, "disk")
    if problem == "MulticlassClassification":
        assert disk["bytes"] == memory["bytes"]
        return
    assert disk["bytes"]["constraints.json"] != b""
    assert_regression_metrics_close(disk["statistics"], memory["statistics"])


def assert_regression_metrics_close(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """Every regression metric of ``got`` within 1e-12 of ``expected``'s (r2 on disk: the
    labels' spread summed in blocks)."""
    got, expected = got["regression_metrics"], expected["regression_metrics"]
    assert got.keys() == expected.keys()
    for name, entry in expected.items():
        for key, value in entry.items():
            assert got[name][key] == pytest.approx(value, rel=1e-12, abs=1e-12), (name, key)


def spilled_pairs(n: int, budget: int) -> tuple[Any, np.ndarray, np.ndarray]:
    """``n`` binary pairs, every prediction labelled, through the sink past ``budget``."""
    rng = np.random.default_rng(5)
    keys = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64)
    scores = rng.beta(2, 3, n).round(3)
    labels = (rng.random(n) < scores).astype(np.int8)
    sink = Sink(np.int8, budget, True)
    for lo in range(0, n, 4000):
        sink.add_predictions(keys[lo : lo + 4000], (scores[lo : lo + 4000] >= 0.5).astype(np.int8),
                             scores[lo : lo + 4000])  # fmt: skip
    order = rng.permutation(n)
    sink.add_labels(keys[order], labels[order])
    return sink.finish(BadLines(), (0.0, 1.0)), scores, labels


def test_the_calibrator_from_the_sample_is_close_to_the_full_fit() -> None:
    """40,000 pairs, a sample of 5,000 (budget 10,000). Deterministic: the same calibrator
    twice. Close: (1) the mean absolute difference of the calibrated probabilities over a
    window's scores is below k^(-1/3) = 0.058, the rate at which an isotonic fit of k rows
    approaches a smooth monotone curve (observed: 0.020); (2) each metric the full fit
    estimates lies inside the band the sample's calibrator gives (the band is widened by
    √(1 + n/rows) with rows = 5,000, the calibration's own error at the sample's size)."""
    spilled, scores, labels = spilled_pairs(40_000, 10_000)
    with spilled.spill:
        first = calibration_pairs(spilled, 5000)
        second = calibration_pairs(spilled, 5000)
        everything = calibration_pairs(spilled, 40_000)
    assert np.array_equal(everything[0], scores) and np.array_equal(everything[1], labels)
    assert first[0].size == 5000
    sample = fit_calibrator(*first)
    assert sample == fit_calibrator(*second) and sample.rows == 5000 and sample.trusted
    full = fit_calibrator(scores, labels.astype(np.int64))
    window = np.random.default_rng(9).beta(2, 3, 5000).round(3)
    assert np.mean(np.abs(sample(window) - full(window))) < 5000 ** (-1 / 3)
    predicted = (window >= 0.5).astype(np.int64)
    by_sample = estimate_binary(window, predicted, sample)
    by_full = estimate_binary(window, predicted, full)
    for name, estimate in by_sample.items():
        assert estimate.low <= by_full[name].value <= estimate.high, name


class SeesTheSpill:
    """The progress hook: records whether the join had gone to disk (a ``modelmon-`` folder
    in the temporary folder) at each tick."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seen: list[bool] = []

    def tick(self, rows: int) -> None:
        self.seen.append(any(p.name.startswith("modelmon-") for p in self.folder.iterdir()))


def test_past_the_budget_no_match_is_an_input_error_and_tmpdir_is_left_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_capture(tmp_path / "capture", [(f"ev-{i}", None, "0.5") for i in range(400)])
    truth = tmp_path / "gt" / "2026" / "03" / "01" / "12"
    truth.mkdir(parents=True)
    (truth / "labels.jsonl").write_text("".join(ground_truth_line(f"x-{i}", "1")
                                                for i in range(400)))  # fmt: skip
    cfg = load_config(config(tmp_path, problem_type="BinaryClassification",
                             probability_attribute="0", batch_memory_rows=300))  # fmt: skip
    spill = tmp_path / "tmp"
    spill.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spill))
    progress = SeesTheSpill(spill)
    code = run_model_quality_baseline(cfg, tmp_path / "capture", None, tmp_path / "gt",
                                      tmp_path / "o", progress)  # fmt: skip
    assert code == 2
    assert progress.seen[-1]  # the labels went to disk (800 rows, a budget of 300)
    err = capsys.readouterr().err
    assert "no prediction could be joined to a label" in err
    assert "'unmatched': 400, 'unlabelled': 400" in err
    assert list(spill.iterdir()) == []  # the spill went, on the error too
    assert not (tmp_path / "o").exists()
