"""``modelmon baseline``: statistics.json and constraints.json from training data.

Reads a CSV (with a header, or headerless: ``_c0 … _cN`` as SageMaker names them, or the
config's ``payload.input.columns``), JSON Lines, or a folder of capture files (decoded with the
config's payload codecs), in bounded chunks; ``--data`` and ``--out`` may be storage URLs
(``s3://``, ``gs://``, ``file://``: the same bytes read and written through fsspec); shows
progress on stderr for large inputs; writes both files in SageMaker's schema and prints a
short summary. Exit 0 on success, 2 with a
message naming the file when the input cannot be used.
"""

from __future__ import annotations

import re
import sys
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

from analyzer.decoding.column_mapping import baseline_name_warnings, positional_note
from analyzer.ingest.capture_files import DEFAULT_MAX_LINE_BYTES
from analyzer.ingest.executor import Executor
from analyzer.ingest.parallel import profile_capture_files
from analyzer.ingest.remote_files import CaptureFile, NotATree, RemoteFolder, remote_input
from analyzer.ingest.table_readers import (
    TOO_LARGE,
    InputError,
    capture_files_under,
    csv_chunks,
    infer_format,
    jsonl_chunks,
)
from analyzer.monitors.data_quality.baseline_advice import small_baseline_warning
from analyzer.monitors.data_quality.drift import kll_epsilon
from analyzer.monitors.data_quality.profile import DatasetProfile
from analyzer.monitors.data_quality.sketches import DEFAULT_KLL_K
from analyzer.monitors.data_quality.statistics_format import statistics_json, suggest_constraints
from analyzer.store.report_files import write_json
from analyzer.store.stored_files import one_line
from modelmon.config import ModelmonConfig, PayloadConfig
from modelmon.storage_url import StorageUnavailable, storage_errors

__all__ = ["Source", "run_baseline", "source_of", "write_documents"]

# What --data names: a local file or folder, an object behind a URL, or the files under one.
Source = CaptureFile | RemoteFolder

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_OUTPUT = re.compile(r"prediction(_\d+)?")  # the names of unnamed output columns


class _Progress:
    """A line on stderr every ``every_s`` seconds: rows so far and the rate."""

    def __init__(self, label: str, every_s: float) -> None:
        self.label = label
        self.every_s = every_s
        self.started = self.last = time.monotonic()

    def tick(self, rows: int) -> None:
        now = time.monotonic()
        if now - self.last < self.every_s:
            return
        self.last = now
        rate = rows / max(now - self.started, 1e-9)
        print(f"  … {self.label}: {rows:,} rows ({rate:,.0f} rows/s)", file=sys.stderr, flush=True)


def source_of(data: Path | str) -> Source:
    """``--data`` as a :data:`Source`; :class:`InputError` (one line) when it cannot be read."""
    if isinstance(data, Path):
        if not data.exists():
            raise InputError(f"{data}: no such file or folder")
        if data.is_file() and data.stat().st_size == 0:
            raise InputError(f"{data}: the file is empty")
        return data
    try:
        source = remote_input(data)
    except FileNotFoundError:
        raise InputError(f"{data}: no such object or prefix") from None
    except (NotATree, StorageUnavailable) as exc:
        raise InputError(str(exc)) from exc
    if not isinstance(source, RemoteFolder) and source.size == 0:
        raise InputError(f"{data}: the file is empty")
    return source


def write_documents(targets: list[tuple[Path | str, Any]]) -> str | None:
    """Each document to its path or URL, in order; the first failure as one line (None: all
    written)."""
    errors: tuple[type[BaseException], ...] = (*storage_errors(), StorageUnavailable)
    for target, doc in targets:
        try:
            write_json(target, doc)
        except errors as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else one_line(exc)
            return f"cannot write {target}: {reason}"
    return None


def _profile_captures(
    config: ModelmonConfig | None, data: Source, progress: _Progress, executor: Executor | None
) -> tuple[DatasetProfile, Counter[str]]:
    """Capture files: each profiled on ``executor`` (the map of ``analyze --once``), merged in
    file order."""
    files = capture_files_under(data)
    if not files:
        raise InputError(f"{data}: no capture files (*.jsonl, *.jsonl.gz) found")
    analyzer = config.analyzer if config is not None else None
    try:
        seen = profile_capture_files(
            files,
            analyzer.payload if analyzer is not None else PayloadConfig(),
            analyzer.kll_k if analyzer is not None else DEFAULT_KLL_K,
            on_file=lambda total: progress.tick(total.profile.item_count),
            max_line_bytes=analyzer.max_line_bytes
            if analyzer is not None
            else DEFAULT_MAX_LINE_BYTES,
            arrow=analyzer.arrow if analyzer is not None else "csv",
            executor=executor,
        )
    except (OSError, EOFError, zlib.error) as exc:  # zlib: a .gz that is not gzip
        raise InputError(f"{data}: cannot read: {exc}") from exc
    return seen.profile, seen.bad


def _profile(
    config: ModelmonConfig | None,
    data: Source,
    fmt: str,
    header: bool,
    progress: _Progress,
    executor: Executor | None = None,
) -> tuple[DatasetProfile, Counter[str]]:
    k = config.analyzer.kll_k if config is not None else DEFAULT_KLL_K
    payload = config.analyzer.payload if config is not None else PayloadConfig()
    limit = config.analyzer.max_line_bytes if config is not None else DEFAULT_MAX_LINE_BYTES
    profile = DatasetProfile(k)
    bad: Counter[str] = Counter()
    if fmt == "capture":
        profile, bad = _profile_captures(config, data, progress, executor)
        if profile.item_count == 0:
            reasons = ", ".join(f"{r}: {n}" for r, n in bad.most_common()) or "no records"
            raise InputError(f"{data}: no capture record could be decoded ({reasons})")
        return profile, bad
    names = payload.input.columns
    if isinstance(data, RemoteFolder):
        raise InputError(f"{data}: a folder holds capture files, not a {fmt} table")
    chunks = (
        csv_chunks(data, header, names, max_line_bytes=limit, skipped=bad)
        if fmt == "csv"
        else jsonl_chunks(data, names, max_line_bytes=limit, skipped=bad)
    )
    for columns, n_rows, field_counts in chunks:
        profile.update_columns(columns, n_rows, field_counts)
        progress.tick(profile.item_count)
    return profile, bad


def _targets(
    config: ModelmonConfig | None, out: Path | str | None
) -> tuple[Path | str, Path | str]:
    if isinstance(out, str):
        return f"{out}/statistics.json", f"{out}/constraints.json"
    if out is not None:
        return out / "statistics.json", out / "constraints.json"
    if config is not None:
        return config.analyzer.baseline.statistics, config.analyzer.baseline.constraints
    return Path("baseline") / "statistics.json", Path("baseline") / "constraints.json"


def _summary(
    data: Source,
    fmt: str,
    statistics: dict[str, Any],
    constraints: dict[str, Any],
    bad: Counter[str],
    paths: tuple[Path | str, Path | str],
) -> str:
    features = constraints["features"]
    lines = [
        f"Baseline from {data} ({fmt}): {statistics['dataset']['item_count']:,} rows, "
        f"{len(features)} features"
    ]
    if bad:
        reasons = ", ".join(f"{r}: {n}" for r, n in bad.most_common())
        lines.append(f"  skipped {sum(bad.values()):,} records that did not decode ({reasons})")
        if bad[TOO_LARGE]:
            lines.append(
                f"  ({TOO_LARGE}: lines longer than analyzer.max_line_bytes, skipped unread)"
            )
    width = max((len(f["name"]) for f in features), default=4)
    for feature in features:
        notes = [f"completeness {feature['completeness']:.2f}"]
        if feature.get("num_constraints", {}).get("is_non_negative"):
            notes.append("non-negative")
        domains = feature.get("string_constraints", {}).get("domains")
        if domains is not None:
            notes.append(f"domain of {len(domains)} values")
        lines.append(
            f"  {feature['name']:<{width}}  {feature['inferred_type']:<10}  " + ", ".join(notes)
        )
    n_types = len(features)
    n_nonneg = sum(1 for f in features if f.get("num_constraints", {}).get("is_non_negative"))
    n_domains = sum(1 for f in features if "string_constraints" in f)
    lines.append(
        f"Constraints suggested: {n_types} types, {n_types} completeness, "
        f"{n_nonneg} non-negative, {n_domains} domains"
    )
    lines.append(f"Wrote {paths[0]} and {paths[1]}")
    return "\n".join(lines)


def run_baseline(
    config: ModelmonConfig | None,
    data: Path | str,
    fmt: str | None,
    out: Path | str | None,
    header: bool = True,
    *,
    progress_every_s: float = 2.0,
    executor: Executor | None = None,
    model_quality: bool = False,
    ground_truth: Path | str | None = None,
) -> int:
    """Profile ``data`` and write statistics.json and constraints.json; returns the exit code.

    ``data``, ``out`` and ``ground_truth`` are paths or storage URLs (a ``str``);
    ``executor``: where a capture folder's files are profiled (default: local processes);
    ``model_quality``: the model-quality baseline instead (``model_quality_baseline``).
    """
    if model_quality or ground_truth is not None:
        from modelmon.cli.model_quality_baseline import run_model_quality_baseline

        progress = _Progress(str(data), progress_every_s)
        return run_model_quality_baseline(
            config, data, fmt, ground_truth, out, progress, executor=executor
        )
    try:
        source = source_of(data)
        limit = config.analyzer.max_line_bytes if config is not None else DEFAULT_MAX_LINE_BYTES
        fmt = fmt or infer_format(source, limit)
        progress = _Progress(str(data), progress_every_s)
        profile, bad = _profile(config, source, fmt, header, progress, executor)
    except InputError as exc:
        print(f"modelmon baseline: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with_predictions = fmt == "capture"
    statistics = statistics_json(profile, include_predictions=with_predictions)
    constraints = suggest_constraints(profile, include_predictions=with_predictions)
    paths = _targets(config, out)
    failed = write_documents([(paths[0], statistics), (paths[1], constraints)])
    if failed is not None:
        print(f"modelmon baseline: {failed}", file=sys.stderr)
        return EXIT_FAILED
    print(_summary(source, fmt, statistics, constraints, bad, paths))
    payload = config.analyzer.payload if config is not None else PayloadConfig()
    names = [f["name"] for f in constraints["features"]]
    outputs = set(payload.output.columns) | {n for n in names if _OUTPUT.fullmatch(n)}
    inputs = [n for n in names if n not in outputs]
    note = positional_note(inputs, payload.input.columns, payload.input.format)
    if note is not None and fmt != "capture":
        print(f"modelmon baseline: note: {note}", file=sys.stderr)
    for warning in _warnings(config, profile, constraints, fmt):
        print(f"modelmon baseline: warning: {warning}", file=sys.stderr)
    return EXIT_OK


def _warnings(
    config: ModelmonConfig | None, profile: DatasetProfile, constraints: dict[str, Any], fmt: str
) -> list[str]:
    """Names the captured data will not match; a baseline too small for its threshold."""
    out: list[str] = []
    payload = config.analyzer.payload if config is not None else PayloadConfig()
    names = [f["name"] for f in constraints["features"]]
    if fmt != "capture":
        out += baseline_name_warnings(names, payload.input.columns, payload.input.format)
    distribution = constraints.get("monitoring_config", {}).get("distribution_constraints", {})
    threshold = float(distribution.get("comparison_threshold", 0.1))
    alpha = config.analyzer.false_alarm_rate if config is not None else 0.01
    verdict = config.analyzer.drift_verdict if config is not None else "significant"
    sketches = [f.kll for f in profile.features.values() if f.kll is not None]
    eps = max((kll_epsilon(s.k, s.is_estimation_mode()) for s in sketches), default=0.0)
    small = small_baseline_warning(profile.item_count, len(names), threshold, alpha, verdict, eps)
    if small is not None:
        out.append(small)
    return out
