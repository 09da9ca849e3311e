"""The model-quality readers keep to ``analyzer.max_line_bytes`` as the data-quality ones do: a
line of exactly the limit is read; one byte over, a table stops with the file and the line
number, and a capture or ground-truth folder skips the line and reports it with its number
(Arrow's fast path on or off: the same answer)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from analyzer.ingest.model_quality_files import BadLines, read_labels, read_predictions
from analyzer.ingest.model_quality_table import TableAttributes, read_table
from analyzer.ingest.table_readers import InputError
from analyzer.monitors.model_quality.extraction import OutputReader
from analyzer.monitors.model_quality.records import Attribute, Encoder
from modelmon.capture_record import CaptureSide, build_record
from modelmon.config import ModelQualityConfig, PayloadSide

LIMIT = 1024
BINARY = Encoder("BinaryClassification")
ATTRIBUTES = TableAttributes(Attribute.of("label"), None, Attribute.of("score"))

READER = OutputReader(
    ModelQualityConfig(
        problem_type="BinaryClassification", inference_attribute="0", probability_attribute="1"
    ),
    PayloadSide(),
)  # the prediction in the output's column 0, the probability in column 1


def _csv_line(size: int, label: int) -> bytes:
    """``label,0.75,xxx…`` of exactly ``size`` bytes (without its ``\\n``)."""
    head = f"{label},0.75,".encode()
    return head + b"x" * (size - len(head))


def _jsonl_line(size: int, label: int) -> bytes:
    empty = orjson.dumps({"label": label, "score": 0.75, "pad": ""})
    return orjson.dumps({"label": label, "score": 0.75, "pad": "x" * (size - len(empty))})


def _write(path: Path, lines: list[bytes]) -> None:
    body = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(body) if path.name.endswith(".gz") else body)


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz"])
def test_a_csv_table_reads_a_line_at_the_limit_and_stops_one_over(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    lines = [b"label,score,pad", _csv_line(LIMIT - 1, 0), _csv_line(LIMIT, 1), b"0,0.25,"]
    assert [len(line) for line in lines[1:3]] == [LIMIT - 1, LIMIT]
    _write(path, lines)
    table = read_table(path, "csv", ATTRIBUTES, BINARY, max_line_bytes=LIMIT)
    assert table.column("label").tolist() == [0.0, 1.0, 0.0]
    _write(path, [*lines[:3], _csv_line(LIMIT + 1, 1), b"0,0.25,"])
    with pytest.raises(InputError) as error:
        read_table(path, "csv", ATTRIBUTES, BINARY, max_line_bytes=LIMIT)
    assert str(error.value) == f"{path}: line 4: longer than 1,024 bytes (analyzer.max_line_bytes)"


@pytest.mark.parametrize("name", ["t.jsonl", "t.jsonl.gz"])
def test_a_jsonl_table_reads_a_line_at_the_limit_and_stops_one_over(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    lines = [_jsonl_line(LIMIT - 1, 0), _jsonl_line(LIMIT, 1)]
    assert [len(line) for line in lines] == [LIMIT - 1, LIMIT]
    _write(path, lines)
    table = read_table(path, "jsonl", ATTRIBUTES, BINARY, max_line_bytes=LIMIT)
    assert table.column("label").tolist() == [0.0, 1.0]
    _write(path, [*lines, _jsonl_line(LIMIT + 1, 1)])
    with pytest.raises(InputError) as error:
        read_table(path, "jsonl", ATTRIBUTES, BINARY, max_line_bytes=LIMIT)
    assert str(error.value) == f"{path}: line 3: longer than 1,024 bytes (analyzer.max_line_bytes)"


def _label_line(size: int, key: str) -> bytes:
    def record(pad: str) -> bytes:
        return orjson.dumps(
            {
                "groundTruthData": {"data": "1", "encoding": "CSV"},
                "eventMetadata": {"eventId": key, "pad": pad},
                "eventVersion": "0",
            }
        )

    return record("x" * (size - len(record(""))))


def _capture_line(size: int, key: str) -> bytes:
    def record(pad: str) -> bytes:
        return build_record(
            event_id=key,
            inference_time=datetime(2026, 5, 1, tzinfo=UTC),
            request=CaptureSide("text/csv", "1" + pad, "CSV"),
            response=CaptureSide("text/csv", "1,0.75", "CSV"),
        ).rstrip(b"\n")

    return record("0" * (size - len(record(""))))


@pytest.mark.parametrize("arrow_mode", ["csv", "off"])
def test_folders_skip_a_line_over_the_limit_and_say_where(tmp_path: Path, arrow_mode: str) -> None:
    truth = tmp_path / "gt" / "2026" / "05" / "01" / "00"
    truth.mkdir(parents=True)
    labels = [_label_line(LIMIT - 1, "a"), _label_line(LIMIT, "b"), _label_line(LIMIT + 1, "c")]
    captures = [_capture_line(n, key) for n, key in ((LIMIT, "a"), (LIMIT + 1, "b"), (200, "c"))]
    assert [len(line) for line in labels] == [LIMIT - 1, LIMIT, LIMIT + 1]
    assert [len(line) for line in captures[:2]] == [LIMIT, LIMIT + 1]
    _write(truth / "l.jsonl.gz", [*labels, _label_line(300, "d")])
    capture = tmp_path / "c.jsonl"
    _write(capture, captures)
    bad = BadLines()
    read = read_labels(
        tmp_path / "gt", None, BINARY, bad, arrow_mode=arrow_mode, max_line_bytes=LIMIT
    )
    assert read.rows == 3
    predictions = read_predictions(
        [capture],
        READER,
        BINARY,
        bad,
        arrow_mode=arrow_mode,
        max_line_bytes=LIMIT,
    )
    assert predictions.rows == 2
    too_long = "longer than 1,024 bytes (analyzer.max_line_bytes); skipped"
    assert bad.count == 2
    assert bad.shown == [
        f"{truth / 'l.jsonl.gz'}: line 3: {too_long}",
        f"{capture}: line 2: {too_long}",
    ]


def test_the_command_names_the_file_and_line_of_a_gigantic_row(tmp_path: Path) -> None:
    (tmp_path / "modelmon.yaml").write_text(
        "proxy: {upstream: 'http://127.0.0.1:9'}\n"
        "analyzer:\n"
        "  max_line_bytes: 65536\n"
        "  model_quality:\n"
        + "".join(
            f"    {key}: {json.dumps(value)}\n"
            for key, value in {
                "problem_type": "BinaryClassification",
                "probability_attribute": "score",
                "ground_truth_attribute": "label",
            }.items()
        )
    )
    table = tmp_path / "train.csv"
    with table.open("wb") as out:
        out.write(b"label,score,note\n")
        for i in range(100):
            out.write(f"{i % 2},0.{i % 10}5,ok\n".encode())
        out.write(b"1,0.5," + b"N" * (8 << 20) + b"\n")  # 8 MiB: 128 times the limit
        out.write(b"0,0.25,ok\n")
    done = subprocess.run(
        [sys.executable, "-m", "modelmon", "baseline", "--config", "modelmon.yaml",
         "--model-quality", "--data", str(table), "--out", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"{table}: line 102: longer than 65,536 bytes (analyzer.max_line_bytes)" in done.stderr
    assert not (tmp_path / "out").exists()
