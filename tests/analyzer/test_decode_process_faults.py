"""The decoding process's faults, for real: its worker killed (mid-decode, or with the
service), a pass that fails with a chunk queued, a shutdown mid-pass, its hand-over folder
missing or removed. No record lost or counted twice, no worker or file left behind."""

from __future__ import annotations

import fcntl
import os
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from analyzer.ingest.chunk_decode import ChunkDecoder, DecodeSpec
from analyzer.ingest.decode_process import DecodeProcess
from analyzer.ingest.ingestor import Ingestor, feature_limit
from analyzer.store.database import Store, read_counters
from tests.analyzer.service_helpers import T0, make_config, read_rows, record_line, write_traffic
from tests.analyzer.test_decode_process import ROOT, _counters, _decode_one, _ingest


def test_a_death_mid_decode_restarts_the_worker_once(
    tmp_path: Path, process: DecodeProcess
) -> None:
    """The worker killed while it decodes one chunk with the next queued behind it: both
    chunks fall back, and the second's report of the death does not end the new worker the
    first one's started (one death, one restart; the next chunk decoded by the new worker)."""
    config = make_config(tmp_path, None)
    spec = DecodeSpec.of(config, feature_limit(config))
    rows, scores = read_rows("current_nodrift.csv")
    lines = [record_line(rows[i % len(rows)], scores[i % len(rows)], T0) for i in range(20_000)]
    first, second = process.submit(spec, lines), process.submit(spec, lines)
    assert first is not None and second is not None
    os.kill(process.worker_pids()[0], signal.SIGKILL)
    assert process.result(first) is None
    third = process.submit(spec, lines[:10])  # to a new worker
    assert third is not None
    assert process.result(second) is None
    decoded = process.result(third)
    assert decoded is not None and decoded[1] == 10
    assert process.stats() == {"chunks": 1, "here": 0, "fallbacks": 2, "restarts": 1,
                               "given_up": False}  # fmt: skip


class _KilledMidDecode(DecodeProcess):
    """Kills its worker (SIGKILL) when the first chunk's result is waited for: that chunk is
    being decoded, the next one queued behind it."""

    killed = False

    def result(self, ticket: Any) -> Any:
        if not self.killed:
            self.killed = True
            os.kill(self.worker_pids()[0], signal.SIGKILL)
        return super().result(ticket)


def test_a_worker_killed_mid_pass_is_restarted_once(tmp_path: Path) -> None:
    config = make_config(tmp_path, None)
    n = write_traffic(config.capture.dir, "current_nodrift.csv", 600, T0, per_file=200)
    process = _KilledMidDecode(folder=tmp_path)
    try:
        stats, _ = _ingest(config, process, chunk_lines=50)
        found = process.stats()
    finally:
        process.close()
    assert stats.records == n and stats.chunks == 12
    assert _counters(config)["records"] == n
    # the killed worker's chunks (the one it decoded, unless it had just finished it, and the
    # one behind) on the ingest thread, every other by the one new worker
    assert found["restarts"] == 1 and not found["given_up"]
    assert found["fallbacks"] in (1, 2)
    assert found["chunks"] + found["here"] + found["fallbacks"] == 12


def test_a_chunk_queued_after_close_starts_no_worker(tmp_path: Path) -> None:
    """The service's shutdown closes the process while a pass may still run (a thread it
    cannot cancel): that pass's next chunks are decoded on its thread, and no worker nor
    hand-over folder is left behind."""
    config = make_config(tmp_path, None)
    spec = DecodeSpec.of(config, feature_limit(config))
    lines = [record_line(read_rows("current_nodrift.csv")[0][0], "0.5", T0)]
    handover = tmp_path / "handover"
    handover.mkdir()
    process = DecodeProcess(folder=handover)
    ticket = process.submit(spec, lines)
    assert ticket is not None
    process.close()
    assert process.submit(spec, lines) is None
    assert process.worker_pids() == [] and not any(handover.iterdir())


class _DiskFull(Ingestor):
    """Every chunk's transaction fails, as on a full disk (a fault not made for real here)."""

    def _committed(self, db: Any, rel: str) -> None:
        raise sqlite3.OperationalError("database or disk is full")


def test_a_failed_pass_leaves_no_chunk_in_the_hand_over_folder(
    tmp_path: Path, process: DecodeProcess
) -> None:
    """A pass that fails with the next chunk queued to the worker: that chunk's files are
    removed once it is decoded (else one chunk more stays in /dev/shm, in memory, at every
    failed pass, until the service stops)."""
    config = make_config(tmp_path, None)
    write_traffic(config.capture.dir, "current_nodrift.csv", 400, T0, per_file=200)
    store = Store(config.analyzer.db)
    store.start()
    try:
        ingestor = _DiskFull(store, config, decode_process=process, chunk_lines=50)
        for _ in range(2):
            with pytest.raises(sqlite3.OperationalError):
                ingestor.run_once()
    finally:
        store.close()
    # a later decode: the worker decodes in order, so the chunks given up on are done
    ticket = process.submit(ingestor._spec, [b"{}"])
    assert ticket is not None and process.result(ticket) is not None
    assert not any((tmp_path / "handover").rglob("*.*"))


_SERVICE = """
import sys
from pathlib import Path
from analyzer.ingest.decode_process import DecodeProcess
from analyzer.monitors.data_quality.cardinality import FeatureLimit
from analyzer.ingest.chunk_decode import ChunkDecoder, DecodeSpec
from modelmon.config import PayloadConfig

if __name__ == "__main__":
    process = DecodeProcess(folder=Path(sys.argv[1]))
    spec = DecodeSpec(PayloadConfig(), FeatureLimit(10), 3600, 200, None)
    assert process.result(process.submit(spec, [b"{}"])) is not None
    print(process.worker_pids()[0], flush=True)
    sys.stdin.read()  # until killed
"""


def test_the_worker_ends_when_the_service_is_killed(tmp_path: Path) -> None:
    """A service killed with ``kill -9`` (no cleanup): its worker ends itself (the liveness
    pipe), instead of living on, holding the service's stderr."""
    with subprocess.Popen([sys.executable, "-c", _SERVICE, str(tmp_path)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          env={**os.environ, "PYTHONPATH": ROOT}) as service:  # fmt: skip
        try:
            assert service.stdout is not None
            worker = int(service.stdout.readline())
            watch = os.pidfd_open(worker)  # waits for a process that is not our child
        finally:
            service.kill()
    try:
        assert select.select([watch], [], [], 30)[0] == [watch], "the worker outlived it"
    finally:
        os.close(watch)


def test_a_worker_that_decodes_again_is_not_given_up_for_deaths_apart(
    tmp_path: Path, process: DecodeProcess
) -> None:
    """``max_deaths`` counts deaths in a row: a worker started again that decodes a chunk
    resets the count."""
    config = make_config(tmp_path, None)
    spec = DecodeSpec.of(config, feature_limit(config))
    lines = [record_line(read_rows("current_nodrift.csv")[0][0], "0.5", T0)]
    for _ in range(3):  # as many deaths as max_deaths, each after a decoded chunk
        ticket = process.submit(spec, lines)
        assert ticket is not None and process.result(ticket) is not None
        os.kill(process.worker_pids()[0], signal.SIGKILL)
        ticket = process.submit(spec, lines)  # the death is seen here, or at its result
        assert ticket is None or process.result(ticket) is None
    assert not process.stats()["given_up"] and process.stats()["restarts"] == 3


def test_no_hand_over_folder_falls_back_instead_of_failing_the_pass(tmp_path: Path) -> None:
    """The hand-over folder cannot be made (here: a file where its parent should be): every
    chunk is decoded on the ingest thread, counted; the pass does not fail."""
    config = make_config(tmp_path, None)
    n = write_traffic(config.capture.dir, "current_nodrift.csv", 200, T0, per_file=100)
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    process = DecodeProcess(folder=blocker)
    try:
        stats, _ = _ingest(config, process, chunk_lines=50)
        assert stats.records == n and _counters(config)["records"] == n
        assert process.stats() == {"chunks": 0, "here": 0, "fallbacks": 4, "restarts": 0,
                                   "given_up": False}  # fmt: skip
        assert process.worker_pids() == []
    finally:
        process.close()


def test_a_hand_over_folder_removed_under_the_service_is_made_again(
    tmp_path: Path, process: DecodeProcess
) -> None:
    """Its folder removed (a cleaner of /dev/shm or /tmp): the next chunk falls back, the ones
    after are handed over in a new folder (not every chunk on the ingest thread from then on)."""
    config = make_config(tmp_path, None)
    spec = DecodeSpec.of(config, feature_limit(config))
    lines = [record_line(read_rows("current_nodrift.csv")[0][0], "0.5", T0)]
    ticket = process.submit(spec, lines)
    assert ticket is not None and process.result(ticket) is not None
    (folder,) = (tmp_path / "handover").iterdir()
    shutil.rmtree(folder)
    assert process.submit(spec, lines) is None  # its input could not be written
    for _ in range(2):
        ticket = process.submit(spec, lines)
        assert ticket is not None and process.result(ticket) is not None
    assert process.stats() == {"chunks": 3, "here": 0, "fallbacks": 1, "restarts": 0,
                               "given_up": False}  # fmt: skip


def test_a_second_ingester_with_a_process_cannot_double_count(
    tmp_path: Path, process: DecodeProcess
) -> None:
    """Two ingesters on one database, the late one with chunks queued to its worker when its
    first commit finds the offset moved: nothing of the file is committed twice, and the
    chunks queued for it are dropped with their files."""
    config = make_config(tmp_path, None)
    n = write_traffic(config.capture.dir, "current_nodrift.csv", 300, T0, per_file=150)
    store = Store(config.analyzer.db)
    store.start()
    try:
        late = Ingestor(store, config, decode_process=process, chunk_lines=50)
        seen = late._known()  # what it saw before the first ingester committed
        assert Ingestor(store, config).run_once().records == n
        late._known = lambda first="": seen  # type: ignore[method-assign]
        again = late.run_once()
        records = store.read(read_counters)["records"]
    finally:
        store.close()
    assert again.records == 0 and again.chunks == 0 and records == n
    spec = DecodeSpec.of(config, feature_limit(config))
    ticket = process.submit(spec, [b"{}"])  # decoded after the dropped ones
    assert ticket is not None and process.result(ticket) is not None
    assert not any((tmp_path / "handover").rglob("*.*"))


_CTRL_C = """
import os, signal, sys
from pathlib import Path
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, not ignored
from analyzer.ingest.decode_process import DecodeProcess
from analyzer.monitors.data_quality.cardinality import FeatureLimit
from analyzer.ingest.chunk_decode import ChunkDecoder, DecodeSpec
from modelmon.config import PayloadConfig

if __name__ == "__main__":
    process = DecodeProcess(folder=Path(sys.argv[1]))
    spec = DecodeSpec(PayloadConfig(), FeatureLimit(10), 3600, 200, None)
    line = b'{"captureData": {}, "eventMetadata": {"inferenceTime": "2026-11-27T07:00:00Z"}}'
    assert process.result(process.submit(spec, [line])) is not None  # the worker started
    ticket = process.submit(spec, [line] * 50_000)
    os.kill(process.worker_pids()[0], signal.SIGINT)
    print(process.result(ticket) is not None, process.stats()["fallbacks"])
    process.close()
"""


def test_ctrl_c_is_the_services_not_the_workers(tmp_path: Path) -> None:
    """Ctrl-C reaches the whole process group: the worker ignores it (the service's shutdown
    ends it) instead of dying mid-decode. (In a subprocess: the worker's Ctrl-C is then not
    ignored already, as it is under a runner that starts the tests in the background.)"""
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run([sys.executable, "-c", _CTRL_C, str(tmp_path)], capture_output=True,
                          check=True, text=True, env=env)  # fmt: skip
    assert done.stdout.split() == ["True", "0"]


@pytest.mark.parametrize("in_process", [False, True])
def test_a_decode_that_raises_fails_the_pass_as_on_the_ingest_thread(
    tmp_path: Path, process: DecodeProcess, in_process: bool
) -> None:
    """A decode that raises (a bug; here a sketch size the sketch refuses) fails the pass with
    its error wherever it ran, nothing of the chunk committed; the worker lives on and the
    chunk queued behind it leaves no file."""
    config = make_config(tmp_path, None)
    write_traffic(config.capture.dir, "current_nodrift.csv", 200, T0, per_file=100)
    store = Store(config.analyzer.db)
    store.start()
    try:
        # two chunks: both to the worker (a third would be decoded here, on the ingest thread)
        ingestor = Ingestor(store, config, decode_process=process if in_process else None,
                            chunk_lines=100)  # fmt: skip
        ingestor._spec = replace(ingestor._spec, kll_k=1)
        ingestor._chunk_decoder = ChunkDecoder(ingestor._spec)
        with pytest.raises(ValueError, match="K must be"):
            ingestor.run_once()
        assert store.read(read_counters).get("records", 0) == 0
    finally:
        store.close()
    spec = DecodeSpec.of(config, feature_limit(config))
    ticket = process.submit(spec, [b"{}"])
    assert ticket is not None and process.result(ticket) is not None
    assert not any((tmp_path / "handover").rglob("*.*"))
    assert process.stats() == {"chunks": 1, "here": 0, "fallbacks": 0, "restarts": 0,
                               "given_up": False}  # fmt: skip


def test_the_sweep_goes_by_the_folders_lock_not_the_id_in_its_name(tmp_path: Path) -> None:
    """Services in other process-id namespaces sharing /dev/shm (containers of one pod): the
    id in a folder's name may be dead here while its service lives, or alive here while its
    service is gone. A folder whose lock is held stays; one whose lock is free goes."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, check=True, text=True)  # fmt: skip
    other = tmp_path / f"modelmon-decode-{int(gone.stdout)}-ns"  # its service: alive
    stale = tmp_path / f"modelmon-decode-{os.getppid()}-ns"  # its service: gone
    for folder in (other, stale):
        folder.mkdir()
        (folder / "7.in").write_bytes(b"x" * 100)
        (folder / "lock").write_bytes(b"")
    held = os.open(other / "lock", os.O_RDWR)
    fcntl.flock(held, fcntl.LOCK_EX)  # as the other namespace's live service holds it
    process = DecodeProcess(folder=tmp_path)
    try:
        config = make_config(tmp_path, None)
        _decode_one(process, config)
        assert (other / "7.in").exists() and not stale.exists()
    finally:
        process.close()
        os.close(held)


def test_a_chunk_given_while_the_process_shuts_down_is_decoded_here(
    tmp_path: Path, process: DecodeProcess
) -> None:
    """``close()`` shut the pool down after ``submit`` took it (the race at the service's
    exit, made here by shutting the pool down as ``close`` does): the chunk falls back to the
    ingest thread, counted, its file removed; the pass does not fail."""
    config = make_config(tmp_path, None)
    spec = DecodeSpec.of(config, feature_limit(config))
    lines = [record_line(read_rows("current_nodrift.csv")[0][0], "0.5", T0)]
    ticket = process.submit(spec, lines)
    assert ticket is not None and process.result(ticket) is not None
    ticket.pool.shutdown(wait=True)  # the pool submit takes next, shut down under it
    assert process.submit(spec, lines) is None
    assert process.stats()["fallbacks"] == 1 and process.stats()["restarts"] == 0
    assert not any((tmp_path / "handover").rglob("*.in"))


def test_a_chunk_decoded_here_that_raises_leaves_the_workers_before_it_committed(
    tmp_path: Path, process: DecodeProcess
) -> None:
    """The third chunk, read while the worker has the first two, is decoded on the ingest
    thread and raises (only the ingest thread's decoder is broken here): the pass fails with
    its error, as on the ingest thread, but only once the two before it are committed (else a
    record that always raises would keep the chunks before it from ever being committed)."""
    config = make_config(tmp_path, None)
    write_traffic(config.capture.dir, "current_nodrift.csv", 200, T0, per_file=100)
    store = Store(config.analyzer.db)
    store.start()
    try:
        ingestor = Ingestor(store, config, decode_process=process, chunk_lines=50)
        ingestor._chunk_decoder = ChunkDecoder(replace(ingestor._spec, kll_k=1))
        with pytest.raises(ValueError, match="K must be"):
            ingestor.run_once()
        assert store.read(read_counters).get("records", 0) == 100  # chunks 1 and 2
    finally:
        store.close()
    assert process.stats()["chunks"] == 2 and process.stats()["here"] == 1
    assert not any((tmp_path / "handover").rglob("*.*"))
