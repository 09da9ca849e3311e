"""Conformance against AWS's own Model Monitor files (sagemaker-examples, see its README)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from analyzer.decoding.codecs import PayloadDecoder
from analyzer.monitors.data_quality.profile import DatasetProfile
from modelmon.capture_record import parse_record_line
from modelmon.config import PayloadConfig
from tests.shared_data import EXAMPLES as SHARED_EXAMPLES

EXAMPLES = SHARED_EXAMPLES


def same(ours: Any, theirs: Any, where: str = "") -> None:
    """Same keys, same JSON types, numbers equal to float precision."""
    assert type(ours) is type(theirs), f"{where}: {type(ours).__name__} != {type(theirs).__name__}"
    if isinstance(theirs, dict):
        assert list(ours) == list(theirs), f"{where}: keys {list(ours)} != {list(theirs)}"
        for key in theirs:
            same(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, list):
        assert len(ours) == len(theirs), f"{where}: {len(ours)} items != {len(theirs)}"
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            same(a, b, f"{where}[{i}]")
    elif isinstance(theirs, float):
        assert math.isclose(ours, theirs, rel_tol=1e-15, abs_tol=1e-300), (
            f"{where}: {ours} != {theirs}"
        )
    else:
        assert ours == theirs, f"{where}: {ours!r} != {theirs!r}"


@pytest.fixture(scope="module")
def baseline_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("conformance")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelmon",
            "baseline",
            "--data",
            str(EXAMPLES / "data_quality" / "baseline_dataset.csv"),
            "--no-header",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize("name", ["statistics.json", "constraints.json"])
def test_baseline_reproduces_aws_files(baseline_out: Path, name: str) -> None:
    ours = json.loads((baseline_out / name).read_text())
    theirs = json.loads((EXAMPLES / "data_quality" / name).read_text())
    same(ours, theirs, name)


def test_sketch_data_is_the_values_in_arrival_order(baseline_out: Path) -> None:
    stats = json.loads((baseline_out / "statistics.json").read_text())
    rows = (EXAMPLES / "data_quality" / "baseline_dataset.csv").read_text().split()
    for j, feature in enumerate(stats["features"]):
        data = feature["numerical_statistics"]["distribution"]["kll"]["sketch"]["data"]
        assert data == [[float(row.split(",")[j]) for row in rows]]


def lines_of(name: str) -> list[bytes]:
    text = (EXAMPLES / "capture" / name).read_bytes()
    return text.replace(b"{%s}", b"2024-03-04T05:06:07Z").splitlines()


def test_csv_capture_file_decodes() -> None:
    lines = lines_of("csv_capture_template.jsonl")
    batch = PayloadDecoder(PayloadConfig()).decode_lines(lines)
    assert not batch.bad and batch.n_records == len(lines)
    first = parse_record_line(lines[0])
    values = first["captureData"]["endpointInput"]["data"].split(",")
    assert [batch.columns[f"_c{j}"][0] for j in range(len(values))] == values
    profile = DatasetProfile()
    profile.update(batch)
    assert profile.features["_c0"].inferred_type == "Integral"
    assert profile.predictions["prediction"].inferred_type == "Fractional"


def test_json_capture_file_decodes() -> None:
    lines = lines_of("json_capture.jsonl")
    payload = PayloadConfig.model_validate(
        {"input": {"format": "json"}, "output": {"format": "json"}}
    )
    batch = PayloadDecoder(payload).decode_lines(lines)
    assert not batch.bad and not batch.warnings
    instances = orjson.loads(parse_record_line(lines[0])["captureData"]["endpointInput"]["data"])
    assert batch.columns["_c0"][: len(instances["instances"])] == instances["instances"]
    assert batch.record_rows == [3, 3]
    assert len(batch.predictions["prediction"]) == 6


def test_ground_truth_file_parses_and_joins_the_capture() -> None:
    truths = [orjson.loads(line) for line in lines_of("ground_truth_template.jsonl")]
    captured = {
        parse_record_line(line)["eventMetadata"]["eventId"]
        for line in lines_of("csv_capture_template.jsonl")
    }
    assert truths and all(t["groundTruthData"]["encoding"] == "CSV" for t in truths)
    assert {t["eventMetadata"]["eventId"] for t in truths} <= captured
