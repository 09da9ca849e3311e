"""The batch paths' confusion matrix within a byte budget (``modelmon baseline`` and ``analyze
--once`` read classes through one :class:`~analyzer.monitors.model_quality.records.Encoder`):
a class whose row and column would take the matrix past ``MAX_MATRIX_BYTES`` of JSON is a bad
line, like the 1,001st class, so 300 classes of 1,000-character names no longer write a
92 MB ``statistics.json``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pytest

from analyzer.ingest.executor import InProcess
from analyzer.monitors.model_quality.records import (
    MAX_FILE_CLASSES,
    MAX_MATRIX_BYTES,
    BadValue,
    Encoder,
    matrix_cell_bytes,
)
from modelmon.capture_record import CaptureSide, build_record
from modelmon.cli.baseline import run_baseline
from modelmon.config import load_config

HOUR = datetime(2026, 11, 27, 7, tzinfo=UTC)
LONG = 1000  # characters of a class name: 1,007 bytes a cell; 128 classes fit, 129 do not
FITTING = 128


def _name(i: int) -> str:
    return f"{i:04d}" + "x" * (LONG - 4)


def multiclass_baseline(tmp_path: Path, files: list[list[tuple[str, str]]]) -> Path:
    """Capture files of ``(key, predicted class)`` (one an element of ``files``, in order),
    a ground-truth file labelling every key with its prediction, and ``modelmon baseline
    --model-quality`` over them in this process; returns the output folder."""
    capture = tmp_path / "capture" / "m" / "AllTraffic" / HOUR.strftime("%Y/%m/%d/%H")
    truth = tmp_path / "gt" / HOUR.strftime("%Y/%m/%d/%H")
    capture.mkdir(parents=True)
    truth.mkdir(parents=True)
    for f, pairs in enumerate(files):
        (capture / f"{f:04d}.jsonl").write_bytes(b"".join(
            build_record(event_id=key, inference_time=HOUR + timedelta(seconds=j),
                         request=CaptureSide("text/csv", "1,2", "CSV"),
                         response=CaptureSide("text/csv", name, "CSV"))
            for j, (key, name) in enumerate(pairs)))  # fmt: skip
    labels = [orjson.dumps({"groundTruthData": {"data": name, "encoding": "CSV"},
                            "eventMetadata": {"eventId": key}, "eventVersion": "0"})
              for pairs in files for key, name in pairs]  # fmt: skip
    (truth / "labels.jsonl").write_bytes(b"\n".join(labels) + b"\n")
    config = tmp_path / "modelmon.yaml"
    section = {"problem_type": "MulticlassClassification", "inference_attribute": "0"}
    config.write_text(
        "proxy: {upstream: 'http://127.0.0.1:9'}\nanalyzer:\n  model_quality: "
        + json.dumps(section)
        + "\n"
    )
    out = tmp_path / "baseline"
    code = run_baseline(
        load_config(config), tmp_path / "capture", None, out,
        executor=InProcess(), model_quality=True, ground_truth=tmp_path / "gt",
    )  # fmt: skip
    assert code == 0
    return out


def test_the_encoder_takes_classes_while_the_matrix_fits_and_refuses_the_next() -> None:
    assert matrix_cell_bytes(_name(0)) == LONG + 7
    assert FITTING * (FITTING + 1) * (LONG + 7) <= MAX_MATRIX_BYTES
    assert (FITTING + 1) * (FITTING + 2) * (LONG + 7) > MAX_MATRIX_BYTES
    encoder = Encoder("MulticlassClassification")
    codes = [encoder.label(_name(i)) for i in range(FITTING)]
    assert codes == [float(i) for i in range(FITTING)]
    with pytest.raises(BadValue, match="would pass 16777216 bytes"):
        encoder.label(_name(FITTING), "prediction")
    assert encoder.label(_name(3)) == 3.0  # a class it holds is still read
    assert len(encoder.classes) == FITTING
    # the matrix it allows fits as compact JSON with counts of two digits; as written
    # (indented) these long names add ~1%
    names = encoder.class_names()
    matrix = {a: dict.fromkeys(names, 10) for a in names}
    assert len(orjson.dumps(matrix)) <= MAX_MATRIX_BYTES
    indented = orjson.dumps({"m": {"confusion_matrix": matrix}}, option=orjson.OPT_INDENT_2)
    assert len(indented) <= 1.02 * MAX_MATRIX_BYTES
    # short names: the class count is the limit, not the bytes
    short = Encoder("MulticlassClassification")
    for i in range(1000):
        short.label(f"c{i}")
    with pytest.raises(BadValue, match="more than 1000 classes"):
        short.label("c1000")


def test_a_baseline_of_long_class_names_writes_a_bounded_statistics_file(tmp_path: Path) -> None:
    """300 classes of 1,000-character names from a capture folder and a ground-truth folder:
    the first 128 classes met are kept, the records of the others are bad lines, and
    ``statistics.json`` stays within the budget (it was 92 MB)."""
    out = multiclass_baseline(tmp_path, [[(f"k{j}", _name(j % 300)) for j in range(600)]])
    written = (out / "statistics.json").read_bytes()
    assert len(written) <= MAX_MATRIX_BYTES + 64 * 1024  # the matrix, and the rest of the file
    statistics = json.loads(written)
    matrix = statistics["multiclass_classification_metrics"]["confusion_matrix"]
    assert len(matrix) == FITTING
    assert set(matrix) == {_name(i) for i in range(FITTING)}
    # each kept class's two records were right: on the diagonal
    assert all(matrix[a][a] == 2 for a in matrix)
    assert statistics["dataset"]["item_count"] == 2 * FITTING


SKUS = [f"SKU-{i:08d}" for i in range(1000)]  # 19 bytes a cell: 939 classes fit


def test_the_run_keeps_the_classes_one_reader_would_whatever_the_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """1,000 classes of 12-character names in two capture files, the second in the reverse
    order: the run keeps the first 939 classes met (file 1's first 939) and every row of them,
    in both files, as one reader going through the files would; each file's own encoder must
    not apply the run's limits (it would keep the *last* 939 of file 2 and drop the rows of
    kept classes there). The refused classes are shown once each with their row counts."""
    fitting = 0
    one = Encoder("MulticlassClassification")
    for name in SKUS:
        try:
            one.label(name)
        except BadValue:
            break
        fitting += 1
    assert fitting == 939
    files = [[(f"a{i}", SKUS[i]) for i in range(1000)],
             [(f"b{i}", SKUS[i]) for i in reversed(range(1000))]]  # fmt: skip
    out = multiclass_baseline(tmp_path, files)
    statistics = json.loads((out / "statistics.json").read_text())
    matrix = statistics["multiclass_classification_metrics"]["confusion_matrix"]
    assert set(matrix) == set(SKUS[:fitting])
    assert all(matrix[name][name] == 2 for name in SKUS[:fitting])  # a row from each file
    assert statistics["dataset"]["item_count"] == 2 * fitting
    printed = capsys.readouterr().out
    assert f"{2 * fitting:,} labelled predictions" in printed
    # the refused: 61 classes × 2 rows on each side, the first shown with its count
    assert "skipped 244 lines that could not be used" in printed
    assert f"0000.jsonl: 1 rows: prediction '{SKUS[fitting]}': the confusion matrix" in printed


def test_a_files_own_encoder_leaves_the_runs_limits_to_the_run() -> None:
    """The map's encoder of one file takes classes past MAX_CLASSES and past the matrix's
    budget (the run's encoder decides, in the run's order) up to MAX_FILE_CLASSES (its codes
    are int16 columns); the next is a bad line."""
    encoder = Encoder("MulticlassClassification", one_file=True)
    for i in range(MAX_FILE_CLASSES):
        assert encoder.label(_name(i) if i < 200 else f"c{i}") == float(i)
    with pytest.raises(BadValue, match=f"more than {MAX_FILE_CLASSES} classes in a file"):
        encoder.label("one more")
    assert MAX_FILE_CLASSES < np.iinfo(np.int16).max
