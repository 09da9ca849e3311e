"""A lower bound for decoding JSON payloads with orjson: the bare minimum, none of the checks.

    python bench/json_floor.py FILE.jsonl [--rounds 4]

Reads one capture file of ``{"instances": [{...}]}`` records (``bench/analyze_data.py``
writes them) in ~1 MiB blocks, as ``analyzer.ingest.parallel.profile_file`` does, and does only what
any orjson-based decoder must: parse every capture line and every body, transpose the rows
into columns, one ``np.array`` and one KLL update per numeric column, one ``Counter`` per
text column. No validation, no Integral/Fractional counts, no moments beyond sum/min/max, no
frequent-items or HLL sketches, no prediction columns. It prints the CPU time of this floor
beside ``profile_file`` on the same file, so the distance between the shipped decoder and
what the approach could ever reach is measured in the same run.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections import Counter
from operator import itemgetter
from pathlib import Path

import numpy as np
import orjson
from datasketches import kll_doubles_sketch

from analyzer.ingest.parallel import profile_file
from modelmon.config import PayloadConfig, PayloadSide

_capture, _data, _request = (
    itemgetter("captureData"),
    itemgetter("data"),
    itemgetter("endpointInput"),
)
_response, _meta, _time = (
    itemgetter("endpointOutput"),
    itemgetter("eventMetadata"),
    itemgetter("inferenceTime"),
)
_first_row = itemgetter(0)
_instances = itemgetter("instances")


def blocks_of(path: Path, size: int = 1 << 20) -> list[bytes]:
    out, current, length = [], [], 0
    for line in path.read_bytes().splitlines(keepends=True):
        current.append(line)
        length += len(line)
        if length >= size:
            out.append(b"".join(current))
            current, length = [], 0
    if current:
        out.append(b"".join(current))
    return out


def floor(blocks: list[bytes]) -> None:
    sketches: dict[str, kll_doubles_sketch] = {}
    for block in blocks:
        records = list(map(orjson.loads, block.splitlines()))
        sides = list(map(_capture, records))
        bodies = list(map(orjson.loads, map(_data, map(_request, sides))))
        list(map(orjson.loads, map(_data, map(_response, sides))))
        list(map(_time, map(_meta, records)))
        rows = list(map(_first_row, map(_instances, bodies)))
        keys = list(rows[0])
        for key, column in zip(keys, zip(*map(itemgetter(*keys), rows), strict=True), strict=True):
            if isinstance(column[0], str):
                Counter(column)
                continue
            values = np.array(column, dtype=np.float64)
            sketches.setdefault(key, kll_doubles_sketch(2048)).update(values)
            values.sum(), values.min(), values.max()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file", type=Path)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    payload = PayloadConfig(input=PayloadSide(format="json"), output=PayloadSide(format="json"))
    blocks = blocks_of(args.file)
    for _ in range(args.rounds):
        gc.disable()
        start = time.process_time()
        floor(blocks)
        bare = time.process_time() - start
        gc.enable()
        start = time.process_time()
        profile_file(args.file, payload, 2048)
        shipped = time.process_time() - start
        print(
            f"floor {bare:.3f} s CPU   profile_file {shipped:.3f} s CPU"
            f"   ratio {shipped / bare:.2f}"
        )


if __name__ == "__main__":
    main()
