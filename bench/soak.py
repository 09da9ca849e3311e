"""Soak: normal and hostile traffic through a real ``modelmon up`` for N minutes (issue 9).

Not in CI. Starts a toy model server (in this process), writes a baseline from the demo table
shipped in the package, starts ``python -m modelmon up`` on free 127.0.0.1 ports (JSON payloads,
100% capture, 5 s rotation and schedule, 60 s buckets, a 2-minute window whose runs keep their
detail 1 minute, so that the database reaches its steady state in the first minutes; see
``--window-s``, ``--run-detail-s``) and sends, for
``--minutes``, a mix of:

- normal JSON rows (the baseline's features);
- rows with 5 random extra keys (client-chosen feature names);
- wide rows (one object of 10,000 keys) and a 10,000-column CSV body;
- huge numbers (1e200, 1e308, -1e308) and the strings "inf", "NaN";
- gzip bodies (a normal one, and a small bomb: 8 MiB of zeros in ~8 KB);
- bad ground truth (64 KB of ``x`` lines) to ``/monitor/ground-truth``.

Every 5 s it samples the RSS of the proxy and the analyzer, the database size (with its WAL),
``GET /monitor/status`` latency and size, the ``/monitor/health`` status code and the
analyzer's ``last_error``. It prints one row per minute, a summary, and what each table of the
database holds at the end (SQLite's ``dbstat``). Anchors measured in
the same run: the RSS of a bare interpreter, and ``/monitor/health`` latency (status p99 is
also printed as a ratio to it). The machine is shared: say the load with the figures.

    python bench/soak.py --minutes 10
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import random
import re
import socket
import sqlite3
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import yaml
from aiohttp import web

from analyzer.monitors.data_quality.profile import profile_rows
from analyzer.monitors.data_quality.statistics_format import statistics_json, suggest_constraints

DEMO = Path(__file__).resolve().parents[1] / "modelmon" / "cli" / "demo_data" / "baseline.csv"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _table() -> tuple[list[str], list[list[str]]]:
    lines = DEMO.read_text().splitlines()
    return lines[0].split(","), [line.split(",") for line in lines[1:]]


def _baseline(folder: Path, names: list[str], rows: list[list[str]]) -> None:
    columns = {name: [row[i] for row in rows] for i, name in enumerate(names)}
    profile = profile_rows(columns)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "statistics.json").write_bytes(orjson.dumps(statistics_json(profile)))
    (folder / "constraints.json").write_bytes(orjson.dumps(suggest_constraints(profile)))


def _config(
    root: Path, names: list[str], ports: dict[str, int], window_s: int, run_detail_s: int
) -> Path:
    config = {
        "endpoint": {"name": "soak", "variant": "AllTraffic"},
        "proxy": {
            "listen": f"127.0.0.1:{ports['proxy']}",
            "upstream": f"http://127.0.0.1:{ports['model']}",
        },
        "capture": {
            "dir": "capture",
            "sampling_percentage": 100,
            "rotate_interval_s": 5,
            "json_content_types": ["application/json"],
            "csv_content_types": ["text/csv"],
        },
        "analyzer": {
            "listen": f"127.0.0.1:{ports['analyzer']}",
            "db": "modelmon.db",
            "reports_dir": "reports",
            "schedule_interval_s": 5,
            "bucket_s": 60,
            "window_s": window_s,
            "min_samples": 100,
            "baseline": {
                "statistics": "baseline/statistics.json",
                "constraints": "baseline/constraints.json",
            },
            "payload": {
                "input": {"format": "json", "columns": names},
                "output": {"format": "csv", "columns": ["score"]},
            },
        },
    }
    if run_detail_s >= 0:  # -1: left out (a version without the key, as an anchor)
        config["analyzer"]["run_detail_s"] = run_detail_s  # type: ignore[index]
    path = root / "modelmon.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def _model(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text="0.5", content_type="text/csv")


def _bare_rss() -> int:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; print('up', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        return int(psutil.Process(proc.pid).memory_info().rss)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()


class Traffic:
    """The request mix; counts what it sent by kind and answer."""

    def __init__(self, base: str, names: list[str], rows: list[list[str]], seed: int) -> None:
        self.base = base
        self.names = names
        self.rows = rows
        self.rng = random.Random(seed)
        self.sent: Counter[str] = Counter()
        self.answers: Counter[int] = Counter()
        bomb = gzip.compress(b"0" * (8 << 20))
        self.bomb = bomb

    def _row(self) -> dict[str, Any]:
        row = self.rows[self.rng.randrange(len(self.rows))]
        out: dict[str, Any] = {}
        for name, value in zip(self.names, row, strict=True):
            try:
                out[name] = float(value) if "." in value else int(value)
            except ValueError:
                out[name] = value
        return out

    def request(self) -> tuple[str, str, bytes, dict[str, str]]:
        """(kind, path, body, headers) of the next request."""
        roll = self.rng.random()
        json_type = {"Content-Type": "application/json"}
        if roll < 0.70:
            return "normal", "/invocations", orjson.dumps(self._row()), json_type
        if roll < 0.85:
            row = self._row()
            for _ in range(5):
                key = "".join(self.rng.choices(string.ascii_lowercase, k=10))
                row[key] = self.rng.random()
            return "random_keys", "/invocations", orjson.dumps(row), json_type
        if roll < 0.92:
            row = self._row()
            row["income"] = self.rng.choice([1e200, 1e308, -1e308, "inf", "NaN"])
            return "huge_number", "/invocations", orjson.dumps(row), json_type
        if roll < 0.93:
            wide = {f"w{j}": j for j in range(10_000)}
            return "wide_json", "/invocations", orjson.dumps(wide), json_type
        if roll < 0.94:
            body = ",".join(str(j) for j in range(10_000)).encode()
            return "wide_csv", "/invocations", body, {"Content-Type": "text/csv"}
        if roll < 0.98:
            headers = {**json_type, "Content-Encoding": "gzip"}
            return "gzip", "/invocations", gzip.compress(orjson.dumps(self._row())), headers
        if roll < 0.985:
            headers = {**json_type, "Content-Encoding": "gzip"}
            return "gzip_bomb", "/invocations", self.bomb, headers
        body = b"x\n" * 32_768
        return "bad_ground_truth", "/monitor/ground-truth", body, {"Content-Type": "text/plain"}

    async def worker(self, client: httpx.AsyncClient, stop: float) -> None:
        while time.monotonic() < stop:
            kind, path, body, headers = self.request()
            try:
                response = await client.post(self.base + path, content=body, headers=headers)
                self.answers[response.status_code] += 1
            except httpx.HTTPError:
                self.answers[0] += 1
            self.sent[kind] += 1


async def _wait_up(client: httpx.AsyncClient, url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if (await client.get(url)).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {seconds}s")


def _pids(log: Path) -> dict[str, int]:
    found = re.findall(r"^up \| started (\w+) \(pid (\d+)\)", log.read_text(), re.M)
    return {name: int(pid) for name, pid in found}


def _rss(pid: int | None) -> float:
    try:
        return psutil.Process(pid).memory_info().rss / 2**20 if pid else float("nan")
    except psutil.Error:
        return float("nan")


def _db_mb(root: Path) -> tuple[float, float]:
    """(the database with its WAL, the WAL alone) in MiB."""
    sizes = {p.name: p.stat().st_size for p in root.glob("modelmon.db*") if p.is_file()}
    return sum(sizes.values()) / 2**20, sizes.get("modelmon.db-wal", 0) / 2**20


def _p99(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def _tables(db: Path) -> str:
    """Bytes per table and index (``dbstat``; the WAL's pages included), largest first."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        try:
            rows = conn.execute(
                "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT 8"
            ).fetchall()
        except sqlite3.OperationalError:
            return "(dbstat not compiled in)"
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    parts = [f"{name} {pages / 2**20:.2f}" for name, pages in rows]
    return ", ".join(parts) + f", free pages {free * size / 2**20:.2f} (MiB)"


async def soak(
    minutes: float, root: Path, workers: int, window_s: int = 120, run_detail_s: int = 60
) -> int:
    names, rows = _table()
    _baseline(root / "baseline", names, rows)
    ports = {"proxy": _free_port(), "analyzer": _free_port()}
    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/invocations", _model)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    ports["model"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    config = _config(root, names, ports, window_s, run_detail_s)
    log = root / "up.log"
    with log.open("w") as out:
        up = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "modelmon",
            "up",
            "--config",
            str(config),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    proxy = f"http://127.0.0.1:{ports['proxy']}"
    analyzer = f"http://127.0.0.1:{ports['analyzer']}"
    bare = _bare_rss() / 2**20
    samples: list[dict[str, Any]] = []
    try:
        async with httpx.AsyncClient(timeout=60) as client:
            await _wait_up(client, analyzer + "/monitor/health", 60)
            await _wait_up(client, proxy + "/monitor/proxy/health", 60)
            pids = _pids(log)
            traffic = Traffic(proxy, names, rows, seed=7)
            started = time.monotonic()
            stop = started + minutes * 60
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(traffic.worker(client, stop))
                while time.monotonic() < stop:
                    await asyncio.sleep(5)
                    samples.append(await _sample(client, analyzer, pids, root, started, traffic))
            samples.append(await _sample(client, analyzer, pids, root, started, traffic))
    finally:
        up.terminate()
        try:
            await asyncio.wait_for(up.wait(), 30)
        except TimeoutError:
            up.kill()
            await up.wait()
        await runner.cleanup()
    _report(samples, bare, traffic, log)
    print(f"database at the end: {_tables(root / 'modelmon.db')}")
    bad = sum(1 for s in samples if s["health"] != 200 or s["last_error"])
    return 1 if bad else 0


async def _sample(
    client: httpx.AsyncClient,
    analyzer: str,
    pids: dict[str, int],
    root: Path,
    started: float,
    traffic: Traffic,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    status = await client.get(analyzer + "/monitor/status")
    status_ms = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    health = await client.get(analyzer + "/monitor/health")
    health_ms = (time.perf_counter() - t0) * 1000
    doc = status.json()
    db, wal = await asyncio.to_thread(_db_mb, root)
    return {
        "t": time.monotonic() - started,
        "proxy_mb": _rss(pids.get("proxy")),
        "analyzer_mb": _rss(pids.get("analyzer")),
        "db_mb": db,
        "wal_mb": wal,
        "status_ms": status_ms,
        "status_kb": len(status.content) / 1024,
        "health_ms": health_ms,
        "health": health.status_code,
        "last_error": doc.get("analyzer", {}).get("last_error"),
        "ticks": doc.get("analyzer", {}).get("ticks"),
        "records": doc.get("ingest", {}).get("records"),
        "bad": dict(doc.get("ingest", {}).get("bad_by_reason", {})),
        "state": doc.get("state"),
        "sent": sum(traffic.sent.values()),
    }


def _report(samples: list[dict[str, Any]], bare: float, traffic: Traffic, log: Path) -> None:
    print(f"load average at the end: {os.getloadavg()}; bare interpreter RSS {bare:.0f} MiB")
    print(
        f"{'min':>4} {'proxy MiB':>9} {'analyzer MiB':>12} {'db MiB':>7} {'wal':>5} "
        f"{'status p99 ms':>13} "
        f"{'status KiB':>10} {'health':>8} {'ticks':>6} {'records':>8} {'sent':>7} state"
    )
    by_minute: dict[int, list[dict[str, Any]]] = {}
    for s in samples:
        by_minute.setdefault(int(s["t"] // 60), []).append(s)
    for minute, group in sorted(by_minute.items()):
        last = group[-1]
        codes = "/".join(str(c) for c in sorted({s["health"] for s in group}))
        print(
            f"{minute + 1:>4} {max(s['proxy_mb'] for s in group):>9.0f} "
            f"{max(s['analyzer_mb'] for s in group):>12.0f} {last['db_mb']:>7.1f} "
            f"{last['wal_mb']:>5.1f} "
            f"{_p99([s['status_ms'] for s in group]):>13.1f} "
            f"{max(s['status_kb'] for s in group):>10.1f} {codes:>8} {last['ticks']:>6} "
            f"{last['records']:>8} {last['sent']:>7} {last['state']}"
        )
    status = [s["status_ms"] for s in samples]
    health = [s["health_ms"] for s in samples]
    errors = [s["last_error"] for s in samples if s["last_error"]]
    non200 = sum(1 for s in samples if s["health"] != 200)
    print(
        f"status p50 {statistics.median(status):.1f} ms, p99 {_p99(status):.1f} ms "
        f"({_p99(status) / max(_p99(health), 1e-9):.1f}x health's p99 {_p99(health):.1f} ms)"
    )
    print(f"health not 200 in {non200}/{len(samples)} samples; runs failed: {len(errors)}")
    if errors:
        print(f"  last error: {errors[-1]}")
    print(f"sent by kind: {dict(traffic.sent)}; answers: {dict(traffic.answers)}")
    print(f"ingest bad by reason (end): {samples[-1]['bad'] if samples else {}}")
    tracebacks = log.read_text().count("Traceback")
    print(f"tracebacks in the up log: {tracebacks} ({log})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=4, help="concurrent request loops")
    parser.add_argument("--dir", type=Path, default=None, help="keep the work folder here")
    parser.add_argument("--window-s", type=int, default=120, help="analyzer.window_s")
    parser.add_argument(
        "--run-detail-s", type=int, default=60, help="analyzer.run_detail_s (-1: not set)"
    )
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="modelmon-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"work folder: {root}")
    return asyncio.run(soak(args.minutes, root, args.workers, args.window_s, args.run_detail_s))


if __name__ == "__main__":
    sys.exit(main())
