"""Footprint of ``modelmon up``'s two processes under the demo's traffic, for sizing.

Runs ``modelmon demo --keep`` for ``--seconds`` (200 rows/s in 25 requests/s through the
proxy, 100% capture, a check every 2 s), samples the resident memory and CPU time of the
proxy, the analyzer and the demo process itself once a second, and prints peak RSS, CPU
per captured record, capture bytes per record, SQLite size, and the seconds from the first
drifted request to ``alert``. Anchors measured in the same run: the demo process (toy model
plus traffic client) for CPU, a bare ``python -c pass`` interpreter for memory.

    python bench/demo_footprint.py --seconds 60
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def _pids(log: Path) -> dict[str, int]:
    if not log.exists():
        return {}
    found = re.findall(r"^up \| started (\w+) \(pid (\d+)\)", log.read_text(), re.M)
    return {name: int(pid) for name, pid in found}


def _bare_rss() -> int:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; print('up', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # the interpreter is up
        return int(psutil.Process(proc.pid).memory_info().rss)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="modelmon-footprint-"))
    command = [sys.executable, "-m", "modelmon", "demo", "--keep", "--dir", str(root)]
    demo = subprocess.Popen(
        [*command, "--seconds", str(args.seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    peak: dict[str, int] = {}
    cpu: dict[str, float] = {}
    log = root / "logs" / "modelmon.log"
    while demo.poll() is None:
        procs = {"demo": demo.pid, **_pids(log)}
        for name, pid in procs.items():
            try:
                proc = psutil.Process(pid)
                peak[name] = max(peak.get(name, 0), int(proc.memory_info().rss))
                times = proc.cpu_times()
                cpu[name] = times.user + times.system
            except psutil.NoSuchProcess:
                continue
        time.sleep(1.0)
    out = demo.stdout.read() if demo.stdout else ""
    capture = list((root / "data" / "capture").rglob("*.jsonl"))
    records = sum(len(p.read_text().splitlines()) for p in capture)
    size = sum(p.stat().st_size for p in capture)
    db = sum(p.stat().st_size for p in (root / "data").glob("modelmon.db*"))
    alert = re.search(r"ALERT (\d+)s after the drift started", out)
    bare = _bare_rss()
    print(f"demo exit status {demo.returncode}; {records} records captured in {len(capture)} files")
    print(f"bare interpreter RSS (anchor): {bare / 2**20:.1f} MiB")
    for name in ("proxy", "analyzer", "demo"):
        if name in peak:
            mib = peak[name] / 2**20
            print(
                f"{name:9s} peak RSS {mib:6.1f} MiB ({peak[name] / bare:4.1f}x bare),"
                f" CPU {cpu[name]:6.2f} s"
                + (f" = {cpu[name] / records * 1e6:6.0f} us/record" if records else "")
                + (f" ({cpu[name] / cpu['demo']:.2f}x the demo process)" if cpu.get("demo") else "")
            )
    if records:
        print(f"capture: {size / records:.0f} bytes/record (8 CSV rows in, 8 scores out)")
    print(f"SQLite (db + wal): {db / 2**20:.2f} MiB after {args.seconds:g} s")
    print(f"first drifted request to alert: {alert.group(1) if alert else 'not seen'} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
