"""``modelmon baseline --model-quality`` from a *table* (CSV with a header, JSON Lines) past
``batch_memory_rows``: the rows go to the batch join's sink on disk (each row its own key)
and are evaluated as a capture folder's pairs past the budget: the metrics are the in-memory
path's (binary and multiclass to the bit, a regression's r2 to 1e-12), ``TMPDIR`` is left
empty, and the summary says so. The real command in a subprocess, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.modelmon.test_model_quality_baseline import config
from tests.modelmon.test_model_quality_baseline_flat import assert_regression_metrics_close

N = 2400


def write_table(root: Path, problem: str, fmt: str) -> Path:
    rng = np.random.default_rng(7)
    if problem == "BinaryClassification":
        score = rng.beta(2, 3, N).round(3)
        rows = [{"p": float(s), "y": int(y)} for s, y in zip(score, rng.random(N) < score,
                                                              strict=True)]  # fmt: skip
    elif problem == "MulticlassClassification":
        names = ["cat", "dog", "owl", "emu"]
        truth = rng.choice(names, N)
        guess = np.where(rng.random(N) < 0.6, truth, rng.choice(names, N))
        rows = [{"p": str(g), "y": str(t)} for g, t in zip(guess, truth, strict=True)]
    else:
        truth = rng.normal(size=N) * 3 + 1
        rows = [{"p": round(float(t + e), 6), "y": round(float(t), 6)}
                for t, e in zip(truth, rng.normal(size=N), strict=True)]  # fmt: skip
    path = root / f"table.{fmt}"
    if fmt == "csv":
        path.write_text("p,y\n" + "".join(f"{r['p']},{r['y']}\n" for r in rows))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def baseline(root: Path, problem: str, data: Path, budget: int | None, out: str) -> dict[str, Any]:
    output = {"probability_attribute": "p"} if problem == "BinaryClassification" else {
        "inference_attribute": "p"}  # fmt: skip
    cfg = config(root, problem_type=problem, ground_truth_attribute="y", **output,
                 **({"batch_memory_rows": budget} if budget is not None else {}))  # fmt: skip
    spill = root / f"tmp-{out}"
    spill.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "modelmon", "baseline", "--config", str(cfg), "--model-quality",
         "--data", str(data), "--out", out],
        cwd=root, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TMPDIR": str(spill)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert ("joined on disk" in done.stdout) == (budget is not None), done.stdout
    assert "join:" not in done.stdout  # a table's rows are its pairs
    assert f"{N:,} labelled predictions" in done.stdout
    assert list(spill.iterdir()) == []  # the temporary files went
    files = {name: (root / out / name).read_bytes()
             for name in ("statistics.json", "constraints.json")}  # fmt: skip
    return {"bytes": files, "stdout": done.stdout,
            "statistics": json.loads(files["statistics.json"])}  # fmt: skip


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_past_the_budget_a_binary_table_gives_the_in_memory_metrics(
    tmp_path: Path, fmt: str
) -> None:
    data = write_table(tmp_path, "BinaryClassification", fmt)
    memory = baseline(tmp_path, "BinaryClassification", data, None, "memory")
    disk = baseline(tmp_path, "BinaryClassification", data, 300, "disk")
    assert disk["bytes"]["constraints.json"] == memory["bytes"]["constraints.json"]
    sampled = disk["statistics"].pop("modelmon")["calibration"]
    full = memory["statistics"].pop("modelmon")["calibration"]
    assert disk["statistics"] == memory["statistics"]  # every metric, as doubles
    assert (sampled["rows"], sampled["sampled_from"], full["rows"]) == (150, N, N)


@pytest.mark.parametrize("problem", ["MulticlassClassification", "Regression"])
def test_past_the_budget_the_other_problem_types_from_a_table(tmp_path: Path, problem: str) -> None:
    data = write_table(tmp_path, problem, "csv")
    memory = baseline(tmp_path, problem, data, None, "memory")
    disk = baseline(tmp_path, problem, data, 300, "disk")
    if problem == "MulticlassClassification":
        assert disk["bytes"] == memory["bytes"]
        return
    assert_regression_metrics_close(disk["statistics"], memory["statistics"])
