"""Where the service's ingest spends its CPU with model quality on (issue 11): in process.

    python bench/model_quality_writer.py [--records 100000] [--tree PATH ...] [--rounds 2]
        [--labels before|after]

Stages ``--records`` capture records once (``current_nodrift.csv`` rows, a random UUID
``eventId`` each, CSV, 10,000 per file, as ``bench/analyzer_service.py`` writes them), then,
for each tree (``--tree``: a checkout whose ``analyzer`` is imported, e.g. main's and a
branch's; default this one) and each round, in a fresh process: a store with every label
already waiting (posted first, 10,000 per transaction), then one ``Ingestor.run_once`` over
the capture folder, timed; and the same ingest with ``analyzer.model_quality`` absent (the
anchor). Prints per record: wall time, the process's CPU (every thread), the store writer
thread's CPU during the ingest and, of it, ``store_predictions`` (the join's statements, not
the COMMIT), and how long the ingest thread waited for the previous chunk's commit
(``Ingestor._drain``). With ``--labels after`` no label waits during the ingest: they are
posted after it (the same batches), and their rate is printed. The machine is shared: read
the CPU figures, and compare trees in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from modelmon.capture_record import CaptureSide, build_record  # noqa: E402
from tests.analyzer.service_helpers import FEATURES, read_rows  # noqa: E402

PER_FILE = 10_000
T0 = datetime(2026, 11, 1, tzinfo=UTC)
PAYLOAD = {
    "input": {"format": "csv", "columns": FEATURES},
    "output": {"format": "csv", "columns": ["score"]},
}


def stage(work: Path, n: int) -> None:
    """Capture files of ``n`` records and their keys, shuffled (the labels' order)."""
    rows, scores = read_rows("current_nodrift.csv")
    capture = work / "capture" / "bench" / "AllTraffic"
    keys = []
    for first in range(0, n, PER_FILE):
        lines = []
        for i in range(first, min(n, first + PER_FILE)):
            key = str(uuid.uuid4())
            keys.append(key)
            lines.append(
                build_record(
                    event_id=key,
                    inference_time=T0 + timedelta(seconds=i * 0.018),
                    request=CaptureSide("text/csv", ",".join(rows[i % len(rows)]), "CSV"),
                    response=CaptureSide("text/csv", scores[i % len(rows)], "CSV"),
                )
            )
        moment = T0 + timedelta(seconds=first * 0.018)
        folder = capture / moment.strftime("%Y/%m/%d/%H")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{moment:%M-%S}-{first:09d}.jsonl").write_bytes(b"".join(lines))
    random.Random(0).shuffle(keys)
    (work / "keys.json").write_bytes(orjson.dumps(keys))


CHILD = """
import json, resource, sys, time
from pathlib import Path
import orjson
import analyzer.store.buckets as buckets
import analyzer.store.database as database
from analyzer.ingest.ingestor import Ingestor
from analyzer.store.model_quality import add_labels
from modelmon.config import parse_config
labels_after = sys.argv[4] == "after"
if len(sys.argv) > 5:  # the GIL's switch interval to run with (Python's default: 0.005 s)
    sys.setswitchinterval(float(sys.argv[5]))
work, quality = Path(sys.argv[1]), sys.argv[2] == "1"
db = work / f"run-{int(quality)}.db"
for old in work.glob(db.name + "*"):
    old.unlink()
section = {"db": str(db), "payload": json.loads(sys.argv[3]), "retention_days": 3650,
           "baseline": {"statistics": "none.json", "constraints": "none.json"}}
if quality:
    section["model_quality"] = {"problem_type": "BinaryClassification",
                                "probability_attribute": "0", "label_delay_s": 86400}
doc = {"endpoint": {"name": "bench", "variant": "AllTraffic"},
       "proxy": {"upstream": "http://127.0.0.1:9"}, "capture": {"dir": str(work / "capture")},
       "analyzer": section}
config = parse_config(doc, base=work)
spent = {"store_predictions": 0.0}
store_predictions = buckets.store_predictions
def timed_store(*args, **kwargs):
    t = time.thread_time()
    try:
        return store_predictions(*args, **kwargs)
    finally:
        spent["store_predictions"] += time.thread_time() - t
buckets.store_predictions = timed_store
import analyzer.ingest.ingestor as ingestor
drain = ingestor.Ingestor._drain
def timed_drain(self, stats):  # the ingest thread waiting for the previous chunk's commit
    t = time.perf_counter()
    try:
        return drain(self, stats)
    finally:
        spent["drain"] = spent.get("drain", 0.0) + time.perf_counter() - t
ingestor.Ingestor._drain = timed_drain
try:  # the runs of the blocks' hashes (a tree that has them): their builds' and merges' share
    import analyzer.store.model_quality_runs as runs
except ImportError:
    runs = None
if runs is not None:
    def timed(name, fn):
        def run(*args, **kwargs):
            t = time.thread_time()
            done = fn(*args, **kwargs)
            took = time.thread_time() - t
            spent[name] = spent.get(name, 0.0) + took
            if done:
                spent[name + "s"] = spent.get(name + "s", 0) + 1
                spent[name + "_max"] = max(spent.get(name + "_max", 0.0), took)
            return done
        return run
    runs._build, runs._merge = timed("build", runs._build), timed("merge", runs._merge)
store = database.Store(config.analyzer.db)
store.start()
def post_labels():
    keys = orjson.loads((work / "keys.json").read_bytes())
    for i in range(0, len(keys), 10_000):
        store.write(lambda d: add_labels(d, [(k, "1") for k in keys[i:i + 10_000]], 1.0, 3600))
if quality and not labels_after:
    post_labels()
writer_before = store.write(lambda d: time.thread_time())
before, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
stats = Ingestor(store, config, clock=lambda: 1.9e9).run_once()
wall, after = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF)
labels_s = 0.0
writer_after = store.write(lambda d: time.thread_time())  # the ingest's commits are done
if quality and labels_after:
    t = time.perf_counter()
    post_labels()
    labels_s = time.perf_counter() - t
store.close()
cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
n = stats.records
print(json.dumps({"records": n, "wall_us": wall / n * 1e6, "cpu_us": cpu / n * 1e6,
                  "writer_cpu_us": (writer_after - writer_before) / n * 1e6,
                  "store_predictions_us": spent["store_predictions"] / n * 1e6,
                  "wait_us": spent.get("drain", 0.0) / n * 1e6, "labels_s": labels_s,
                  "runs": {k: spent[k] for k in ("build", "builds", "build_max", "merge",
                                                 "merges", "merge_max") if k in spent}}))
"""


def _runs_line(figures: dict[str, Any]) -> str:
    """The runs' builds and merges during the ingest (a tree that has them)."""
    runs, n = figures.get("runs"), figures["records"]
    if not runs:
        return ""
    return (
        f"; runs: {runs.get('builds', 0)} builds {runs.get('build', 0.0) / n * 1e6:.2f}"
        f" µs/record (longest {runs.get('build_max', 0.0) * 1e3:.0f} ms),"
        f" {runs.get('merges', 0)} merges {runs.get('merge', 0.0) / n * 1e6:.2f} µs/record"
        f" (longest {runs.get('merge_max', 0.0) * 1e3:.0f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--tree", action="append", help="a checkout to import (repeatable)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--switch-interval", type=float, help="sys.setswitchinterval, seconds")
    parser.add_argument(
        "--labels",
        choices=["before", "after"],
        default="before",
        help="post every label before the ingest (all waiting: the default) or after it"
        " (none waiting; the labels' rate is printed)",
    )
    args = parser.parse_args()
    trees = args.tree or [str(ROOT)]
    print(f"load average {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="modelmon-mq-writer-") as tmp:
        work = Path(tmp)
        stage(work, args.records)
        for _ in range(args.rounds):
            for tree in trees:
                for quality in ("0", "1"):
                    found = subprocess.run(
                        [
                            sys.executable,
                            "-c",
                            CHILD,
                            str(work),
                            quality,
                            json.dumps(PAYLOAD),
                            args.labels,
                            *([str(args.switch_interval)] if args.switch_interval else []),
                        ],
                        env={**os.environ, "PYTHONPATH": tree},
                        cwd=tree,  # `python -c` puts the working directory first on sys.path
                        capture_output=True,
                        text=True,
                        check=True,
                        timeout=1800,
                    )
                    figures = json.loads(found.stdout)
                    name = "model quality on " if quality == "1" else "model quality off"
                    print(
                        f"{tree} {name}: {figures['records']:,} records, wall"
                        f" {figures['wall_us']:.1f} µs/record, CPU "
                        f"{figures['cpu_us']:.1f}, writer thread CPU {figures['writer_cpu_us']:.1f}"
                        f" (store_predictions {figures['store_predictions_us']:.1f}), the"
                        f" ingest thread waited for commits {figures['wait_us']:.1f}"
                        + _runs_line(figures)
                        + (
                            f"; then {args.records:,} labels in {figures['labels_s']:.1f} s"
                            f" ({args.records / figures['labels_s']:,.0f}/s)"
                            if figures["labels_s"]
                            else ""
                        ),
                        flush=True,
                    )
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
