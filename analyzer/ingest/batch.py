"""``modelmon analyze --once``: one stateless monitoring pass over the sealed capture files.

It needs no database: it reads the baseline and every sealed capture file of the window
(``*.jsonl`` and ``*.jsonl.gz``, ours or SageMaker's), profiles them on all cores, runs
the checks, writes SageMaker's three report files and prints a summary.

The window: by default every sealed file on disk; ``--start``/``--end`` (ISO-8601, UTC when
no offset is given) select the hour folders that overlap ``[start, end)``. The report folder
``{reports_dir}/{endpoint}/{schedule_name}/yyyy/mm/dd/hh/`` is the hour of the window's end:
``--end`` when given, else the latest record's ``inferenceTime`` rounded up to the next full
hour (the hour at which an hourly SageMaker schedule would have covered it).

Model quality: with ``--ground-truth DIR`` (or ``analyzer.model_quality.ground_truth.dir``)
the window's predictions are joined in memory with the folder's labels and evaluated against
the model-quality baseline; its reports go to ``…/hh/model_quality/``
(``batch_model_quality``). Without a data-quality baseline on disk, such a pass is model
quality alone.

Object storage: ``--data`` (the capture tree's root, ``capture.dir`` by default) and
``--ground-truth`` may be fsspec URLs (``s3://``, ``gs://``, ``file://``) of SageMaker's layout;
the listing is :class:`~analyzer.ingest.remote_files.RemoteCaptureTree`'s and each task of the
map carries a file's URL (the worker opens it, no content goes through the scheduler).
``--out`` (``analyzer.reports_dir`` by default) may be a URL too: the same report bytes go to
``{out}/{endpoint}/{schedule}/yyyy/mm/dd/hh/``. Credentials come from the provider's usual
places only (:mod:`modelmon.storage_url`).

Exit codes: 0 done (violations or not), 2 bad config or arguments (also: a store that cannot
be read or written, its library not installed), 3 no usable baseline, 4 no data in the window.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from analyzer.ingest.remote_files import DEFAULT_MAX_FILES, CaptureFile
from analyzer.store.report_files import ReportFolder, report_folder, write_reports
from analyzer.store.stored_files import StoredFile, StoreUnreadable
from modelmon.config import ModelmonConfig
from modelmon.config_types import storage_url
from modelmon.storage_url import StorageUnavailable, storage_errors

if TYPE_CHECKING:
    from analyzer.ingest.executor import Executor
    from analyzer.ingest.parallel import FilesProfile
    from analyzer.monitors.data_quality.cardinality import FeatureLimit

__all__ = ["EXIT_NO_BASELINE", "EXIT_NO_DATA", "parse_moment", "run_analyze_once"]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_NO_BASELINE = 3
EXIT_NO_DATA = 4
PROGRESS_EVERY_S = 2.0

log = logging.getLogger("modelmon.analyze")


class _Stop(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse_moment(value: str | None, name: str) -> datetime | None:
    """An ISO-8601 time (UTC when it has no offset); raises ValueError naming ``--{name}``."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--{name}: not an ISO-8601 time: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _moment(value: str | datetime | None, name: str) -> datetime | None:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    try:
        return parse_moment(value, name)
    except ValueError as exc:
        raise _Stop(EXIT_USAGE, str(exc)) from exc


def _load_json(path: Path | str, what: str) -> dict[str, Any]:
    """A baseline file (a path or a storage URL), as ``analyzer.baseline.{what}`` names it."""
    hint = "create it with `modelmon baseline --config CONFIG --data TRAINING_DATA`"
    missing = _Stop(EXIT_NO_BASELINE, f"no baseline {what}: {path} does not exist; {hint}")
    if isinstance(path, Path) and not path.is_file():
        raise missing
    try:
        doc = json.loads(StoredFile(path, f"analyzer.baseline.{what}").read().decode("utf-8"))
    except FileNotFoundError:
        raise missing from None
    except StoreUnreadable as exc:
        raise _Stop(EXIT_NO_BASELINE, str(exc)) from exc
    except (OSError, ValueError) as exc:
        raise _Stop(EXIT_NO_BASELINE, f"baseline {what} {path} is unreadable: {exc}") from exc
    if not isinstance(doc, dict):
        raise _Stop(EXIT_NO_BASELINE, f"baseline {what} {path} is not a JSON object")
    return doc


class _Progress:
    """A line on stderr every few seconds while the pass runs (nothing for short runs)."""

    def __init__(self, total_files: int) -> None:
        self.total = total_files
        self.started = self.last = time.monotonic()

    def tick(self, files: int, rows: int, records: int) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            rate = records / max(now - self.started, 1e-9)
            print(
                f"  … {files}/{self.total} files, {records:,} records, {rows:,} rows "
                f"({rate:,.0f} records/s)",
                file=sys.stderr,
                flush=True,
            )


def _limit(
    config: ModelmonConfig, stats_doc: dict[str, Any], cons_doc: dict[str, Any]
) -> FeatureLimit:
    """``analyzer.max_features`` as the service applies it: the baseline's features (by name and
    by position) and the configured payload columns always tracked."""
    from analyzer.ingest.ingestor import feature_limit
    from analyzer.monitors.data_quality.cardinality import baseline_names

    def names(doc: dict[str, Any]) -> list[str]:
        features = doc.get("features")
        if not isinstance(features, list):
            return []
        return [str(f["name"]) for f in features if isinstance(f, dict) and "name" in f]

    return feature_limit(config, baseline_names(names(stats_doc), names(cons_doc)))


def _profile_files(
    config: ModelmonConfig,
    files: list[CaptureFile],
    limit: FeatureLimit | None = None,
    executor: Executor | None = None,
) -> FilesProfile:
    """Decode and profile the files on ``executor`` (default: all cores; one profile per file,
    merged in file order)."""
    from analyzer.ingest.parallel import profile_capture_files

    progress = _Progress(len(files))
    return profile_capture_files(
        files,
        config.analyzer.payload,
        config.analyzer.kll_k,
        on_file=lambda total: progress.tick(total.files, total.profile.item_count, total.records),
        max_line_bytes=config.analyzer.max_line_bytes,
        limit=limit,
        arrow=config.analyzer.arrow,
        executor=executor,
    )


def _where(value: str | Path | None, name: str) -> Path | str | None:
    """A command-line location: a local path, or a checked storage URL (``file://`` stays a
    URL for ``--data``: its files are read through fsspec like any other store's)."""
    if value is None or isinstance(value, Path):
        return value
    if "://" not in value:
        return Path(value)
    try:
        return storage_url(value)
    except ValueError as exc:
        raise _Stop(EXIT_USAGE, f"--{name}: {exc}") from exc


def _capture_files(
    config: ModelmonConfig,
    data: Path | str,
    start: datetime | None,
    end: datetime | None,
    max_files: int,
) -> tuple[list[CaptureFile], str]:
    """The sealed files of the window and the tree's name for the messages."""
    endpoint, variant = config.endpoint.name, config.endpoint.variant
    if isinstance(data, Path):
        from analyzer.ingest.capture_files import sealed_files

        return list(sealed_files(data, endpoint, variant, start, end)), str(
            data / endpoint / variant
        )
    from analyzer.ingest.remote_files import NotATree, RemoteCaptureTree

    tree = RemoteCaptureTree(data, endpoint, variant)
    try:
        tree.check()
    except NotATree as exc:
        raise _Stop(EXIT_USAGE, f"--data {exc}") from exc
    listing = tree.sealed_files(start, end, max_files=max_files)
    if listing.cut:
        raise _Stop(
            EXIT_USAGE,
            f"more than {max_files:,} sealed capture files in {tree.url}/{tree.where}: "
            "analyze a shorter window (--start/--end)",
        )
    return list(listing.files), f"{tree.url}/{tree.where}"


def _check_url(url: str, option: str) -> None:
    """The URL's bucket exists and it is no file: said before the pass, not after it."""
    from analyzer.ingest.remote_files import NotATree, RemoteCaptureTree

    try:
        RemoteCaptureTree.folder(url).check()
    except NotATree as exc:
        raise _Stop(EXIT_USAGE, f"--{option} {exc}") from exc


def _analyze(
    config: ModelmonConfig,
    start: datetime | None,
    end: datetime | None,
    executor: Executor | None = None,
    ground_truth: Path | str | None = None,
    data: Path | str | None = None,
    out: str | None = None,
    max_files: int = DEFAULT_MAX_FILES,
) -> int:
    mq = config.analyzer.model_quality
    if ground_truth is not None and mq is None:
        raise _Stop(EXIT_USAGE, "--ground-truth needs an analyzer.model_quality section")
    labels = ground_truth or (mq.ground_truth.dir if mq is not None else None)
    baseline = config.analyzer.baseline
    # Model quality alone (no data-quality baseline on disk) is a pass of its own.
    data_quality = (
        labels is None
        or StoredFile(baseline.statistics, "").exists()
        or StoredFile(baseline.constraints, "").exists()
    )
    docs = None
    if data_quality:  # a missing baseline is said before anything is read
        docs = (
            _load_json(baseline.statistics, "statistics"),
            _load_json(baseline.constraints, "constraints"),
        )
    if out is not None:
        _check_url(out, "out")
    if isinstance(labels, str):
        _check_url(labels, "ground-truth")
    files, root = _capture_files(
        config, data if data is not None else config.capture.dir, start, end, max_files
    )
    span = f" between {start.isoformat() if start else 'the beginning'} and " + (
        end.isoformat() if end else "now"
    )
    if not files:
        raise _Stop(EXIT_NO_DATA, f"no sealed capture files (*.jsonl, *.jsonl.gz) in {root}{span}")
    print(f"analyzing {len(files)} capture files from {root}", file=sys.stderr, flush=True)
    if docs is not None:
        start, end = _data_quality(config, docs, files, start, end, root, span, executor, out)
    else:
        print(
            f"note: no data-quality baseline ({baseline.statistics}): model quality only",
            file=sys.stderr,
            flush=True,
        )
    if labels is not None:
        from analyzer.ingest.batch_model_quality import ModelQualityStop, analyze_model_quality

        progress = _Progress(len(files))
        try:
            analyze_model_quality(
                config,
                files,
                labels,
                start,
                end,
                no_baseline=EXIT_NO_BASELINE,
                no_data=EXIT_NO_DATA,
                tick=lambda rows: progress.tick(len(files), rows, rows),
                out=out,
                executor=executor,
            )
        except ModelQualityStop as stop:
            raise _Stop(stop.code, str(stop)) from stop
    return EXIT_OK


def _data_quality(
    config: ModelmonConfig,
    docs: tuple[dict[str, Any], dict[str, Any]],
    files: list[CaptureFile],
    start: datetime | None,
    end: datetime | None,
    root: str,
    span: str,
    executor: Executor | None = None,
    out: str | None = None,
) -> tuple[datetime, datetime]:
    """The data-quality reports of the window against the baseline's ``docs`` (statistics,
    constraints); returns the window as it resolved it."""
    stats_path, cons_path = (
        config.analyzer.baseline.statistics,
        config.analyzer.baseline.constraints,
    )
    stats_doc, cons_doc = docs
    seen = _profile_files(config, files, _limit(config, stats_doc, cons_doc), executor)
    profile, bad = seen.profile, seen.bad
    if profile.item_count == 0:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(bad.items())) or "no records"
        raise _Stop(
            EXIT_NO_DATA, f"no rows decoded from {len(files)} files in {root}{span} ({reasons})"
        )

    from analyzer.monitors.data_quality.checks import check_options, run_checks
    from analyzer.monitors.data_quality.report_format import report_documents, summary_text
    from analyzer.monitors.data_quality.statistics_format import (
        BaselineFormatError,
        parse_constraints,
        parse_statistics,
        statistics_json,
    )

    try:
        baseline, constraints = parse_statistics(stats_doc), parse_constraints(cons_doc)
    except BaselineFormatError as exc:
        raise _Stop(EXIT_NO_BASELINE, f"baseline {stats_path} / {cons_path}: {exc}") from exc
    if not config.analyzer.payload.input.columns:
        from analyzer.decoding.column_mapping import mapping_note, positional_mapping

        names = list(baseline.features)
        mapping = positional_mapping(list(profile.features), names, profile.predictions)
        if mapping is not None:
            inputs = [n for n in names if n not in profile.predictions]
            note = mapping_note(mapping, len(profile.features), len(inputs))
            print(f"note: {note}", file=sys.stderr, flush=True)
            profile.rename_features(mapping)
    result = run_checks(
        baseline,
        constraints,
        profile,
        **check_options(config.analyzer),
    )
    if end is None:
        newest = seen.last_time or datetime.now(UTC)
        end = newest.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    if start is None:
        oldest = seen.first_time or end - timedelta(hours=1)
        start = oldest.replace(minute=0, second=0, microsecond=0)
    folder: ReportFolder = report_folder(config, end, out)
    write_reports(folder, report_documents(statistics_json(profile), cons_doc, result))
    print(
        summary_text(
            result,
            rows=profile.item_count,
            files=len(files),
            window=(start, end),
            bad_records=bad,
            out_dir=str(folder),
        ),
        flush=True,
    )
    return start, end


def _local_out(config: ModelmonConfig, out: Path | str | None) -> tuple[ModelmonConfig, str | None]:
    """``--out``: a local folder (or ``file://`` URL) replaces ``analyzer.reports_dir``; any
    other URL is returned for :func:`report_folder`."""
    if isinstance(out, str) and urlsplit(out).scheme == "file":
        out = Path(urlsplit(out).path)
    if isinstance(out, Path):
        analyzer = config.analyzer.model_copy(update={"reports_dir": out.absolute()})
        return config.model_copy(update={"analyzer": analyzer}), None
    return config, out


def run_analyze_once(
    config: ModelmonConfig,
    start: str | datetime | None = None,
    end: str | datetime | None = None,
    ground_truth: Path | str | None = None,
    *,
    executor: Executor | None = None,
    data: Path | str | None = None,
    out: Path | str | None = None,
    max_files: int = DEFAULT_MAX_FILES,
) -> int:
    """Run one pass; print a summary; return the exit code (see the module docstring).
    ``executor``: where the map over the files runs (default: local processes). ``data``,
    ``out``, ``ground_truth``: a local path or an fsspec URL (a str with ``://``); ``data``
    defaults to ``capture.dir``, ``out`` to ``analyzer.reports_dir``. ``max_files``: at most
    this many files of a remote tree's window (more: exit 2, asking for a shorter window)."""
    remote = False
    try:
        first, last = _moment(start, "start"), _moment(end, "end")
        if first is not None and last is not None and first >= last:
            raise _Stop(EXIT_USAGE, f"--start {first.isoformat()} is not before --end")
        where, target = _where(data, "data"), _where(out, "out")
        labels = _where(ground_truth, "ground-truth")
        remote = any(isinstance(x, str) for x in (where, target, labels))
        config, url_out = _local_out(config, target)
        return _analyze(config, first, last, executor, labels, where, url_out, max_files)
    except _Stop as stop:
        print(f"modelmon analyze: {stop}", file=sys.stderr)
        return stop.code
    except StorageUnavailable as exc:
        print(f"modelmon analyze: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except storage_errors() as exc:
        if not remote:  # a local file that cannot be read stays what it was
            raise
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"modelmon analyze: stopped mid-run: {text}", file=sys.stderr)
        return EXIT_USAGE
