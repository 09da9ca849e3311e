"""``modelmon baseline --data URL --out URL`` and baseline files behind URLs in
``analyze --once``, on a real S3 API (moto's server on 127.0.0.1, tests/s3_support.py).

The same training data read from a bucket gives the same bytes in the bucket as the local run
gives on disk: a CSV, a gzipped JSON Lines table, a capture tree (data quality) and a capture
tree joined to a ground-truth folder (model quality). ``analyze --once`` with its baselines on
``s3://`` writes the reports it writes with local copies. A prefix with nothing under it, a
bucket that does not exist and a store that does not answer are one line each.
"""

from __future__ import annotations

import gzip
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from analyzer.ingest.batch import run_analyze_once
from analyzer.ingest.executor import InProcess
from modelmon.cli.baseline import run_baseline
from modelmon.config import ModelmonConfig, load_config
from tests.analyzer.test_analyze_urls import (
    BUCKET,
    DATA_URL,
    GT_URL,
    capture_tree,
    ground_truth,
    local_reports,
    modelmon,
    upload,
    write_local,
)
from tests.s3_support import S3Server, aws_environment
from tests.shared_data import DATA

NAMES = ("statistics.json", "constraints.json")
TRAIN_URL = f"s3://{BUCKET}/training"


# Fewer rows than the KLL sketches' k (2048): their bytes are exact. Past k, a KLL sketch
# samples with datasketches' own random source, so two runs of the same table differ within the
# sketch's stated error (from local files as from a bucket).
ROWS = 2000


@dataclass(frozen=True)
class Local:
    root: Path
    config: Path
    capture: Path
    truth: Path
    csv: Path
    jsonl: Path


def _csv(path: Path) -> Path:
    """The first ``ROWS`` rows of baseline.csv (label and score included)."""
    lines = (DATA / "baseline.csv").read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[: ROWS + 1]))
    return path


def _jsonl_gz(path: Path) -> Path:
    """baseline.csv as gzipped JSON Lines (numbers as numbers), for the JSONL reader."""
    header, *rows = (DATA / "baseline.csv").read_text().splitlines()
    names = header.split(",")
    lines = []
    for row in rows[:ROWS]:
        values: list[Any] = []
        for value in row.split(","):
            try:
                values.append(float(value))
            except ValueError:
                values.append(value)
        lines.append(orjson.dumps(dict(zip(names, values, strict=True))) + b"\n")
    path.write_bytes(gzip.compress(b"".join(lines), mtime=0))
    return path


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Local:
    """The inputs on disk and a config whose model-quality attributes fit both the capture
    tree (``score`` the output column, ``label`` the ground truth) and baseline.csv."""
    root = tmp_path_factory.mktemp("baseline-urls")
    capture = write_local(root / "capture", capture_tree())
    truth = write_local(root / "gt", ground_truth())
    doc = {
        "endpoint": {"name": "churn", "variant": "AllTraffic"},
        "proxy": {"upstream": "http://127.0.0.1:9"},
        "analyzer": {
            "baseline": {"statistics": "dq/statistics.json", "constraints": "dq/constraints.json"},
            "payload": {"output": {"format": "csv", "columns": ["score"]}},
            "model_quality": {
                "problem_type": "BinaryClassification",
                "probability_attribute": "score",
                "ground_truth_attribute": "label",
                "baseline": {
                    "statistics": "mq/statistics.json",
                    "constraints": "mq/constraints.json",
                },
            },
        },
    }
    config = root / "modelmon.yaml"
    config.write_text(yaml.safe_dump(doc))
    return Local(
        root, config, capture, truth, _csv(root / "train.csv"), _jsonl_gz(root / "train.jsonl.gz")
    )


def _files(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in NAMES}


def _bucket(s3: S3Server, local: Local) -> None:
    s3.make_bucket(BUCKET)
    upload(s3, DATA_URL, capture_tree())
    upload(s3, GT_URL, ground_truth())
    s3.put(f"{BUCKET}/training/train.csv", local.csv.read_bytes())
    s3.put(f"{BUCKET}/training/train.jsonl.gz", local.jsonl.read_bytes())


def _baseline(local: Local, *args: str) -> Any:
    done = modelmon("baseline", "--config", str(local.config), *args, cwd=local.root)
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.timeout(240)  # four CLI runs, each a fresh interpreter
def test_capture_trees_from_a_bucket_give_the_local_bytes_in_the_bucket(
    s3: S3Server, local: Local
) -> None:
    _bucket(s3, local)
    _baseline(local, "--data", str(local.capture), "--out", str(local.root / "dq-capture"))
    done = _baseline(local, "--data", DATA_URL, "--out", f"s3://{BUCKET}/dq-capture")
    assert s3.objects(f"s3://{BUCKET}/dq-capture") == _files(local.root / "dq-capture")
    assert f"Baseline from {DATA_URL} (capture): 64 rows" in done.stdout
    assert f"Wrote s3://{BUCKET}/dq-capture/statistics.json and " in done.stdout

    mq = ("--model-quality", "--ground-truth")
    _baseline(local, "--data", str(local.capture), *mq, str(local.truth), "--out",
              str(local.root / "mq-capture"))  # fmt: skip
    done = _baseline(local, "--data", DATA_URL, *mq, GT_URL, "--out", f"s3://{BUCKET}/mq-capture")
    assert s3.objects(f"s3://{BUCKET}/mq-capture") == _files(local.root / "mq-capture")
    assert "join: 44 matched" in done.stdout


def _run(local: Local, data: Path | str, out: Path | str, *, mq: bool = False) -> int:
    config = load_config(local.config)
    return run_baseline(config, data, None, out, executor=InProcess(), model_quality=mq)


def test_tables_from_a_bucket_give_the_local_bytes(
    s3: S3Server, local: Local, tmp_path: Path
) -> None:
    _bucket(s3, local)
    for name, mq in (("train.csv", False), ("train.csv", True), ("train.jsonl.gz", False)):
        here = local.csv if name.endswith(".csv") else local.jsonl
        kind = f"{name}-{'mq' if mq else 'dq'}"
        assert _run(local, here, tmp_path / kind, mq=mq) == 0
        assert _run(local, f"{TRAIN_URL}/{name}", f"s3://{BUCKET}/{kind}", mq=mq) == 0
        assert s3.objects(f"s3://{BUCKET}/{kind}") == _files(tmp_path / kind), kind
        # file:// goes through fsspec as well (a temporary name, then moved into place)
        assert _run(local, f"file://{here}", f"file://{tmp_path / 'file' / kind}", mq=mq) == 0
        assert _files(tmp_path / "file" / kind) == _files(tmp_path / kind), kind
        assert not [p for p in (tmp_path / "file" / kind).iterdir() if p.name.startswith(".")]


def test_without_out_the_files_go_to_the_configs_urls(
    s3: S3Server, local: Local, tmp_path: Path
) -> None:
    _bucket(s3, local)
    config = load_config(local.config)
    urls = {name.removesuffix(".json"): f"s3://{BUCKET}/b/{name}" for name in NAMES}
    remote = config.model_copy(
        update={
            "analyzer": config.analyzer.model_copy(
                update={"baseline": config.analyzer.baseline.model_validate(urls)}
            )
        }
    )
    assert run_baseline(remote, local.csv, None, None, executor=InProcess()) == 0
    assert run_baseline(config, local.csv, None, tmp_path, executor=InProcess()) == 0
    assert s3.objects(f"s3://{BUCKET}/b") == _files(tmp_path)


def _with_baselines(config: ModelmonConfig, dq: str, mq: str) -> ModelmonConfig:
    """``config`` with both baselines' files under the given prefixes."""
    quality = config.analyzer.model_quality
    assert quality is not None

    def files(prefix: str) -> Any:
        urls = {
            "statistics": f"{prefix}/statistics.json",
            "constraints": f"{prefix}/constraints.json",
        }
        return config.analyzer.baseline.model_validate(urls)

    quality = quality.model_copy(update={"baseline": files(mq)})
    analyzer = config.analyzer.model_copy(update={"baseline": files(dq), "model_quality": quality})
    return config.model_copy(update={"analyzer": analyzer})


@pytest.mark.timeout(180)
def test_analyze_once_with_baselines_in_a_bucket_writes_the_local_reports(
    s3: S3Server, local: Local, tmp_path: Path
) -> None:
    _bucket(s3, local)
    config = load_config(local.config)
    made = tmp_path / "made"
    assert _run(local, local.capture, made / "dq") == 0
    assert run_baseline(config, local.capture, None, made / "mq", executor=InProcess(),
                        ground_truth=local.truth) == 0  # fmt: skip
    for kind in ("dq", "mq"):
        for name, body in _files(made / kind).items():
            s3.put(f"{BUCKET}/baselines/{kind}/{name}", body)
    on_disk = _with_baselines(config, str(made / "dq"), str(made / "mq"))
    in_bucket = _with_baselines(
        config, f"s3://{BUCKET}/baselines/dq", f"s3://{BUCKET}/baselines/mq"
    )
    for name, which in (("disk", on_disk), ("bucket", in_bucket)):
        code = run_analyze_once(which, data=local.capture, ground_truth=local.truth,
                                out=str(tmp_path / name), executor=InProcess())  # fmt: skip
        assert code == 0, name
    expected = local_reports(tmp_path / "disk")
    assert len(expected) == 7  # data quality's three, model quality's four
    assert local_reports(tmp_path / "bucket") == expected


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def nowhere(tmp_path: Path) -> Iterator[dict[str, str]]:
    yield {**os.environ, **aws_environment(f"http://127.0.0.1:{_closed_port()}", tmp_path)}


def _one_line(done: Any, code: int) -> str:
    assert done.returncode == code, (done.stdout, done.stderr)
    # a progress line ("  … URL: N rows (R rows/s)", every 2 s) may come first on a busy machine
    kept = [line for line in done.stderr.splitlines() if not line.startswith("  … ")]
    lines = "\n".join(kept).strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return str(lines[0])


def test_what_cannot_be_read_or_written_is_one_line(
    s3: S3Server, local: Local, nowhere: dict[str, str]
) -> None:
    _bucket(s3, local)
    args = ("baseline", "--config", str(local.config), "--data")
    done = modelmon(*args, f"s3://{BUCKET}/nothing-here", cwd=local.root)
    assert (
        _one_line(done, 2)
        == f"modelmon baseline: s3://{BUCKET}/nothing-here: no such object or prefix"
    )
    done = modelmon(*args, f"{TRAIN_URL}/train.csv", "--out", "s3://no-bucket/b", cwd=local.root)
    assert _one_line(done, 1).startswith(
        "modelmon baseline: cannot write s3://no-bucket/b/statistics.json: "
    )
    done = modelmon(*args, "http://example.com/t.csv", cwd=local.root)
    assert done.returncode == 2 and "expected an s3://, gs:// or file:/// URL" in done.stderr
    done = modelmon(*args, f"{TRAIN_URL}/train.csv", cwd=local.root, env=nowhere)
    assert _one_line(done, 2).startswith(
        f"modelmon baseline: {TRAIN_URL}/train.csv: cannot read the store: "
        "Could not connect to the endpoint URL: "
    )


def test_analyze_once_without_its_baseline_object_is_one_line(
    s3: S3Server, local: Local, capsys: pytest.CaptureFixture[str]
) -> None:
    _bucket(s3, local)
    prefix = f"s3://{BUCKET}/no-baseline"
    config = _with_baselines(load_config(local.config), prefix, prefix)
    code = run_analyze_once(config, data=local.capture, executor=InProcess())
    assert code == 3
    assert capsys.readouterr().err == (
        f"modelmon analyze: no baseline statistics: {prefix}/statistics.json does not exist; "
        "create it with `modelmon baseline --config CONFIG --data TRAINING_DATA`\n"
    )
