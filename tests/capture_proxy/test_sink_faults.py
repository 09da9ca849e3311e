"""Capture failures are dropped and counted, the sink keeps running and recovers; gzip output."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest

from capture_proxy.retention import free_disk_fraction

from .sink_support import (
    HOUR_START,
    FakeClock,
    event_ids,
    exchange,
    make_sink,
    part_files,
    sealed_files,
)


async def test_unwritable_capture_dir_drops_counts_and_recovers(tmp_path: Path) -> None:
    # Tests run as root, where chmod 0500 does not stop writes. Instead the endpoint's directory
    # is a regular FILE, so every mkdir under it fails for real (NotADirectoryError).
    blocker = tmp_path / "ep"
    blocker.write_bytes(b"not a directory")
    clock = FakeClock()
    sink, metrics = make_sink(tmp_path, clock)
    await sink.start()  # must not raise: capture is best effort
    lost = [exchange(clock.now) for _ in range(7)]
    assert all(sink.submit(e) for e in lost)  # the request path never sees the disk
    await sink.flush()
    assert metrics.drop_counts["write_error"] == 7
    blocker.unlink()
    kept = [exchange(clock.now) for _ in range(3)]
    for e in kept:
        sink.submit(e)
    await sink.flush()
    await sink.close()
    assert metrics.drop_counts["write_error"] == 7
    assert event_ids(sealed_files(tmp_path)) == {e.event_id: 1 for e in kept}


async def test_disk_below_min_free_fraction_drops_and_counts(tmp_path: Path) -> None:
    free = free_disk_fraction(tmp_path)
    if free > 0.9999:
        pytest.skip("the test filesystem is almost empty: no threshold above its free space")
    # A real statvfs verdict: ask for more free space than the filesystem has.
    sink, metrics = make_sink(tmp_path, min_free_disk_fraction=min(0.9999, (free + 1) / 2))
    await sink.start()
    assert sink.disk_full
    assert not sink.submit(exchange(HOUR_START + 1))
    assert not sink.submit(exchange(HOUR_START + 2))
    assert metrics.drop_counts["disk_full"] == 2
    await sink.close()
    assert not sealed_files(tmp_path) and not part_files(tmp_path)


async def test_records_queued_before_the_disk_fills_are_dropped_by_the_writer(
    tmp_path: Path,
) -> None:
    free = free_disk_fraction(tmp_path)
    if free > 0.9999:
        pytest.skip("the test filesystem is almost empty: no threshold above its free space")
    sink, metrics = make_sink(tmp_path, min_free_disk_fraction=min(0.9999, (free + 1) / 2))
    # Queued before start (no verdict yet), then the writer's first cycle finds the disk full.
    assert sink.submit(exchange(HOUR_START + 1))
    await sink.start()
    await sink.flush()
    assert metrics.drop_counts["disk_full"] == 1
    await sink.close()
    assert not sealed_files(tmp_path)


async def test_compress_writes_valid_gzip_with_every_record(tmp_path: Path) -> None:
    clock = FakeClock()
    sink, _ = make_sink(tmp_path, clock, compress=True, max_file_bytes=4096)
    await sink.start()
    sent = [exchange(clock.now, body=b'{"x": "' + b"y" * 300 + b'"}') for _ in range(40)]
    for e in sent:
        sink.submit(e)
    await sink.flush()
    assert sealed_files(tmp_path)  # some sealed by size already
    await sink.close()
    files = sealed_files(tmp_path)
    assert len(files) >= 3
    for path in files:
        assert path.name.endswith(".jsonl.gz")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with gzip.open(path) as fh:
            assert fh.read().endswith(b"\n")
    assert event_ids(files) == {e.event_id: 1 for e in sent}
    assert not part_files(tmp_path)  # neither .jsonl.part nor .jsonl.gz.part left


async def test_redacted_values_never_reach_the_file(tmp_path: Path) -> None:
    sink, metrics = make_sink(
        tmp_path, redact={"json_paths": ["user.ssn", "cards[*].number"], "csv_columns": [1]}
    )
    await sink.start()
    sink.submit(
        exchange(
            HOUR_START + 1,
            body=b'{"user": {"ssn": "SECRET-111"}, "cards": [{"number": "SECRET-222"}]}',
        )
    )
    sink.submit(
        exchange(
            HOUR_START + 2, body=b'1,"SECRET, 333",3\n4,SECRET-444,6\n', content_type="text/csv"
        )
    )
    sink.submit(exchange(HOUR_START + 3, body=b'{"user": {"ssn": "SECRET-555"'))  # cut JSON
    await sink.close()
    (path,) = sealed_files(tmp_path)
    content = path.read_bytes()
    assert b"SECRET" not in content and content.count(b"***") >= 5
    assert metrics.redact_unredactable._value.get() == 1
    assert len(event_ids([path])) == 3


def test_free_disk_fraction_of_a_missing_path_uses_its_parent(tmp_path: Path) -> None:
    st = os.statvfs(tmp_path)
    assert free_disk_fraction(tmp_path / "not" / "yet") == pytest.approx(
        st.f_bavail / st.f_blocks, abs=0.01
    )


FSIZE_WRITER = textwrap.dedent(
    """
    import asyncio, json, resource, signal, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from sink_support import HOUR_START, exchange, make_sink

    async def main():
        sink, metrics = make_sink(Path(sys.argv[1]))
        await sink.start()
        # A real write failure: files may not grow past 4 KiB (EFBIG instead of SIGXFSZ).
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
        body = b'{"x": "' + b"p" * 700 + b'"}'  # about 1 KiB per line
        batches = [[exchange(HOUR_START + 1, body) for _ in range(n)] for n in (3, 5, 2)]
        for batch in batches:
            for e in batch:
                sink.submit(e)
            await sink.flush()
        await sink.close()
        print(json.dumps({"ids": [[e.event_id for e in b] for b in batches],
                          "drops": metrics.drop_counts}))

    asyncio.run(main())
    """
)


async def test_failed_write_is_cut_back_dropped_counted_and_capture_goes_on(
    tmp_path: Path,
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        FSIZE_WRITER,
        str(tmp_path),
        str(Path(__file__).parent),
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    result = json.loads(out)
    first, failed, last = result["ids"]
    assert result["drops"]["write_error"] == len(failed) == 5
    files = sealed_files(tmp_path)
    assert len(files) == 2 and not part_files(tmp_path)
    # Every file is whole lines (read_lines checks), the failed batch left nothing behind.
    assert event_ids(files) == dict.fromkeys(first + last, 1)
