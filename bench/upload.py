"""What ``capture.upload`` costs: sealed files per second and CPU per file of the uploader
(issue 12), against an S3 API on 127.0.0.1 (moto's server, in this process: its own CPU is
counted too, so the S3 figure is an upper bound of the client's cost).

    python bench/upload.py [--files 200] [--file-bytes 262144]

Anchor, measured in the same run on the same files: the same :class:`Uploader` to a
``file://`` target (a local copy through fsspec: the floor of one upload). Prints files/s,
MB/s, process CPU per file and the ratio S3 / file://.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from capture_proxy.metrics import ProxyMetrics
from capture_proxy.upload import Uploader


def _tree(root: Path, files: int, size: int) -> Path:
    hour = root / "ep" / "AllTraffic" / "2024" / "01" / "01" / "00"
    hour.mkdir(parents=True)
    line = b'{"captureData": {"endpointInput": {"data": "' + b"1,2,3," * 40 + b'"}}}\n'
    body = (line * (size // len(line) + 1))[:size]
    for i in range(files):
        (hour / f"00-00-{i:03d}-bench-{i:08d}-0000-4000-8000-000000000000.jsonl").write_bytes(body)
    return root


def _run(capture_dir: Path, url: str, files: int) -> tuple[float, float]:
    uploader = Uploader(capture_dir, capture_dir / "ep" / "AllTraffic", url, ProxyMetrics())
    cpu, wall = time.process_time(), time.perf_counter()
    uploader.start()
    assert uploader.wait_until(lambda u: u.attempts >= files and u.pending == 0, 600)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    uploader.close(0)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--file-bytes", type=int, default=256 * 1024)
    args = parser.parse_args()
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    home = Path(tempfile.mkdtemp())
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{server.get_host_and_port()[1]}",
        AWS_CONFIG_FILE=str(home / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "none"),
    )
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from modelmon.storage_url import open_url

    open_url("s3://bench")[0].mkdir("bench")
    print(
        f"{platform.python_version()} on {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
        f"{args.files} files of {args.file_bytes:,} bytes"
    )
    results = {}
    for name, url in (
        ("file://", f"file://{home / 'target'}"),
        ("s3 (moto)", "s3://bench/datacapture"),
    ):
        wall, cpu = _run(
            _tree(Path(tempfile.mkdtemp()), args.files, args.file_bytes), url, args.files
        )
        results[name] = wall
        mb = args.files * args.file_bytes / 1e6
        print(
            f"{name:>10}: {args.files / wall:8.1f} files/s  {mb / wall:7.1f} MB/s  "
            f"{cpu / args.files * 1000:6.2f} ms CPU per file"
        )
    print(f"ratio s3 / file:// wall time: {results['s3 (moto)'] / results['file://']:.1f}x")
    server.stop()


if __name__ == "__main__":
    main()
