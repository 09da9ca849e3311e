"""``modelmon baseline --model-quality`` from a capture folder and a ground-truth folder goes
through the executor seam: the map reads each capture file (in this process, in local
processes, on a Dask ``LocalCluster`` of 2 worker processes on 127.0.0.1), the reduce joins and
computes the metrics here in file order: the files written are byte-equal on every backend.

Multiclass is the hard case: each file's reader numbers the classes it meets, and the reduce
must give the codes one reader going through the files in order would (class names that first
appear in different files, in different workers); Python's ``hash`` of a key differs between
processes, so the keys are hashed where they are joined."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from distributed import Client

from analyzer.ingest.executor import DaskExecutor, Executor, InProcess, LocalProcesses
from modelmon.capture_record import CaptureSide, build_record
from modelmon.cli.baseline import run_baseline
from modelmon.config import load_config
from tests.dask_support import local_cluster_client

HOUR = datetime(2026, 11, 27, 7, tzinfo=UTC)
CLASSES = ["cat", "dog", "emu", "fox", "gnu"]
FILES, PER_FILE = 6, 300


def _write(root: Path) -> tuple[Path, Path]:
    """Capture files whose predicted classes first appear file by file (class ``f`` from file
    ``f`` on), one bad line each; labels for most predictions, in two hour files."""
    capture = root / "capture" / "m" / "AllTraffic" / HOUR.strftime("%Y/%m/%d/%H")
    capture.mkdir(parents=True)
    labels = []
    for f in range(FILES):
        lines = []
        for i in range(PER_FILE):
            j = f * PER_FILE + i
            guess = CLASSES[min(f, (j * 7) % (f + 1), len(CLASSES) - 1)]
            key = str(uuid.UUID(int=j))
            lines.append(
                build_record(
                    event_id=key,
                    inference_time=HOUR + timedelta(seconds=j),
                    request=CaptureSide("text/csv", "1,2", "CSV"),
                    response=CaptureSide("text/csv", f"{guess},0.{j % 10}", "CSV"),
                )
            )
            if j % 5:  # a fifth unlabelled; the rest right 3 times in 4
                truth = guess if j % 4 else CLASSES[(j * 3) % len(CLASSES)]
                labels.append(
                    orjson.dumps(
                        {
                            "groundTruthData": {"data": truth, "encoding": "CSV"},
                            "eventMetadata": {"eventId": key},
                            "eventVersion": "0",
                        }
                    )
                )
        (capture / f"{f:04d}.jsonl").write_bytes(b"".join(lines) + b"{broken\n")
    truth_root = root / "gt"
    for h, part in enumerate((labels[: len(labels) // 2], labels[len(labels) // 2 :])):
        folder = truth_root / (HOUR + timedelta(hours=h)).strftime("%Y/%m/%d/%H")
        folder.mkdir(parents=True)
        (folder / "labels.jsonl").write_bytes(b"\n".join(part) + b"\n")
    return root / "capture", truth_root


def _config(root: Path, problem_type: str, inference: str) -> Path:
    path = root / "modelmon.yaml"
    section = {"problem_type": problem_type, "inference_attribute": inference}
    path.write_text(
        "proxy: {upstream: 'http://127.0.0.1:9'}\nanalyzer:\n  model_quality: "
        + json.dumps(section)
        + "\n"
    )
    return path


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    yield from local_cluster_client()


def _baseline(root: Path, config: Path, executor: Executor, name: str) -> dict[str, bytes]:
    capture, truth = root / "capture", root / "gt"
    out = root / name
    code = run_baseline(
        load_config(config), capture, None, out,
        executor=executor, model_quality=True, ground_truth=truth,
    )  # fmt: skip
    assert code == 0
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("problem_type", "inference"),
    [("MulticlassClassification", "0"), ("BinaryClassification", None)],
)
def test_the_baseline_is_byte_equal_on_every_backend(
    tmp_path: Path,
    client: Client,
    capsys: pytest.CaptureFixture[str],
    problem_type: str,
    inference: str | None,
) -> None:
    _write(tmp_path)
    if inference is None:  # binary: the prediction from the probability (column 1)
        path = tmp_path / "modelmon.yaml"
        section: dict[str, Any] = {"problem_type": problem_type, "probability_attribute": "1"}
        path.write_text("proxy: {upstream: 'http://127.0.0.1:9'}\nanalyzer:\n  model_quality: "
                        + json.dumps(section) + "\n")  # fmt: skip
        for label_file in (tmp_path / "gt").rglob("*.jsonl"):  # 0/1 labels for binary
            body = label_file.read_bytes()
            for k, name in enumerate(CLASSES):
                body = body.replace(f'"{name}"'.encode(), f'"{k % 2}"'.encode())
            label_file.write_bytes(body)
        config = path
    else:
        config = _config(tmp_path, problem_type, inference)
    here = _baseline(tmp_path, config, InProcess(), "in-process")
    summary = capsys.readouterr().out
    assert f"{FILES:,} lines that could not be used" in summary  # one bad line a file
    local = _baseline(tmp_path, config, LocalProcesses(2), "local")
    dask = _baseline(tmp_path, config, DaskExecutor(client), "dask")
    assert here.keys() == {"constraints.json", "statistics.json"}
    assert local == here and dask == here
    stats = orjson.loads(here["statistics.json"])
    if problem_type == "MulticlassClassification":
        matrix = stats["multiclass_classification_metrics"]["confusion_matrix"]
        assert sorted(matrix) == CLASSES  # every class, named, from every file
    else:
        assert stats["binary_classification_metrics"]["auc"]["value"] > 0


class _Recording(LocalProcesses):
    """Local processes that remember what each map was given."""

    def __init__(self) -> None:
        super().__init__(2)
        self.items: list[Any] = []

    def map(self, fn: Any, items: Any) -> Any:
        self.items.extend(items)
        return super().map(fn, items)


def test_the_ground_truth_files_are_read_on_the_map_beside_the_capture_files(
    tmp_path: Path,
) -> None:
    """Both kinds of file are tasks of the one map (read in parallel, not the labels after the
    map in this process), and the result is the in-process one."""
    _write(tmp_path)
    config = _config(tmp_path, "MulticlassClassification", "0")
    recording = _Recording()
    local = _baseline(tmp_path, config, recording, "local")
    kinds = [kind for kind, _ in recording.items]
    assert kinds == ["predictions"] * FILES + ["labels"] * 2
    assert [path.name for _, path in recording.items][-2:] == ["labels.jsonl", "labels.jsonl"]
    assert local == _baseline(tmp_path, config, InProcess(), "in-process")
