"""Reading model-quality inputs for batch runs: tables, capture folders, ground-truth folders.

Every reader streams its files in bounded reads and keeps per row only numbers in numpy
columns (:class:`~analyzer.monitors.model_quality.pairs.Columns`), so memory is a few bytes
per row whatever the files hold; the join itself is :func:`~.pairs.join`.

- a table (CSV or JSON Lines holding the labels): :mod:`.model_quality_table`;
- :func:`read_labels`: a ground-truth folder, SageMaker's ``{yyyy}/{mm}/{dd}/{hh}/*.jsonl``
  (any ``*.jsonl`` / ``*.jsonl.gz`` below it, read in path order: hour by hour; behind a URL,
  those of the ``yyyy/mm/dd/hh`` folders: :func:`remote_folder_files`);
- :func:`read_predictions`: capture files. For both folders a bad line is skipped and
  counted, and the first :data:`BAD_LINES_SHOWN` are kept with file and line number for the
  summary: one broken line in a month of labels must not lose the month.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from analyzer.ingest import model_quality_arrow as arrow
from analyzer.ingest.capture_files import (
    DEFAULT_MAX_LINE_BYTES,
    TooLarge,
    TruncatedCapture,
    is_sealed,
    read_pieces,
)
from analyzer.ingest.remote_files import CaptureFile, opener_of, remote_folder_files
from analyzer.ingest.table_readers import InputError
from analyzer.monitors.model_quality.extraction import OutputReader, capture_record
from analyzer.monitors.model_quality.labels import LabelReader
from analyzer.monitors.model_quality.pairs import Columns, JoinCounts
from analyzer.monitors.model_quality.records import (
    Attribute,
    BadValue,
    Encoder,
    ground_truth_record,
)

__all__ = [
    "BAD_LINES_SHOWN",
    "BadLines",
    "Pairs",
    "folder_files",
    "label_files",
    "numbered_lines",
    "read_label_files",
    "read_labels",
    "read_predictions",
    "too_long",
]

BAD_LINES_SHOWN = 20
CHUNK = 65_536
Tick = Callable[[int], None]
FloatArray = npt.NDArray[np.float64]


@dataclass
class BadLines:
    """Lines skipped: all counted, the first :data:`BAD_LINES_SHOWN` kept with their place."""

    count: int = 0
    shown: list[str] = field(default_factory=list)

    def add(self, path: CaptureFile, line: int, error: str) -> None:
        self.count += 1
        if len(self.shown) < BAD_LINES_SHOWN:
            self.shown.append(f"{path}: line {line}: {error}")

    def extend(self, other: BadLines) -> None:
        """``other``'s lines after these (as if read after them)."""
        self.count += other.count
        self.shown.extend(other.shown[: BAD_LINES_SHOWN - len(self.shown)])


def folder_files(folder: Path) -> list[Path]:
    """Sealed ``*.jsonl`` / ``*.jsonl.gz`` files under ``folder`` (or the file), path order."""
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_sealed(p))


def too_long(limit: int) -> str:
    """What a line over ``limit`` bytes is called in messages."""
    return f"longer than {limit:,} bytes (analyzer.max_line_bytes)"


def numbered_lines(
    path: CaptureFile, bad: BadLines, limit: int, strict: bool = False
) -> Iterator[tuple[int, bytes]]:
    """``(line number, line)`` of every non-blank line; a gzip cut short is one bad line, and
    so is a line over ``limit`` bytes (``strict``: it stops the run with :class:`InputError`)."""
    number = 0
    name, opener = opener_of(path)
    try:
        for piece in read_pieces(name, 0, limit, opener=opener):
            if isinstance(piece, TooLarge):
                number += 1
                if strict:
                    raise InputError(f"{path}: line {number}: {too_long(limit)}")
                bad.add(path, number, f"{too_long(limit)}; skipped")
                continue
            lines = piece.split(b"\n")
            if not lines[-1]:
                lines.pop()  # the split after the block's last newline is not a line
            for line in lines:
                number += 1
                if line.strip():
                    yield number, line
    except TruncatedCapture as exc:
        if strict:
            cut = f"{path}: line {number + 1}: the compressed file is cut short"
            raise InputError(cut) from exc
        bad.add(path, number + 1, "the compressed file is cut short here")
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc


def label_files(folder: Path | str) -> list[CaptureFile]:
    """The ground-truth files under ``folder`` (a local folder or a URL), in path order."""
    files = folder_files(folder) if isinstance(folder, Path) else remote_folder_files(folder)
    if not files:
        raise InputError(f"{folder}: no ground-truth files (*.jsonl, *.jsonl.gz) found")
    return list(files)


def read_labels(
    folder: Path | str,
    attribute: Attribute | None,
    encoder: Encoder,
    bad: BadLines,
    tick: Tick | None = None,
    arrow_mode: str = "csv",
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Columns:
    """Columns ``key`` (hash) and ``label`` of every ground-truth record under ``folder``.

    ``arrow_mode``: ``analyzer.arrow`` (``off``: no Arrow fast path); a line over
    ``max_line_bytes`` is a bad line (skipped, counted with its number)."""
    return read_label_files(
        label_files(folder), attribute, encoder, bad, tick, arrow_mode, max_line_bytes
    )


def read_label_files(
    files: Sequence[CaptureFile],
    attribute: Attribute | None,
    encoder: Encoder,
    bad: BadLines,
    tick: Tick | None = None,
    arrow_mode: str = "csv",
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    hash_keys: bool = True,
) -> Columns:
    """:func:`read_labels` of these ground-truth files; ``key`` is the hash of the join key,
    or (``hash_keys`` False) the key itself (as :func:`read_predictions`)."""
    key_type: type[np.generic] = np.int64 if hash_keys else np.object_
    out = Columns({"key": key_type, "label": np.float64})
    keys: list[Any] = []
    labels: list[float] = []
    key_of: Callable[[str], Any] = hash if hash_keys else str
    fast = arrow.available(encoder, arrow_mode)
    reader = LabelReader(attribute.name if attribute is not None else None)
    for path in files:
        whole = None  # a URL's file goes line by line
        if fast and isinstance(path, Path):
            whole = arrow.arrow_labels(path, attribute, encoder, max_line_bytes, hash_keys)
        if whole is not None:  # after the rows of earlier files: file order is kept
            out.append(key=keys, label=labels)
            keys, labels = [], []
            out.append(key=whole[0], label=whole[1])
            if tick is not None:
                tick(out.rows)
            continue
        for number, line in numbered_lines(path, bad, max_line_bytes):
            try:
                key, value = ground_truth_record(line, reader)
                labels.append(encoder.label(value))
            except BadValue as exc:
                bad.add(path, number, str(exc))
                continue
            keys.append(key_of(key))
            if len(keys) >= CHUNK:
                out.append(key=keys, label=labels)
                keys, labels = [], []
                if tick is not None:
                    tick(out.rows)
    out.append(key=keys, label=labels)
    return out


def read_predictions(
    files: Sequence[CaptureFile],
    reader: OutputReader,
    encoder: Encoder,
    bad: BadLines,
    *,
    window: tuple[float, float] | None = None,
    tick: Tick | None = None,
    arrow_mode: str = "csv",
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    hash_keys: bool = True,
) -> Columns:
    """Columns ``key``, ``time``, ``prediction``, ``probability`` (NaN: none) of capture lines.

    ``key`` is the hash of the join key, or (``hash_keys`` False) the key itself: Python's
    ``hash`` of a string differs between processes, so a map over files in other processes
    hands the keys back to be hashed by the one that joins.

    ``reader``: the one extraction of a record's prediction and probability (a line it
    refuses is a bad line, reported as ``{reason}: {detail}``); a line over
    ``max_line_bytes`` is a bad line (skipped, counted with its number).

    ``window``: ``[start, end)`` in epoch seconds of inference time; records outside are
    passed over (not counted as bad).
    """
    key_type: type[np.generic] = np.int64 if hash_keys else np.object_
    out = Columns(
        {"key": key_type, "time": np.float64, "prediction": np.float64, "probability": np.float64}
    )
    rows: list[tuple[Any, float, float, float]] = []
    key_of: Callable[[str], Any] = hash if hash_keys else str
    nan = float("nan")
    fast = arrow.available(encoder, arrow_mode)
    for path in files:
        whole = (
            arrow.arrow_predictions(
                path,
                reader.inference,
                reader.probability,
                encoder,
                list(reader.columns),
                max_line_bytes,
                hash_keys,
            )
            if fast and isinstance(path, Path)
            else None
        )
        if whole is not None:
            keys, times, values, scores = whole
            if window is not None:
                inside = (times >= window[0]) & (times < window[1])
                keys, times, values, scores = (
                    keys[inside],
                    times[inside],
                    values[inside],
                    scores[inside],
                )
            _append_predictions(out, rows)  # after the rows of earlier files: file order kept
            rows = []
            out.append(key=keys, time=times, prediction=values, probability=scores)
            if tick is not None:
                tick(out.rows)
            continue
        for number, line in numbered_lines(path, bad, max_line_bytes):
            try:
                record = capture_record(line, reader)
                if window is not None and not window[0] <= record.inference_time < window[1]:
                    continue
                score = record.probability if record.probability is not None else nan
                value = encoder.prediction(record.prediction, score)
            except BadValue as exc:
                bad.add(path, number, str(exc))
                continue
            rows.append((key_of(record.key), record.inference_time, value, score))
            if len(rows) >= CHUNK:
                _append_predictions(out, rows)
                rows = []
                if tick is not None:
                    tick(out.rows)
    _append_predictions(out, rows)
    return out


def _append_predictions(out: Columns, rows: list[tuple[Any, float, float, float]]) -> None:
    if not rows:
        out.append(key=[], time=[], prediction=[], probability=[])
        return
    keys, times, values, scores = zip(*rows, strict=True)
    out.append(key=keys, time=times, prediction=values, probability=scores)


@dataclass(frozen=True)
class Pairs:
    """Joined labels, predictions and probabilities (None: no probability attribute)."""

    # labels and predictions: int8 (binary), int16 class codes (multiclass) or float64
    labels: npt.NDArray[Any]
    predictions: npt.NDArray[Any]
    probabilities: FloatArray | None
    counts: JoinCounts | None  # None: a table, nothing to join
    bad: BadLines
    # every prediction read (labelled or not): probabilities (None: none), predictions
    all_probabilities: FloatArray | None = None
    all_predictions: npt.NDArray[Any] = field(default_factory=lambda: np.zeros(0))
    # the first and last inference time of those predictions (None: none read)
    time_range: tuple[float, float] | None = None

    def class_names(self, encoder: Encoder) -> list[str] | None:
        """What the codes of a multiclass problem's labels and predictions stand for (the
        ``classes`` of ``evaluate_window``); None for the other problem types."""
        if encoder.problem_type != "MulticlassClassification":
            return None
        return encoder.class_names()
