"""Seeded synthetic data for the analyzer benchmarks: 20 numeric + 5 categorical features.

Writes the same rows as capture files (CSV or JSON payloads, SageMaker's record format) and as
one CSV with a header, in chunks, so that generating a million rows needs little memory.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson

N_NUMERIC, N_CATEGORICAL = 20, 5
NUMERIC = [f"n{i}" for i in range(N_NUMERIC)]
CATEGORICAL = [f"c{i}" for i in range(N_CATEGORICAL)]
COLUMNS = NUMERIC + CATEGORICAL
DOMAINS = [[f"v{j}" for j in range(size)] for size in (3, 5, 8, 12, 50)]
RECORDS_PER_FILE = 50_000
CHUNK = 50_000
START = datetime(2024, 1, 1, tzinfo=UTC)


def chunks(n: int, seed: int) -> Iterator[tuple[list[list[str]], list[list[Any]], list[str]]]:
    """Rows as text (for CSV), as JSON values, and the model's score, ``CHUNK`` at a time."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n:
        m = min(CHUNK, n - done)
        columns: list[np.ndarray] = []
        for i in range(N_NUMERIC):
            if i % 4 == 0:
                columns.append(rng.integers(0, 100, m))
            elif i % 4 == 1:
                columns.append(np.round(rng.lognormal(10, 0.5, m), 2))
            else:
                columns.append(np.round(rng.normal(i, 1 + i / 10, m), 4))
        for domain in DOMAINS:
            weights = np.linspace(1, 2, len(domain))
            columns.append(rng.choice(domain, size=m, p=weights / weights.sum()))
        text = [col.astype(str).tolist() for col in columns]
        values = [col.tolist() for col in columns]
        scores = np.round(rng.random(m), 6).astype(str).tolist()
        yield (
            [list(r) for r in zip(*text, strict=True)],
            [list(r) for r in zip(*values, strict=True)],
            scores,
        )
        done += m


def write_csv(path: Path, n: int, seed: int) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for text, _, _ in chunks(n, seed):
            writer.writerows(text)


def _record(i: int, request: str, response: str, encoding: str) -> bytes:
    moment = START + timedelta(milliseconds=i)
    content_type = "text/csv" if encoding == "CSV" else "application/json"
    return orjson.dumps(
        {
            "captureData": {
                "endpointInput": {
                    "observedContentType": content_type,
                    "mode": "INPUT",
                    "data": request,
                    "encoding": encoding,
                },
                "endpointOutput": {
                    "observedContentType": content_type,
                    "mode": "OUTPUT",
                    "data": response,
                    "encoding": encoding,
                },
            },
            "eventMetadata": {
                "eventId": f"00000000-0000-0000-0000-{i:012d}",
                "inferenceTime": moment.strftime("%Y-%m-%dT%H:%M:%S.")
                + f"{moment.microsecond // 1000:03d}Z",
            },
            "eventVersion": "0",
        },
        option=orjson.OPT_APPEND_NEWLINE,
    )


def write_capture(root: Path, n: int, seed: int, payload: str) -> None:
    """``n`` records, one row each, under ``root/bench/AllTraffic/yyyy/mm/dd/hh/``."""
    base = root / "bench" / "AllTraffic" / f"{START:%Y/%m/%d/%H}"
    if root.exists():
        shutil.rmtree(root)
    base.mkdir(parents=True)
    i = 0
    lines: list[bytes] = []

    def flush() -> None:
        (base / f"{len(list(base.iterdir())):05d}-{seed}.jsonl").write_bytes(b"".join(lines))
        lines.clear()

    for text, values, scores in chunks(n, seed):
        for row_text, row_values, score in zip(text, values, scores, strict=True):
            if payload == "csv":
                lines.append(_record(i, ",".join(row_text), score, "CSV"))
            else:
                body = orjson.dumps({"instances": [dict(zip(COLUMNS, row_values, strict=True))]})
                answer = orjson.dumps({"predictions": [float(score)]})
                lines.append(_record(i, body.decode(), answer.decode(), "JSON"))
            i += 1
            if len(lines) >= RECORDS_PER_FILE:
                flush()
    if lines:
        flush()


def config_yaml(workdir: Path, capture_dir: Path, payload: str, arrow: str | None = None) -> str:
    """A modelmon config for the bench endpoint reading ``capture_dir`` (``arrow``: the
    ``analyzer.arrow`` setting, default when None)."""
    fmt = "csv" if payload == "csv" else "json"
    columns = f"[{', '.join(COLUMNS)}]" if payload == "csv" else "[]"
    output = "{format: csv, columns: [score]}" if payload == "csv" else "{format: json}"
    return (
        "endpoint: {name: bench, variant: AllTraffic}\n"
        "proxy: {upstream: 'http://127.0.0.1:9'}\n"
        f"capture: {{dir: '{capture_dir}'}}\n"
        "analyzer:\n"
        f"  reports_dir: '{workdir / 'reports'}'\n"
        f"  baseline: {{statistics: '{workdir / 'baseline' / 'statistics.json'}', "
        f"constraints: '{workdir / 'baseline' / 'constraints.json'}'}}\n"
        f"  payload: {{input: {{format: {fmt}, columns: {columns}}}, output: {output}}}\n"
        + (f"  arrow: '{arrow}'\n" if arrow else "")
    )
