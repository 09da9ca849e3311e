"""``modelmon analyze --once --ground-truth``: model-quality reports, real subprocesses and files.

The model-quality baseline is made by ``modelmon baseline --model-quality`` from the reference
``baseline.csv`` (``score``, ``label``); the window's predictions are captured rows of a
``current_*.csv`` and its labels SageMaker ground-truth records keyed by the capture's
inferenceId (half) or eventId (half).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from sklearn import metrics as sk

from modelmon.capture_record import CaptureSide, build_record
from tests.shared_data import DATA, REQUEST_COLUMNS

HOUR = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)
REPORT = Path("reports/churn/modelmon/2026/11/27/08/model_quality")


def modelmon(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelmon", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def write_config(tmp: Path, **model_quality: Any) -> Path:
    doc: dict[str, Any] = {
        "endpoint": {"name": "churn", "variant": "AllTraffic"},
        "proxy": {"upstream": "http://127.0.0.1:9"},
        "capture": {"dir": "capture"},
        "analyzer": {
            "reports_dir": "reports",
            "baseline": {"statistics": "dq/statistics.json", "constraints": "dq/constraints.json"},
            "payload": {"output": {"format": "csv", "columns": ["score"]}},
            "model_quality": {
                "problem_type": "BinaryClassification",
                "probability_attribute": "score",
                "ground_truth_attribute": "label",
                **model_quality,
            },
        },
    }
    path = tmp / "modelmon.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def rows(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(newline="") as handle:
        return list(csv.DictReader(handle))


def key(i: int) -> str:
    return f"inf-{i}" if i % 2 else f"ev-{i}"


def write_window(tmp: Path, table: list[dict[str, str]], labelled: slice) -> None:
    """Captured predictions (the score as CSV output) and ground truth for ``labelled`` rows."""
    folder = tmp / "capture" / "churn" / "AllTraffic" / HOUR.strftime("%Y/%m/%d/%H")
    folder.mkdir(parents=True)
    records = [
        build_record(
            event_id=f"ev-{i}",
            inference_id=f"inf-{i}" if i % 2 else None,
            inference_time=HOUR + timedelta(seconds=i % 3600),
            request=CaptureSide("text/csv", ",".join(r[c] for c in REQUEST_COLUMNS), "CSV"),
            response=CaptureSide("text/csv", r["score"], "CSV"),
        )
        for i, r in enumerate(table)
    ]
    (folder / "07-00-000-a.jsonl").write_bytes(b"".join(records))
    truth = tmp / "gt" / "2026" / "11" / "28" / "09"  # labels come a day later
    truth.mkdir(parents=True)
    lines = [
        json.dumps(
            {
                "groundTruthData": {"data": r["label"], "encoding": "CSV"},
                "eventMetadata": {"eventId": key(i)},
                "eventVersion": "0",
            }
        )
        for i, r in list(enumerate(table))[labelled]
    ]
    lines.insert(3, '{"groundTruthData": {"data": "1"}}')  # no eventMetadata: line 4, reported
    (truth / "labels.jsonl").write_text("\n".join(lines) + "\n")


def baseline(tmp: Path, cfg: Path) -> None:
    done = modelmon("baseline", "--config", str(cfg), "--model-quality", "--data",
                    str(DATA / "baseline.csv"), cwd=tmp)  # fmt: skip
    assert done.returncode == 0, done.stderr
    stats = read(tmp / "baseline" / "model_quality" / "statistics.json")
    assert stats["modelmon"]["calibration"]["trusted"] is True


def read(path: Path) -> Any:
    return json.loads(path.read_text())


def test_concept_drift_is_a_realized_violation_and_the_estimate_is_contradicted(
    tmp_path: Path,
) -> None:
    cfg = write_config(tmp_path)
    baseline(tmp_path, cfg)
    table = rows("current_concept.csv")
    write_window(tmp_path, table, slice(0, None))
    done = modelmon("analyze", "--once", "--config", str(cfg), "--ground-truth", "gt",
                    cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "no data-quality baseline" in done.stderr  # model quality alone
    report = tmp_path / REPORT
    names = {"statistics.json", "constraints.json", "constraint_violations.json", "modelmon.json"}
    assert {p.name for p in report.iterdir()} == names
    labels = np.array([int(r["label"]) for r in table])
    scores = np.array([float(r["score"]) for r in table])
    stats = read(report / "statistics.json")
    assert stats["dataset"]["item_count"] == len(table)
    auc = stats["binary_classification_metrics"]["auc"]["value"]
    assert auc == pytest.approx(sk.roc_auc_score(labels, scores), abs=1e-9)
    assert auc < 0.5
    violations = read(report / "constraint_violations.json")["violations"]
    assert "auc" in {v["metric_name"] for v in violations}
    assert any("was LessThanThreshold" in v["description"] for v in violations)
    extra = read(report / "modelmon.json")
    assert extra["state"] == "alert"
    assert extra["labels"]["matched"] == len(table) and extra["labels"]["unmatched"] == 0
    assert extra["bad_lines"]["count"] == 1
    assert "labels.jsonl: line 4: eventMetadata.eventId" in extra["bad_lines"]["shown"][0]
    estimated = extra["estimated"]["metrics"]["auc"]
    assert estimated["value"] > 0.65  # the inputs did not move: the estimate stays up …
    assert estimated["agrees_with_realized"] is False  # … and the labels contradict it
    assert read(report / "constraints.json") == read(
        tmp_path / "baseline" / "model_quality" / "constraints.json"
    )
    assert "model quality: alert" in done.stdout


def test_unchanged_model_is_ok_and_unlabelled_predictions_still_estimated(
    tmp_path: Path,
) -> None:
    cfg = write_config(tmp_path, ground_truth={"dir": "gt"}, min_labels=100)
    baseline(tmp_path, cfg)
    table = rows("current_nodrift.csv")
    write_window(tmp_path, table, slice(0, len(table) // 2))  # half the labels so far
    done = modelmon("analyze", "--once", "--config", str(cfg), cwd=tmp_path)  # the config's dir
    assert done.returncode == 0, done.stderr
    extra = read(tmp_path / REPORT / "modelmon.json")
    assert extra["state"] in ("ok", "warning")
    assert read(tmp_path / REPORT / "constraint_violations.json") == {"violations": []}
    assert extra["labels"]["matched"] == len(table) // 2
    assert extra["labels"]["unlabelled"] == len(table) - len(table) // 2
    estimated = extra["estimated"]["metrics"]["accuracy"]
    assert estimated["low"] < estimated["value"] < estimated["high"]
    assert extra["estimated"]["trusted"] is True


def test_too_few_labels_is_not_enough_data(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, min_labels=1000)
    baseline(tmp_path, cfg)
    write_window(tmp_path, rows("current_concept.csv"), slice(0, 50))
    done = modelmon("analyze", "--once", "--config", str(cfg), "--ground-truth", "gt",
                    cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert read(tmp_path / REPORT / "modelmon.json")["state"] == "not_enough_data"
    assert read(tmp_path / REPORT / "constraint_violations.json") == {"violations": []}


def test_ground_truth_needs_a_model_quality_section_and_a_baseline(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    doc = yaml.safe_load(cfg.read_text())
    del doc["analyzer"]["model_quality"]
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump(doc))
    write_window(tmp_path, rows("current_nodrift.csv")[:10], slice(0, None))
    done = modelmon("analyze", "--once", "--config", str(plain), "--ground-truth", "gt",
                    cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2 and "analyzer.model_quality" in done.stderr
    done = modelmon("analyze", "--once", "--config", str(cfg), "--ground-truth", "gt",
                    cwd=tmp_path)  # fmt: skip
    assert done.returncode == 3 and "no model-quality constraints" in done.stderr
    baseline(tmp_path, cfg)  # the service goes on without statistics; a report cannot
    (tmp_path / "baseline" / "model_quality" / "statistics.json").unlink()
    done = modelmon("analyze", "--once", "--config", str(cfg), "--ground-truth", "gt",
                    cwd=tmp_path)  # fmt: skip
    assert done.returncode == 3 and "no model-quality statistics" in done.stderr


@pytest.mark.parametrize("table", ["current_concept.csv", "current_covariate.csv"])
def test_a_budget_below_the_rows_writes_the_same_reports(tmp_path: Path, table: str) -> None:
    """``batch_memory_rows`` far below the window's rows: the join, the metrics and the
    estimate through temporary files (docs/model-quality.md, "The batch join"), the reports
    equal to the in-memory path's, the temporary folder (``TMPDIR``) left empty."""
    cfg = write_config(tmp_path)
    baseline(tmp_path, cfg)
    write_window(tmp_path, rows(table), slice(0, None))
    reports = {}
    spill = tmp_path / "spill"
    spill.mkdir()
    for budget in (None, 300):
        tiny = write_config(tmp_path, batch_memory_rows=budget) if budget else cfg
        done = subprocess.run(
            [sys.executable, "-m", "modelmon", "analyze", "--once", "--config", str(tiny),
             "--ground-truth", "gt"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
            env={**os.environ, "TMPDIR": str(spill)},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert ("joined on disk" in done.stdout) == (budget is not None), done.stdout
        reports[budget] = {p.name: p.read_bytes() for p in (tmp_path / REPORT).iterdir()}
        assert list(spill.iterdir()) == []
    assert reports[None] == reports[300]  # the estimate's < 20,000 rows: loaded whole
