"""The analyzer service ingesting from a remote tree (``analyzer.capture_url``) on a real S3 API
(moto's server on 127.0.0.1): exactly once across restarts, new objects on the next run, an
unreachable store counted and retried, a changed object counted and not re-read."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from analyzer.ingest.remote_ingest import RemoteIngestor
from analyzer.service.app import create_app, monitor_of
from analyzer.store.database import Store, read_counters
from modelmon.capture_names import capture_stem
from modelmon.config import ModelmonConfig
from tests.analyzer.service_helpers import (
    ENDPOINT,
    T0,
    VARIANT,
    Clock,
    make_config,
    read_rows,
    record_line,
)
from tests.analyzer.test_openapi import _validator
from tests.s3_support import S3Server

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
BUCKET = "captures"
URL = f"s3://{BUCKET}/datacapture"


def put_file(
    s3: S3Server, instance: str | None, moment: datetime, n: int, offset: int = 0
) -> tuple[str, int]:
    """A sealed capture file of ``n`` records in SageMaker's layout, as ``capture.upload``
    writes it (``instance`` None: a SageMaker name); returns its key and ``n``."""
    rows, scores = read_rows("baseline.csv")
    lines = [
        record_line(rows[(offset + i) % len(rows)], scores[(offset + i) % len(rows)], moment)
        for i in range(n)
    ]
    uid = str(uuid.uuid4())
    stem = (
        capture_stem(moment.minute, moment.second, 0, instance, uid)
        if instance is not None
        else f"{moment:%M-%S}-000-{uid}"
    )
    key = f"{BUCKET}/datacapture/{ENDPOINT}/{VARIANT}/{moment:%Y/%m/%d/%H}/{stem}.jsonl"
    s3.put(key, b"".join(lines))
    return key, n


def remote_config(tmp: Path) -> ModelmonConfig:
    return make_config(tmp, None, capture_url=URL)


async def _status(client: TestClient[Any, Any]) -> dict[str, Any]:
    response = await client.get("/monitor/status")
    assert response.status == 200
    status: dict[str, Any] = await response.json()
    return status


async def test_the_service_ingests_two_replicas_from_s3_exactly_once(
    aiohttp_client: Client, tmp_path: Path, s3: S3Server
) -> None:
    s3.make_bucket(BUCKET)
    total = 0
    for i in range(3):
        total += put_file(s3, "replica-a", T0 + timedelta(minutes=i), 40, i)[1]
        total += put_file(s3, "replica-b", T0 + timedelta(minutes=i, seconds=30), 25, i)[1]
    total += put_file(s3, "replica-b", T0 + timedelta(hours=1), 10)[1]  # the next hour
    config = remote_config(tmp_path)
    clock = Clock(T0 + timedelta(hours=1, minutes=10))
    app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
    client = await aiohttp_client(app)
    await monitor_of(app).tick()
    status = await _status(client)
    assert status["ingest"]["records"] == total == 205
    assert status["ingest"]["files"] == 7
    sources = status["sources"]
    assert sources["url"] == URL and sources["errors"] == 0 and sources["last_error"] is None
    assert sources["count"] == 2
    assert sources["instances"]["replica-a"]["files"] == 3
    assert sources["instances"]["replica-b"]["files"] == 4
    document = await (await client.get("/monitor/openapi.json")).json()
    _validator(document, "Status").validate(status)
    assert not (config.capture.dir).exists()  # the local folder is not used
    await client.close()

    # a restart on the same database reads nothing twice; new objects are read on the next run
    app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
    client = await aiohttp_client(app)
    await monitor_of(app).tick()
    assert (await _status(client))["ingest"]["records"] == total
    total += put_file(s3, None, T0 + timedelta(hours=1, minutes=5), 15)[1]  # SageMaker's name
    await monitor_of(app).tick()
    status = await _status(client)
    assert status["ingest"]["records"] == total and status["ingest"]["files"] == 8
    assert status["sources"]["instances"]["(unnamed)"]["files"] == 1

    # the store unreachable: counted, the service answers; back: goes on, nothing lost
    s3.stop()
    await monitor_of(app).tick()
    status = await _status(client)
    assert status["ingest"]["source_errors"] == 1
    assert status["sources"]["errors"] == 1
    assert "listing s3://captures/datacapture" in status["sources"]["last_error"]
    assert status["ingest"]["records"] == total
    metrics = await (await client.get("/monitor/metrics")).text()
    assert "modelmon_ingest_source_errors_total 1.0" in metrics
    s3.start()
    total += put_file(s3, "replica-a", T0 + timedelta(hours=1, minutes=6), 20)[1]
    await monitor_of(app).tick()
    status = await _status(client)
    assert status["ingest"]["records"] == total == 240
    assert status["ingest"]["source_errors"] == 1
    assert status["sources"]["errors"] == 1  # errors since start: still the one

    # an object read before that changes size is counted, not re-read
    key, _ = put_file(s3, "replica-a", T0 + timedelta(hours=1, minutes=7), 5)
    await monitor_of(app).tick()
    s3.put(key, s3.fs.cat_file(key) * 2)
    await monitor_of(app).tick()
    await monitor_of(app).tick()
    status = await _status(client)
    assert status["ingest"]["records"] == total + 5
    assert status["ingest"]["changed_files"] == 1


def test_a_listing_cut_at_max_files_goes_on_from_its_last_hour(
    tmp_path: Path, s3: S3Server
) -> None:
    s3.make_bucket(BUCKET)
    for hour in range(3):
        for minute in range(2):
            put_file(s3, "web-1", T0 + timedelta(hours=hour, minutes=minute), 3)
    config = remote_config(tmp_path)
    store = Store(config.analyzer.db)
    store.start()
    try:
        clock = Clock(T0 + timedelta(hours=4))
        ingestor = RemoteIngestor(store, config, URL, max_files=3, clock=clock)
        read = [ingestor.run_once().files for _ in range(4)]
        assert sum(read) == 6 and read[-1] == 0
        assert store.read(read_counters)["records"] == 18
    finally:
        store.close()


def test_files_older_than_the_retention_are_not_listed(tmp_path: Path, s3: S3Server) -> None:
    s3.make_bucket(BUCKET)
    put_file(s3, "web-1", T0, 3)
    put_file(s3, "web-1", T0 + timedelta(days=2), 4)
    config = make_config(tmp_path, None, capture_url=URL, retention_days=1)
    store = Store(config.analyzer.db)
    store.start()
    try:
        ingestor = RemoteIngestor(store, config, URL, clock=Clock(T0 + timedelta(days=2, hours=1)))
        assert ingestor.run_once().records == 4
    finally:
        store.close()
