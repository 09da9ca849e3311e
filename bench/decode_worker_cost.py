"""What a decoding process of its own would cost the service's ingest (issue 11): one thread.

    python bench/decode_worker_cost.py [--records 10000] [--repeat 10] [--across]

The service decodes, profiles and extracts a chunk on its ingest thread, beside the writer,
in one interpreter. A worker process could do that work (and the blocks' encoding) and send
back only the bucket profiles' bytes and the blocks' values. This times, on one chunk of
``--records`` records of ``bench/analyzer_service.py``'s kind (model quality on), best of
``--repeat``, in µs a record: the work a worker would take over (``Ingestor._profiles`` and
``chunk_blocks``), and what the parent would still do to take its result back (unpickle,
profiles from bytes), with the worker's pickling and the result's size. No process is
started: this bounds the design, it does not build it.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import timeit
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from service_harness import labelled_lines  # noqa: E402

from analyzer.ingest.ingestor import Ingestor  # noqa: E402
from analyzer.monitors.data_quality.profile import DatasetProfile  # noqa: E402
from analyzer.store.database import Store  # noqa: E402
from analyzer.store.model_quality_blocks import chunk_blocks  # noqa: E402
from tests.analyzer.service_helpers import make_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--across", action="store_true", help="the chunk over two buckets")
    args = parser.parse_args()
    n = args.records

    def best(step: Callable[[], object]) -> float:
        return min(timeit.repeat(step, number=1, repeat=args.repeat)) / n * 1e6

    with tempfile.TemporaryDirectory(prefix="modelmon-worker-cost-") as tmp:
        quality = {"problem_type": "BinaryClassification", "probability_attribute": "0"}
        config = make_config(Path(tmp), None, model_quality=quality)
        # the service bench's density (5.4 ms apart), ending 2 minutes into a 5-minute bucket:
        # the chunk in one bucket; with --across, 20 s into it: the chunk over two buckets,
        # decoded a bucket at a time (split by the times its lines show)
        end = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(seconds=20 if args.across else 120)
        lines, _ = labelled_lines(n, end, span_s=n * 0.0054)
        store = Store(config.analyzer.db)
        store.start()
        try:
            ingestor = Ingestor(store, config)
            profiles, records, bad, extracted = ingestor._profiles(lines)
            assert extracted is not None and extracted.columns
            columns = extracted.columns
            blocks = chunk_blocks(columns)
            result = (
                {start: profile.to_bytes() for start, profile in profiles.items()},
                records,
                dict(bad),
                [(bucket, block.values) for bucket, _, block in blocks.parts],
            )
            data = pickle.dumps(result, protocol=5)
            print(
                f"load average {os.getloadavg()}, {n:,} records, {len(lines[0])} B a line,"
                f" {len(profiles)} bucket(s)"
            )
            worker = best(lambda: ingestor._profiles(lines)) + best(lambda: chunk_blocks(columns))
            dumps = best(lambda: pickle.dumps(result, protocol=5))
            loads = best(lambda: pickle.loads(data))
            back = best(lambda: {k: DatasetProfile.from_bytes(b) for k, b in result[0].items()})
            print(f"the worker's work (decode, profile, extract, encode): {worker:.2f} µs a record")
            print(f"its result: {len(data) / n:.0f} B a record, pickled in {dumps:.3f} µs a record")
            print(f"the parent's part: unpickle {loads:.3f} + profiles from bytes {back:.3f} µs"
                  f" a record ({(loads + back) / worker:.3%} of the worker's)")  # fmt: skip
        finally:
            store.close()


if __name__ == "__main__":
    main()
