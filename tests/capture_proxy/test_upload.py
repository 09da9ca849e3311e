"""capture.upload: sealed files go to a real S3 API (moto's server on 127.0.0.1), off the
request path, retried, counted, never lost, never twice; a restart finds what is pending."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import aiohttp

from capture_proxy.metrics import ProxyMetrics
from capture_proxy.retention import UploadHold, enforce_retention
from capture_proxy.rotation import lock_nowait
from capture_proxy.upload import Uploader, backoff_s
from capture_proxy.upload_marks import is_uploaded, mark_of
from tests.capture_proxy.conftest import RunningProxy, StartProxy
from tests.s3_support import S3Server

URL = "s3://captures/replicas"
BODY = b'{"instances": [[1, 2.5, "x"]], "pad": "' + b"p" * 1200 + b'"}'
# every record (input + output ~ 3 KB encoded) is a file of its own, sealed when written
UPLOAD = {
    "enabled": True,
    "sampling_percentage": 100,
    "max_file_bytes": 1024,
    "upload": URL,
    "upload_drain_s": 5.0,
}


def _sealed(root: Path) -> dict[str, bytes]:
    """The sealed files under the capture dir, by path relative to it."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*.jsonl*"))
        if not p.name.startswith(".") and not p.name.endswith(".part")
    }


def _uploader(proxy: RunningProxy) -> Uploader:
    sink = proxy.proxy.sink
    assert sink is not None and sink.uploader is not None
    return sink.uploader


async def _wait(proxy: RunningProxy, predicate: Callable[[Uploader], bool]) -> None:
    assert await asyncio.to_thread(_uploader(proxy).wait_until, predicate, 30.0)


async def _send(client: aiohttp.ClientSession, proxy: RunningProxy, count: int) -> None:
    for _ in range(count):
        async with client.post(
            f"{proxy.url}/echo/invocations",
            data=BODY,
            headers={"Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 200
            assert await resp.read() == BODY
    sink = proxy.proxy.sink
    assert sink is not None
    await sink.flush()


def _value(proxy: RunningProxy, name: str) -> float:
    value = proxy.metrics.registry.get_sample_value(name)
    return 0.0 if value is None else value


async def test_sealed_files_go_up_in_sagemakers_layout_and_stay_local(
    s3: S3Server, start_proxy: StartProxy, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    s3.make_bucket("captures")
    proxy = await start_proxy(capture=UPLOAD)
    await _send(client, proxy, 3)
    await _wait(proxy, lambda u: u.pending == 0 and u.attempts >= 3)
    capture = tmp_path / "capture"
    local = _sealed(capture)
    assert len(local) == 3
    assert all(key.startswith("test-model/AllTraffic/") for key in local)
    assert s3.objects(URL) == local  # {prefix}/{endpoint}/{variant}/yyyy/mm/dd/hh/{file}
    assert all(is_uploaded(str(capture / key)) for key in local)
    assert _value(proxy, "modelmon_capture_uploaded_files_total") == 3
    assert _value(proxy, "modelmon_capture_uploaded_bytes_total") == sum(map(len, local.values()))
    assert _value(proxy, "modelmon_capture_upload_failures_total") == 0
    async with client.get(f"{proxy.url}/monitor/proxy/metrics") as resp:
        text = await resp.text()
    assert "modelmon_capture_uploaded_files_total 3.0" in text
    assert "modelmon_capture_upload_pending 0.0" in text


async def test_a_missing_bucket_is_retried_and_counted_while_traffic_flows(
    s3: S3Server, start_proxy: StartProxy, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    # retention would remove everything (1 byte allowed): it must keep what is not uploaded
    proxy = await start_proxy(capture={**UPLOAD, "retention_max_bytes": 1})
    await _send(client, proxy, 2)
    await _wait(proxy, lambda u: u.attempts >= 2)
    assert _value(proxy, "modelmon_capture_upload_failures_total") >= 2
    assert _uploader(proxy).pending == 2
    sink = proxy.proxy.sink
    assert sink is not None
    await sink.tick()  # retention runs now: the files are held back
    assert len(_sealed(tmp_path / "capture")) == 2
    assert _value(proxy, "modelmon_capture_files_removed_total") == 0

    s3.make_bucket("captures")
    _uploader(proxy).retry_now()
    await _wait(proxy, lambda u: u.pending == 0)
    assert len(s3.objects(URL)) == 2
    assert _value(proxy, "modelmon_capture_uploaded_files_total") == 2
    await sink.tick()  # uploaded: now the normal retention applies, marks go with the files
    assert _sealed(tmp_path / "capture") == {}
    assert not list((tmp_path / "capture").rglob(".*.uploaded"))
    assert _value(proxy, "modelmon_capture_files_removed_total") == 2
    assert _value(proxy, "modelmon_capture_upload_abandoned_total") == 0


async def test_store_down_then_back_loses_nothing_and_uploads_nothing_twice(
    s3: S3Server, start_proxy: StartProxy, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    s3.make_bucket("captures")
    proxy = await start_proxy(capture=UPLOAD)
    await _send(client, proxy, 2)
    await _wait(proxy, lambda u: u.pending == 0 and u.attempts >= 2)
    s3.stop()
    try:
        await _send(client, proxy, 3)  # the store is down: traffic still gets 200
        await _wait(proxy, lambda u: u.attempts >= 5)
        assert _uploader(proxy).pending == 3
        assert _value(proxy, "modelmon_capture_upload_failures_total") >= 3
    finally:
        s3.start()  # same port, same buckets
    _uploader(proxy).retry_now()
    await _wait(proxy, lambda u: u.pending == 0)
    local = _sealed(tmp_path / "capture")
    assert len(local) == 5
    assert s3.objects(URL) == local
    assert _value(proxy, "modelmon_capture_uploaded_files_total") == 5


async def test_a_restart_uploads_what_was_sealed_but_not_uploaded(
    s3: S3Server, start_proxy: StartProxy, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    first = await start_proxy(capture={**UPLOAD, "upload_drain_s": 0.0})
    await _send(client, first, 3)  # no bucket yet: every attempt fails
    await _wait(first, lambda u: u.attempts >= 3)
    await first.stop()
    local = _sealed(tmp_path / "capture")
    assert len(local) == 3
    assert not any(is_uploaded(str(tmp_path / "capture" / key)) for key in local)

    s3.make_bucket("captures")
    second = await start_proxy(capture=UPLOAD)
    await _wait(second, lambda u: u.pending == 0 and u.attempts >= 3)
    assert s3.objects(URL) == local
    assert _value(second, "modelmon_capture_uploaded_files_total") == 3


async def test_file_urls_get_whole_files_under_the_same_layout(
    start_proxy: StartProxy, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    target = tmp_path / "uploads"
    proxy = await start_proxy(capture={**UPLOAD, "upload": f"file://{target}"})
    await _send(client, proxy, 2)
    await _wait(proxy, lambda u: u.pending == 0 and u.attempts >= 2)
    copied = {
        p.relative_to(target).as_posix(): p.read_bytes()
        for p in sorted(target.rglob("*"))
        if p.is_file()
    }
    assert copied == _sealed(tmp_path / "capture")  # no temporary name left behind


def test_retention_holds_files_not_uploaded_unless_the_disk_is_full(tmp_path: Path) -> None:
    hour = tmp_path / "2024" / "01" / "01" / "00"
    hour.mkdir(parents=True)
    uploaded, pending = hour / "a.jsonl", hour / "b.jsonl"
    for path in (uploaded, pending):
        path.write_bytes(b"{}\n")
    Path(mark_of(str(uploaded))).touch()
    orphan = hour / ".gone.jsonl.uploaded"
    orphan.touch()
    now = max(p.stat().st_mtime for p in (uploaded, pending)) + 3600  # both over 60 s old

    hold = UploadHold(disk_full=False)
    assert enforce_retention(tmp_path, now, 60.0, 1 << 30, hold=hold) == [uploaded]
    assert pending.exists() and not Path(mark_of(str(uploaded))).exists()
    assert not orphan.exists() and hold.removed_pending == 0

    full = UploadHold(disk_full=True)
    assert enforce_retention(tmp_path, now, 60.0, 1 << 30, hold=full) == [pending]
    assert full.removed_pending == 1


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff_s(n, 0.5, 3.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_s(10_000, 1.0, 300.0) == 300.0


async def test_files_sealed_at_shutdown_go_up_before_exit(
    s3: S3Server, start_proxy: StartProxy, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    s3.make_bucket("captures")
    proxy = await start_proxy(capture={**UPLOAD, "max_file_bytes": 1 << 20, "compress": True})
    await _send(client, proxy, 3)  # one open file, sealed (gzipped) only by the shutdown
    assert _uploader(proxy).attempts == 0
    await proxy.stop()
    local = _sealed(tmp_path / "capture")
    assert len(local) == 1 and next(iter(local)).endswith(".jsonl.gz")
    assert s3.objects(URL) == local
    assert _value(proxy, "modelmon_capture_uploaded_files_total") == 1


async def test_a_full_disk_lets_retention_remove_files_not_uploaded_and_counts_them(
    s3: S3Server, start_proxy: StartProxy, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    first = await start_proxy(capture={**UPLOAD, "upload_drain_s": 0.0})
    await _send(client, first, 2)  # no bucket: both stay pending
    await first.stop()
    assert len(_sealed(tmp_path / "capture")) == 2
    # the disk guard says full (any real disk has less than 99.9999 % free) and retention
    # allows 1 byte: at start the pending files go, and are counted as abandoned
    full = {**UPLOAD, "min_free_disk_fraction": 0.999999, "retention_max_bytes": 1}
    second = await start_proxy(capture=full)
    assert _sealed(tmp_path / "capture") == {}
    assert _value(second, "modelmon_capture_upload_abandoned_total") == 2
    assert _value(second, "modelmon_capture_files_removed_total") == 2


def _uploaded(metrics: ProxyMetrics) -> float:
    return metrics.registry.get_sample_value("modelmon_capture_uploaded_files_total") or 0.0


def test_two_workers_sharing_a_tree_upload_each_file_once(tmp_path: Path) -> None:
    capture = tmp_path / "capture"
    hour = capture / "ep" / "AllTraffic" / "2024" / "01" / "01" / "00"
    hour.mkdir(parents=True)
    files = [hour / f"00-00-00{i}-w-{i:08d}-0000-4000-8000-000000000000.jsonl" for i in range(4)]
    for path in files:
        path.write_bytes(b"{}\n" * 100)
    url = f"file://{tmp_path / 'target'}"
    one, two = ProxyMetrics(), ProxyMetrics()
    first = Uploader(capture, capture / "ep", url, one, worker_id=0)
    second = Uploader(capture, capture / "ep", url, two, worker_id=1)
    # the first uploads everything; the second had listed the files before they were marked
    first.start()
    second.start()
    try:
        assert first.wait_until(lambda u: u.pending == 0 and u.attempts >= 4, 30.0)
        assert second.wait_until(lambda u: u.pending == 0, 30.0)
        for path in files:
            second.submit(path)
        assert second.wait_until(lambda u: u.pending == 0 and u.attempts >= 4, 30.0)
        assert (_uploaded(one), _uploaded(two)) == (4.0, 0.0)

        # a file a sibling is uploading (it holds the lock) is left to it, then looked at again
        late = hour / "59-00-000-w-00000009-0000-4000-8000-000000000000.jsonl"
        late.write_bytes(b"{}\n")
        fd = os.open(late, os.O_RDONLY)
        try:
            assert lock_nowait(fd)
            second.submit(late)
            assert second.wait_until(lambda u: u.attempts >= 5, 30.0)
            assert second.pending == 1 and not is_uploaded(str(late))
        finally:
            os.close(fd)
        second.retry_now()
        assert second.wait_until(lambda u: u.pending == 0, 30.0)
        assert _uploaded(two) == 1.0 and is_uploaded(str(late))
    finally:
        first.close(0.0)
        second.close(0.0)
