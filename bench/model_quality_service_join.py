"""The model-quality join as the running analyzer does it (issue 11): N captured predictions
and N labels, memory flat in rows.

    python bench/model_quality_service_join.py [--rows 100000 1000000] [--workdir /tmp/mqsvc]

Staged once per size: N capture records (``current_nodrift.csv`` rows, written with
``modelmon.capture_record.build_record``, CSV, 10,000 per file, one record every 0.36 s so
that an hourly window holds 10,000) and N ground-truth records for the same eventIds in
SageMaker's folder layout (shuffled, 10,000 per file). Then, in a fresh process per run (wall
time per phase, peak RSS of the process):

- **with model quality**: the service's own :class:`GroundTruthFolder` reads the first half
  of the label files (labels before their predictions), the :class:`Ingestor` reads every
  capture file (profiles + predictions, one transaction per chunk), the folder reader reads
  the second half (labels after), then ``label_counts``, ``dirty_windows`` and one window's
  ``window_pairs``, as the evaluation will call them;
- **anchor, same run**: the same capture ingest with ``analyzer.model_quality`` absent (data
  quality only). The ratio says what keeping the predictions costs the ingest.

Prints seconds per phase, records or labels per second, peak RSS, and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from modelmon.capture_record import CaptureSide, build_record  # noqa: E402
from tests.analyzer.service_helpers import FEATURES, read_rows  # noqa: E402

ENDPOINT, VARIANT = "bench", "AllTraffic"
PER_FILE = 10_000
SPACING_S = 0.36
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def stage(work: Path, n: int) -> None:
    """Capture files and ground-truth files for ``n`` records (once per size)."""
    if (work / ".staged").exists():
        return
    rows, scores = read_rows("current_nodrift.csv")
    capture = work / "capture" / ENDPOINT / VARIANT
    for first in range(0, n, PER_FILE):
        lines = []
        for i in range(first, min(n, first + PER_FILE)):
            j = i % len(rows)
            lines.append(
                build_record(
                    event_id=f"e{i}",
                    inference_time=T0 + timedelta(seconds=i * SPACING_S),
                    request=CaptureSide("text/csv", ",".join(rows[j]), "CSV"),
                    response=CaptureSide("text/csv", scores[j], "CSV"),
                )
            )
        moment = T0 + timedelta(seconds=first * SPACING_S)
        folder = capture / moment.strftime("%Y/%m/%d/%H")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{moment:%M-%S}-{first:09d}.jsonl").write_bytes(b"".join(lines))
    order = list(range(n))
    random.Random(0).shuffle(order)
    rng = random.Random(1)
    for number, first in enumerate(range(0, n, PER_FILE)):
        lines = [
            orjson.dumps(
                {
                    "groundTruthData": {"data": "1" if rng.random() < 0.4 else "0",
                                        "encoding": "CSV"},
                    "eventMetadata": {"eventId": f"e{i}"},
                    "eventVersion": "0",
                }
            )
            + b"\n"
            for i in order[first : first + PER_FILE]
        ]  # fmt: skip
        half = "a" if first < n // 2 else "b"  # a: read before the captures, b: after
        folder = work / f"ground_truth_{half}" / "2026/11/01/00"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"labels-{number:05d}.jsonl").write_bytes(b"".join(lines))
    (work / ".staged").touch()


CHILD = """
import json, resource, shutil, sys, time
from pathlib import Path
from analyzer.ingest.ground_truth_folder import GroundTruthFolder
from analyzer.ingest.ingestor import Ingestor
from analyzer.store.database import Store
from analyzer.store.model_quality import ModelQualityStore
from modelmon.config import parse_config
work, quality, n = Path(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
db = work / f"run-{int(quality)}.db"
for old in work.glob(db.name + "*"):
    old.unlink()
section = {"db": str(db), "payload": json.loads(sys.argv[4]),
           "baseline": {"statistics": "none.json", "constraints": "none.json"}}
if quality:
    section["model_quality"] = {"problem_type": "BinaryClassification",
                                "probability_attribute": "0", "label_delay_s": 86400,
                                "ground_truth": {"dir": str(work / "ground_truth_a")}}
doc = {"endpoint": {"name": "bench", "variant": "AllTraffic"},
       "proxy": {"upstream": "http://127.0.0.1:9"}, "capture": {"dir": str(work / "capture")},
       "analyzer": section}
config = parse_config(doc, base=work)
now = float(sys.argv[5])  # after every inference time
config = config.model_copy(update={"analyzer": config.analyzer.model_copy(
    update={"retention_days": 3650})})
store = Store(config.analyzer.db); store.start()
out = {}
t = time.perf_counter()
if quality:
    GroundTruthFolder(store, config, clock=lambda: now).run_once()
    out["labels_before_s"] = time.perf_counter() - t
t = time.perf_counter()
stats = Ingestor(store, config, clock=lambda: now).run_once()
out["ingest_s"] = time.perf_counter() - t
out["records"] = stats.records
if quality:
    after = config.analyzer.model_quality.ground_truth.model_copy(
        update={"dir": work / "ground_truth_b"})
    mq = config.analyzer.model_quality.model_copy(update={"ground_truth": after})
    config_b = config.model_copy(update={"analyzer": config.analyzer.model_copy(
        update={"model_quality": mq})})
    t = time.perf_counter()
    GroundTruthFolder(store, config_b, clock=lambda: now).run_once()
    out["labels_after_s"] = time.perf_counter() - t
    join = ModelQualityStore(store, window_s=3600, label_delay_s=86400)
    t = time.perf_counter()
    counts = join.label_counts(now)
    out["label_counts_s"] = time.perf_counter() - t
    out["matched"] = counts.matched
    t = time.perf_counter()
    dirty = join.dirty_windows()
    out["dirty_windows_s"] = time.perf_counter() - t
    out["dirty"] = len(dirty)
    t = time.perf_counter()
    pairs = join.window_pairs(dirty[0].start, dirty[0].start + 3600)
    out["window_pairs_s"] = time.perf_counter() - t
    out["pairs"] = len(pairs)
store.close()
out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out["db_mb"] = sum(p.stat().st_size for p in work.glob(db.name + "*")) / 2**20
print(json.dumps(out))
"""


def run(work: Path, quality: bool, n: int) -> dict[str, float]:
    payload = {
        "input": {"format": "csv", "columns": FEATURES},
        "output": {"format": "csv", "columns": ["score"]},
    }
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(work), "1" if quality else "0",
         str(n), json.dumps(payload), str((T0 + timedelta(days=30)).timestamp())],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mqsvc"))
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    for n in args.rows:
        work = args.workdir / f"rows-{n}"
        work.mkdir(parents=True, exist_ok=True)
        stage(work, n)
        off = run(work, False, n)
        on = run(work, True, n)
        assert on["records"] == off["records"] == n, (on, off)
        assert on["matched"] == n, on
        labels_s = on["labels_before_s"] + on["labels_after_s"]
        print(
            f"rows {n:>9,}: ingest with model quality {on['ingest_s']:.1f} s"
            f" ({n / on['ingest_s']:,.0f} records/s), without (anchor) {off['ingest_s']:.1f} s"
            f" ({n / off['ingest_s']:,.0f}/s): ratio {on['ingest_s'] / off['ingest_s']:.2f};"
            f" labels {labels_s:.1f} s ({n / labels_s:,.0f}/s; before {on['labels_before_s']:.1f}"
            f" + after {on['labels_after_s']:.1f}); label_counts {on['label_counts_s'] * 1e3:.0f}"
            f" ms, dirty_windows {on['dirty_windows_s'] * 1e3:.0f} ms ({on['dirty']:.0f}),"
            f" window_pairs {on['window_pairs_s'] * 1e3:.0f} ms ({on['pairs']:.0f} pairs);"
            f" peak RSS {on['rss_mb']:.0f} MB (anchor {off['rss_mb']:.0f} MB);"
            f" database {on['db_mb']:.0f} MB (anchor {off['db_mb']:.0f} MB)"
            f"; load {os.getloadavg()[0]:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
