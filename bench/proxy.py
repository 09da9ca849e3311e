"""Benchmark: modelmon proxy against nginx as a reverse proxy, in one run on this machine.

Targets, each loaded at 1 and 32 connections by wrk (or, without wrk, a bounded asyncio
client): the upstream reached directly, nginx as a reverse proxy (keep-alive pool to the
upstream, no buffering, like ours), a bare Python proxy (uvloop + llhttp, no features: the
floor of a Python proxy here), ``modelmon proxy`` with capture off, and with 100% capture.
The upstream is an nginx ``return 200`` (cheap, so the proxies' cost shows), or a tiny asyncio
server when nginx is absent. Printed: throughput, p50/p99 latency and the proxy process's CPU
seconds per request (psutil, process plus children, before/after the measured run), each as
a ratio to nginx's.

Run: ``python bench/proxy.py`` (``--seconds 10 --repeat 5`` for steadier numbers on a busy
machine, ``--json out.json`` to keep them). ``--alt NAME=DIR`` also runs the engine from
another tree in the same rounds (the code before a change, or a mypyc build of it:
docs/benchmarks-proxy.md), so that the two are compared under the same load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
from proxy_targets import BARE_PROXY, PY_UPSTREAM  # beside this script

BODY = b'{"instances": [[0.5, 1.25, 3.0, 42.0, 7.5, "CA"]]}'
ANSWER = '{"predictions": [0.8125]}'


MODELMON_TARGETS = (
    ("modelmon capture off", False, "fast"),
    ("modelmon capture 100%", True, "fast"),
    ("aiohttp engine 100%", True, "aiohttp"),
)


@dataclass
class Result:
    target: str
    connections: int
    requests: int
    rps: float
    p50_us: float
    p99_us: float
    errors: int
    cpu_us_per_req: float | None
    p999_us: float = 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, deadline_s: float = 20.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {deadline_s}s")


# -- servers ---------------------------------------------------------------------------


def nginx_conf(workdir: Path, listen: int, upstream: int | None) -> Path:
    user = "user root root;\n" if os.geteuid() == 0 else ""
    if upstream is None:
        location = f"default_type application/json; return 200 '{ANSWER}';"
        upstream_block = ""
    else:
        upstream_block = (
            f"upstream backend {{ server 127.0.0.1:{upstream}; keepalive 64; "
            "keepalive_requests 1000000; }"
        )
        location = (
            "proxy_pass http://backend; proxy_http_version 1.1; "
            'proxy_set_header Connection ""; proxy_set_header Host $http_host; '
            "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; "
            "proxy_set_header X-Forwarded-Proto $scheme; "
            "proxy_buffering off; proxy_request_buffering off;"
        )
    text = f"""{user}worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {workdir}/body;
  proxy_temp_path {workdir}/proxy;
  {upstream_block}
  server {{
    listen 127.0.0.1:{listen} reuseport;
    location / {{ {location} }}
  }}
}}
"""
    path = workdir / "nginx.conf"
    path.write_text(text)
    return path


def start_nginx(workdir: Path, listen: int, upstream: int | None) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    conf = nginx_conf(workdir, listen, upstream)
    proc = subprocess.Popen(
        ["nginx", "-p", str(workdir), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(listen)
    return proc


def start_bare(port: int, upstream: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", BARE_PROXY, str(port), str(upstream)])
    wait_port(port)
    return proc


def start_upstream(workdir: Path, port: int, have_nginx: bool) -> subprocess.Popen[bytes]:
    if have_nginx:
        return start_nginx(workdir / "upstream", port, None)
    proc = subprocess.Popen([sys.executable, "-c", PY_UPSTREAM, str(port), ANSWER])
    wait_port(port)
    return proc


def start_modelmon(
    workdir: Path,
    port: int,
    upstream: int,
    capture: bool,
    engine: str = "fast",
    first_path: Path | None = None,
) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "modelmon.yaml"
    config.write_text(
        json.dumps(
            {
                "endpoint": {"name": "bench"},
                "proxy": {
                    "listen": f"127.0.0.1:{port}",
                    "upstream": f"http://127.0.0.1:{upstream}",
                    "engine": engine,
                },
                "capture": {
                    "enabled": capture,
                    "sampling_percentage": 100,
                    "dir": str(workdir / "capture"),
                },
            }
        )
    )
    log = (workdir / "proxy.log").open("wb")
    env = dict(os.environ)
    if first_path is not None:  # another tree (``--alt``) first on the path
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(first_path), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelmon",
            "--log-level",
            "WARNING",
            "proxy",
            "--config",
            str(config),
        ],
        stdout=log,
        stderr=log,
        env=env,
        cwd=first_path,  # ``python -m`` puts the working directory first on the path
    )
    wait_port(port)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(pid: int) -> float:
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        times = p.cpu_times()
        total += times.user + times.system
    return total


# -- load ------------------------------------------------------------------------------

_WRK_LUA = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %%d %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout + e.status, latency:percentile(99.9)))
end
"""


Load = tuple[int, float, float, float, int, float]  # requests, s, p50, p99, errors, p99.9


def run_wrk(url: str, connections: int, seconds: float, workdir: Path) -> Load:
    script = workdir / "post.lua"
    script.write_text(_WRK_LUA % BODY.decode())
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", str(script), url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r"BENCH (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", out)
    if match is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    requests, duration_us, p50, p99, errors, p999 = (int(g) for g in match.groups())
    return requests, duration_us / 1e6, float(p50), float(p99), errors, float(p999)


async def _async_load(url: str, connections: int, seconds: float) -> Load:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    end = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < end:
            start = time.perf_counter()
            try:
                async with session.post(
                    url, data=BODY, headers={"Content-Type": "application/json"}
                ) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append((time.perf_counter() - start) * 1e6)

    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:
        async with asyncio.TaskGroup() as group:
            for _ in range(connections):
                group.create_task(worker(session))
    elapsed = time.perf_counter() - started
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    p999 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.999))]
    return len(latencies), elapsed, p50, p99, errors, p999


def load(url: str, connections: int, seconds: float, workdir: Path) -> Load:
    if shutil.which("wrk"):
        return run_wrk(url, connections, seconds, workdir)
    return asyncio.run(_async_load(url, connections, seconds))


def measure(
    target: str, port: int, pid: int | None, connections: int, seconds: float, workdir: Path
) -> Result:
    url = f"http://127.0.0.1:{port}/invocations"
    load(url, connections, min(1.0, seconds), workdir)  # warm-up: pools, caches, JIT-less paths
    before = cpu_seconds(pid) if pid is not None else 0.0
    requests, elapsed, p50, p99, errors, p999 = load(url, connections, seconds, workdir)
    after = cpu_seconds(pid) if pid is not None else 0.0
    cpu = (after - before) / requests * 1e6 if pid is not None and requests else None
    return Result(target, connections, requests, requests / elapsed, p50, p99, errors, cpu, p999)


def median_result(runs: list[Result]) -> Result:
    """Each figure's median over the rounds (the tail percentiles too, each on its own)."""

    def med(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    cpus = [r.cpu_us_per_req for r in runs if r.cpu_us_per_req is not None]
    return Result(
        runs[0].target,
        runs[0].connections,
        int(med([float(r.requests) for r in runs])),
        med([r.rps for r in runs]),
        med([r.p50_us for r in runs]),
        med([r.p99_us for r in runs]),
        int(med([float(r.errors) for r in runs])),
        med(cpus) if cpus else None,
        med([r.p999_us for r in runs]),
    )


# -- report ----------------------------------------------------------------------------


def _ratio(value: float | None, anchor: float | None) -> str:
    if value is None or not anchor:
        return "   -  "
    return f"{value / anchor:5.2f}x"


def _find(results: list[Result], target: str, conns: int) -> Result | None:
    return next((r for r in results if r.target == target and r.connections == conns), None)


def report(results: list[Result], have_nginx: bool, alt: str | None) -> None:
    print(
        f"\n{'target':<22}{'conns':>6}{'req/s':>10}{'p50 us':>9}{'p99 us':>9}{'p99.9 us':>10}"
        f"{'cpu us/req':>12}{'  rps/ngx':>9}{'  p50/ngx':>9}{'  p99/ngx':>9}{'  cpu/ngx':>9}"
        f"{'err':>5}"
    )
    for r in results:
        anchor = next(
            (a for a in results if a.target == "nginx proxy" and a.connections == r.connections),
            None,
        )
        cpu = f"{r.cpu_us_per_req:10.1f}" if r.cpu_us_per_req is not None else "         -"
        print(
            f"{r.target:<22}{r.connections:>6}{r.rps:>10.0f}{r.p50_us:>9.0f}{r.p99_us:>9.0f}"
            f"{r.p999_us:>10.0f}"
            f"  {cpu}"
            f"   {_ratio(r.rps, anchor.rps if anchor else None)}"
            f"   {_ratio(r.p50_us, anchor.p50_us if anchor else None)}"
            f"   {_ratio(r.p99_us, anchor.p99_us if anchor else None)}"
            f"   {_ratio(r.cpu_us_per_req, anchor.cpu_us_per_req if anchor else None)}"
            f"{r.errors:>5}"
        )
    for conns in sorted({r.connections for r in results}):
        off = next(
            (r for r in results if r.target == "modelmon capture off" and r.connections == conns),
            None,
        )
        on = next(
            (r for r in results if r.target == "modelmon capture 100%" and r.connections == conns),
            None,
        )
        bare = next(
            (r for r in results if r.target == "bare python proxy" and r.connections == conns),
            None,
        )
        if bare and bare.cpu_us_per_req:
            for r in (off, on):
                if r is not None and r.cpu_us_per_req:
                    cpu, floor = r.cpu_us_per_req, bare.cpu_us_per_req
                    print(
                        f"{r.target} at {conns} conns: {cpu / floor:.2f}x the bare python proxy "
                        f"({cpu - floor:+.1f} us per request for its features)"
                    )
        if off and on and off.cpu_us_per_req and on.cpu_us_per_req:
            extra = on.cpu_us_per_req / off.cpu_us_per_req - 1
            print(
                f"capture 100% vs off at {conns} conns: {extra:+.1%} CPU per request, "
                f"p99 {(on.p99_us - off.p99_us) / 1000:+.2f} ms, "
                f"p99.9 {(on.p999_us - off.p999_us) / 1000:+.2f} ms"
            )
        for mode in ("off", "100%") if alt else ():
            this = _find(results, f"modelmon capture {mode}", conns)
            other = _find(results, f"{alt} capture {mode}", conns)
            if this and other and this.cpu_us_per_req and other.cpu_us_per_req:
                print(
                    f"{alt} vs modelmon, capture {mode} at {conns} conns: "
                    f"{other.cpu_us_per_req / this.cpu_us_per_req - 1:+.1%} CPU per request, "
                    f"p99 {(other.p99_us - this.p99_us) / 1000:+.2f} ms"
                )
        a_off = _find(results, f"{alt} capture off", conns)
        a_on = _find(results, f"{alt} capture 100%", conns)
        if a_off and a_on:
            print(
                f"{alt}: capture 100% vs off at {conns} conns: "
                f"p99 {(a_on.p99_us - a_off.p99_us) / 1000:+.2f} ms, "
                f"p99.9 {(a_on.p999_us - a_off.p999_us) / 1000:+.2f} ms"
            )
    if not have_nginx:
        print("nginx not installed: no nginx anchor, ratios omitted (apt-get install nginx)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured run per point")
    parser.add_argument("--connections", default="1,32", help="comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per point (median kept)")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--only", default=None, help="comma-separated target names")
    parser.add_argument(
        "--alt",
        default=None,
        metavar="NAME=DIR",
        help="another tree of the code (before a change, or a mypyc build): adds the targets "
        "'NAME capture off' and 'NAME capture 100%%', run from DIR in the same rounds",
    )
    args = parser.parse_args()
    have_nginx = shutil.which("nginx") is not None
    if not shutil.which("wrk"):
        print(
            "wrk not installed: using a bounded asyncio client "
            "(its own CPU competes; apt-get install wrk)"
        )
    if not have_nginx:
        print("nginx not installed: upstream is a tiny asyncio server, no nginx anchor")
    connections = [int(c) for c in args.connections.split(",")]
    print(
        f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, "
        f"{args.seconds:g}s per point, body {len(BODY)} B, answer {len(ANSWER)} B"
    )
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="modelmon-bench-") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)
        upstream_port = free_port()
        upstream = start_upstream(workdir, upstream_port, have_nginx)
        targets: list[tuple[str, subprocess.Popen[bytes] | None, int]] = []
        try:
            targets.append(("upstream direct", None, upstream_port))
            if have_nginx:
                port = free_port()
                targets.append(
                    ("nginx proxy", start_nginx(workdir / "nginx", port, upstream_port), port)
                )
            port = free_port()
            targets.append(("bare python proxy", start_bare(port, upstream_port), port))
            only = set(args.only.split(",")) if args.only else None
            variants = [(*t, None) for t in MODELMON_TARGETS]
            if args.alt:
                alt, tree = args.alt.split("=", 1)
                variants += [
                    (f"{alt} capture off", False, "fast", Path(tree).resolve()),
                    (f"{alt} capture 100%", True, "fast", Path(tree).resolve()),
                ]
            for name, capture, engine, first_path in variants:
                if only and name not in only:
                    continue
                port = free_port()
                sub = workdir / name.replace(" ", "-").replace("%", "")
                proc = start_modelmon(sub, port, upstream_port, capture, engine, first_path)
                targets.append((name, proc, port))
            for conns in connections:
                rounds: dict[str, list[Result]] = {}
                # Rounds interleave the targets, so a burst of load from elsewhere on a shared
                # machine hits all of them alike; the median round is reported.
                for _ in range(args.repeat):
                    for name, proc, port in targets:
                        if only and name not in only:
                            continue
                        pid = proc.pid if proc else None
                        result = measure(name, port, pid, conns, args.seconds, workdir)
                        rounds.setdefault(name, []).append(result)
                        print(f"  {name} @ {conns}: {result.rps:.0f} req/s", flush=True)
                results.extend(median_result(runs) for runs in rounds.values())
        finally:
            for _, proc, _ in targets:
                if proc is not None:
                    stop(proc)
            stop(upstream)
    report(results, have_nginx, args.alt.split("=", 1)[0] if args.alt else None)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
