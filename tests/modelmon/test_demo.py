"""``modelmon demo`` end to end: a subprocess running the real proxy, analyzer and toy model."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest


def _demo(workdir: Path, seconds: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "modelmon",
            "demo",
            "--dir",
            str(workdir),
            "--seconds",
            str(seconds),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 40,  # a bound for a hang, not a speed check: slow on a busy machine
        check=False,
    )


def _child_pids(workdir: Path) -> list[int]:
    log = (workdir / "logs" / "modelmon.log").read_text()
    return [int(pid) for pid in re.findall(r"^up \| started \w+ \(pid (\d+)\)", log, re.M)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(150)  # the demo runs 45 s; its bound is 85 s
def test_demo_shows_ok_then_an_alert_naming_the_drift(tmp_path: Path) -> None:
    done = _demo(tmp_path, 45)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    lines = out.splitlines()
    drift = next(i for i, line in enumerate(lines) if "drift starts" in line)
    assert any("normal  traffic" in line and "state ok" in line for line in lines[:drift])
    assert not any("state alert" in line for line in lines[:drift])  # no false alarm first
    alert = next(line for line in lines[drift:] if re.search(r"ALERT .* drifting: ", line))
    assert re.search(r"drifting: .*\b(income|state|utilization)\b", alert)
    assert "state: ALERT" in out
    assert re.search(
        r"webhook received: alert from data_quality, .*→ alert; .*(income|state|utilization)", out
    )
    # model quality: labels posted late join the captured predictions; the estimate and then
    # the realized metric fall with the drift, and the model-quality monitor alerts
    quality = [line for line in lines[drift:] if "model quality │" in line]
    assert any("estimated" in line and "realized" in line for line in quality), out
    assert "MODEL-QUALITY ALERT" in out
    assert re.search(r"webhook received: alert from model_quality, .*→ alert; \w+ \(\w+Than", out)
    assert (tmp_path / "baseline" / "model_quality" / "constraints.json").is_file()
    assert re.search(r"report:\s+http://127\.0\.0\.1:\d+/monitor/report", out)
    assert re.search(r"metrics:\s+http://127\.0\.0\.1:\d+/monitor/metrics", out)
    # the traffic really went through the proxy into sealed capture files, in SageMaker's form
    capture = tmp_path / "data" / "capture" / "demo-model" / "AllTraffic"
    files = sorted(capture.rglob("*.jsonl"))
    assert files, f"no sealed capture file under {capture}"
    record = orjson.loads(files[0].read_text().splitlines()[0])
    assert record["captureData"]["endpointInput"]["observedContentType"] == "text/csv"
    assert (tmp_path / "baseline" / "statistics.json").is_file()
    pids = _child_pids(tmp_path)
    assert len(pids) >= 2 and not any(_alive(pid) for pid in pids)


def test_demo_too_short_says_what_did_not_happen(tmp_path: Path) -> None:
    done = _demo(tmp_path, 2)
    assert done.returncode == 1
    assert "modelmon demo: FAILED: " in done.stdout
    assert not any(_alive(pid) for pid in _child_pids(tmp_path))
