"""Hostile ground truth and predictions in the running analyzer (real app, real SQLite, real
capture and ground-truth files, injected clock): a label the problem type cannot count is a
numbered bad line, never a window without metrics; numbers at the float limits give no
warning and no NaN in the JSON; a join key over its limit is refused; a multiclass window of
more classes than the limit is evaluated on the most frequent ones, and its status stays
small."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from analyzer.decoding.envelope import MAX_KEY
from analyzer.monitors.model_quality.monitor import OTHER, STATUS_MAX_CLASSES
from analyzer.monitors.model_quality.records import MAX_CLASSES
from analyzer.service.app import monitor_of
from analyzer.store.model_quality import LabelCounts
from analyzer.store.model_quality_labels import bad_label_lines
from modelmon.capture_record import CaptureSide, build_record
from modelmon.config import ModelmonConfig
from tests.analyzer.service_helpers import T0, Clock, make_config, write_capture_file
from tests.analyzer.test_model_quality_join import (
    Client,
    capture,
    counters,
    label,
    post,
    quality,
    start,
    write_labels,
)

NOW = T0 + timedelta(minutes=30)


def predictions(config: ModelmonConfig, outputs: Sequence[str], prefix: str = "k") -> list[str]:
    """One captured record per output (its CSV body), one a second from T0 (keep the
    clock past the last one: the window ends at the clock); their keys."""
    keys = [f"{prefix}{i}" for i in range(len(outputs))]
    lines = [
        build_record(
            event_id=key,
            inference_time=T0 + timedelta(seconds=i),
            request=CaptureSide("text/csv", "1,2,3", "CSV"),
            response=CaptureSide("text/csv", output, "CSV"),
        )
        for i, (key, output) in enumerate(zip(keys, outputs, strict=True))
    ]
    write_capture_file(config.capture.dir, lines, T0)
    return keys


async def status(client: TestClient[Any, Any]) -> tuple[dict[str, Any], int]:
    """The status document, parsed as strict JSON (no NaN or Infinity), and its size."""
    response = await client.get("/monitor/status")
    assert response.status == 200
    raw = await response.text()
    doc: dict[str, Any] = json.loads(raw, parse_constant=pytest.fail)
    return doc, len(raw)


BAD_BINARY = ["2", "inf", "NaN", "yes", "-1"]


@pytest.mark.parametrize("how", ["post", "folder"])
async def test_a_label_a_binary_classifier_cannot_count_is_a_numbered_bad_line(
    aiohttp_client: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """Before: the labels were stored, the POST said nothing, and the one window holding
    them had no metrics at all ("a label or prediction is not 0/1")."""
    config = make_config(tmp_path, None, model_quality=quality(min_labels=1))
    client = await start(aiohttp_client, config, Clock(NOW))
    monitor = monitor_of(client.app)
    keys = predictions(config, ["0.8" if i % 2 else "0.2" for i in range(300)])
    good = [label(key, str(i % 2)) for i, key in enumerate(keys[: -len(BAD_BINARY)])]
    bad = [label(key, v) for key, v in zip(keys[-len(BAD_BINARY) :], BAD_BINARY, strict=True)]
    numbers = list(range(len(good) + 1, len(good) + len(bad) + 1))
    if how == "post":
        answer = await post(client, good + bad)
        assert answer["stored"] == len(good) and answer["bad_line_count"] == len(bad)
        assert [b["line"] for b in answer["bad_lines"]] == numbers
        assert all(b["error"].startswith("label: bad_label") for b in answer["bad_lines"])
        assert "'inf' is not 0 or 1" in answer["bad_lines"][1]["error"]
    else:
        write_labels(tmp_path / "ground_truth", T0, good + bad, "labels.jsonl")
    with caplog.at_level(logging.WARNING, logger="modelmon.analyzer.ground_truth"):
        doc = await monitor.tick()
    if how == "folder":
        reported = await monitor.store.aread(bad_label_lines)
        assert sorted(b["line"] for b in reported) == numbers
        assert f"labels.jsonl line {numbers[0]}: label: bad_label" in caplog.text
    found = await counters(client)
    assert found["model_quality:bad_labels:bad_label"] == len(bad)
    assert found["model_quality:labels"] == len(good)
    metrics = await (await client.get("/monitor/metrics")).text()  # before: not exposed
    assert f'modelmon_model_quality_events_total{{event="bad_labels:bad_label"}} {len(bad)}.0' in (
        metrics
    )
    section = doc["monitors"]["model_quality"]
    assert "error" not in section and "left_out" not in section
    assert section["samples"] == len(good)
    assert section["metrics"]["accuracy"]["value"] == 1.0


async def test_regression_at_the_float_limits(aiohttp_client: Client, tmp_path: Path) -> None:
    """Labels that are no finite number are refused; 1e308 labels and predictions are kept
    and their squares overflow to an infinite MSE, which the status says as null: before,
    numpy warned (an error here) and the labels inf/NaN left the window without metrics."""
    config = make_config(
        tmp_path,
        None,
        model_quality={"problem_type": "Regression", "window_s": 3600, "min_labels": 1},
    )
    client = await start(aiohttp_client, config, Clock(NOW))
    outputs = ["1e308" if i % 2 else "-0.0" for i in range(300)]
    keys = predictions(config, outputs)
    values = ["-1e308" if i % 3 else "1e308" for i in range(297)]
    lines = [label(key, value) for key, value in zip(keys, values, strict=False)]
    lines += [label(keys[297], "inf"), label(keys[298], "NaN"), label(keys[299], "1e999")]
    answer = await post(client, lines)
    assert answer["bad_line_count"] == 3 and [b["line"] for b in answer["bad_lines"]] == [
        298,
        299,
        300,
    ]
    assert "is not a finite number (Regression)" in answer["bad_lines"][0]["error"]
    section = (await monitor_of(client.app).tick())["monitors"]["model_quality"]
    assert section["samples"] == 297 and "error" not in section
    assert section["metrics"]["mse"]["value"] is None  # infinite, not a number in JSON
    doc, _ = await status(client)
    assert doc["monitors"]["model_quality"]["samples"] == 297
    metrics = await client.get("/monitor/metrics")
    assert metrics.status == 200 and "inf" not in (await metrics.text()).lower()
    assert (await client.get("/monitor/report")).status == 200


async def test_a_label_key_over_the_join_key_limit_is_refused(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    """A capture whose key is over MAX_KEY gives no prediction (key_too_long); a label with
    such a key could never join one: it is refused the same way, at the limit exactly."""
    config = make_config(tmp_path, None, model_quality=quality())
    client = await start(aiohttp_client, config, Clock(NOW))
    answer = await post(client, [label("k" * MAX_KEY), label("k" * (MAX_KEY + 1))])
    assert answer["stored"] == 1 and [b["line"] for b in answer["bad_lines"]] == [2]
    assert answer["bad_lines"][0]["error"].startswith("label: key_too_long")
    found = await counters(client)
    assert found["model_quality:labels"] == 1
    assert found["model_quality:bad_labels:key_too_long"] == 1


async def test_a_window_of_more_classes_than_the_limit_is_bounded(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    """MAX_CLASSES + 100 classes: the rarest 100 classes' pairs are left out and counted,
    the metrics are over the rest, and the status's matrix is folded to STATUS_MAX_CLASSES.
    Before: every class went into a k×k matrix built six times (k = 10,000: 10⁸ cells a
    time), and the status carried all k² cells (1,000 classes: 8.9 MB a request)."""
    config = make_config(
        tmp_path,
        None,
        model_quality={
            "problem_type": "MulticlassClassification",
            "window_s": 3600,
            "min_labels": 1,
        },
    )
    client = await start(aiohttp_client, config, Clock(T0 + timedelta(minutes=50)))
    common = [f"<c{i}>" for i in range(MAX_CLASSES - 100)]  # two pairs each
    rare = [f"<r{i:03d}>" for i in range(200)]  # one pair each; the first 100 are kept
    classes = common + common + rare
    keys = predictions(config, classes)
    await post(client, [label(key, name) for key, name in zip(keys, classes, strict=True)])
    section = (await monitor_of(client.app).tick())["monitors"]["model_quality"]
    assert section["left_out"] == {"over_max_classes": 100}
    assert section["samples"] == len(classes) - 100
    assert section["metrics"]["accuracy"]["value"] == 1.0
    assert section["confusion_matrix_classes"] == MAX_CLASSES
    matrix = section["confusion_matrix"]
    assert len(matrix) == STATUS_MAX_CLASSES and OTHER in matrix
    assert sum(sum(row.values()) for row in matrix.values()) == section["samples"]
    doc, size = await status(client)
    assert size < 100_000
    assert doc["monitors"]["model_quality"]["left_out"] == {"over_max_classes": 100}
    html = await (await client.get("/monitor/report")).text()
    assert "&lt;c0&gt;" in html and "<c0>" not in html
    metrics = await (await client.get("/monitor/metrics")).text()
    assert "<c" not in metrics  # classes are no Prometheus label


async def test_entries_of_the_folder_that_are_no_file_are_said_once_and_counted(
    aiohttp_client: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A directory named like a label file, a symlink loop and a symlink to nothing: before,
    an ERROR (or a warning) at every tick for each, forever, and no counter."""
    config = make_config(tmp_path, None, model_quality=quality())
    folder = tmp_path / "ground_truth"
    good = write_labels(folder, T0, [label("a")], "good.jsonl")
    (good.parent / "dir.jsonl").mkdir()
    (good.parent / "loop.jsonl").symlink_to(good.parent / "loop.jsonl")
    (good.parent / "dangling.jsonl").symlink_to(good.parent / "nowhere")
    (good.parent / "empty.jsonl").write_bytes(b"")
    clock = Clock(T0 + timedelta(minutes=10))
    client = await start(aiohttp_client, config, clock)
    with caplog.at_level(logging.INFO, logger="modelmon.analyzer.ground_truth"):
        for _ in range(3):
            await monitor_of(client.app).tick()
            clock.now += 60
    said = [r.getMessage() for r in caplog.records if r.name == "modelmon.analyzer.ground_truth"]
    assert sorted(m.split(":")[0] for m in said) == [
        "2026/11/27/07/dangling.jsonl",
        "2026/11/27/07/dir.jsonl",
        "2026/11/27/07/loop.jsonl",
    ]
    assert all("not a regular file" in m for m in said)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    found = await counters(client)
    assert found["model_quality:ground_truth_not_files"] == 3
    assert found["model_quality:labels"] == 1 and found["model_quality:ground_truth_files"] == 1

    good.write_bytes(label("b")[:10])  # rewritten shorter: before, silently never read again
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="modelmon.analyzer.ground_truth"):
        for _ in range(2):
            await monitor_of(client.app).tick()
    said = [r.getMessage() for r in caplog.records if r.name == "modelmon.analyzer.ground_truth"]
    assert len(said) == 1 and said[0].startswith("2026/11/27/07/good.jsonl: now 10 bytes")
    assert (await counters(client))["model_quality:ground_truth_shrunk_files"] == 1


async def test_join_keys_with_a_nul_or_empty_are_refused_on_both_sides(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    """SQLite's json_each cuts a text at a NUL: before, a capture keyed "a\\0b" whose label
    came first was lost (not stored, not counted), its label stayed pending for ever under
    the key "a", and a prediction "a\\0c" never met its label. Unicode keys join as they are."""
    config = make_config(tmp_path, None, model_quality=quality())
    client = await start(aiohttp_client, config, Clock(NOW))
    monitor = monitor_of(client.app)
    good = ["\u00e9\U0001f600", "\u2028", " x ", "0", "k" * MAX_KEY]
    nul = ["a\x00b", "a\x00c"]
    answer = await post(client, [label(k) for k in [*good[:2], nul[0], ""]])
    assert [b["line"] for b in answer["bad_lines"]] == [3, 4]
    assert all(b["error"].startswith("label: bad_key") for b in answer["bad_lines"])
    write_capture_file(config.capture.dir, capture([*good, *nul], T0), T0)
    await monitor.tick()
    answer = await post(client, [label(k) for k in [*good[2:], nul[1]]])
    assert [b["line"] for b in answer["bad_lines"]] == [4]
    found = await counters(client)
    assert found["model_quality:predictions"] == len(good)
    assert found["model_quality:skipped:key_with_nul"] == len(nul)
    assert found["model_quality:bad_labels:bad_key"] == 3
    joined = monitor.model_quality_join
    assert joined is not None
    assert await asyncio.to_thread(joined.label_counts, NOW.timestamp()) == LabelCounts(
        len(good), 0, 0, 0, 0
    )


_UNREADABLE_SCRIPT = """
import sys
from datetime import timedelta
from pathlib import Path
from analyzer.ingest.ground_truth_folder import GroundTruthFolder
from analyzer.store.database import Store
from analyzer.store.model_quality_labels import file_offsets
from tests.analyzer.service_helpers import T0, Clock, make_config
from tests.analyzer.test_model_quality_join import quality
config = make_config(Path(sys.argv[1]), None, model_quality=quality())
store = Store(config.analyzer.db)
store.start()
stats = GroundTruthFolder(store, config, clock=Clock(T0 + timedelta(hours=2))).run_once()
print(sorted(store.read(file_offsets)))
store.close()
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to drop the capability that ignores file permissions",
)
def test_an_unreadable_hour_folder_does_not_stop_the_folder_read(tmp_path: Path) -> None:
    """A folder of one hour that cannot be entered (EACCES: a real permission, the reading
    process run without CAP_DAC_OVERRIDE) is logged and the next hour's file still read
    (the review of the not-a-file check found ``run_once`` raising out of the tick)."""
    folder = tmp_path / "ground_truth"
    write_labels(folder, T0, [label("a")], "a.jsonl")
    later = write_labels(folder, T0 + timedelta(hours=1), [label("b")], "b.jsonl")
    closed = folder / "2026/11/27/07"
    os.chown(closed, 65534, 65534)
    closed.chmod(0o704)  # no search permission for the reader
    caps = "-dac_override,-dac_read_search"
    found = subprocess.run(
        ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", sys.executable, "-c",
         _UNREADABLE_SCRIPT, str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert "Permission denied" in found.stderr and "read again next tick" in found.stderr
    assert found.stdout.strip() == str([later.relative_to(folder).as_posix()])
