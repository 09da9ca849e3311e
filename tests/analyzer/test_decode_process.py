"""The service's chunks decoded in a process of its own (``analyzer.ingest_process``): the
same stored tables as when the ingest thread decodes them, and a worker that dies loses and
doubles nothing (its chunks are decoded on the ingest thread, and counted)."""

from __future__ import annotations

import gzip
import hashlib
import os
import signal
import struct
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import datasketches
import pytest
import yaml
from aiohttp.pytest_plugin import AiohttpClient

from analyzer.ingest.chunk_decode import DecodeSpec
from analyzer.ingest.decode_process import DecodeProcess, packed, unpacked
from analyzer.ingest.ingestor import Ingestor, IngestStats, feature_limit
from analyzer.monitors.data_quality.profile import DatasetProfile
from analyzer.service.app import create_app, monitor_of
from analyzer.store.database import Store, read_counters
from analyzer.web.prom import new_registry, render
from modelmon.capture_record import CaptureSide, build_record
from modelmon.config import ConfigError, ModelmonConfig, load_config
from tests.analyzer.service_helpers import (
    T0,
    Clock,
    make_config,
    read_rows,
    record_line,
    write_capture_file,
    write_traffic,
)

NO_FALSE_NEG = datasketches.frequent_items_error_type.NO_FALSE_NEGATIVES
QUALITY = {"problem_type": "BinaryClassification", "probability_attribute": "0"}
ROOT = str(Path(__file__).resolve().parents[2])  # the tree under test, for a subprocess
TABLES = ("buckets", "files", "counters", "hours", "mq_blocks", "mq_totals", "mq_runs")


def _capture(config: ModelmonConfig) -> int:
    """Files over three hours and many buckets, in chunks that cross buckets and files: a
    plain file, a gzip file, one with bad lines (not JSON, a record cut by the proxy, a line
    over ``max_line_bytes``) and a gzip file broken midway (``unreadable_file``)."""
    root = config.capture.dir
    n = write_traffic(root, "current_nodrift.csv", 700, T0, per_file=300)
    n += write_traffic(root, "current_covariate.csv", 500, T0 + timedelta(hours=1), per_file=250)
    rows, scores = read_rows("current_nodrift.csv")
    later = T0 + timedelta(hours=2)
    lines = [record_line(rows[i], scores[i], later + timedelta(seconds=7 * i)) for i in range(90)]
    lines.insert(10, b"{not json\n")
    lines.insert(40, b'{"x": "' + b"y" * (config.analyzer.max_line_bytes + 10) + b'"}\n')
    cut = CaptureSide("text/csv", ",".join(rows[0])[:5], "CSV", truncated=True)
    lines.insert(60, build_record(event_id="cut", inference_time=later, request=cut,
                                  response=CaptureSide("text/csv", scores[0], "CSV")))  # fmt: skip
    write_capture_file(root, lines, later)
    n += 90
    broken = write_capture_file(root, [], later + timedelta(minutes=30))
    good = b"".join(
        record_line(rows[i], scores[i], later + timedelta(minutes=31)) for i in range(20)
    )
    broken.with_name(broken.name + ".gz").write_bytes(gzip.compress(good) + b"no gzip member")
    broken.unlink()
    return n


def _content(blob: bytes) -> dict[str, Any]:
    """A stored bucket profile's content: per feature, its counts and moments, its KLL
    sketch's bytes, its frequent values with their counts and its HLL estimate. (The
    frequent-items and HLL sketches serialize their items in the order of their hash maps,
    which a profile sent as bytes and read back (the process's way) has rebuilt: the same
    items, in another order.)"""
    features = {}
    for name, feature in DatasetProfile.from_bytes(blob).features.items():
        header_size, kll_size = struct.unpack_from("<4I", feature.to_bytes(), 4)[:2]
        head = feature.to_bytes()[20 : 20 + header_size + kll_size]
        frequent = feature.frequent
        items = None if frequent is None else sorted(frequent.get_frequent_items(NO_FALSE_NEG))
        estimate = None if feature.hll is None else feature.hll.get_estimate()
        features[name] = (head, items, estimate)
    return features


def _digest(rows: list[Any]) -> str:
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:16]


def _ingest(
    config: ModelmonConfig, process: DecodeProcess | None, **options: Any
) -> tuple[IngestStats, dict[str, str]]:
    """One pass over the capture folder; the digest of each table it wrote (of the bucket
    profiles' content: :func:`_content`)."""
    store = Store(config.analyzer.db)
    store.start()
    try:
        ingestor = Ingestor(store, config, clock=lambda: 1.9e9, decode_process=process, **options)
        stats = ingestor.run_once()
        digests = store.read(
            lambda c: {
                table: _digest(c.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall())
                for table in TABLES
                if c.execute("SELECT 1 FROM sqlite_master WHERE name = ?", [table]).fetchone()
            }
        )
        buckets = store.read(lambda c: c.execute("SELECT * FROM buckets ORDER BY 1").fetchall())
    finally:
        store.close()
    digests["buckets"] = _digest([(*row[:2], _content(row[2]), *row[3:]) for row in buckets])
    return stats, digests


@pytest.mark.parametrize("quality", [None, QUALITY])
def test_the_process_stores_what_the_ingest_thread_stores(
    tmp_path: Path, process: DecodeProcess, quality: dict[str, str] | None
) -> None:
    """One capture folder read into two databases, by the ingest thread and by the process:
    every table the same, byte for byte (the profiles' blobs too)."""
    mine = make_config(tmp_path, None, model_quality=quality, max_line_bytes=2048)
    db = mine.analyzer.model_copy(update={"db": tmp_path / "process.db"})
    theirs = mine.model_copy(update={"analyzer": db})
    n = _capture(mine)
    here, expected = _ingest(mine, None, chunk_lines=64)
    there, found = _ingest(theirs, process, chunk_lines=64)
    assert found == expected
    counters = _counters(theirs)
    assert counters["records"] == n
    assert counters.get("model_quality:predictions", 0) == (n if quality else 0)
    assert (there.records, there.chunks, there.files, there.bad) == (
        here.records, here.chunks, here.files, here.bad,
    )  # fmt: skip
    assert there.records == n
    assert there.bad == {"not_json": 1, "too_large": 1, "truncated_input": 1,
                         "unreadable_file": 1}  # fmt: skip
    found = process.stats()
    assert found["chunks"] + found["here"] == there.chunks
    assert found["chunks"] >= 2 * found["here"] > 0  # two queued to the worker, one here
    assert (found["fallbacks"], found["restarts"], found["given_up"]) == (0, 0, False)
    assert not any((tmp_path / "handover").rglob("*.*"))  # every chunk's files removed


def _counters(config: ModelmonConfig) -> dict[str, int]:
    store = Store(config.analyzer.db)
    store.start()
    try:
        return store.read(read_counters)
    finally:
        store.close()


def _decode_one(process: DecodeProcess, config: ModelmonConfig) -> None:
    """One chunk of one record through the worker (which it starts), decoded."""
    lines = [record_line(read_rows("current_nodrift.csv")[0][0], "0.5", T0)]
    ticket = process.submit(DecodeSpec.of(config, feature_limit(config)), lines)
    assert ticket is not None and process.result(ticket) is not None


def _kill_worker(process: DecodeProcess, config: ModelmonConfig) -> None:
    """Start the worker on a chunk of its own, then kill it (SIGKILL: a real death)."""
    _decode_one(process, config)
    pids = process.worker_pids()
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)


def test_a_worker_killed_loses_and_doubles_nothing(tmp_path: Path, process: DecodeProcess) -> None:
    """The worker is killed before the pass: the chunk it was to decode is decoded on the
    ingest thread (a fallback), the next chunks by a new worker; every record once."""
    config = make_config(tmp_path, None, model_quality=QUALITY)
    n = write_traffic(config.capture.dir, "current_nodrift.csv", 600, T0, per_file=200)
    _kill_worker(process, config)
    stats, _ = _ingest(config, process, chunk_lines=50)
    assert stats.records == n and stats.chunks == 12 and stats.files == 3
    found = process.stats()
    assert found["restarts"] == 1 and found["fallbacks"] >= 1 and not found["given_up"]
    # the kill's own chunk and the pass's
    assert found["chunks"] + found["here"] + found["fallbacks"] == 1 + 12
    counters = _counters(config)
    assert counters["records"] == n and counters["model_quality:predictions"] == n


def test_after_max_deaths_in_a_row_the_ingest_thread_decodes_everything(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(tmp_path, None)
    n = write_traffic(config.capture.dir, "current_nodrift.csv", 300, T0, per_file=100)
    process = DecodeProcess(folder=tmp_path, max_deaths=1)
    try:
        _kill_worker(process, config)
        stats, _ = _ingest(config, process, chunk_lines=50)
        assert stats.records == n and stats.chunks == 6
        found = process.stats()
        assert found["given_up"] and found["restarts"] == 1 and found["chunks"] == 1
        assert found["fallbacks"] + found["here"] == 6  # every chunk of the pass, on the thread
        assert process.worker_pids() == []
    finally:
        process.close()
    assert any("decodes every chunk" in r.getMessage() for r in caplog.records)


class _ResultLost(DecodeProcess):
    """Each worker's result file removed once it is written, before it is read (a real
    fault: ``result`` cannot read it, and the chunk is decoded on the ingest thread)."""

    def result(self, ticket: Any) -> Any:
        ticket.future.result()
        ticket.target.unlink()
        return super().result(ticket)


def test_a_result_lost_is_decoded_from_the_chunks_lines(tmp_path: Path) -> None:
    """A queued chunk whose result is lost falls back to its lines, so they are still held
    when its decode is taken (let go only once its commit is queued): every record once."""
    config = make_config(tmp_path, None, model_quality=QUALITY)
    n = write_traffic(config.capture.dir, "current_nodrift.csv", 300, T0, per_file=100)
    process = _ResultLost(folder=tmp_path)
    try:
        stats, _ = _ingest(config, process, chunk_lines=50)
        found = process.stats()
    finally:
        process.close()
    assert stats.records == n and stats.chunks == 6 and stats.files == 3
    assert found["chunks"] == 0 and found["fallbacks"] > 0
    assert found["fallbacks"] + found["here"] == 6
    counters = _counters(config)
    assert counters["records"] == n and counters["model_quality:predictions"] == n


@pytest.mark.parametrize(
    "lines",
    [[], [b"a\n"], [b"a\r\n", b"b\rc\n", b"", b"last without newline"], [b"x" * 100_000, b"\n"]],
)
def test_lines_are_handed_over_exactly(lines: list[bytes]) -> None:
    lengths, blob = packed(lines)
    assert unpacked(lengths + blob, len(lines)) == lines


async def test_the_service_says_where_it_decodes(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """``ingest_process: on``: the status and the metrics count the worker's chunks; ``off``:
    null, and no such metrics."""
    for mode, expected in (("on", {"chunks": 2, "here": 1, "fallbacks": 0, "restarts": 0,
                                   "given_up": False}), ("off", None)):  # fmt: skip
        config = make_config(tmp_path / mode, None, ingest_process=mode)
        n = write_traffic(config.capture.dir, "current_nodrift.csv", 30_000, T0, per_file=10_000)
        app = create_app(config, clock=Clock(T0 + timedelta(minutes=30)), run_loop=False)
        client = await aiohttp_client(app)
        await monitor_of(app).tick()
        doc = await (await client.get("/monitor/status")).json()
        assert doc["ingest"]["records"] == n
        assert doc["analyzer"]["decode_process"] == expected
        text = await (await client.get("/monitor/metrics")).text()
        if expected is None:
            assert "modelmon_ingest_decoded_chunks" not in text
        else:
            assert 'modelmon_ingest_decoded_chunks_total{where="process"} 2.0' in text
            assert 'modelmon_ingest_decoded_chunks_total{where="here"} 1.0' in text
            assert 'modelmon_ingest_decoded_chunks_total{where="fallback"} 0.0' in text
            assert "modelmon_ingest_decode_process_deaths_total 0.0" in text
            assert "modelmon_ingest_decode_process_given_up 0.0" in text
        await client.close()


def test_each_count_has_its_own_metric() -> None:
    """Every count of the decoding process under its own name (distinct values: a count read
    under another's key is seen), given up as 1; without a process, no such metric."""
    found = {"chunks": 5, "here": 4, "fallbacks": 3, "restarts": 2, "given_up": True}
    text = render(*new_registry(), {"decode_process": found}, {}).decode()
    for line in (
        'modelmon_ingest_decoded_chunks_total{where="process"} 5.0',
        'modelmon_ingest_decoded_chunks_total{where="here"} 4.0',
        'modelmon_ingest_decoded_chunks_total{where="fallback"} 3.0',
        "modelmon_ingest_decode_process_deaths_total 2.0",
        "modelmon_ingest_decode_process_given_up 1.0",
    ):
        assert line in text.splitlines()
    assert "decode_process" not in render(*new_registry(), {"decode_process": None}, {}).decode()


@pytest.mark.parametrize(("written", "read"), [("on", "on"), ("off", "off"), ("auto", "auto")])
def test_ingest_process_reads_yamls_bare_on_and_off(
    tmp_path: Path, written: str, read: str
) -> None:
    doc = {"proxy": {"upstream": "http://127.0.0.1:9"}, "analyzer": {"ingest_process": written}}
    path = tmp_path / "modelmon.yaml"
    path.write_text(yaml.safe_dump(doc).replace(f"'{written}'", written))
    assert load_config(path).analyzer.ingest_process == read


def test_a_bad_ingest_process_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "modelmon.yaml"
    path.write_text("proxy: {upstream: 'http://127.0.0.1:9'}\nanalyzer: {ingest_process: twice}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "analyzer.ingest_process" in str(caught.value) and str(path) in str(caught.value)


def test_a_killed_services_hand_over_files_are_removed_at_the_next_start(
    tmp_path: Path,
) -> None:
    """A service killed with ``kill -9`` leaves its last chunks' files in its hand-over folder
    (named after its process id): the next start removes them, not a live service's."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, check=True, text=True)  # fmt: skip
    dead = tmp_path / f"modelmon-decode-{int(gone.stdout)}-abc"
    live = tmp_path / f"modelmon-decode-{os.getppid()}-abc"  # pytest's parent: alive
    for folder in (dead, live):
        folder.mkdir()
        (folder / "7.in").write_bytes(b"x" * 100)
    process = DecodeProcess(folder=tmp_path)
    try:
        config = make_config(tmp_path, None)
        _decode_one(process, config)
        assert not dead.exists() and (live / "7.in").exists()
        mine = [p for p in tmp_path.glob(f"modelmon-decode-{os.getpid()}-*")]
        assert len(mine) == 1 and [p.name for p in mine[0].iterdir()] == ["lock"]  # its own
    finally:
        process.close()
    assert not mine[0].exists()


class _Recorded(DecodeProcess):
    """Notes each chunk queued and each result waited for, in order."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder=folder)
        self.calls: list[str] = []

    def submit(self, spec: DecodeSpec, lines: list[bytes]) -> Any:
        self.calls.append("submit")
        return super().submit(spec, lines)

    def result(self, ticket: Any) -> Any:
        self.calls.append("result")
        return super().result(ticket)

    def decoded_here(self) -> None:
        self.calls.append("here")
        super().decoded_here()


def test_the_next_chunk_is_queued_before_this_ones_decode_is_waited_for(tmp_path: Path) -> None:
    """The pipeline: the worker is given chunks N+1 and N+2 (the next file's first, too)
    before the ingest thread waits for chunk N's decode, and a chunk read while two wait for
    the worker is decoded on the ingest thread meanwhile ("here")."""
    config = make_config(tmp_path, None)
    write_traffic(config.capture.dir, "current_nodrift.csv", 200, T0, per_file=100)
    process = _Recorded(tmp_path)
    try:
        stats, _ = _ingest(config, process, chunk_lines=50)
    finally:
        process.close()
    assert stats.records == 200 and stats.chunks == 4 and stats.files == 2
    # chunks 1 and 2 to the worker, 3 here, 1 taken, 4 to the worker, 2 taken (3 ready), 4
    assert process.calls == ["submit", "submit", "here", "result", "submit", "result",
                             "result"]  # fmt: skip


def test_a_new_feature_limit_between_passes_reaches_the_worker(
    tmp_path: Path, process: DecodeProcess
) -> None:
    """The worker keeps its decoder from chunk to chunk: a new baseline's limit (``set_limit``
    after a pass) is the one the next pass's chunks are decoded with."""
    from analyzer.monitors.data_quality.cardinality import FeatureLimit
    from analyzer.store.buckets import merge_buckets

    config = make_config(tmp_path, None)
    write_traffic(config.capture.dir, "current_nodrift.csv", 100, T0, per_file=100)
    store = Store(config.analyzer.db)
    store.start()
    try:
        ingestor = Ingestor(store, config, decode_process=process)
        assert ingestor.run_once().records == 100
        before = store.read(lambda c: merge_buckets(c, 0, 2**40))
        ingestor.set_limit(FeatureLimit(2, frozenset()))
        later = T0 + timedelta(hours=1)
        write_traffic(config.capture.dir, "current_nodrift.csv", 100, later, per_file=100)
        assert ingestor.run_once().records == 100
        start = int(later.timestamp())
        after = store.read(lambda c: merge_buckets(c, start, start + 3600))
    finally:
        store.close()
    assert before is not None and len(before.features) > 2
    assert after is not None and len(after.features) == 2
    assert process.stats()["chunks"] == 2


_CORES = """
import os, sys
os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: int(sys.argv[1])]))
from analyzer.service.app import _decode_process
from tests.analyzer.service_helpers import make_config
config = make_config(__import__("pathlib").Path(sys.argv[2]), None, ingest_process="auto")
print(type(_decode_process(config)).__name__)
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to give one")
@pytest.mark.parametrize(("n_cores", "made"), [(1, "NoneType"), (2, "DecodeProcess")])
def test_auto_decodes_in_a_process_with_two_cores_or_more(
    tmp_path: Path, n_cores: int, made: str
) -> None:
    done = subprocess.run([sys.executable, "-c", _CORES, str(n_cores), str(tmp_path)],
                          capture_output=True, check=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT})  # fmt: skip
    assert done.stdout.split() == [made]
