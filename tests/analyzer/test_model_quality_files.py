"""The model-quality readers: the Arrow fast path and the line reader give the same columns."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from analyzer.ingest import model_quality_arrow
from analyzer.ingest.model_quality_files import BadLines, read_labels, read_predictions
from analyzer.monitors.model_quality.extraction import OutputReader
from analyzer.monitors.model_quality.records import Encoder
from modelmon.capture_record import CaptureSide, build_record
from modelmon.config import ModelQualityConfig, PayloadSide

T0 = datetime(2026, 5, 1, tzinfo=UTC)

READER = OutputReader(
    ModelQualityConfig(
        problem_type="BinaryClassification", inference_attribute="0", probability_attribute="1"
    ),
    PayloadSide(),
)  # the prediction in the output's column 0, the probability in column 1


def write(folder: Path, n: int, bad_line: bool) -> tuple[list[Path], Path]:
    rng = np.random.default_rng(n)
    capture = folder / "capture"
    capture.mkdir(parents=True)
    lines = [
        build_record(
            event_id=f"e{i}",
            inference_id=f"i{i}" if i % 3 else None,
            inference_time=T0 + timedelta(seconds=i),
            request=CaptureSide("text/csv", "1,2", "CSV"),
            response=CaptureSide("text/csv", f"{i % 2},{rng.random():.5f}", "CSV"),
        )
        for i in range(n)
    ]
    if bad_line:
        lines[7] = b'{"captureData": {}}\n'
    (capture / "a.jsonl").write_bytes(b"".join(lines[: n // 2]))
    (capture / "b.jsonl.gz").write_bytes(gzip.compress(b"".join(lines[n // 2 :])))
    truth = folder / "gt" / "2026" / "05" / "02" / "00"
    truth.mkdir(parents=True)
    records = [
        json.dumps(
            {
                "groundTruthData": {"data": str(int(rng.random() < 0.5)), "encoding": "CSV"},
                "eventMetadata": {"eventId": f"i{i}" if i % 3 else f"e{i}"},
            }
        )
        for i in range(n)
    ]
    if bad_line:
        records[3] = '{"groundTruthData": {"data": "7"}, "eventMetadata": {"eventId": "x"}}'
    (truth / "l.jsonl").write_text("\n".join(records) + "\n")
    return [capture / "a.jsonl", capture / "b.jsonl.gz"], folder / "gt"


def read_both(files: list[Path], gt: Path, mode: str) -> tuple[dict[str, np.ndarray], BadLines]:
    encoder = Encoder("BinaryClassification")
    bad = BadLines()
    predictions = read_predictions(files, READER, encoder, bad, arrow_mode=mode)
    labels = read_labels(gt, None, encoder, bad, arrow_mode=mode)
    columns = {f"p_{name}": predictions.column(name) for name in predictions.dtypes}
    columns.update({f"l_{name}": labels.column(name) for name in labels.dtypes})
    return columns, bad


@pytest.mark.parametrize("bad_line", [False, True])
def test_arrow_and_line_readers_agree(tmp_path: Path, bad_line: bool) -> None:
    files, gt = write(tmp_path, 300, bad_line)
    assert model_quality_arrow.available(Encoder("BinaryClassification"))
    assert not model_quality_arrow.available(Encoder("BinaryClassification"), "off")
    fast, fast_bad = read_both(files, gt, "csv")
    slow, slow_bad = read_both(files, gt, "off")
    assert fast.keys() == slow.keys()
    for name in fast:
        assert np.array_equal(fast[name], slow[name], equal_nan=True), name
    assert fast_bad == slow_bad
    if bad_line:  # the files with a bad line were read line by line: numbered
        assert slow_bad.count == 2
        assert any("a.jsonl: line 8:" in shown for shown in slow_bad.shown)
        assert any("l.jsonl: line 4: label '7' is not 0 or 1" in s for s in slow_bad.shown)
    else:
        assert slow_bad.count == 0 and fast["p_key"].size == 300
