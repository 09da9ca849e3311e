"""``modelmon analyze --once`` end to end, as a real subprocess on real capture files."""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from analyzer.monitors.data_quality.profile import profile_rows
from analyzer.monitors.data_quality.statistics_format import statistics_json, suggest_constraints
from modelmon.capture_record import CaptureSide, build_record
from tests.shared_data import SHARED as SHARED_ROOT

SHARED = SHARED_ROOT
DATA = SHARED / "data"
SAGEMAKER = SHARED / "sagemaker-examples" / "data_quality"
FEATURES = [
    "age", "income", "balance", "tenure_months", "num_products", "credit_score",
    "utilization", "state", "plan", "channel", "gender",
]  # fmt: skip
HOUR = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _config(
    tmp: Path, columns: list[str], output: list[str] | None = None, **analyzer: Any
) -> Path:
    doc: dict[str, Any] = {
        "endpoint": {"name": "churn", "variant": "AllTraffic"},
        "proxy": {"upstream": "http://127.0.0.1:9"},
        "capture": {"dir": "capture"},
        "analyzer": {
            "reports_dir": "reports",
            "baseline": {
                "statistics": "base/statistics.json",
                "constraints": "base/constraints.json",
            },
            "payload": {
                "input": {"format": "csv", "columns": columns},
                "output": {"format": "csv", "columns": output or []},
            },
            **analyzer,
        },
    }
    path = tmp / "modelmon.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _write_baseline(tmp: Path, stats: dict[str, Any], cons: dict[str, Any]) -> None:
    (tmp / "base").mkdir(exist_ok=True)
    (tmp / "base" / "statistics.json").write_text(json.dumps(stats))
    (tmp / "base" / "constraints.json").write_text(json.dumps(cons))


def _write_capture(tmp: Path, lines: list[str], outputs: list[str] | None, parts: int = 2) -> None:
    folder = tmp / "capture" / "churn" / "AllTraffic" / HOUR.strftime("%Y/%m/%d/%H")
    folder.mkdir(parents=True)
    records = [
        build_record(
            event_id=str(uuid.uuid4()),
            inference_time=HOUR + timedelta(seconds=i % 3600),
            request=CaptureSide("text/csv", line, "CSV"),
            response=CaptureSide("text/csv", outputs[i], "CSV") if outputs else None,
        )
        for i, line in enumerate(lines)
    ]
    size = -(-len(records) // parts)
    for p in range(parts):
        body = b"".join(records[p * size : (p + 1) * size])
        name = f"{p:02d}-00-000-{uuid.uuid4()}.jsonl"
        if p % 2:  # every other file gzipped, as capture.compress writes them
            (folder / f"{name}.gz").write_bytes(gzip.compress(body))
        else:
            (folder / name).write_bytes(body)
    # a file still being written must be ignored
    (folder / f"59-00-000-{uuid.uuid4()}.jsonl.part").write_bytes(b'{"broken": ')


def _analyze(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelmon", "analyze", "--config", str(config), "--once", *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _credit_baseline(tmp: Path) -> None:
    table = {c: [r[c] for r in _rows(DATA / "baseline.csv")] for c in FEATURES}
    profile = profile_rows(table)
    _write_baseline(tmp, statistics_json(profile), suggest_constraints(profile))


def test_analyze_once_reports_covariate_drift(tmp_path: Path) -> None:
    _credit_baseline(tmp_path)
    rows = _rows(DATA / "current_covariate.csv")
    lines = [",".join(r[c] for c in FEATURES) for r in rows]
    _write_capture(tmp_path, lines, [r["score"] for r in rows])
    proc = _analyze(_config(tmp_path, FEATURES, ["score"]))
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "reports" / "churn" / "modelmon" / "2026" / "11" / "27" / "08"
    assert sorted(p.name for p in folder.iterdir()) == [
        "constraint_violations.json",
        "constraints.json",
        "statistics.json",
    ]
    violations = json.loads((folder / "constraint_violations.json").read_text())["violations"]
    assert {(v["feature_name"], v["constraint_check_type"]) for v in violations} == {
        ("income", "baseline_drift_check"),
        ("state", "baseline_drift_check"),
    }
    stats = json.loads((folder / "statistics.json").read_text())
    assert stats["dataset"]["item_count"] == len(rows)
    assert [f["name"] for f in stats["features"]] == FEATURES
    assert "income" in proc.stdout and "state" in proc.stdout
    assert "2 violation(s)" in proc.stdout


def test_drift_verdict_from_config_decides(tmp_path: Path) -> None:
    # income's threshold is set between the two verdicts' boundaries (from an in-process run
    # of the same rows): `significant` (default) must flag it, `confident` must not.
    from analyzer.monitors.data_quality.checks import run_checks
    from analyzer.monitors.data_quality.statistics_readers import (
        parse_constraints,
        parse_statistics,
    )

    table = {c: [r[c] for r in _rows(DATA / "baseline.csv")] for c in FEATURES}
    base = profile_rows(table)
    stats, cons = statistics_json(base), suggest_constraints(base)
    rows = _rows(DATA / "current_covariate.csv")
    current = profile_rows({c: [r[c] for r in rows] for c in FEATURES})
    probe = run_checks(
        parse_statistics(stats), parse_constraints(cons), current, drift_verdict="confident"
    )
    income = probe.features["income"]
    assert income.distance is not None and income.decision_margin is not None
    assert income.distance > 2 * income.decision_margin  # room for a threshold in between
    threshold = income.distance - income.decision_margin / 2
    (entry,) = [f for f in cons["features"] if f["name"] == "income"]
    entry["monitoring_config_overrides"] = {"comparison_threshold": threshold}
    _write_baseline(tmp_path, stats, cons)
    _write_capture(tmp_path, [",".join(r[c] for c in FEATURES) for r in rows], None)
    folder = tmp_path / "reports" / "churn" / "modelmon" / "2026" / "11" / "27" / "08"
    flagged = {}
    for verdict in ("significant", "confident"):
        proc = _analyze(_config(tmp_path, FEATURES, drift_verdict=verdict))
        assert proc.returncode == 0, proc.stderr
        report = json.loads((folder / "constraint_violations.json").read_text())
        flagged[verdict] = {v["feature_name"] for v in report["violations"]}
    assert "income" in flagged["significant"]
    assert "income" not in flagged["confident"]
    assert "state" in flagged["significant"]


def test_window_without_data_exits_4(tmp_path: Path) -> None:
    _credit_baseline(tmp_path)
    config = _config(tmp_path, FEATURES)
    empty = _analyze(config)
    assert empty.returncode == 4
    assert str(tmp_path / "capture" / "churn" / "AllTraffic") in empty.stderr
    _write_capture(tmp_path, ["1,2"] * 3, None, parts=1)
    later = _analyze(config, "--start", "2026-11-27T09:00:00Z", "--end", "2026-11-27T10:00:00Z")
    assert later.returncode == 4, later.stderr
    assert "no sealed capture files" in later.stderr


def test_no_baseline_exits_3_and_says_what_to_run(tmp_path: Path) -> None:
    config = _config(tmp_path, FEATURES)
    proc = _analyze(config)
    assert proc.returncode == 3
    assert str(tmp_path / "base" / "statistics.json") in proc.stderr
    assert "modelmon baseline" in proc.stderr


def test_real_sagemaker_baseline_flags_edited_type(tmp_path: Path) -> None:
    stats = json.loads((SAGEMAKER / "statistics.json").read_text())
    cons = json.loads((SAGEMAKER / "constraints_edited.json").read_text())
    original = json.loads((SAGEMAKER / "constraints.json").read_text())
    # The README (and the brief) say `_c3` was edited to String; the file itself edits `_c5`.
    # Take the edited feature from the files rather than from either text.
    (edited,) = [
        e["name"]
        for e, o in zip(cons["features"], original["features"], strict=True)
        if e["inferred_type"] != o["inferred_type"]
    ]
    _write_baseline(tmp_path, stats, cons)
    lines = (SAGEMAKER / "baseline_dataset.csv").read_text().splitlines()
    _write_capture(tmp_path, [line for line in lines if line.strip()], None, parts=1)
    proc = _analyze(
        _config(tmp_path, []), "--start", "2026-11-27T07:00:00Z", "--end", "2026-11-27T08:00:00Z"
    )
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "reports" / "churn" / "modelmon" / "2026" / "11" / "27" / "08"
    violations = json.loads((folder / "constraint_violations.json").read_text())["violations"]
    found = {(v["feature_name"], v["constraint_check_type"]) for v in violations}
    assert found == {(edited, "data_type_check")}
    (entry,) = violations
    assert entry["description"] == (
        "Data type match requirement is not met. Expected data type: String, "
        "Expected match: 100.0%. Observed: Only 0.0% of data is String."
    )


def test_bad_window_arguments_exit_2(tmp_path: Path) -> None:
    config = _config(tmp_path, FEATURES)
    garbled = _analyze(config, "--start", "yesterday")
    assert garbled.returncode == 2 and "--start" in garbled.stderr
    backwards = _analyze(config, "--start", "2026-11-27T09:00", "--end", "2026-11-27T08:00")
    assert backwards.returncode == 2 and "not before --end" in backwards.stderr


def test_unnamed_columns_match_a_named_baseline_by_position(tmp_path: Path) -> None:
    _credit_baseline(tmp_path)
    rows = _rows(DATA / "current_covariate.csv")
    _write_capture(tmp_path, [",".join(r[c] for c in FEATURES) for r in rows], None)
    proc = _analyze(_config(tmp_path, []))
    assert proc.returncode == 0, proc.stderr
    assert "matched to the baseline's 11 features by position" in proc.stderr
    folder = tmp_path / "reports" / "churn" / "modelmon" / "2026" / "11" / "27" / "08"
    violations = json.loads((folder / "constraint_violations.json").read_text())["violations"]
    assert {(v["feature_name"], v["constraint_check_type"]) for v in violations} == {
        ("income", "baseline_drift_check"),
        ("state", "baseline_drift_check"),
    }
