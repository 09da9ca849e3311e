"""Crash recovery: .part files of dead writers are cut after their last newline and sealed;
files a live writer holds are left alone."""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import sys
import textwrap
from pathlib import Path

from capture_proxy.exchange import to_line
from capture_proxy.recovery import cut_partial_line, recover_parts
from modelmon.config import CaptureConfig

from .sink_support import (
    HOUR_START,
    FakeClock,
    event_ids,
    exchange,
    make_sink,
    part_files,
    read_lines,
    root_of,
    sealed_files,
)


def _hour_dir(capture_dir: Path) -> Path:
    directory = root_of(capture_dir) / "2026" / "03" / "04" / "05"
    directory.mkdir(parents=True)
    return directory


def _lines(n: int) -> tuple[list[str], bytes]:
    sent = [exchange(HOUR_START + i) for i in range(n)]
    return [e.event_id for e in sent], b"".join(to_line(e, CaptureConfig()) for e in sent)


async def test_crashed_part_with_partial_last_line_is_cut_and_sealed(tmp_path: Path) -> None:
    ids, data = _lines(3)
    part = _hour_dir(tmp_path) / "00-01-002-0f0e0d0c-aaaa-bbbb-cccc-000000000001.jsonl.part"
    part.write_bytes(data + data[: len(data) // 5])  # a kill -9 in the middle of a line
    sink, metrics = make_sink(tmp_path)
    await sink.start()
    assert not part_files(tmp_path)
    (sealed,) = sealed_files(tmp_path)
    assert sealed.name == part.name.removesuffix(".part")
    assert sealed.read_bytes() == data
    assert event_ids([sealed]) == dict.fromkeys(ids, 1)
    assert metrics.files_sealed._value.get() == 1
    await sink.close()


async def test_recovered_part_is_gzipped_when_compress_is_on(tmp_path: Path) -> None:
    _ids, data = _lines(2)
    part = _hour_dir(tmp_path) / "00-01-002-0f0e0d0c-aaaa-bbbb-cccc-000000000002.jsonl.part"
    part.write_bytes(data + b'{"captureData": {"endpointIn')
    sink, _ = make_sink(tmp_path, compress=True)
    await sink.start()
    (sealed,) = sealed_files(tmp_path)
    assert sealed.name.endswith(".jsonl.gz") and gzip.decompress(sealed.read_bytes()) == data
    await sink.close()


def test_empty_and_lineless_parts_are_removed(tmp_path: Path) -> None:
    directory = _hour_dir(tmp_path)
    (directory / "00-00-000-a.jsonl.part").write_bytes(b"")
    (directory / "00-00-000-b.jsonl.part").write_bytes(b'{"captureData": {"half')
    result = recover_parts(root_of(tmp_path), compress=False)
    assert len(result.removed) == 2 and not result.sealed
    assert list(directory.iterdir()) == []


def test_part_already_sealed_as_gzip_and_stray_gzip_temp_are_removed(tmp_path: Path) -> None:
    _ids, data = _lines(2)
    directory = _hour_dir(tmp_path)
    # A crash between renaming the .gz into place and unlinking the .part:
    (directory / "00-00-000-c.jsonl.gz").write_bytes(gzip.compress(data))
    (directory / "00-00-000-c.jsonl.part").write_bytes(data)
    # A crash in the middle of gzipping:
    (directory / "00-00-000-d.jsonl.part").write_bytes(data)
    (directory / "00-00-000-d.jsonl.gz.part").write_bytes(gzip.compress(data)[:10])
    result = recover_parts(root_of(tmp_path), compress=True)
    names = sorted(p.name for p in directory.iterdir())
    assert names == ["00-00-000-c.jsonl.gz", "00-00-000-d.jsonl.gz"]
    assert gzip.decompress((directory / "00-00-000-d.jsonl.gz").read_bytes()) == data
    assert [p.name for p in result.sealed] == ["00-00-000-d.jsonl.gz"]


def test_cut_partial_line_over_a_long_tail(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a\n" + b"x" * 200_000)  # the partial line spans several read chunks
    fd = os.open(path, os.O_RDWR)
    try:
        assert cut_partial_line(fd) == 2
    finally:
        os.close(fd)
    assert path.read_bytes() == b"a\n"


async def test_a_live_writers_part_is_not_recovered(tmp_path: Path) -> None:
    clock = FakeClock()
    live, _ = make_sink(tmp_path, clock)
    await live.start()
    sent = exchange(clock.now)
    live.submit(sent)
    await live.flush()
    (part,) = part_files(tmp_path)
    starting, _ = make_sink(tmp_path, clock)  # e.g. a sibling worker starting up
    await starting.start()
    assert part_files(tmp_path) == [part] and not sealed_files(tmp_path)
    await starting.close()
    await live.close()
    assert event_ids(sealed_files(tmp_path)) == {sent.event_id: 1}


WRITER = textwrap.dedent(
    """
    import asyncio, sys, uuid
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from sink_support import exchange, make_sink, HOUR_START

    async def main():
        sink, _ = make_sink(Path(sys.argv[1]))
        await sink.start()
        for i in range(25):
            e = exchange(HOUR_START + 1)
            sink.submit(e)
            print(e.event_id)
        await sink.flush()
        print("flushed", flush=True)
        await asyncio.Event().wait()  # until killed

    asyncio.run(main())
    """
)


async def test_kill_9_loses_nothing_flushed(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WRITER,
        str(tmp_path),
        str(Path(__file__).parent),
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    assert proc.stdout is not None
    ids = []
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
        assert line, "the writer exited early"
        if line == "flushed":
            break
        ids.append(line)
    proc.send_signal(signal.SIGKILL)
    assert await asyncio.wait_for(proc.wait(), 30) == -signal.SIGKILL
    (part,) = part_files(tmp_path)
    # Append half a line to the dead writer's file, as if it had died in the middle of a write.
    with part.open("ab") as fh:
        fh.write(b'{"captureData": {"endpointInput": {"data": "cut')
    sink, metrics = make_sink(tmp_path)
    await sink.start()
    await sink.close()
    assert not part_files(tmp_path)
    (sealed,) = sealed_files(tmp_path)
    assert len(read_lines(sealed)) == 25
    assert event_ids([sealed]) == dict.fromkeys(ids, 1)
    assert metrics.files_sealed._value.get() == 1
