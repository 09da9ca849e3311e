"""Labels posted into the join with many predictions stored (issue 11, the blocks' scan).

    python bench/model_quality_label_scan.py [--predictions 1000000] [--batch 1000 10000]
        [--chunk 10000] [--tree PATH ...] [--workdir /tmp/mqscan]

For each tree (``--tree``: a checkout whose ``analyzer`` is imported, e.g. main's and a
branch's; default this one), in a fresh process: a SQLite file (WAL, as the store runs it)
gets ``--predictions`` predictions through ``add_predictions`` in chunks of ``--chunk``
(10,000; a quiet endpoint's chunks are a few records: ``--chunk 25``; random UUID keys, one
every 0.018 s, no label waiting), then labels for stored keys (random, never
twice) are posted through ``add_labels``, one transaction per batch, 20 batches per size
(``--batch``), plus 5 batches of keys that match nothing (the labels that wait). Prints
labels per second (wall and the process's CPU) per batch size. Compare trees in one run:
the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, random, sys, time, uuid
from sqlite_utils import Database
from analyzer.store.model_quality import add_labels, add_predictions, create_tables
path, n, sizes = sys.argv[1], int(sys.argv[2]), [int(s) for s in sys.argv[3].split(",")]
chunk = int(sys.argv[4])
db = Database(path)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=NORMAL")
db.execute("PRAGMA cache_size=-65536")  # the store's writer cache
create_tables(db)
longest = {"build": 0.0, "merge": 0.0}
try:  # the runs of the blocks' hashes (a tree that has them): their longest build and merge
    import analyzer.store.model_quality_runs as runs
    def timed(name, fn):
        def run(*args, **kwargs):
            t = time.process_time()
            done = fn(*args, **kwargs)
            if done:
                longest[name] = max(longest[name], time.process_time() - t)
            return done
        return run
    runs._build, runs._merge = timed("build", runs._build), timed("merge", runs._merge)
except ImportError:
    pass
rng = random.Random(0)
keys = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(n)]
started = time.process_time()
for first in range(0, n, chunk):
    with db.conn:
        add_predictions(db, [(k, k, None, (first + i) * 0.018, "1", 0.7, b'{"x":1}')
                             for i, k in enumerate(keys[first:first + chunk])], 3600)
stored_cpu = time.process_time() - started
blocks = db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'mq_blocks'").fetchone()[0]
if blocks:
    print(f"{db.execute('SELECT count(*) FROM mq_blocks').fetchone()[0]:,} blocks", file=sys.stderr)
if db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'mq_runs'").fetchone()[0]:
    runs = db.execute("SELECT count(*), coalesce(max(last_block), 0) FROM mq_runs").fetchone()
    print(f"{runs[0]} runs up to block {runs[1]:,} (the longest build"
          f" {longest['build'] * 1e3:.0f} ms, merge {longest['merge'] * 1e3:.0f} ms of CPU)",
          file=sys.stderr)
rng.shuffle(keys)
out = {"stored_cpu_us": stored_cpu / n * 1e6}
at = 0
for size in sizes:
    for label, batches in (("found", 20), ("waiting", 5)):
        wall = cpu = 0.0
        for _ in range(batches):
            if label == "found":
                batch, at = keys[at:at + size], at + size
            else:
                batch = [f"none-{rng.getrandbits(64)}" for _ in range(size)]
            w, c = time.perf_counter(), time.process_time()
            with db.conn:
                add_labels(db, [(k, "1") for k in batch], 1.0, 3600)
            wall += time.perf_counter() - w
            cpu += time.process_time() - c
        out[f"{size} {label}"] = {"labels_per_s_wall": batches * size / wall,
                                  "labels_per_s_cpu": batches * size / cpu,
                                  "ms_per_batch_wall": wall / batches * 1e3}
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--chunk", type=int, default=10_000, help="predictions a chunk")
    parser.add_argument("--tree", type=Path, action="append")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mqscan"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    for tree in args.tree or [ROOT]:
        path = args.workdir / "scan.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
        sizes, chunk = ",".join(map(str, args.batch)), str(args.chunk)
        found = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), str(args.predictions), sizes, chunk],
            env=env,
            cwd=tree,  # `python -c` puts the working directory first on sys.path
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(found.stdout)
        print(f"{tree}: add_predictions {result.pop('stored_cpu_us'):.1f} µs CPU a prediction"
              f" (chunks of {args.chunk:,}) {found.stderr.strip()}")  # fmt: skip
        for name, figures in result.items():
            print(
                f"  labels, batches of {name}: {figures['labels_per_s_wall']:,.0f}/s wall,"
                f" {figures['labels_per_s_cpu']:,.0f}/s CPU,"
                f" {figures['ms_per_batch_wall']:.1f} ms a batch"
            )


if __name__ == "__main__":
    main()
