"""``modelmon baseline``: CSV, JSON Lines and capture input, outputs, progress and errors."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelmon.capture_record import CaptureSide, build_record
from modelmon.cli.baseline import run_baseline
from modelmon.config import load_config
from tests.shared_data import DATA as SHARED_DATA

DATA = SHARED_DATA


def read(path: Path) -> Any:
    return json.loads(path.read_text())


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelmon", "baseline", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_csv_with_header(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert run_baseline(None, DATA / "baseline.csv", None, out) == 0
    stats, constraints = read(out / "statistics.json"), read(out / "constraints.json")
    header = (DATA / "baseline.csv").read_text().splitlines()[0].split(",")
    assert [f["name"] for f in stats["features"]] == header
    assert stats["dataset"]["item_count"] == 20_000
    types = {f["name"]: f["inferred_type"] for f in constraints["features"]}
    assert types["age"] == "Integral" and types["income"] == "Fractional"
    assert types["state"] == "String"
    printed = capsys.readouterr().out
    assert "20,000 rows, 13 features" in printed
    assert str(out / "statistics.json") in printed
    for path in (out, out / "statistics.json", out / "constraints.json"):  # the data's values
        assert path.stat().st_mode & 0o077 == 0, path  # private, like capture files


def test_headerless_csv_named_by_the_config_and_written_where_it_says(tmp_path: Path) -> None:
    (tmp_path / "modelmon.yaml").write_text(
        "proxy: {upstream: 'http://127.0.0.1:9'}\n"
        "analyzer:\n"
        "  baseline: {statistics: base/stats.json, constraints: base/cons.json}\n"
        "  payload: {input: {format: csv, columns: [a, b]}}\n"
    )
    config = load_config(tmp_path / "modelmon.yaml")
    data = tmp_path / "train.csv"
    data.write_text("1,x,9\n2,y,8\n")
    assert run_baseline(config, data, "csv", None, header=False) == 0
    stats = read(tmp_path / "base" / "stats.json")
    assert [f["name"] for f in stats["features"]] == ["a", "b", "_c2"]
    assert (tmp_path / "base" / "cons.json").exists()


def test_large_csv_is_read_in_chunks(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=70_000).round(6)
    data = tmp_path / "big.csv"
    data.write_text("x,k\n" + "".join(f"{v},{i % 3}\n" for i, v in enumerate(x)))
    assert run_baseline(None, data, None, tmp_path / "o", progress_every_s=0.0) == 0
    (f, k) = read(tmp_path / "o" / "statistics.json")["features"]
    numbers = f["numerical_statistics"]
    assert numbers["common"]["num_present"] == 70_000
    assert numbers["mean"] == pytest.approx(x.mean(), rel=1e-12)
    assert numbers["std_dev"] == pytest.approx(x.std(), rel=1e-10)
    assert k["inferred_type"] == "Integral"


def test_progress_is_shown_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_baseline(None, DATA / "baseline.csv", None, tmp_path, progress_every_s=0.0) == 0
    assert "rows/s" in capsys.readouterr().err


def test_json_lines(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    rows = [{"a": 1, "b": "u"}, {"a": 2.5, "b": "v", "c": True}, {"a": None, "b": "u"}]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert run_baseline(None, data, None, tmp_path / "o") == 0
    stats = read(tmp_path / "o" / "statistics.json")
    a, b, c = stats["features"]
    assert (a["name"], a["inferred_type"]) == ("a", "Fractional")
    assert a["numerical_statistics"]["common"] == {"num_present": 2, "num_missing": 1}
    assert (b["inferred_type"], c["inferred_type"]) == ("String", "String")
    assert c["string_statistics"]["common"] == {"num_present": 1, "num_missing": 2}


def test_capture_folder_includes_predictions_first(tmp_path: Path) -> None:
    hour = tmp_path / "cap" / "ep" / "AllTraffic" / "2024" / "01" / "01" / "00"
    hour.mkdir(parents=True)
    lines = []
    for i in range(30):
        request = CaptureSide("text/csv", f"{i},{i % 2}", "CSV")
        response = CaptureSide("text/csv", f"0.{i:02d}", "CSV")
        lines.append(
            build_record(
                event_id=f"e{i}",
                inference_time=datetime(2024, 1, 1, tzinfo=UTC),
                request=request,
                response=response,
            )
        )
    (hour / "00-00-000-a.jsonl").write_bytes(b"".join(lines) + b"garbage\n")
    (hour / "00-00-001-b.jsonl.part").write_bytes(b"garbage\n")
    result = cli("--data", str(tmp_path / "cap"), "--out", "o", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    stats = read(tmp_path / "o" / "statistics.json")
    assert [f["name"] for f in stats["features"]] == ["prediction", "_c0", "_c1"]
    assert stats["dataset"]["item_count"] == 30
    assert "not_json: 1" in result.stdout


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "no such file"),
        ("empty.csv", "", "the file is empty"),
        ("header.csv", "a,b\n", "no data rows after the header"),
        ("latin.csv", b"a\n\xe9\xff\n", "not UTF-8"),
        ("data.parquet", "x", "cannot tell the format"),
        ("bad.jsonl", '{"a": 1}\n{"a": 2}\n{"a": \n', "line 3: not valid JSON"),
        ("list.jsonl", '{"a": 1}\n"text"\n', "line 2: expected a JSON object"),
    ],
)
def test_unusable_input_exits_2_naming_the_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: str | bytes | None,
    message: str,
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    assert run_baseline(None, path, None, tmp_path / "o") == 2
    stderr = capsys.readouterr().err
    assert str(path) in stderr and message in stderr, stderr
    assert not (tmp_path / "o").exists()


def test_the_command_exits_2_on_a_bad_line(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{"a": \n')
    result = cli("--data", "bad.jsonl", "--out", "o", cwd=tmp_path)
    assert result.returncode == 2
    assert "bad.jsonl: line 2: not valid JSON" in result.stderr


def test_default_output_folder_without_config(tmp_path: Path) -> None:
    data = tmp_path / "t.csv"
    data.write_text("a\n1\n2\n")
    result = cli("--data", str(data), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert read(tmp_path / "baseline" / "constraints.json")["features"][0]["name"] == "a"


def test_quoted_fields_across_lines_and_chunks(tmp_path: Path) -> None:
    from analyzer.ingest.table_readers import CHUNK_ROWS

    lines = ["n,label"] + [f"{i},plain" for i in range(CHUNK_ROWS + 3000)]
    lines[CHUNK_ROWS] = '7,"two\nlines, and ""quotes"""'  # spans the first chunk's end
    data = tmp_path / "q.csv"
    data.write_text("\n".join(lines) + "\n")
    assert run_baseline(None, data, None, tmp_path / "o") == 0
    n, label = read(tmp_path / "o" / "statistics.json")["features"]
    assert n["numerical_statistics"]["common"]["num_present"] == CHUNK_ROWS + 3000
    buckets = label["string_statistics"]["distribution"]["categorical"]["buckets"]
    assert {"value": 'two\nlines, and "quotes"', "count": 1} in buckets
