"""The service's model-quality extraction per record (issue 11, "one extraction"), in process.

    python bench/model_quality_extraction.py [--records 100000] [--repeat 5]

The records are bench/analyzer_service.py's (``current_nodrift.csv`` rows as CSV requests,
the score as a CSV output, ``modelmon.capture_record.build_record``), decoded in chunks of
the ingest's 10,000 lines with the service's ``PayloadDecoder``; the clock (this process's
CPU time: the machine is shared) measures only ``PredictionExtractor.extract`` over the
decoded chunks (best of ``--repeat``), with the
config of bench/analyzer_service.py --model-quality (BinaryClassification, the probability
in output column 0). Two JSON variants of the same records show the per-record path: a flat
object ``{"label": …, "score": …}`` and SageMaker's ``{"predictions": [{…}]}`` read by key
(the decoder's one row). Anchor, same run: the decode of the same chunks (what the ingest
pays per record anyway). Which code is measured is whichever ``analyzer`` imports: run it
with ``PYTHONPATH`` at a worktree to compare two trees on the same machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

import analyzer
from analyzer.decoding.codecs import PayloadDecoder
from analyzer.monitors.model_quality.predictions import PredictionExtractor
from modelmon.capture_record import CaptureSide, build_record
from modelmon.config import ModelQualityConfig, PayloadConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # appended: ``analyzer`` stays the one PYTHONPATH names
from tests.analyzer.service_helpers import FEATURES, read_rows  # noqa: E402

CHUNK = 10_000


def _lines(n: int, output: Callable[[str], tuple[str, str, str]]) -> list[bytes]:
    rows, scores = read_rows("current_nodrift.csv")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        j = i % len(rows)
        kind, body, encoding = output(scores[j])
        out.append(
            build_record(
                event_id=str(uuid.uuid4()),
                inference_time=start + timedelta(milliseconds=36 * i),
                request=CaptureSide("text/csv", ",".join(rows[j]), "CSV"),
                response=CaptureSide(kind, body, encoding),  # type: ignore[arg-type]
            )
        )
    return out


def _csv(score: str) -> tuple[str, str, str]:
    return "text/csv", score, "CSV"


def _flat(score: str) -> tuple[str, str, str]:
    body = {"label": int(float(score) >= 0.5), "score": float(score)}
    return "application/json", orjson.dumps(body).decode(), "JSON"


def _nested(score: str) -> tuple[str, str, str]:
    body = {"predictions": [{"label": int(float(score) >= 0.5), "score": float(score)}]}
    return "application/json", orjson.dumps(body).decode(), "JSON"


VARIANTS: dict[str, tuple[Callable[[str], tuple[str, str, str]], str, dict[str, Any]]] = {
    "csv score (bench)": (_csv, "csv", {"probability_attribute": "0"}),
    "json flat keys": (_flat, "json", {"inference_attribute": "label",
                                       "probability_attribute": "score"}),
    "json predictions[0] keys": (_nested, "json", {"inference_attribute": "label",
                                                   "probability_attribute": "score"}),
}  # fmt: skip


def _measure(name: str, n: int, repeat: int) -> tuple[float, float, int]:
    make, fmt, attributes = VARIANTS[name]
    payload = PayloadConfig.model_validate(
        {"input": {"format": "csv", "columns": FEATURES}, "output": {"format": fmt}}
    )
    quality = ModelQualityConfig.model_validate(
        {"problem_type": "BinaryClassification", **attributes}
    )
    lines = _lines(n, make)
    decoder = PayloadDecoder(payload)
    chunks = [lines[i : i + CHUNK] for i in range(0, n, CHUNK)]
    decode_best = extract_best = float("inf")
    kept = 0
    extractor = PredictionExtractor(quality, payload.output)
    for _ in range(repeat):
        t0 = time.process_time()
        batches = [decoder.decode_lines(chunk) for chunk in chunks]
        decode_best = min(decode_best, time.process_time() - t0)
        stamps = [[t.timestamp() for t in b.inference_times] for b in batches]
        t0 = time.process_time()
        found = [extractor.extract(b, s) for b, s in zip(batches, stamps, strict=True)]
        extract_best = min(extract_best, time.process_time() - t0)
        kept = sum(len(f.rows) for f in found)
    return decode_best / n * 1e6, extract_best / n * 1e6, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"analyzer from {Path(analyzer.__file__).parent}")
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.2f}, "
          f"{args.records:,} records, best of {args.repeat}")  # fmt: skip
    for name in VARIANTS:
        decode_us, extract_us, kept = _measure(name, args.records, args.repeat)
        print(
            f"{name:26s} extract {extract_us:6.3f} us/record  decode (anchor) "
            f"{decode_us:6.3f} us/record  extract/decode {extract_us / decode_us:5.3f}  "
            f"kept {kept:,}"
        )


if __name__ == "__main__":
    main()
