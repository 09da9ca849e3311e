"""``POST /monitor/ground-truth``: SageMaker ground-truth JSON Lines, validated and stored.

A record is ``{"groundTruthData": {"data": "1", "encoding": "CSV"}, "eventMetadata":
{"eventId": "...", "inferenceTime": "..."}, "eventVersion": "0"}``; it is joined later on
``inferenceId`` (when given) or ``eventId``. Model-quality metrics are not computed yet.

The body is fed to a :class:`GroundTruthIntake` in pieces as it arrives (the web handler runs
:meth:`GroundTruthIntake.feed` in a thread), so nothing holds the whole body: a line longer
than ``max_line_bytes`` is skipped as it streams past and reported as bad, and only the first
``max_bad_lines_shown`` bad lines are kept with their numbers and what is wrong (the rest are
only counted). Pure: no I/O; the rows are stored by
:func:`analyzer.store.ground_truth.store_ground_truth`, in the writer's transaction.

Examples
--------
>>> intake = GroundTruthIntake(max_line_bytes=1024, max_bad_lines_shown=1, received_at=0.0)
>>> intake.feed(b'{"groundTruthData": {"data": "1"}, "eventMetadata": {"eventId": "e"}}\\nx\\ny')
>>> intake.finish()
>>> len(intake.rows), intake.bad_count, intake.bad_lines
(1, 2, [{'line': 2, 'error': 'not JSON: a line must be a JSON object'}])
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import orjson

from analyzer.decoding.envelope import MAX_KEY
from analyzer.monitors.model_quality.labels import LabelError, LabelReader
from analyzer.store.ground_truth import Row

__all__ = [
    "GroundTruthIntake",
    "Labels",
    "Row",
    "merge_bad_lines",
    "parse_ground_truth",
    "read_labels",
]

ENCODINGS = ("CSV", "JSON", "BASE64")
_SPACE = b" \t\r"
_NEEDED = b'"eventMetadata"'  # in every record; a line without it is refused without a parse


def _row(record: Any, received_at: float) -> Row:
    if not isinstance(record, dict):
        raise ValueError("a line must be a JSON object")
    data = record.get("groundTruthData")
    if not isinstance(data, dict) or not isinstance(data.get("data"), str):
        raise ValueError('groundTruthData.data must be a string (e.g. "1")')
    encoding = str(data.get("encoding", "CSV")).upper()
    if encoding not in ENCODINGS:
        raise ValueError(f"groundTruthData.encoding must be one of {', '.join(ENCODINGS)}")
    metadata = record.get("eventMetadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("eventId"), str):
        raise ValueError("eventMetadata.eventId must be the eventId of the captured request")
    inference_id = metadata.get("inferenceId")
    inference_time = metadata.get("inferenceTime")
    return (
        metadata["eventId"],
        inference_id if isinstance(inference_id, str) else None,
        inference_time if isinstance(inference_time, str) else None,
        data["data"],
        encoding,
        received_at,
    )


class GroundTruthIntake:
    """Rows and bad lines of one body, fed in pieces; memory bounded by the line limit."""

    def __init__(self, *, max_line_bytes: int, max_bad_lines_shown: int, received_at: float):
        self.max_line_bytes = max_line_bytes
        self.max_bad_lines_shown = max_bad_lines_shown
        self.received_at = received_at
        self.rows: list[Row] = []
        self.row_lines: list[int] = []  # the line number of each row
        self.bad_lines: list[dict[str, Any]] = []  # the first max_bad_lines_shown
        self.bad_count = 0
        self.long_lines = 0
        self.lines = 0  # every line, blank ones included (bad lines are numbered from 1)
        self._pending = bytearray()  # the start of a line whose end has not arrived
        self._skipping = False  # inside a line already reported as too long

    def feed(self, chunk: bytes) -> None:
        """Take the next piece of the body (blocking CPU work: call it from a thread)."""
        start = 0
        if self._pending or self._skipping:  # finish the line begun in an earlier piece
            end = chunk.find(b"\n")
            if end < 0:
                self._hold(chunk)
                return
            if self._skipping:
                self._skipping = False
            else:
                self._pending += chunk[:end]
                line = bytes(self._pending)
                self._pending.clear()
                self.lines += 1
                self._check(line)
            start = end + 1
        last = chunk.rfind(b"\n", start)
        if last >= 0:
            self._many(chunk[start:last])
            start = last + 1
        if start < len(chunk):
            self._hold(chunk[start:])

    def finish(self) -> None:
        """The body has ended: a last line without a newline is a line too."""
        if self._pending:
            line = bytes(self._pending)
            self._pending.clear()
            self.lines += 1
            self._check(line)
        self._skipping = False

    def _hold(self, start_of_line: bytes) -> None:
        """Keep the start of an unfinished line, unless the line is already too long."""
        if self._skipping:
            return
        if len(self._pending) + len(start_of_line) > self.max_line_bytes:
            self._pending.clear()
            self.lines += 1
            self._too_long()
            self._skipping = True  # the rest of this line is dropped as it arrives
        else:
            self._pending += start_of_line

    def _many(self, block: bytes) -> None:
        # Once the shown bad lines are full, a line that cannot be a record is only counted:
        # a block without "eventMetadata" (nor spaces, which could make a blank line) is
        # counted in C, and otherwise the loop counts such lines without a call or a message.
        lines = block.split(b"\n")
        full = len(self.bad_lines) >= self.max_bad_lines_shown
        if (
            full
            and _NEEDED not in block
            and not any(char in block for char in (b" ", b"\t", b"\r"))
            and max(map(len, lines)) <= self.max_line_bytes
        ):
            self.lines += len(lines)
            self.bad_count += len(lines) - lines.count(b"")
            return
        number, quick = self.lines, 0
        limit = self.max_line_bytes
        for line in lines:
            number += 1
            first = line[:1]
            if not first:
                continue
            if full and len(line) <= limit:
                last = line[-1:]
                if (
                    (first != b"{" and first not in _SPACE)
                    or (last != b"}" and last not in _SPACE)
                    or _NEEDED not in line
                ):
                    quick += 1
                    continue
            self.lines = number
            self._check(line)
            full = len(self.bad_lines) >= self.max_bad_lines_shown
        self.lines = number
        self.bad_count += quick

    def _too_long(self) -> None:
        self.long_lines += 1
        self._bad(
            f"longer than {self.max_line_bytes} bytes (analyzer.ground_truth.max_line_bytes); "
            "skipped"
        )

    def _check(self, line: bytes) -> None:
        """One complete line, already counted in ``lines``."""
        if len(line) > self.max_line_bytes:
            self._too_long()
            return
        stripped = line.strip()
        if not stripped:
            return
        if stripped[:1] != b"{" or stripped[-1:] != b"}":  # most garbage: refused without a parse
            self._bad("not JSON: a line must be a JSON object")
            return
        if _NEEDED not in stripped:
            self._bad("eventMetadata.eventId must be the eventId of the captured request")
            return
        try:
            self.rows.append(_row(orjson.loads(stripped), self.received_at))
            self.row_lines.append(self.lines)
        except orjson.JSONDecodeError as exc:
            self._bad(f"not JSON: {exc}")
        except ValueError as exc:
            self._bad(str(exc))

    def _bad(self, error: str) -> None:
        self.bad_count += 1
        if len(self.bad_lines) < self.max_bad_lines_shown:
            self.bad_lines.append({"line": self.lines, "error": error})


def parse_ground_truth(
    body: bytes, *, received_at: float, max_line_bytes: int = 64 * 1024
) -> tuple[list[Row], list[dict[str, Any]]]:
    """Rows to store, and ``[{"line": n, "error": ...}]`` for every line that is not a record."""
    intake = GroundTruthIntake(
        max_line_bytes=max_line_bytes, max_bad_lines_shown=len(body) + 1, received_at=received_at
    )
    intake.feed(body)
    intake.finish()
    return intake.rows, intake.bad_lines


@dataclass
class Labels:
    """The join's labels of some ground-truth rows, and the rows whose label is refused."""

    labels: list[tuple[str, str]] = field(default_factory=list)  # (key, label)
    kept: list[int] = field(default_factory=list)  # the index of each labelled row
    skipped: Counter[str] = field(default_factory=Counter)  # refused, by reason
    bad_lines: list[tuple[int, str]] = field(default_factory=list)  # the first (line, error)

    @property
    def refused(self) -> int:
        """How many rows were refused (all counted, not only those listed)."""
        return sum(self.skipped.values())


def merge_bad_lines(*parts: Iterable[tuple[int, str]], shown: int) -> list[tuple[int, str]]:
    """The ``(line, error)`` of several readers of one body (the intake's, the labels'), in
    line order, the first ``shown``."""
    return sorted(chain.from_iterable(parts))[:shown]


def read_labels(
    rows: Sequence[Row], lines: Sequence[int], reader: LabelReader, max_shown: int
) -> Labels:
    """Each row's ``(key, label)`` for the join (the key is its ``eventId``), read with
    ``reader`` (``ground_truth_attribute``, the problem type); a row whose label is refused,
    or whose key no capture can have (over ``MAX_KEY`` characters: ``key_too_long``;
    empty, or holding a NUL: ``bad_key``), is counted by reason and listed with its line
    number from ``lines`` (the first ``max_shown`` of them; all are counted in ``refused``).
    Blocking CPU work: call it from a thread."""
    out = Labels()
    for index, (row, number) in enumerate(zip(rows, lines, strict=True)):
        try:
            key = row[0]
            if len(key) > MAX_KEY:
                raise LabelError("key_too_long", f"an eventId over {MAX_KEY} characters")
            if not key or "\x00" in key:  # the capture's side refuses both (see predictions)
                raise LabelError("bad_key", "an empty eventId, or one holding a NUL character")
            out.labels.append((row[0], reader(row[3], row[4])))
        except LabelError as exc:
            out.skipped[exc.reason] += 1
            if len(out.bad_lines) < max_shown:
                out.bad_lines.append((number, f"label: {exc}"))
            continue
        out.kept.append(index)
    return out
