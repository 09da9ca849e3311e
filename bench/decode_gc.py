"""What the codecs' old pause of the garbage collector bought: CPU of decode + profile per file.

Run: ``python bench/decode_gc.py FILE.jsonl [FILE.jsonl ...] [--rounds 5] [--on-only]``
(capture files, e.g. from ``bench/analyze_speed.py --keep``; the config's payload is CSV or
JSON by the file's first record). Against older code: run it with ``--on-only`` and
``PYTHONPATH`` set to each tree in turn (e.g. from ``git archive``), interleaved.

Until December 2026 ``PayloadDecoder`` disabled the process-wide collector while it decoded a
batch (``gc.disable()``/``gc.enable()``), which is unsafe when other threads run (a Dask
worker). This decodes and profiles each file the way ``analyze --once`` does without Arrow
(1 MiB blocks, :meth:`PayloadDecoder.decode_lines`, :meth:`DatasetProfile.update`), once with
the collector left alone (today) and once paused around each decode (as before), in
alternating rounds in one process, and prints the median CPU seconds of each and their ratio
(``--on-only``: only the first, which is the code's own behaviour, e.g. an older tree's).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from pathlib import Path

import orjson

from analyzer.decoding.codecs import PayloadDecoder
from analyzer.ingest.capture_files import block_lines, read_blocks
from analyzer.monitors.data_quality.profile import DatasetProfile
from modelmon.config import PayloadConfig


def payload_of(path: Path) -> PayloadConfig:
    first = orjson.loads(path.read_bytes().split(b"\n", 1)[0])
    encoding = first["captureData"]["endpointInput"]["encoding"]
    fmt = "csv" if encoding == "CSV" else "json"
    return PayloadConfig.model_validate({"input": {"format": fmt}, "output": {"format": fmt}})


def one_pass(blocks: list[list[bytes]], decoder: PayloadDecoder, pause: bool) -> float:
    """CPU seconds to decode and profile every block; ``pause``: the collector off per decode."""
    profile = DatasetProfile(2048)
    gc.collect()
    start = time.process_time()
    for lines in blocks:
        if pause:
            gc.disable()
        try:
            batch = decoder.decode_lines(lines)
        finally:
            if pause:
                gc.enable()
        profile.update(batch)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--on-only", action="store_true", help="no paused variant")
    args = parser.parse_args()
    variants = (False,) if args.on_only else (False, True)
    for path in args.files:
        decoder = PayloadDecoder(payload_of(path))
        blocks = [block_lines(block) for block in read_blocks(path)]
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for pause in variants:
                times[pause].append(one_pass(blocks, decoder, pause))
        records = sum(map(len, blocks))
        now = statistics.median(times[False])
        if args.on_only:
            print(f"{path.name} ({records:,} records): {now:.3f} s CPU")
            continue
        before = statistics.median(times[True])
        print(
            f"{path.name} ({records:,} records): collector on {now:.3f} s CPU, "
            f"paused per decode (before) {before:.3f} s; on/paused = {now / before:.3f}"
        )


if __name__ == "__main__":
    main()
