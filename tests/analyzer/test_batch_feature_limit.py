"""``modelmon analyze --once`` keeps to ``analyzer.max_features`` as the service does (issue 9,
finding 2): client-chosen keys beyond the cap are tallied, never profiled, in every file, in
every worker process and in the merge; the baseline's features are always tracked."""

from __future__ import annotations

import random
import string
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import yaml

from analyzer.ingest.parallel import profile_capture_files
from analyzer.monitors.data_quality.cardinality import FeatureLimit
from analyzer.monitors.data_quality.profile import profile_rows
from analyzer.monitors.data_quality.statistics_format import statistics_json, suggest_constraints
from modelmon.capture_record import CaptureSide, build_record
from modelmon.config import PayloadConfig

HOUR = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)
BASE = ["age", "state"]
CAP = 25
FILES, PER_FILE, KEYS = 4, 300, 5  # 6,000 random names


def _capture(tmp: Path, seed: int) -> list[Path]:
    rng = random.Random(seed)
    folder = tmp / "capture" / "churn" / "AllTraffic" / HOUR.strftime("%Y/%m/%d/%H")
    folder.mkdir(parents=True)
    paths = []
    for f in range(FILES):
        lines = []
        for i in range(PER_FILE):
            doc: dict[str, Any] = {"age": 20 + i % 50, "state": rng.choice(["CA", "NY"])}
            doc.update({"".join(rng.choices(string.ascii_lowercase, k=12)): i for _ in range(KEYS)})
            lines.append(
                build_record(
                    event_id=str(uuid.uuid4()),
                    inference_time=HOUR + timedelta(seconds=f * 600 + i),
                    request=CaptureSide("application/json", orjson.dumps(doc).decode(), "JSON"),
                    response=CaptureSide("text/csv", "0.5", "CSV"),
                )
            )
        path = folder / f"{f:02d}-00-000-{uuid.uuid4()}.jsonl"
        path.write_bytes(b"".join(lines))
        paths.append(path)
    return paths


def test_every_worker_and_the_merge_keep_to_the_limit(tmp_path: Path) -> None:
    files = _capture(tmp_path, 1)
    payload = PayloadConfig.model_validate({"input": {"format": "json"}})
    limit = FeatureLimit(CAP, frozenset(BASE))
    seen = profile_capture_files(files, payload, 2048, workers=2, limit=limit)
    assert seen.profile.item_count == FILES * PER_FILE
    assert set(BASE) <= set(seen.profile.features)
    assert len(seen.profile.features) == len(BASE) + CAP
    untracked = seen.profile.untracked
    assert untracked.values == FILES * PER_FILE * KEYS - CAP
    assert abs(untracked.names - (FILES * PER_FILE * KEYS - CAP)) < 0.05 * FILES * PER_FILE * KEYS


def test_analyze_once_caps_client_chosen_keys(tmp_path: Path) -> None:
    _capture(tmp_path, 2)
    table = {"age": [str(20 + i % 50) for i in range(500)], "state": ["CA", "NY"] * 250}
    profile = profile_rows(table)
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "statistics.json").write_bytes(orjson.dumps(statistics_json(profile)))
    (tmp_path / "base" / "constraints.json").write_bytes(orjson.dumps(suggest_constraints(profile)))
    config = {
        "endpoint": {"name": "churn", "variant": "AllTraffic"},
        "proxy": {"upstream": "http://127.0.0.1:9"},
        "capture": {"dir": "capture"},
        "analyzer": {
            "reports_dir": "reports",
            "max_features": CAP,
            "baseline": {
                "statistics": "base/statistics.json",
                "constraints": "base/constraints.json",
            },
            "payload": {"input": {"format": "json"}, "output": {"format": "csv"}},
        },
    }
    (tmp_path / "modelmon.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "modelmon", "analyze", "--once", "--config", "modelmon.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    [stats_path] = (tmp_path / "reports").rglob("statistics.json")
    stats = orjson.loads(stats_path.read_bytes())
    names = {f["name"] for f in stats["features"]}
    assert set(BASE) <= names and len(names - set(BASE)) <= CAP
    assert stats["dataset"]["item_count"] == FILES * PER_FILE
    violations = orjson.loads((stats_path.parent / "constraint_violations.json").read_bytes())[
        "violations"
    ]
    more = [v for v in violations if v["feature_name"] == "(more extra columns)"]
    assert len(more) == 1 and "beyond analyzer.max_features" in more[0]["description"]
    assert len(violations) < 50
