"""The service shortens the interpreter's switch interval (the writer thread gets the GIL
back from the busy ingest thread sooner; the throughput is measured in bench/). The setting
is process-wide: each case runs in a fresh interpreter, the test process is left alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from analyzer.service.switching import SERVICE_SWITCH_INTERVAL_S

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> str:
    found = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert found.returncode == 0, found.stderr
    return found.stdout.strip()


def test_shortened_from_the_default_and_never_lengthened() -> None:
    out = _run(
        "import sys\n"
        "from analyzer.service.switching import shorten_switch_interval\n"
        "print(shorten_switch_interval(), sys.getswitchinterval())\n"
        "sys.setswitchinterval(0.0005)\n"
        "print(shorten_switch_interval(), sys.getswitchinterval())\n"
    )
    assert out.splitlines() == [f"0.005 {SERVICE_SWITCH_INTERVAL_S}", "0.0005 0.0005"]


def test_the_service_runs_with_the_shorter_interval(tmp_path: Path) -> None:
    # the interval of a running service's interpreter cannot be read from outside it: here
    # aiohttp's run_app (which would serve until a signal) only reports it, after
    # run_service has prepared the process exactly as ``modelmon analyzer`` does
    out = _run(
        "import sys\n"
        "from pathlib import Path\n"
        "from aiohttp import web\n"
        "from tests.analyzer.service_helpers import make_config\n"
        "import analyzer.service.app as app\n"
        "web.run_app = lambda *a, **k: print('serving at', sys.getswitchinterval())\n"
        f"config = make_config(Path({str(tmp_path)!r}), None)\n"
        "print('before', sys.getswitchinterval())\n"
        "app.run_service(config)\n"
    )
    assert out.splitlines() == ["before 0.005", f"serving at {SERVICE_SWITCH_INTERVAL_S}"]
