"""Many replicas, one capture tree: two proxies (two instance ids) write into one folder and
upload to one prefix; the names never clash, and the analyzer reads the records of both."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from analyzer.ingest.capture_files import instance_of, sealed_files
from analyzer.ingest.parallel import profile_capture_files
from analyzer.ingest.remote_files import RemoteCaptureTree
from tests.capture_proxy.conftest import RunningProxy, StartProxy
from tests.s3_support import S3Server

URL = "s3://captures/fleet"
SENT = {"replica-a": 7, "replica-b": 5}


async def _send(client: aiohttp.ClientSession, proxy: RunningProxy, count: int) -> None:
    for i in range(count):
        body = f"{i},2.5,{i * 3}\n".encode()
        async with client.post(
            f"{proxy.url}/echo/invocations", data=body, headers={"Content-Type": "text/csv"}
        ) as resp:
            assert resp.status == 200


async def test_two_replicas_share_one_tree_and_the_analyzer_reads_both(
    s3: S3Server, start_proxy: StartProxy, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    s3.make_bucket("captures")
    proxies = {}
    for instance in SENT:
        capture = {
            "enabled": True,
            "sampling_percentage": 100,
            "max_file_bytes": 1024,  # a few records a file: many files from each replica
            "instance_id": instance,
            "upload": URL,
        }
        proxies[instance] = await start_proxy(capture=capture)
    await asyncio.gather(*(_send(client, proxies[i], n) for i, n in SENT.items()))
    for proxy in proxies.values():
        await proxy.stop()  # seals and uploads what is left (upload_drain_s)

    files = sealed_files(tmp_path / "capture", "test-model", "AllTraffic", None, None)
    by_instance = {i: [f for f in files if instance_of(f.name) == i] for i in SENT}
    assert all(len(found) >= 2 for found in by_instance.values())
    assert sum(map(len, by_instance.values())) == len(files)
    assert len({f.name for f in files}) == len(files)

    seen = profile_capture_files(files, proxies["replica-a"].config.analyzer.payload, 2048, 1)
    assert seen.records == sum(SENT.values())
    assert seen.profile.item_count == sum(SENT.values())

    tree = RemoteCaptureTree(URL, "test-model", "AllTraffic")
    remote = tree.sealed_files().files
    assert sorted(f.name for f in remote) == sorted(f.name for f in files)
    assert {f.instance for f in remote} == set(SENT)
    assert sum(len(list(tree.read_lines(f))) for f in remote) == sum(SENT.values())
