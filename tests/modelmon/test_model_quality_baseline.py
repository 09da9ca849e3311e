"""``modelmon baseline --model-quality``: real subprocesses, real files, AWS's own output."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as sk

from modelmon.capture_record import CaptureSide, build_record
from modelmon.cli.baseline import run_baseline
from modelmon.config import load_config
from tests.shared_data import EXAMPLES

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelmon", "baseline", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def config(tmp_path: Path, **model_quality: Any) -> Path:
    lines = "".join(f"    {k}: {json.dumps(v)}\n" for k, v in model_quality.items())
    path = tmp_path / "modelmon.yaml"
    path.write_text(
        "proxy: {upstream: 'http://127.0.0.1:9'}\nanalyzer:\n  model_quality:\n" + lines
    )
    return path


def read(path: Path) -> Any:
    return json.loads(path.read_text())


def test_reproduces_awss_model_quality_baseline_to_every_digit(tmp_path: Path) -> None:
    folder = EXAMPLES / "model_quality"
    cfg = config(
        tmp_path,
        problem_type="Regression",
        inference_attribute="Prediction",
        ground_truth_attribute="Label",
        r2_convention="sagemaker",
    )
    done = cli("--config", str(cfg), "--model-quality", "--data",
               str(folder / "baseline_dataset.csv"), "--out", "out", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    for name in ("statistics.json", "constraints.json"):
        # Parsed: the same keys, and every number the same double (AWS's digits, exactly).
        assert read(tmp_path / "out" / name) == read(folder / name), name
    assert "modelmon" not in read(tmp_path / "out" / "statistics.json")  # no estimate
    assert "100 labelled predictions" in done.stdout


def binary_rows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    score = rng.beta(2, 3, n).round(4)
    label = (rng.random(n) < score).astype(np.int64)
    return score, label, (score >= 0.5).astype(np.int64)


def test_binary_csv_matches_sklearn_and_saves_the_calibrator(tmp_path: Path) -> None:
    score, label, predicted = binary_rows(3000)
    data = tmp_path / "val.csv"
    data.write_text(
        "x,truth,p,pred\n"
        + "".join(
            f"{i},{y},{s},{q}\n"
            for i, (y, s, q) in enumerate(zip(label, score, predicted, strict=True))
        )
    )
    cfg = config(tmp_path, problem_type="BinaryClassification", inference_attribute="pred",
                 probability_attribute="2", ground_truth_attribute="truth")  # fmt: skip
    done = cli("--config", str(cfg), "--model-quality", "--data", str(data), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "baseline" / "model_quality"  # the config's default baseline files
    stats = read(folder / "statistics.json")["binary_classification_metrics"]
    assert stats["auc"]["value"] == pytest.approx(sk.roc_auc_score(label, score), abs=1e-9)
    assert stats["f1"]["value"] == pytest.approx(sk.f1_score(label, predicted), abs=1e-9)
    assert stats["accuracy"]["standard_deviation"] > 0
    constraints = read(folder / "constraints.json")["binary_classification_constraints"]
    assert constraints["f1"] == {"threshold": stats["f1"]["value"],
                                 "comparison_operator": "LessThanThreshold"}  # fmt: skip
    calibration = read(folder / "statistics.json")["modelmon"]["calibration"]
    assert calibration["trusted"] is True and calibration["rows"] == 3000
    assert "calibration for the label-free estimate: trusted" in done.stdout


def test_jsonl_by_jmespath_and_multiclass(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    truth = rng.choice(["cat", "dog", "owl"], 500)
    guess = np.where(rng.random(500) < 0.7, truth, rng.choice(["cat", "dog", "owl"], 500))
    data = tmp_path / "val.jsonl"
    data.write_text(
        "".join(
            json.dumps({"out": {"label": g}, "y": t}) + "\n"
            for t, g in zip(truth, guess, strict=True)
        )
    )
    cfg = config(tmp_path, problem_type="MulticlassClassification",
                 inference_attribute="out.label", ground_truth_attribute="y")  # fmt: skip
    done = cli("--config", str(cfg), "--model-quality", "--data", str(data), "--out", "o",
               cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    stats = read(tmp_path / "o" / "statistics.json")["multiclass_classification_metrics"]
    assert stats["accuracy"]["value"] == pytest.approx(sk.accuracy_score(truth, guess), abs=1e-9)
    weighted = sk.f1_score(truth, guess, average="weighted")
    assert stats["weighted_f1"]["value"] == pytest.approx(weighted, abs=1e-9)
    owls = int(np.sum((truth == "owl") & (guess == "owl")))
    assert stats["confusion_matrix"]["owl"]["owl"] == owls


def write_capture(folder: Path, rows: list[tuple[str, str | None, str]], gz: bool = False) -> None:
    """Capture records ``(event_id, inference_id, output CSV)`` in an hour folder."""
    hour = folder / "ep" / "AllTraffic" / "2026" / "03" / "01" / "10"
    hour.mkdir(parents=True, exist_ok=True)
    body = b"".join(
        build_record(
            event_id=event,
            inference_id=inference,
            inference_time=T0 + timedelta(seconds=i),
            request=CaptureSide("text/csv", "1,2", "CSV"),
            response=CaptureSide("text/csv", output, "CSV"),
        )
        for i, (event, inference, output) in enumerate(rows)
    )
    name = "00-00-000-x.jsonl"
    if gz:
        (hour / (name + ".gz")).write_bytes(gzip.compress(body))
    else:
        (hour / name).write_bytes(body)


def ground_truth_line(key: str, label: str) -> str:
    return json.dumps({"groundTruthData": {"data": label, "encoding": "CSV"},
                       "eventMetadata": {"eventId": key}, "eventVersion": "0"}) + "\n"  # fmt: skip


def test_capture_folder_joined_with_ground_truth(tmp_path: Path) -> None:
    score, label, _ = binary_rows(400, seed=5)
    # Half the records carry an inferenceId (the join key then), half only their eventId.
    rows = [(f"ev-{i}", f"inf-{i}" if i % 2 else None, f"{s}") for i, s in enumerate(score)]
    write_capture(tmp_path / "capture", rows[:200])
    write_capture(tmp_path / "capture2", rows[200:], gz=True)
    (tmp_path / "capture" / "ep" / "AllTraffic" / "2026" / "03" / "01" / "11").mkdir()
    for src in (tmp_path / "capture2").rglob("*.gz"):  # a second file, compressed
        src.rename(tmp_path / "capture/ep/AllTraffic/2026/03/01/11" / src.name)
    gt = tmp_path / "gt" / "2026" / "03" / "01" / "12"
    gt.mkdir(parents=True)
    keys = [f"inf-{i}" if i % 2 else f"ev-{i}" for i in range(400)]
    lines = [ground_truth_line(k, str(y)) for k, y in zip(keys, label, strict=True)][
        10:
    ]  # 10 unlabelled
    lines.insert(5, "this is not json\n")  # line 6 of the file: reported, the rest kept
    lines.append(ground_truth_line(keys[20], str(1 - label[20])))  # a duplicate: first stands
    lines.append(ground_truth_line("never-captured", "1"))  # unmatched
    (gt / "labels.jsonl").write_text("".join(lines))
    cfg = config(tmp_path, problem_type="BinaryClassification", probability_attribute="0")
    done = cli("--config", str(cfg), "--model-quality", "--data", "capture",
               "--ground-truth", "gt", "--out", "o", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert ("join: 390 matched, 1 labels without a prediction, 10 predictions without a label, "
            "1 duplicate labels") in done.stdout  # fmt: skip
    assert f"{Path('gt/2026/03/01/12/labels.jsonl')}: line 6: not JSON" in done.stdout
    stats = read(tmp_path / "o" / "statistics.json")
    assert stats["dataset"]["item_count"] == 390
    metrics = stats["binary_classification_metrics"]
    y, s = label[10:], score[10:]
    assert metrics["auc"]["value"] == pytest.approx(sk.roc_auc_score(y, s), abs=1e-9)
    assert metrics["accuracy"]["value"] == pytest.approx(
        sk.accuracy_score(y, (s >= 0.5).astype(int)), abs=1e-9
    )


def test_missing_column_names_the_attribute_and_the_columns(tmp_path: Path) -> None:
    data = tmp_path / "val.csv"
    data.write_text("a,b,label\n1,0.5,1\n")
    cfg = config(tmp_path, problem_type="BinaryClassification", inference_attribute="pred",
                 ground_truth_attribute="label")  # fmt: skip
    done = cli("--config", str(cfg), "--model-quality", "--data", str(data), cwd=tmp_path)
    assert done.returncode == 2
    assert "inference_attribute 'pred' is not a column" in done.stderr
    assert "columns found: a, b, label" in done.stderr
    jsonl = tmp_path / "val.jsonl"
    jsonl.write_text('{"a": 1, "label": 0}\n')
    done = cli("--config", str(cfg), "--model-quality", "--data", str(jsonl), cwd=tmp_path)
    assert done.returncode == 2 and "keys found: a, label" in done.stderr


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("p,y\n1,0\n1,1\n0,maybe\n", "val.csv: line 4: label 'maybe' is not 0 or 1"),
        ("p,y\n1,0\n2,1\n", "val.csv: line 3: prediction '2' is not 0 or 1"),
        ('p,y\n1,0\n"1,1\n', "val.csv"),
    ],
)
def test_bad_row_names_file_and_line(tmp_path: Path, body: str, needle: str) -> None:
    data = tmp_path / "val.csv"
    data.write_text(body)
    cfg = config(tmp_path, problem_type="BinaryClassification", inference_attribute="p",
                 ground_truth_attribute="y")  # fmt: skip
    done = cli("--config", str(cfg), "--model-quality", "--data", str(data), cwd=tmp_path)
    assert done.returncode == 2, done.stdout
    assert needle in done.stderr


def test_bad_jsonl_line_is_named(tmp_path: Path) -> None:
    data = tmp_path / "val.jsonl"
    data.write_text('{"p": 1, "y": 1}\n\n{"p": 1, "y"\n')
    cfg = config(tmp_path, problem_type="Regression", inference_attribute="p",
                 ground_truth_attribute="y")  # fmt: skip
    done = cli("--config", str(cfg), "--model-quality", "--data", str(data), cwd=tmp_path)
    assert done.returncode == 2 and "val.jsonl: line 3: not valid JSON" in done.stderr


@pytest.mark.parametrize(
    ("problem", "rows"),
    [
        ("BinaryClassification", "1,0.9,1\n"),  # n = 1
        ("BinaryClassification", "1,0.9,1\n1,0.8,1\n0,0.3,1\n"),  # one class of labels
        ("Regression", "2.0,0,1.5\n"),  # n = 1: r2 undefined
        ("MulticlassClassification", "a,0,a\n"),
    ],
)
def test_degenerate_inputs_do_not_crash(tmp_path: Path, problem: str, rows: str) -> None:
    data = tmp_path / "val.csv"
    data.write_text("pred,prob,label\n" + rows)
    attributes: dict[str, Any] = {"problem_type": problem, "inference_attribute": "pred",
                                  "ground_truth_attribute": "label"}  # fmt: skip
    if problem == "BinaryClassification":
        attributes["probability_attribute"] = "prob"
    cfg = config(tmp_path, **attributes)
    done = cli("--config", str(cfg), "--model-quality", "--data", str(data), "--out", "o",
               cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    stats = read(tmp_path / "o" / "statistics.json")
    section = next(v for k, v in stats.items() if k.endswith("_metrics"))
    assert all(v["standard_deviation"] == "NaN" for v in section.values() if "value" in v)
    if problem == "BinaryClassification":
        assert section["auc"]["value"] == "NaN"  # one class: no AUC, and no constraint on it
        assert (
            "auc"
            not in read(tmp_path / "o" / "constraints.json")["binary_classification_constraints"]
        )
        calibration = read(tmp_path / "o" / "statistics.json")["modelmon"]["calibration"]
        assert calibration["trusted"] is False


def test_without_a_model_quality_section_says_what_is_missing(tmp_path: Path) -> None:
    data = tmp_path / "val.csv"
    data.write_text("p,y\n1,1\n")
    done = cli("--model-quality", "--data", str(data), cwd=tmp_path)
    assert done.returncode == 2 and "analyzer.model_quality" in done.stderr
    cfg = config(tmp_path, problem_type="Regression", inference_attribute="p",
                 ground_truth_attribute="y")  # fmt: skip
    done = cli("--config", str(cfg), "--model-quality", "--data", str(tmp_path),
               cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2 and "needs --ground-truth" in done.stderr


def test_progress_on_long_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, label, predicted = binary_rows(70_000, seed=2)
    data = tmp_path / "big.csv"
    data.write_text("y,p\n" + "".join(f"{y},{q}\n" for y, q in zip(label, predicted, strict=True)))
    cfg = load_config(config(tmp_path, problem_type="BinaryClassification",
                             inference_attribute="p", ground_truth_attribute="y"))  # fmt: skip
    code = run_baseline(cfg, data, None, tmp_path / "o", progress_every_s=0.0, model_quality=True)
    assert code == 0
    assert "65,536 rows" in capsys.readouterr().err
    accuracy = read(tmp_path / "o" / "statistics.json")["binary_classification_metrics"]["accuracy"]
    assert math.isclose(accuracy["value"], sk.accuracy_score(label, predicted), abs_tol=1e-12)
