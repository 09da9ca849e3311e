"""The batch join on disk (``batch_memory_rows``) against the join in memory, same rows.

Real temporary files (``model_quality_spill``), no mocks: predictions and labels go through a
:class:`Sink` with a budget far below their rows (so the partitions are split again, the
scores cut into ranges with ties at their edges, a single score read by counts), and the
window's metrics, verdict and estimate are compared with ``evaluate_window`` and
``estimate_binary`` on the same rows joined in memory: the statistics to the bit (the
regression's label spread and the estimate to 1e-12 relative: sums in blocks).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import pytest

from analyzer.ingest.batch_model_quality import analyze_model_quality
from analyzer.ingest.executor import InProcess
from analyzer.ingest.model_quality_files import BadLines
from analyzer.ingest.model_quality_map import joined_pairs_or_spilled
from analyzer.ingest.model_quality_spill import (
    PARTS,
    SCORE_TYPE,
    Sink,
    SpillDir,
    Spilled,
    append,
    sorted_segments,
)
from analyzer.ingest.model_quality_spilled import estimate_spilled, evaluate_spilled
from analyzer.monitors.model_quality.estimate import estimate_binary, fit_calibrator
from analyzer.monitors.model_quality.evaluate import Baseline, evaluate_window
from analyzer.monitors.model_quality.pairs import join
from analyzer.monitors.model_quality.records import Encoder
from modelmon.capture_record import CaptureSide, build_record
from modelmon.cli.baseline import run_baseline
from modelmon.config import ModelQualityConfig, load_config

BINARY: Final = "BinaryClassification"
MULTICLASS: Final = "MulticlassClassification"
REGRESSION: Final = "Regression"
CLASSES = [f"class-{i}" for i in range(7)]
VALUES: dict[str, type[np.generic]] = {BINARY: np.int8, MULTICLASS: np.int16,
                                       REGRESSION: np.float64}  # fmt: skip


def window(problem: str, n: int, seed: int = 0, score: Any = None) -> dict[str, Any]:
    """``n`` predictions (5% repeat a key), labels for ~2/3 of them in another order, ~10%
    labels of unknown keys, a few repeated labels. Scores on a grid of 0.01: many ties."""
    rng = np.random.default_rng(seed)
    keys = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64)
    keys[rng.random(n) < 0.05] = keys[0]
    labelled = keys[rng.permutation(n)[: max(1, 2 * n // 3)]]
    unknown = rng.integers(-(2**63), 2**63 - 1, n // 10, dtype=np.int64)
    label_keys = np.concatenate([labelled, unknown, labelled[: n // 50]])
    label_keys = label_keys[rng.permutation(label_keys.size)]
    scores = rng.beta(2, 3, n).round(2) if score is None else np.full(n, score)
    predictions: Any
    labels: Any
    if problem == BINARY:
        predictions = (scores >= 0.5).astype(np.int8)
        labels = (rng.random(label_keys.size) < 0.4).astype(np.int8)
    elif problem == MULTICLASS:
        predictions = rng.integers(0, 5, n).astype(np.int16)
        labels = rng.integers(1, 7, label_keys.size).astype(np.int16)
    else:
        predictions = rng.normal(size=n)
        labels = rng.normal(size=label_keys.size) * 2 + 1
    return {"keys": keys, "predictions": predictions, "scores": scores,
            "label_keys": label_keys, "labels": labels}  # fmt: skip


def spilled(problem: str, data: dict[str, Any], budget: int, scores: bool = True) -> Spilled:
    sink = Sink(VALUES[problem], budget, problem == BINARY and scores)
    n = data["keys"].size
    for lo in range(0, n, 997):  # chunks as the map's files give them
        hi = lo + 997
        sink.add_predictions(data["keys"][lo:hi], data["predictions"][lo:hi],
                             data["scores"][lo:hi])  # fmt: skip
    for lo in range(0, data["label_keys"].size, 701):
        sink.add_labels(data["label_keys"][lo : lo + 701], data["labels"][lo : lo + 701])
    assert sink.spill is not None
    return sink.finish(BadLines(), (0.0, 1.0))


CONSTRAINTS = {
    BINARY: {"auc": (0.7, "LessThanThreshold"), "accuracy": (0.6, "LessThanThreshold")},
    MULTICLASS: {"accuracy": (0.3, "LessThanThreshold")},
    REGRESSION: {"mae": (1.0, "GreaterThanThreshold"), "r2": (0.1, "LessThanThreshold")},
}
BASELINES = {
    BINARY: Baseline(
        {"auc": 0.7, "accuracy": 0.6}, 5000, np.array([2000.0, 1000, 500, 1500]), ("0", "1")
    ),
    MULTICLASS: None,
    REGRESSION: Baseline({"mae": 1.0, "r2": 0.1}, 5000),
}


def compare(
    problem: str, data: dict[str, Any], budget: int, r2: str = "standard", scores: bool = True
) -> Spilled:
    mq = ModelQualityConfig.model_validate(
        {"problem_type": problem, "r2_convention": r2, "min_labels": 1,
         "probability_attribute": "p" if problem == BINARY and scores else None}
    )  # fmt: skip
    joined = join(data["keys"].copy(), data["label_keys"].copy())
    rows, label_rows = joined.prediction_rows, joined.label_rows
    expected = evaluate_window(
        problem,  # type: ignore[arg-type]
        data["labels"][label_rows],
        data["predictions"][rows],
        data["scores"][rows] if problem == BINARY and scores else None,
        CONSTRAINTS[problem],
        BASELINES[problem],
        false_alarm_rate=0.01,
        min_labels=1,
        r2_convention=r2,
        classes=CLASSES if problem == MULTICLASS else None,
    )
    result = spilled(problem, data, budget, scores)
    with result.spill:
        got = evaluate_spilled(mq, result, CONSTRAINTS[problem], BASELINES[problem],
                               false_alarm_rate=0.01, classes=CLASSES)  # fmt: skip
    assert not result.spill.path.exists()  # the temporary files are gone
    assert result.counts == joined.counts
    if problem == REGRESSION:  # the labels' mean and spread: sums in blocks
        assert_close(got.statistics(), expected.statistics())
        assert_close(got.decisions, expected.decisions)
        assert [v["metric_name"] for v in got.violations] == [
            v["metric_name"] for v in expected.violations
        ]
    else:
        assert json.dumps(got.statistics()) == json.dumps(expected.statistics())
        assert repr(got.decisions) == repr(expected.decisions)  # NaN: equal by repr
        assert got.violations == expected.violations
    assert got.state == expected.state
    return result


def assert_close(got: Any, expected: Any) -> None:
    if isinstance(expected, dict):
        assert list(got) == list(expected)
        for name in expected:
            assert_close(got[name], expected[name])
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=1e-12, nan_ok=True)
    elif hasattr(expected, "__dataclass_fields__"):
        assert_close(vars(got), vars(expected))
    else:
        assert got == expected


@pytest.mark.parametrize("problem", [BINARY, MULTICLASS, REGRESSION])
def test_the_spill_path_gives_the_in_memory_reports(problem: str) -> None:
    result = compare(problem, window(problem, 6000), budget=100)
    assert len(result.leaves) > PARTS  # partitions above the budget were split again
    assert result.ranges == math.ceil(6000 / 100)


def test_sagemakers_r2_convention_on_the_spill_path() -> None:
    compare(REGRESSION, window(REGRESSION, 1500, seed=2), budget=64, r2="sagemaker")


@pytest.mark.parametrize("n", [1, 2, 150])  # n = 1 pair; no standard deviation below 200
@pytest.mark.parametrize("problem", [BINARY, MULTICLASS, REGRESSION])
def test_tiny_windows_on_the_spill_path(problem: str, n: int) -> None:
    data = window(problem, n, seed=n)
    repeats = 20 if n < 16 else 1  # repeated labels: past the budget
    data["label_keys"] = np.concatenate([data["label_keys"]] * repeats)
    data["labels"] = np.concatenate([data["labels"]] * repeats)
    compare(problem, data, budget=16)


def test_a_window_of_one_class_and_one_score() -> None:
    data = window(BINARY, 3000, seed=3, score=0.37)  # every score equal: read by counts
    data["labels"][:] = 1
    compare(BINARY, data, budget=50)
    data = window(MULTICLASS, 3000, seed=3)
    data["labels"][:] = 4
    data["predictions"][:] = 4
    compare(MULTICLASS, data, budget=50)


def test_a_binary_window_without_probabilities() -> None:
    result = compare(BINARY, window(BINARY, 2000, seed=7), budget=100, scores=False)
    assert result.scores is None  # nothing to sort, nothing to estimate


def test_one_key_repeated_past_the_budget() -> None:
    data = window(BINARY, 2000, seed=8)
    data["keys"][:1500] = data["keys"][0]  # one partition cannot be split below the budget
    data["label_keys"][:1000] = data["keys"][0]
    result = compare(BINARY, data, budget=300)
    assert result.counts.duplicate_predictions >= 1499


def test_no_label_matches() -> None:
    data = window(BINARY, 500)
    data["label_keys"] = data["label_keys"] + 1  # hashes of other keys
    result = compare(BINARY, data, budget=40)
    assert result.counts.matched == 0


@pytest.mark.parametrize("score", [None, 0.61])
def test_the_estimate_in_blocks_agrees_to_1e_12(score: float | None) -> None:
    data = window(BINARY, 45_000, seed=4, score=score)  # above NORMAL_ABOVE: the sums
    rng = np.random.default_rng(5)
    base = rng.beta(2, 3, 5000)
    calibrator = fit_calibrator(base, (rng.random(5000) < base).astype(np.int64))
    expected = estimate_binary(data["scores"], data["predictions"], calibrator)
    result = spilled(BINARY, data, budget=4000)
    with result.spill:
        got = estimate_spilled(result, calibrator)
    assert got is not None
    for name, value in expected.items():  # the value: sums in blocks; the band's ends:
        # quantiles of normal draws through the eigendecomposition of a covariance whose
        # entries span ten orders of magnitude, which carries the sums' last bits to ~1e-12
        # (one score: a singular covariance, rank sum = rank × positives, to ~1e-8)
        band = 1e-10 if score is None else 1e-7
        tol = band if name == "auc" else 1e-12  # the AUC's value is the draws' mean
        assert got[name].value == pytest.approx(value.value, rel=tol)
        assert got[name].low == pytest.approx(value.low, rel=band)
        assert got[name].high == pytest.approx(value.high, rel=band)


def test_a_small_window_estimate_is_the_same_bits() -> None:
    data = window(BINARY, 3000, seed=6)
    rng = np.random.default_rng(5)
    base = rng.beta(2, 3, 5000)
    calibrator = fit_calibrator(base, (rng.random(5000) < base).astype(np.int64))
    result = spilled(BINARY, data, budget=200)
    with result.spill:
        got = estimate_spilled(result, calibrator)
    assert got == estimate_binary(data["scores"], data["predictions"], calibrator)


def test_the_temporary_folder_goes_when_the_pass_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    capture = tmp_path / "capture"
    capture.mkdir()
    lines = [
        json.dumps({"captureData": {"endpointOutput": {"observedContentType": "text/csv",
                    "mode": "OUTPUT", "data": f"0.{i % 10}", "encoding": "CSV"}},
                    "eventMetadata": {"eventId": f"e{i}", "inferenceTime":
                                      "2026-01-01T00:00:00Z"}, "eventVersion": "0"})
        for i in range(300)
    ]  # fmt: skip
    files = []
    for part in range(3):
        path = capture / f"{part}.jsonl"
        path.write_text("\n".join(lines[part * 100 : part * 100 + 100]) + "\n")
        files.append(path)
    truth = tmp_path / "gt" / "2026" / "01" / "01" / "00"
    truth.mkdir(parents=True)
    (truth / "a.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "groundTruthData": {"data": "1", "encoding": "CSV"},
                    "eventMetadata": {"eventId": f"e{i}"},
                    "eventVersion": "0",
                }
            )
            + "\n"
            for i in range(300)
        )
    )
    mq = ModelQualityConfig(problem_type=BINARY, probability_attribute="0")

    def run(tick: Callable[[int], None] | None) -> Any:
        return joined_pairs_or_spilled(mq, Encoder(BINARY, 0.5), files, tmp_path / "gt",
                                       tick=tick, memory_rows=150)  # fmt: skip

    seen: list[int] = []

    def stop(rows: int) -> None:  # the user stops it once it spilled (a progress hook)
        seen.append(rows)
        if len(seen) == 3:
            assert [p.name for p in tmp_path.iterdir() if p.name.startswith("modelmon-")]
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(stop)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("modelmon-")]
    result = run(None)  # and when it does not raise, the caller closes it
    assert isinstance(result, Spilled) and result.counts.matched == 300
    result.spill.close()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("modelmon-")]


def _write_window(root: Path, problem: str) -> None:
    """3 capture files of 400 records (one class more a file, or a number) and labels for
    most of them, some twice, some for no prediction."""
    rng = np.random.default_rng(9)
    capture = root / "capture" / "m" / "AllTraffic" / "2026" / "01" / "01" / "00"
    capture.mkdir(parents=True)
    labels = []
    for f in range(3):
        records = []
        for i in range(400):
            j = f * 400 + i
            if problem == MULTICLASS:
                guess = CLASSES[int(rng.integers(0, f + 3))]
                truth = guess if rng.random() < 0.7 else CLASSES[int(rng.integers(0, 5))]
            else:
                guess = f"{rng.normal():.6f}"
                truth = f"{float(guess) + rng.normal():.6f}"
            records.append(build_record(
                event_id=f"e{j}", inference_time=HOUR + timedelta(seconds=j),
                request=CaptureSide("text/csv", "1,2", "CSV"),
                response=CaptureSide("text/csv", guess, "CSV"),
            ))  # fmt: skip
            for key in [f"e{j}"] * (1 + (j % 9 == 0)) + ([f"x{j}"] if j % 13 == 0 else []):
                if j % 6:
                    labels.append(json.dumps({"groundTruthData": {"data": truth,
                                               "encoding": "CSV"}, "eventMetadata":
                                               {"eventId": key}, "eventVersion": "0"}))  # fmt: skip
        (capture / f"{f}.jsonl").write_bytes(b"".join(records))
    truth_folder = root / "gt" / "2026" / "01" / "01" / "05"
    truth_folder.mkdir(parents=True)
    (truth_folder / "labels.jsonl").write_text("\n".join(labels) + "\n")


HOUR = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("problem", [MULTICLASS, REGRESSION])
def test_analyze_once_on_disk_writes_the_in_memory_reports(tmp_path: Path, problem: str) -> None:
    """``analyze --once``'s model-quality pass (in process) with a budget of 100 rows and
    with the default: the same reports (regression's r2 and margins to 1e-12)."""
    _write_window(tmp_path, problem)
    section = {"problem_type": problem, "inference_attribute": "0",
               "baseline": {"statistics": "base/statistics.json",
                            "constraints": "base/constraints.json"}}  # fmt: skip
    config = tmp_path / "modelmon.yaml"
    config.write_text(f"proxy: {{upstream: 'http://127.0.0.1:9'}}\nanalyzer:\n"
                      f"  model_quality: {json.dumps(section)}\n")  # fmt: skip
    files = sorted((tmp_path / "capture").rglob("*.jsonl"))
    loaded = load_config(config)
    code = run_baseline(loaded, tmp_path / "capture", None, tmp_path / "base",
                        executor=InProcess(), model_quality=True,
                        ground_truth=tmp_path / "gt")  # fmt: skip
    assert code == 0
    documents = {}
    for budget in (None, 100):
        mq = loaded.analyzer.model_quality
        assert mq is not None
        if budget is not None:
            mq = mq.model_copy(update={"batch_memory_rows": budget})
        analyzer = loaded.analyzer.model_copy(
            update={"model_quality": mq, "reports_dir": tmp_path / f"out-{budget}"}
        )
        run = loaded.model_copy(update={"analyzer": analyzer})
        _, _, folder = analyze_model_quality(run, files, tmp_path / "gt", None, None,
                                             no_baseline=3, no_data=4)  # fmt: skip
        assert isinstance(folder, Path) and str(tmp_path / f"out-{budget}") in str(folder)
        documents[budget] = {p.name: json.loads(p.read_text()) for p in folder.iterdir()}
    memory, disk = documents[None], documents[100]
    names = {"statistics.json", "constraints.json", "constraint_violations.json", "modelmon.json"}
    assert memory.keys() == disk.keys() == names
    assert memory["modelmon.json"]["labels"] == disk["modelmon.json"]["labels"]
    assert memory["modelmon.json"]["labels"]["duplicate_labels"] > 0
    if problem == MULTICLASS:
        assert memory == disk
        matrix = disk["statistics.json"]["multiclass_classification_metrics"]["confusion_matrix"]
        assert len(matrix) == 5  # every class, by its name
    else:
        assert_close(disk["statistics.json"], memory["statistics.json"])
        assert_close(disk["modelmon.json"], memory["modelmon.json"])


@pytest.mark.parametrize("mode", ["top", "middle", "bottom"])
def test_a_dominant_score_is_cut_off_as_a_range_of_its_own(mode: str) -> None:
    """99% of the rows at one score (e.g. most probabilities exactly 0.0, whose ranked key
    is the highest): the external sort gives that score one constant range (read in chunks)
    and every other range at most the budget's rows; the order is ``np.sort``'s."""
    rng = np.random.default_rng(7)
    n, budget = 20_000, 1_000
    at = {"top": 1.0, "middle": 0.5, "bottom": 0.0}[mode]
    keys = np.where(rng.random(n) < 0.99, at, rng.random(n))
    records = np.zeros(n, SCORE_TYPE)
    records["key"] = keys
    with SpillDir(budget) as spill:
        path = spill.file("scores")
        append(path, records)
        segments = sorted_segments(spill, path, SCORE_TYPE, n)
        assert all(s.constant or s.rows <= budget for s in segments)
        assert sum(s.rows for s in segments) == n
        walked = np.concatenate([
            np.concatenate(list(s.chunks(budget))) if s.constant else s.read()
            for s in segments
        ])["key"]  # fmt: skip
    assert np.array_equal(walked, np.sort(keys))
