"""Retention of ground truth (``analyzer.retention_days``): the raw rows of ``POST
/monitor/ground-truth`` and the read state of ground-truth files gone from disk are removed once
past retention, over three simulated days of a real service with an injected clock; a file
still on disk keeps its read state (never read twice)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient

from analyzer.service.app import create_app, monitor_of
from analyzer.store.database import Store
from analyzer.store.ground_truth import store_ground_truth
from analyzer.store.retention import forget_ground_truth
from tests.analyzer.service_helpers import T0, Clock
from tests.analyzer.test_service_model_quality import _config

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
DAY = timedelta(days=1)


def _records(prefix: str, n: int) -> bytes:
    return b"".join(
        orjson.dumps(
            {
                "groundTruthData": {"data": str(i % 2), "encoding": "CSV"},
                "eventMetadata": {"eventId": f"{prefix}{i}"},
                "eventVersion": "0",
            }
        )
        + b"\n"
        for i in range(n)
    )


def _drop_file(folder: Path, moment: datetime, name: str) -> Path:
    hour = folder / moment.strftime("%Y/%m/%d/%H")
    hour.mkdir(parents=True, exist_ok=True)
    path = hour / name
    path.write_bytes(_records(name.split(".")[0], 5))
    return path


async def test_three_days_of_ground_truth_keep_to_retention(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    folder = tmp_path / "gt"
    config = _config(tmp_path, ground_truth={"dir": str(folder)})
    config = config.model_copy(
        update={"analyzer": config.analyzer.model_copy(update={"retention_days": 2})}
    )
    clock = Clock(T0)
    app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
    client = await aiohttp_client(app)
    monitor = monitor_of(app)

    def rows() -> tuple[list[float], list[str]]:
        def read(conn: Any) -> tuple[list[float], list[str]]:
            received = [r for (r,) in conn.execute("SELECT received_at FROM ground_truth")]
            files = [p for (p,) in conn.execute("SELECT path FROM mq_gt_files ORDER BY path")]
            return sorted(received), files

        result: tuple[list[float], list[str]] = monitor.store.read(read)
        return result

    files: list[Path] = []
    day_s = DAY.total_seconds()
    for day in range(3):  # each day: a POST body, and a file in the hour folder before it
        clock.set(T0 + day * DAY)
        response = await client.post("/monitor/ground-truth", data=_records(f"p{day}-", 3))
        assert response.status == 200, await response.text()
        files.append(_drop_file(folder, T0 + day * DAY - timedelta(hours=1), f"f{day}.jsonl"))
        if day == 1:
            files[0].unlink()  # gone from disk, but within retention: its state is kept
        clock.now += 600  # then one tick reads the new file and applies the retention
        await monitor.tick()
        received, states = rows()
        paths = [f.relative_to(folder).as_posix() for f in files]
        t = (T0 + day * DAY).timestamp()
        if day == 0:
            assert received == [t] * 3 and states == paths
        elif day == 1:  # day 0 is one day old: within retention_days = 2
            assert received == [t - day_s] * 3 + [t] * 3
            assert states == paths  # f0 is gone from disk, but not past retention yet
        else:  # day 0 is past retention: its rows and the state of its removed file go
            assert received == [t - day_s] * 3 + [t] * 3
            assert states == paths[1:]
    files[1].unlink()
    clock.now += 3 * day_s  # everything is past retention; f2 is still on disk
    await monitor.tick()
    received, states = rows()
    assert received == [] and states == [files[2].relative_to(folder).as_posix()]
    assert monitor.last_ground_truth.labels == 0  # f2 was not read again


def test_ground_truth_rows_go_in_bounded_steps_oldest_first(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    store.start()
    try:
        rows = [("e", None, None, "1", "CSV", at) for at in (1.0, 2.0, 3.0, 4.0, 9.0)]
        store.write(lambda db: store_ground_truth(db, rows))

        def left() -> list[float]:
            found: list[float] = store.read(
                lambda conn: [r for (r,) in conn.execute("SELECT received_at FROM ground_truth")]
            )
            return found

        assert store.write(lambda db: forget_ground_truth(db, 5.0, batch=3)) == 3
        assert left() == [4.0, 9.0]  # at most `batch` rows a call: the rest next time
        assert store.write(lambda db: forget_ground_truth(db, 5.0, batch=3)) == 1
        assert left() == [9.0]
    finally:
        store.close()
