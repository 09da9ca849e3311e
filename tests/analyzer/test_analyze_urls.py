"""``modelmon analyze --once --data URL --out URL``: a SageMaker capture tree in a real S3 API.

moto's S3 server (``ThreadedMotoServer``, tests/s3_support.py) runs on 127.0.0.1; the capture
records are AWS's own (``sagemaker-examples/capture``: CSV exchanges and the ground truth
keyed by their eventIds), laid out as SageMaker's Data Capture writes them
(``{prefix}/{endpoint}/{variant}/yyyy/mm/dd/hh/``) plus one file as the proxy's
``capture.upload`` names it (an instance part, gzipped). The same tree analyzed from a local
folder gives the expected bytes; every run from the bucket must give the same bytes back from
the bucket, whatever backend ran the map. The CLI runs are real subprocesses, with the AWS
settings in their environment only (as a user's credentials reach s3fs).
"""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from analyzer.ingest.batch import run_analyze_once
from analyzer.ingest.executor import InProcess, LocalProcesses
from analyzer.ingest.remote_files import RemoteFile
from modelmon.config import load_config
from tests.s3_support import S3Server, aws_environment
from tests.shared_data import EXAMPLES

T = TypeVar("T")
R = TypeVar("R")
HOUR = datetime(2024, 3, 1, 10, tzinfo=UTC)
BUCKET = "monitoring"
DATA_URL = f"s3://{BUCKET}/datacapture"
GT_URL = f"s3://{BUCKET}/groundtruth"
TREE = "churn/AllTraffic"
DQ = ("constraint_violations.json", "constraints.json", "statistics.json")
MQ = ("constraint_violations.json", "constraints.json", "modelmon.json", "statistics.json")


def _lines(name: str, start: datetime) -> list[bytes]:
    """AWS's template lines with one inference time each (a minute apart from ``start``)."""
    raw = (EXAMPLES / "capture" / name).read_bytes().splitlines(keepends=True)
    out = []
    for i, line in enumerate(raw):
        moment = start + timedelta(minutes=i)
        out.append(line.replace(b"{%s}", moment.strftime("%Y-%m-%dT%H:%M:%SZ").encode()))
    return out


def capture_tree() -> dict[str, bytes]:
    """Key (below the prefix) → bytes: three SageMaker files over two hours and one of ours."""
    lines = _lines("csv_capture_template.jsonl", HOUR)  # 44 records: 10:00 … 10:43
    later = _lines("csv_capture_template.jsonl", HOUR + timedelta(hours=1))[:20]
    ten, eleven = f"{TREE}/2024/03/01/10", f"{TREE}/2024/03/01/11"
    return {
        f"{ten}/00-01-205-3f7a2c51-8c0b-4d3e-9b61-0e0f1a2b3c4d.jsonl": b"".join(lines[:15]),
        f"{ten}/15-00-977-a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d.jsonl": b"".join(lines[15:30]),
        f"{ten}/30-02-113-web-1-5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9.jsonl.gz": gzip.compress(
            b"".join(lines[30:]), mtime=0
        ),
        f"{eleven}/00-00-310-0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d.jsonl": b"".join(later),
    }


def ground_truth() -> dict[str, bytes]:
    """SageMaker's ground-truth layout: the labels of the first hour, an hour later."""
    lines = _lines("ground_truth_template.jsonl", HOUR)
    return {"2024/03/01/11/labels.jsonl": b"".join(lines)}


def write_local(root: Path, files: dict[str, bytes]) -> Path:
    for key, data in files.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)
    return root


def upload(s3: S3Server, url: str, files: dict[str, bytes]) -> None:
    base = url.removeprefix("s3://")
    for key, data in files.items():
        s3.put(f"{base}/{key}", data)


@dataclass(frozen=True)
class Setup:
    root: Path
    config: Path
    capture: Path
    truth: Path


def modelmon(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "modelmon", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    """A config, the local tree and both baselines (made from the local tree by
    ``modelmon baseline``), shared by the tests of this module (read only)."""
    root = tmp_path_factory.mktemp("analyze-urls")
    capture = write_local(root / "capture", capture_tree())
    truth = write_local(root / "gt", ground_truth())
    doc = {
        "endpoint": {"name": "churn", "variant": "AllTraffic"},
        "proxy": {"upstream": "http://127.0.0.1:9"},
        "capture": {"dir": str(capture)},
        "analyzer": {
            "reports_dir": str(root / "reports"),
            "baseline": {
                "statistics": str(root / "dq" / "statistics.json"),
                "constraints": str(root / "dq" / "constraints.json"),
            },
            "payload": {"output": {"format": "csv", "columns": ["score"]}},
            "model_quality": {
                "problem_type": "BinaryClassification",
                "probability_attribute": "score",
                "ground_truth_attribute": "label",
                "baseline": {
                    "statistics": str(root / "mq" / "statistics.json"),
                    "constraints": str(root / "mq" / "constraints.json"),
                },
            },
        },
    }
    config = root / "modelmon.yaml"
    config.write_text(yaml.safe_dump(doc))
    for extra in ((), ("--model-quality", "--ground-truth", str(truth))):
        made = modelmon("baseline", "--config", str(config), "--data", str(capture), *extra,
                        cwd=root)  # fmt: skip
        assert made.returncode == 0, made.stderr
    return Setup(root, config, capture, truth)


def local_reports(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def expected(setup: Setup) -> dict[str, bytes]:
    """The reports of the local tree, from local paths: what every URL run must give."""
    out = setup.root / "expected"
    done = modelmon("analyze", "--once", "--config", str(setup.config), "--data",
                    str(setup.capture), "--ground-truth", str(setup.truth), "--out", str(out),
                    cwd=setup.root)  # fmt: skip
    assert done.returncode == 0, done.stderr
    reports = local_reports(out)
    hour = "churn/modelmon/2024/03/01/12"  # the newest record is at 11:19
    assert sorted(reports) == sorted(
        [f"{hour}/{n}" for n in DQ] + [f"{hour}/model_quality/{n}" for n in MQ]
    )
    assert b'"item_count": 64' in reports[f"{hour}/statistics.json"]  # 44 + 20 records
    return reports


def bucket_with_tree(s3: S3Server) -> None:
    s3.make_bucket(BUCKET)
    upload(s3, DATA_URL, capture_tree())
    upload(s3, GT_URL, ground_truth())
    s3.put(f"{BUCKET}/datacapture/{TREE}/2024/03/01/11/00-09-000-x.jsonl.part", b"{broken\n")


@pytest.mark.timeout(300)  # two passes, one starting a Dask LocalCluster
def test_reports_from_a_bucket_to_a_bucket_are_the_local_bytes(
    s3: S3Server, setup: Setup, expected: dict[str, bytes]
) -> None:
    bucket_with_tree(s3)
    for name, extra in (("processes", ()), ("dask", ("--dask-workers", "2"))):
        out = f"s3://{BUCKET}/reports-{name}"
        done = modelmon("analyze", "--once", "--config", str(setup.config), "--data", DATA_URL,
                        "--ground-truth", GT_URL, "--out", out, *extra,
                        cwd=setup.root)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"analyzing 4 capture files from {DATA_URL}/{TREE}" in done.stderr
        assert s3.objects(out) == expected, name
        assert f"wrote {out}/churn/modelmon/2024/03/01/12/model_quality" in done.stdout
    assert not (setup.root / "reports").exists()  # analyzer.reports_dir is not written


@pytest.mark.timeout(180)
def test_every_backend_and_file_urls_give_the_same_bytes(
    s3: S3Server, setup: Setup, expected: dict[str, bytes], tmp_path: Path
) -> None:
    bucket_with_tree(s3)
    config = load_config(setup.config)
    for name, executor in (("inprocess", InProcess()), ("local2", LocalProcesses(2))):
        out = f"s3://{BUCKET}/reports-{name}"
        code = run_analyze_once(
            config, ground_truth=GT_URL, data=DATA_URL, out=out, executor=executor
        )
        assert code == 0
        assert s3.objects(out) == expected, name
    # file:// for the capture tree goes through fsspec as well; a file:// --out is a folder
    code = run_analyze_once(
        config,
        ground_truth=f"file://{setup.truth}",
        data=f"file://{setup.capture}",
        out=f"file://{tmp_path / 'out'}",
        executor=InProcess(),
    )
    assert code == 0
    assert local_reports(tmp_path / "out") == expected


class Recording(InProcess):
    """The in-process backend, keeping what each task was given (what a scheduler ships)."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        self.items.extend(items)
        return super().map(fn, items)


def test_each_task_carries_a_files_url_not_its_content(
    s3: S3Server, setup: Setup, tmp_path: Path
) -> None:
    bucket_with_tree(s3)
    executor = Recording()
    code = run_analyze_once(
        load_config(setup.config), data=DATA_URL, out=str(tmp_path), executor=executor
    )
    assert code == 0
    assert all(isinstance(item, RemoteFile) for item in executor.items)
    keys = sorted(k for k in capture_tree())
    assert [item.url for item in executor.items] == [f"{DATA_URL}/{k}" for k in keys]
    assert [item.size for item in executor.items] == [len(capture_tree()[k]) for k in keys]


class StopsTheStore(InProcess):
    """The in-process backend that takes the store down once the listing is done."""

    def __init__(self, s3: S3Server) -> None:
        self.s3 = s3

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        self.s3.stop()
        return super().map(fn, items)


def test_a_store_that_goes_away_mid_run_is_one_line(
    s3: S3Server, setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket_with_tree(s3)
    out = tmp_path / "out"
    code = run_analyze_once(
        load_config(setup.config), data=DATA_URL, out=str(out), executor=StopsTheStore(s3)
    )
    assert code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"analyzing 4 capture files from {DATA_URL}/{TREE}"
    assert err[1].startswith(
        "modelmon analyze: stopped mid-run: Could not connect to the endpoint URL: "
    )
    assert len(err) == 2 and not out.exists()


def test_a_listing_past_max_files_stops_with_one_line(
    s3: S3Server, setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket_with_tree(s3)
    config = load_config(setup.config)
    out = str(tmp_path / "out")
    code = run_analyze_once(config, data=DATA_URL, out=out, executor=InProcess(), max_files=3)
    assert code == 2
    assert capsys.readouterr().err == (
        f"modelmon analyze: more than 3 sealed capture files in {DATA_URL}/{TREE}: "
        "analyze a shorter window (--start/--end)\n"
    )
    assert not Path(out).exists()
    assert run_analyze_once(config, data=DATA_URL, out=out, executor=InProcess(), max_files=4) == 0


def _one_line(done: Any, code: int) -> str:
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    # a progress line ("  … 2/4 files, …", every few seconds) may come first on a busy machine
    kept = [line for line in done.stderr.splitlines() if not line.startswith("  … ")]
    lines = "\n".join(kept).strip().splitlines()
    assert len(lines) == 1, done.stderr
    return str(lines[0])


def analyze(setup: Setup, *args: str, env: dict[str, str] | None = None) -> Any:
    return modelmon("analyze", "--once", "--config", str(setup.config), *args, cwd=setup.root,
                    env=env)  # fmt: skip


def test_a_bucket_that_does_not_exist_is_one_line(s3: S3Server, setup: Setup) -> None:
    bucket_with_tree(s3)
    line = _one_line(analyze(setup, "--data", "s3://no-such-bucket/datacapture"), 2)
    assert line == (
        "modelmon analyze: --data s3://no-such-bucket/datacapture: "
        "the bucket 'no-such-bucket' does not exist"
    )
    line = _one_line(analyze(setup, "--data", DATA_URL, "--out", "s3://no-reports/r"), 2)
    assert (
        line == "modelmon analyze: --out s3://no-reports/r: the bucket 'no-reports' does not exist"
    )
    line = _one_line(analyze(setup, "--ground-truth", "s3://no-labels"), 2)
    assert line == (
        "modelmon analyze: --ground-truth s3://no-labels: the bucket 'no-labels' does not exist"
    )


def test_an_empty_tree_and_a_file_are_one_line(s3: S3Server, setup: Setup) -> None:
    bucket_with_tree(s3)
    line = _one_line(analyze(setup, "--data", f"s3://{BUCKET}/elsewhere"), 4)
    assert line == (
        f"modelmon analyze: no sealed capture files (*.jsonl, *.jsonl.gz) in "
        f"s3://{BUCKET}/elsewhere/{TREE} between the beginning and now"
    )
    a_file = f"{DATA_URL}/{next(iter(capture_tree()))}"
    line = _one_line(analyze(setup, "--data", a_file), 2)
    assert line == (
        f"modelmon analyze: --data {a_file} is a file, not a folder "
        f"(give the prefix that holds {TREE}/yyyy/…)"
    )
    line = _one_line(analyze(setup, "--data", "http://example.com/x"), 2)
    assert line.startswith("modelmon analyze: --data: expected an s3://, gs:// or file:/// URL")
    line = _one_line(analyze(setup, "--out", "s3://AKIAX:secret@monitoring/reports"), 2)
    assert line.startswith("modelmon analyze: --out: no credentials in the URL: they come from")
    assert "secret" not in line


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_store_that_does_not_answer_is_one_line(setup: Setup, tmp_path: Path) -> None:
    env = {**os.environ, **aws_environment(f"http://127.0.0.1:{_closed_port()}", tmp_path)}
    line = _one_line(analyze(setup, "--data", DATA_URL, env=env), 2)
    assert line.startswith(
        f"modelmon analyze: --data {DATA_URL}: cannot read the store: "
        'Could not connect to the endpoint URL: "http://127.0.0.1:'
    )


@pytest.mark.parametrize(
    ("blocked", "says"),
    [
        ("s3fs", "needs a library that is not installed"),
        ("fsspec", "needs fsspec, which is not installed"),
    ],
)
def test_without_the_storage_extra_the_line_says_what_to_install(
    setup: Setup, blocked: str, says: str
) -> None:
    argv = ["analyze", "--config", str(setup.config), "--data", DATA_URL]
    code = (
        f"import sys; sys.modules[{blocked!r}] = None\n"
        "from modelmon.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=setup.root
    )
    line = _one_line(done, 2)
    assert line.startswith(f"modelmon analyze: {DATA_URL} {says}")
    assert line.endswith(": pip install 'modelmon[s3]'")
