"""The model-quality join in the running analyzer: predictions kept during the capture ingest,
labels by POST and from the ground-truth folder, either order, exactly once, across restarts
(real SQLite, real capture files, real HTTP on 127.0.0.1:0, injected clock)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from analyzer.service.app import create_app, monitor_of
from analyzer.store.database import read_counters
from analyzer.store.model_quality import DirtyWindow, LabelCounts
from analyzer.store.model_quality_blocks import stored_predictions
from analyzer.store.model_quality_labels import bad_label_lines
from modelmon.capture_record import CaptureSide, build_record
from modelmon.config import ModelmonConfig
from tests.analyzer.service_helpers import FEATURES, T0, Clock, make_config, write_capture_file

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
DELAY_S = 3600
HOUR = int(T0.timestamp())


def quality(**extra: Any) -> dict[str, Any]:
    return {
        "problem_type": "BinaryClassification",
        "probability_attribute": "0",
        "window_s": 3600,
        "label_delay_s": DELAY_S,
        "ground_truth": {"dir": "ground_truth"},
        **extra,
    }


def capture(ids: Sequence[str], moment: datetime, score: str = "0.7") -> list[bytes]:
    """One record per id; an id ``inf-…`` is an inferenceId (the eventId is then another)."""
    return [
        build_record(
            event_id=f"event-of-{key}" if key.startswith("inf-") else key,
            inference_id=key if key.startswith("inf-") else None,
            inference_time=moment + timedelta(seconds=i),
            request=CaptureSide("text/csv", f"{i},1,2", "CSV"),
            response=CaptureSide("text/csv", score, "CSV"),
        )
        for i, key in enumerate(ids)
    ]


def label(key: str, value: str = "1", encoding: str = "CSV") -> bytes:
    doc = {
        "groundTruthData": {"data": value, "encoding": encoding},
        "eventMetadata": {"eventId": key},
        "eventVersion": "0",
    }
    return orjson.dumps(doc) + b"\n"


async def start(
    aiohttp_client: Client, config: ModelmonConfig, clock: Clock
) -> TestClient[Any, Any]:
    app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
    return await aiohttp_client(app)


async def post(client: TestClient[Any, Any], lines: Sequence[bytes]) -> dict[str, Any]:
    response = await client.post("/monitor/ground-truth", data=b"".join(lines))
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def counts(client: TestClient[Any, Any]) -> LabelCounts:
    joined = monitor_of(client.app).model_quality_join
    assert joined is not None
    return await asyncio.to_thread(joined.label_counts, monitor_of(client.app).clock())


async def counters(client: TestClient[Any, Any]) -> dict[str, int]:
    store = monitor_of(client.app).store
    found = await store.aread(read_counters)
    return {k: v for k, v in found.items() if k.startswith("model_quality:")}


async def test_labels_join_in_either_order_exactly_once(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    config = make_config(tmp_path, None, model_quality=quality())
    clock = Clock(T0 + timedelta(minutes=30))
    client = await start(aiohttp_client, config, clock)
    monitor = monitor_of(client.app)
    assert monitor.model_quality_join is not None
    ids = [f"e{i}" for i in range(20)]
    ids[15] = "inf-15"

    await post(client, [label(k) for k in ids[:10]])  # labels before their predictions
    write_capture_file(config.capture.dir, capture(ids, T0 + timedelta(minutes=5)), T0)
    await monitor.tick()
    assert await counts(client) == LabelCounts(10, 0, 0, 10, 0)
    assert await asyncio.to_thread(monitor.model_quality_join.dirty_windows) == [
        DirtyWindow(HOUR, 1)
    ]

    await post(client, [label(k) for k in ids[10:17]])  # after: inferenceId is the key
    await post(client, [label("e16", "0"), label("event-of-inf-15", "1")])  # e16 again
    assert await counts(client) == LabelCounts(matched=17, unmatched=0, pending=1, awaiting=3,
                                               unlabeled=0)  # fmt: skip
    dirty = await asyncio.to_thread(monitor.model_quality_join.dirty_windows)
    assert dirty == [DirtyWindow(HOUR, 2)]  # the late labels marked the window again
    pairs = await asyncio.to_thread(monitor.model_quality_join.window_pairs, HOUR, HOUR + 3600)
    assert len(pairs) == 17 and set(pairs.predictions) == {"1"}  # 0.7 >= 0.5
    assert pairs.labels.count("1") == 17  # e16's first label stands
    assert list(pairs.probabilities[:2]) == [0.7, 0.7]
    assert await asyncio.to_thread(monitor.model_quality_join.mark_evaluated, dirty) == 1

    clock.set(T0 + timedelta(minutes=30, seconds=DELAY_S + 1))
    # past the wait: the lone label is unmatched, the predictions without one unlabeled
    assert await counts(client) == LabelCounts(17, 1, 0, 0, 3)
    found = await counters(client)
    assert found["model_quality:predictions"] == 20
    assert found["model_quality:labels"] == 18
    assert found["model_quality:label_duplicates"] == 1

    # the same records captured again (another file): no key index finds the first ones, so
    # they are stored again as predictions without a label; the pairs do not change
    write_capture_file(config.capture.dir, capture(ids[:3], T0 + timedelta(minutes=5)), T0)
    await monitor.tick()
    assert (await counters(client))["model_quality:predictions"] == 23
    assert await counts(client) == LabelCounts(17, 1, 0, 0, 6)
    pairs = await asyncio.to_thread(monitor.model_quality_join.window_pairs, HOUR, HOUR + 3600)
    assert len(pairs) == 17


async def test_labels_that_cannot_be_read_are_counted(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    config = make_config(tmp_path, None, model_quality=quality(ground_truth_attribute="label"))
    client = await start(aiohttp_client, config, Clock(T0))
    body = await post(
        client, [label("a", '{"label": 1}', "JSON"), label("b", '{"x": 1}', "JSON"), b"nope\n"]
    )
    # the record whose label cannot be read is a bad line like "nope": numbered, not stored
    assert body["stored"] == 1 and body["bad_line_count"] == 2
    assert [b["line"] for b in body["bad_lines"]] == [2, 3]
    assert body["bad_lines"][0]["error"].startswith("label: no_label")
    found = await counters(client)
    assert found["model_quality:labels"] == 1
    assert found["model_quality:bad_labels:no_label"] == 1


def write_labels(root: Path, moment: datetime, lines: Sequence[bytes], name: str) -> Path:
    folder = root / moment.strftime("%Y/%m/%d/%H")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"".join(lines))
    return path


async def test_the_folder_is_read_exactly_once_and_bad_lines_are_reported(
    aiohttp_client: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(tmp_path, None, model_quality=quality())
    folder = tmp_path / "ground_truth"
    lines = [label(f"e{i}") for i in range(50)]
    lines[6] = b"{not json\n"  # line 7
    lines[11] = label("e11", "{}", "JSON")  # line 12: a record whose label is no value
    path = write_labels(folder, T0, lines, "labels.jsonl")
    write_labels(folder, T0, [label("e0", "0")], "again.jsonl")  # a duplicate in another file
    (folder / "notes.txt").write_text("not in the layout")
    clock = Clock(T0 + timedelta(minutes=10))
    client = await start(aiohttp_client, config, clock)
    monitor = monitor_of(client.app)
    with caplog.at_level(logging.WARNING, logger="modelmon.analyzer.ground_truth"):
        await monitor.tick()
    assert "ground truth 2026/11/27/07/labels.jsonl line 7: not JSON" in caplog.text
    assert "ground truth 2026/11/27/07/labels.jsonl line 12: label: label_not_scalar" in caplog.text
    reported = await monitor.store.aread(bad_label_lines)
    assert [(b["file"], b["line"]) for b in reported] == [
        ("2026/11/27/07/labels.jsonl", 12),
        ("2026/11/27/07/labels.jsonl", 7),
    ]
    assert await counts(client) == LabelCounts(0, 0, 48, 0, 0)  # no predictions yet
    first = await counters(client)
    assert first["model_quality:labels"] == 48
    assert first["model_quality:label_duplicates"] == 1
    assert first["model_quality:ground_truth_bad_lines"] == 2
    assert first["model_quality:ground_truth_files"] == 2

    # appended lines are read at the next tick; a last line without its newline waits
    with path.open("ab") as handle:
        handle.write(label("e50") + label("e51") + label("e52")[:-1])
    await monitor.tick()
    assert (await counters(client))["model_quality:labels"] == 50
    os.utime(path, (clock() - 120, clock() - 120))  # the file has settled: its last line too
    await monitor.tick()
    assert (await counters(client))["model_quality:labels"] == 51
    await client.close()

    # a restart on the same database reads nothing again
    client = await start(aiohttp_client, config, clock)
    await monitor_of(client.app).tick()
    again = await counters(client)
    assert again["model_quality:labels"] == 51
    assert again["model_quality:label_duplicates"] == 1
    assert again["model_quality:ground_truth_bad_lines"] == 2
    assert again["model_quality:ground_truth_files"] == 2


async def test_a_line_over_the_limit_is_numbered_and_the_rest_stored(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    config = make_config(
        tmp_path, None, model_quality=quality(), ground_truth={"max_line_bytes": 1024}
    )
    long = b'{"eventMetadata": {"eventId": "' + b"x" * 2000 + b'"}}\n'
    write_labels(tmp_path / "ground_truth", T0, [label("a"), long, label("b")], "l.jsonl")
    client = await start(aiohttp_client, config, Clock(T0 + timedelta(minutes=10)))
    await monitor_of(client.app).tick()
    reported = await monitor_of(client.app).store.aread(bad_label_lines)
    assert [(b["line"], b["error"][:20]) for b in reported] == [(2, "longer than 1024 byt")]
    assert (await counters(client))["model_quality:labels"] == 2


async def test_retention_prunes_the_join(aiohttp_client: Client, tmp_path: Path) -> None:
    config = make_config(tmp_path, None, model_quality=quality(), retention_days=1)
    clock = Clock(T0 + timedelta(minutes=30))
    client = await start(aiohttp_client, config, clock)
    monitor = monitor_of(client.app)
    write_capture_file(config.capture.dir, capture(["a", "b"], T0), T0)
    await post(client, [label("a"), label("lone")])
    await monitor.tick()
    assert await counts(client) == LabelCounts(1, 0, 1, 1, 0)
    clock.set(T0 + timedelta(days=1, hours=1))
    await monitor.tick()
    assert await counts(client) == LabelCounts(0, 0, 0, 0, 0)
    assert monitor.last_ground_truth.pruned == (2, 2)


async def test_a_record_without_a_prediction_is_counted_and_the_ingest_goes_on(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    config = make_config(tmp_path, None, model_quality=quality())
    client = await start(aiohttp_client, config, Clock(T0 + timedelta(minutes=30)))
    lines = capture(["a", "b"], T0) + capture(["c"], T0, score="n/a") + [b"not json\n"]
    write_capture_file(config.capture.dir, lines, T0)
    doc = await monitor_of(client.app).tick()
    assert doc["monitors"]["data_quality"]["samples"] == 3  # data quality kept all three
    found = await counters(client)
    assert found["model_quality:predictions"] == 2
    assert found["model_quality:skipped:bad_probability"] == 1  # "n/a" is not a number
    stored = await monitor_of(client.app).store.aread(
        lambda c: sorted((r[0], r[4], r[5], r[6]) for r in stored_predictions(c))
    )
    assert [(k, p, q) for k, p, q, _ in stored] == [("a", "1", 0.7), ("b", "1", 0.7)]
    assert orjson.loads(stored[0][3]) == dict(zip(FEATURES, ["0", "1", "2"], strict=False))
