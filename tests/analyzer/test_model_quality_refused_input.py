"""A record whose input body does not parse (``bad_csv``, ``empty_payload``, …) in the running
analyzer: data quality counts it bad as ever, model quality keeps its prediction (no input
row) and joins its label, as the batch path does (real SQLite, real capture files, the
service's ingest, injected clock)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

from analyzer.service.app import monitor_of
from analyzer.store.database import read_counters
from analyzer.store.model_quality import LabelCounts
from analyzer.store.model_quality_blocks import stored_predictions
from modelmon.capture_record import CaptureSide, build_record
from tests.analyzer.service_helpers import T0, Clock, make_config, write_capture_file
from tests.analyzer.test_model_quality_join import Client, capture, counts, label, post, quality
from tests.analyzer.test_model_quality_join import start as start_service

HOUR = int(T0.timestamp())
BAD_CSV = '"' + "a" * 131_073 + '"'  # one field over csv's limit: bad_csv


def refused(key: str, moment: datetime, data: str, output: bool = True) -> bytes:
    """A record whose CSV input is ``data`` (which does not parse), scored 0.2 if ``output``."""
    return build_record(
        event_id=f"event-of-{key}" if key.startswith("inf-") else key,
        inference_id=key if key.startswith("inf-") else None,
        inference_time=moment,
        request=CaptureSide("text/csv", data, "CSV"),
        response=CaptureSide("text/csv", "0.2", "CSV") if output else None,
    )


async def test_a_record_whose_input_does_not_parse_keeps_its_prediction(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    config = make_config(tmp_path, None, model_quality=quality())
    client = await start_service(aiohttp_client, config, Clock(T0 + timedelta(minutes=30)))
    monitor = monitor_of(client.app)
    assert monitor.model_quality_join is not None
    times: dict[str, datetime] = {}

    # One bucket (the chunk decoded as a whole): refused records between kept ones.
    first = T0 + timedelta(minutes=1)
    good = capture(["a", "b"], first)  # a at +0 s, b at +1 s
    times.update(a=first, b=first + timedelta(seconds=1))
    times["c"], times["d"] = first + timedelta(seconds=7), first + timedelta(seconds=8)
    lines = [
        good[0],
        refused("c", times["c"], BAD_CSV),
        good[1],
        refused("d", times["d"], "", output=False),  # no output: no prediction either
    ]
    write_capture_file(config.capture.dir, lines, first)
    # Three buckets, one holding only a refused record (the chunk decoded bucket by bucket).
    second, third = T0 + timedelta(minutes=10), T0 + timedelta(minutes=15)
    times.update(e=second, g=third)
    times["inf-f"] = T0 + timedelta(minutes=20)
    lines = capture(["e"], second) + capture(["g"], third) + [refused("inf-f", times["inf-f"], "")]
    write_capture_file(config.capture.dir, lines, second)

    doc = await monitor.tick()
    assert doc["monitors"]["data_quality"]["samples"] == 4  # a, b, e, g: as before
    found = await monitor.store.aread(read_counters)
    assert (found["records"], found["bad_records"]) == (4, 3)
    assert (found["bad:bad_csv"], found["bad:empty_payload"]) == (1, 2)
    assert found["model_quality:predictions"] == 6  # a, b, c, e, g, inf-f
    assert found["model_quality:skipped:no_output"] == 1  # d
    stored = await monitor.store.aread(
        lambda c: [(r[0], r[1], r[3], r[4], r[5], r[6] is None) for r in stored_predictions(c)]
    )
    by_key = {key: rest for key, *rest in stored}
    assert set(by_key) == {"a", "b", "c", "e", "g", "inf-f"}
    for key, (_, moment, _, _, no_row) in by_key.items():
        assert moment == times[key].timestamp(), key  # each record's own time
        assert no_row == (key in ("c", "inf-f")), key  # no input row when it did not parse
    assert by_key["c"][2:4] == ["0", 0.2] and by_key["inf-f"][:1] == ["event-of-inf-f"]

    await post(client, [label("c", "0"), label("inf-f", "1"), label("a", "1")])
    assert await counts(client) == LabelCounts(3, 0, 0, 3, 0)
    pairs = await asyncio.to_thread(monitor.model_quality_join.window_pairs, HOUR, HOUR + 3600)
    assert sorted(zip(pairs.predictions, pairs.labels, strict=True)) == [
        ("0", "0"),
        ("0", "1"),
        ("1", "1"),
    ]
