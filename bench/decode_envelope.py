"""CPU time of the readers of a capture line's envelope: this code against another checkout.

Run: ``python bench/decode_envelope.py --other /path/to/other/checkout [--records 100000]
[--rounds 5]``

The records are ``bench/analyzer_service.py``'s (the service benchmark's: CSV input of the
table's features, the score as a CSV output, an ``eventId`` and an ``inferenceTime``),
written once to a temporary file. Each round runs, in a fresh process for each checkout (one
after the other, the order alternating from round to round), four timings over the same
lines, in chunks of 10,000 (the ingest's ``CHUNK_LINES``):

- ``decode``: ``PayloadDecoder.decode_lines`` as the service's ingest calls it (column-wise
  first: these plain records never reach the record-by-record path);
- ``records``: ``PayloadDecoder(columnwise=False).decode_lines``, the record-by-record path
  (one ``read_envelope`` per record on this branch);
- ``capture_record``: the batch's line reader of model quality, one line at a time
  (BinaryClassification, ``probability_attribute: "0"``);
- ``arrow_predictions``: its Arrow fast path over the whole file (with pyarrow).

It prints the median CPU seconds (``time.process_time``) per checkout and timing, and the
ratio this / other from the same rounds, with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 10_000


def _measure(path: Path) -> dict[str, float]:
    """The timings on the lines of ``path`` (run in a child, on its ``sys.path``)."""
    from analyzer.decoding.codecs import PayloadDecoder
    from analyzer.ingest import model_quality_arrow
    from analyzer.monitors.model_quality.extraction import OutputReader, capture_record
    from analyzer.monitors.model_quality.records import Encoder
    from modelmon.config import ModelQualityConfig, PayloadConfig

    lines = path.read_bytes().splitlines()
    payload = PayloadConfig.model_validate(
        {"input": {"format": "csv"}, "output": {"format": "csv", "columns": ["score"]}}
    )
    quality = ModelQualityConfig.model_validate(
        {"problem_type": "BinaryClassification", "probability_attribute": "0"}
    )
    out: dict[str, float] = {}
    for name, columnwise in (("decode", True), ("records", False)):
        decoder = PayloadDecoder(payload, columnwise=columnwise)
        start = time.process_time()
        kept = 0
        for i in range(0, len(lines), CHUNK):
            kept += decoder.decode_lines(lines[i : i + CHUNK]).n_records
        out[name] = time.process_time() - start
        assert kept == len(lines), (name, kept)
    reader = OutputReader(quality, payload.output)
    start = time.process_time()
    for line in lines:
        capture_record(line, reader)
    out["capture_record"] = time.process_time() - start
    encoder = Encoder(quality.problem_type)
    if model_quality_arrow.available(encoder):
        model_quality_arrow.preload(encoder)
        start = time.process_time()
        whole = model_quality_arrow.arrow_predictions(
            path, reader.inference, reader.probability, encoder, [], 1 << 30
        )
        out["arrow_predictions"] = time.process_time() - start
        assert whole is not None and len(whole[0]) == len(lines)
    return out


def _run(code: Path, data: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    script = (
        "import json, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
        "import decode_envelope as d; print(json.dumps(d._measure(Path(sys.argv[2]))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(ROOT / "bench"), str(data)],
        env=env,
        cwd=code,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", type=Path, required=True, help="the checkout to compare")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench.service_harness import capture_lines

    print(f"load average before: {os.getloadavg()}")
    runs: dict[str, list[dict[str, float]]] = {"this": [], "other": []}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "capture.jsonl"
        data.write_bytes(b"".join(capture_lines(args.records, datetime(2026, 1, 1, tzinfo=UTC))))
        for round_ in range(args.rounds):
            order = [("this", ROOT), ("other", args.other)]
            for name, code in order if round_ % 2 == 0 else order[::-1]:
                runs[name].append(_run(code, data))
    print(f"load average after: {os.getloadavg()}")
    print(f"{args.records:,} records, {args.rounds} rounds, median CPU seconds")
    print(f"{'timing':<16}{'this':>10}{'other':>10}{'this/other':>12}")
    for timing in ("decode", "records", "capture_record", "arrow_predictions"):
        if any(timing not in r for rs in runs.values() for r in rs):
            continue  # no pyarrow
        this = statistics.median(r[timing] for r in runs["this"])
        other = statistics.median(r[timing] for r in runs["other"])
        print(f"{timing:<16}{this:>10.3f}{other:>10.3f}{this / other:>12.3f}")


if __name__ == "__main__":
    main()
