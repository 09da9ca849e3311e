"""What one SQLite statement of the store's writer costs beside a busy Python thread (issue 11).

    python bench/writer_gil.py [--rounds 200] [--trials 7]

The service's writer thread runs a chunk's statements while the ingest thread decodes the
next chunk in Python. Each statement (and each numpy step on a large array) lets go of the
GIL while SQLite (or numpy) works, and must take it back after: when the other thread is
running Python, that waits until the other gives it up (at the latest after
``sys.getswitchinterval()``, 5 ms by default). This times, on an in-memory database, a
lookup by key, an upsert, a 1.5 MB blob insert (deleted again after each trial) and the hash
of 10,000 keys (``stable_key_hashes``: some sixty numpy steps): alone
(the anchor) and beside a thread busy in a Python loop, in milliseconds: the median of
``--trials`` trials (the wait is a race between two threads' wake-ups: a short step
is either as quick as alone or hundreds of times slower, from trial to trial), the range
beside, and the ratio.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analyzer.store.model_quality_blocks import stable_key_hashes


def _busy(stop: threading.Event) -> None:
    total = 0
    while not stop.is_set():
        for i in range(1000):
            total += i


def _timed(rounds: int, step: Callable[[], object]) -> float:
    began = time.perf_counter()
    for _ in range(rounds):
        step()
    return (time.perf_counter() - began) / rounds * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--trials", type=int, default=7)
    args = parser.parse_args()
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    conn.execute("CREATE TABLE t (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    conn.execute("INSERT INTO t VALUES ('x', 1)")
    conn.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, blob BLOB NOT NULL)")
    blob = os.urandom(1_500_000)
    keys = [f"{i:08x}-0000-4000-8000-{i:012x}" for i in range(10_000)]
    joined = "\x00".join(keys).encode()
    steps: dict[str, Callable[[], object]] = {
        "SELECT by key": lambda: conn.execute("SELECT value FROM t WHERE name = 'x'").fetchone(),
        "upsert": lambda: conn.execute(
            "INSERT INTO t VALUES ('x', 1) ON CONFLICT (name) DO UPDATE SET value = value + 1"
        ),
        "1.5 MB blob INSERT": lambda: conn.execute("INSERT INTO blobs (blob) VALUES (?)", [blob]),
        "hash of 10,000 keys (numpy)": lambda: stable_key_hashes(keys, joined),
    }
    print(f"load average {os.getloadavg()}, switch interval {sys.getswitchinterval() * 1e3} ms")
    for name, step in steps.items():
        rounds = args.rounds if "blob" not in name and "hash" not in name else args.rounds // 10
        alone, beside = [], []
        for _ in range(args.trials):  # a wake-up race: it varies a lot from trial to trial
            alone.append(_timed(rounds, step))
            stop = threading.Event()
            thread = threading.Thread(target=_busy, args=(stop,))
            thread.start()
            try:
                beside.append(_timed(rounds, step))
            finally:
                stop.set()
                thread.join()
            conn.execute("DELETE FROM blobs")  # the blobs of the trial: memory stays flat
        a, b = statistics.median(alone), statistics.median(beside)
        print(
            f"{name}: alone {a:.3f} ms, beside a busy thread {b:.3f} ms (median of"
            f" {args.trials} trials of {rounds}; {min(beside):.3f}–{max(beside):.3f}),"
            f" {b / a:,.0f}×"
        )


if __name__ == "__main__":
    main()
