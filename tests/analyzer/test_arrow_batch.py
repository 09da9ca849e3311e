"""The Arrow fast path gives exactly what the existing decode (and profile) gives, or declines.

Varied blocks of capture lines (clean CSV traffic, and the same with corner cases mixed in:
odd literals, text, empty fields, quotes, BOMs, rows of other widths, bad or offset times,
other encodings, truncation markers, blank lines, escapes, non-string fields) are decoded both
ways. Whenever :meth:`ArrowDecoder.decode` takes a block, every column must split into the same
counts, the same numbers (bit for bit) and the same string counts in the same order as
``split_values`` of the existing path's column; and profiling whole files with and without the
fast path must give the same exact profile parts. Clean blocks must take the fast path.
"""

from __future__ import annotations

import base64
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.decoding.codecs import DecodedBatch, PayloadDecoder
from analyzer.decoding.value_types import PreSplit, SplitValues, split_values
from analyzer.ingest.capture_files import block_lines
from analyzer.ingest.parallel import profile_file
from modelmon.config import ArrowMode, PayloadConfig

pytest.importorskip("pyarrow", reason="pyarrow (the optional 'fast' extra) is not installed")

from analyzer.decoding.arrow_batch import ArrowDecoder

PAYLOAD = PayloadConfig.model_validate(
    {"input": {"format": "csv", "columns": ["a", "b", "c"]}, "output": {"columns": ["score"]}}
)

clean_number = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(-1e6, 1e6).map(lambda x: f"{x:.4f}"),
    st.sampled_from(["1e5", "-2.5E-3", ".5", "5.", "+3", "-0", "00012", "1.e5", "+.5e-3"]),
)
clean_text = st.sampled_from(["a", "b", "v1", "x y", "é", "n/a", "ü-ß"])
odd_field = st.sampled_from(
    ["", "3", "3.0", "nan", "inf", "1e400", "\ufeffz", '"q"', "1,2", " 1", "1_0", "-", "."]
)
clean_times = st.sampled_from(
    ["2024-05-01T10:20:30Z", "2024-05-01T10:20:30.5Z", "2024-05-01T09:00:00.123456Z"]
)
odd_times = st.sampled_from(
    ["2024-05-01T12:20:30+02:00", "2024-05-01T10:20:30", "bad", "2024-13-01T00:00:00Z", 5, None]
)


@st.composite
def blocks(draw: st.DrawFn, clean: bool | None, odd_values: bool = True) -> bytes:
    """One block of capture lines; ``clean`` blocks hold no corner case, others odd values
    (``odd_values``) and, unless ``clean`` is None, odd records and lines too."""
    odd_records = clean is False
    clean = not odd_values
    width = draw(st.integers(1, 5))
    kinds = draw(
        st.lists(st.sampled_from(["num", "text", "mixed"]), min_size=width, max_size=width)
    )
    lines = []
    for index in range(draw(st.integers(1, 25))):
        fields = []
        for kind in kinds:
            choice = clean_number if kind == "num" else clean_text
            if kind == "mixed":
                choice = st.one_of(clean_number, clean_text)
            if not clean:
                choice = st.one_of(choice, odd_field)
            fields.append(draw(choice))
        if odd_records and draw(st.integers(0, 9)) == 0:
            fields.append(draw(clean_number))  # a row wider than the others
        body = ",".join(fields)
        score = draw(st.one_of(clean_number, odd_field) if not clean else clean_number)
        if odd_records:
            score = draw(st.one_of(st.just(score), st.just("0.1,0.2")))
        time = draw(st.one_of(clean_times, odd_times) if odd_records else clean_times)
        encoding = draw(st.sampled_from(["CSV", "JSON"]))
        record: dict[str, Any] = {
            "captureData": {
                "endpointInput": {"data": body, "encoding": encoding, "mode": "INPUT"},
                "endpointOutput": {"data": score, "encoding": encoding},
            },
            "eventMetadata": {"eventId": f"e{index}", "inferenceTime": time},
            "eventVersion": "0",
        }
        if odd_records:
            corner = draw(st.integers(0, 14))
            if corner == 0:
                record["captureData"]["endpointInput"] = {
                    "data": base64.b64encode(body.encode()).decode(),
                    "encoding": "BASE64",
                }
            elif corner == 1:
                record["modelmon"] = {"truncated": ["output"]}
            elif corner == 2:
                del record["captureData"]["endpointOutput"]
            elif corner == 3:
                record["eventMetadata"]["eventId"] = index
            elif corner == 4:
                record["captureData"]["endpointInput"]["data"] = 7
            elif corner == 5:
                record["captureData"]["endpointInput"]["data"] = ""
        line = orjson.dumps(record)
        if odd_records:
            corner = draw(st.integers(0, 19))
            line = {0: b"\n" + line, 1: line + b"\r", 2: b"[" + line + b"]", 3: line[:-1]}.get(
                corner, line
            )
        lines.append(line + b"\n")
    block = b"".join(lines)
    if odd_records and draw(st.booleans()):
        block = block.rstrip(b"\n")  # the last line of a file may lack its newline
    return block


def _counts(split: SplitValues) -> list[tuple[str, int]]:
    counts = split.string_counts
    if counts is None or counts.total() != len(split.strings):
        counts = Counter(split.strings)
    return list(counts.items())


def _same_split(fast: list[str] | PreSplit, slow: list[object]) -> None:
    assert len(fast) == len(slow)
    mine, theirs = split_values(fast), split_values(slow)
    assert (mine.missing, mine.integral, mine.fractional) == (
        theirs.missing,
        theirs.integral,
        theirs.fractional,
    )
    assert mine.numbers.dtype == theirs.numbers.dtype == np.float64
    assert mine.numbers.tobytes() == theirs.numbers.tobytes()
    assert len(mine.strings) == len(theirs.strings)
    assert _counts(mine) == _counts(theirs)


def _check(block: bytes) -> bool:
    """Compare both paths on ``block``; True when the fast path took it."""
    decoder = ArrowDecoder.create(PAYLOAD)
    assert decoder is not None
    fast = decoder.decode_block(block)
    if fast is None:
        return False
    _same_batch(fast, block)
    return True


def _same_batch(fast: DecodedBatch, block: bytes) -> None:
    slow = PayloadDecoder(PAYLOAD).decode_lines(block_lines(block))
    assert slow.record_rows == [1] * slow.n_rows  # CSV: one row per record
    same_as_slow(fast, slow)


def same_as_slow(fast: DecodedBatch, slow: DecodedBatch) -> None:
    """The fast path's batch equals the record-by-record decoder's (also for arrow_json)."""
    assert not slow.bad and not slow.warnings
    assert slow.rows_without_input == slow.rows_without_output == 0
    assert (fast.n_rows, fast.n_records) == (slow.n_rows, slow.n_records)
    assert fast.field_counts == slow.field_counts
    assert fast.time_span() == (min(slow.inference_times), max(slow.inference_times))
    assert list(fast.record_rows) == list(slow.record_rows)
    assert list(fast.event_ids) == list(slow.event_ids)
    assert list(fast.inference_ids) == list(slow.inference_ids)
    assert list(fast.inference_times) == list(slow.inference_times)
    for mine, theirs in ((fast.columns, slow.columns), (fast.predictions, slow.predictions)):
        assert list(mine) == list(theirs)
        for name, column in mine.items():
            _same_split(column, theirs[name])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks(clean=False))
def test_fast_path_is_identical_or_declines(block: bytes) -> None:
    _check(block)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks(clean=None))
def test_odd_values_are_identical(block: bytes) -> None:
    """Odd literals, text, empty fields in plain records: taken (and identical) unless a value
    holds a quote or a comma (a row of another width), a BOM, or a body is empty."""
    taken = _check(block)
    declines = (b"\\", b"1,2", b"\xef\xbb\xbf", b'"data":""')
    assert taken or any(corner in block for corner in declines)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks(clean=True, odd_values=False))
def test_clean_blocks_take_the_fast_path(block: bytes) -> None:
    assert _check(block)


def _line(body: str) -> bytes:
    record = {
        "captureData": {
            "endpointInput": {"data": body, "encoding": "CSV"},
            "endpointOutput": {"data": "0.5", "encoding": "CSV"},
        },
        "eventMetadata": {"eventId": "e", "inferenceTime": "2024-05-01T10:20:30Z"},
    }
    return orjson.dumps(record) + b"\n"


@pytest.mark.parametrize(
    "corner",
    ['"quoted",x,1', "1,a\\b,2", "\ufeff1,x,2", "1,x,2\r", "1,x,9,9", "1", ""],
    ids=["quote", "escape", "bom", "cr", "wider", "narrower", "empty"],
)
def test_corner_cases_decline(corner: str) -> None:
    good = _line("2,y,3")
    assert _check(good + good)
    assert not _check(_line(corner) + good + good)  # a BOM counts only in the first row


def _exact(path: Path, payload: PayloadConfig = PAYLOAD, arrow: ArrowMode = "csv") -> str:
    part = profile_file(path, payload, 256, arrow=arrow)
    profile = part.profile
    sides = {**profile.features, **{f"prediction:{k}": v for k, v in profile.predictions.items()}}
    features = {
        name: (
            f.num_present,
            f.num_missing,
            f.type_counts,
            f.count,
            f.sum,
            f.m2,
            f.min,
            f.max,
            list(f.category_counts().items()),
        )
        for name, f in sides.items()
    }
    exact = (
        part.records,
        sorted(part.bad.items()),
        sorted(part.warnings.items()),
        part.first_time,
        part.last_time,
        profile.column_counts,
        profile.item_count,
        profile.prediction_count,
        features,
    )
    return repr(exact)  # repr: a NaN (overflowing moments) equals itself


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(blocks(clean=True, odd_values=False), blocks(clean=None), blocks(clean=False)),
        min_size=1,
        max_size=3,
    )
)
def test_profiles_of_files_are_identical(parts: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "capture.jsonl"
        path.write_bytes(b"\n".join(p.rstrip(b"\n") for p in parts) + b"\n")
        assert _exact(path, arrow="csv") == _exact(path, arrow="off")


def test_quote_escapes_outside_the_bodies_are_taken() -> None:
    """A ``\\"`` in a field the fast path does not read leaves it taken (and identical); any
    other escape, anywhere, declines the block."""
    record = orjson.loads(_line("2,y,3"))
    record["captureData"]["endpointInput"]["observedContentType"] = 'text/csv; q="1"'
    quoted = orjson.dumps(record) + b"\n"
    assert b'\\"' in quoted
    assert _check(quoted + _line("1,x,2"))
    record["captureData"]["endpointInput"]["observedContentType"] = "text/csv\n"
    assert not _check(orjson.dumps(record) + b"\n" + _line("1,x,2"))


def test_blank_lines_and_two_records_on_a_line_decline() -> None:
    """Arrow skips a blank line and reads two records on one line; the slow path skips the
    first and counts the second as one bad line: a block holding both must not be taken."""
    good = _line("1,x,2")
    assert not _check(good + b"\n" + good.rstrip(b"\n") + b" " + good)
    assert not _check(good + b"  \n" + good)
    assert _check(good.rstrip(b"\n"))  # the last line of a file may lack its newline
    assert not _check(good + good.rstrip(b"\n"))  # then block_lines makes it one line


def _split(block: bytes) -> st.SearchStrategy[list[bytes]]:
    """``block`` cut into up to 4 blocks at line ends (as one file's blocks are)."""
    lines = block_lines(block if block.endswith(b"\n") else block + b"\n")
    cuts = st.lists(st.integers(1, max(1, len(lines) - 1)), max_size=3, unique=True)
    return cuts.map(
        lambda at: [
            b"".join(lines[i:j])
            for i, j in zip([0, *sorted(at)], [*sorted(at), len(lines)], strict=True)
        ]
    ).filter(lambda parts: all(parts))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.one_of(blocks(clean=True, odd_values=False), blocks(clean=None)).flatmap(_split),
        st.lists(blocks(clean=None), min_size=2, max_size=4),
        st.lists(
            st.one_of(blocks(clean=True, odd_values=False), blocks(clean=False)),
            min_size=2,
            max_size=4,
        ),
    )
)
def test_several_blocks_at_once_are_each_identical(parts: list[bytes]) -> None:
    """``decode_blocks`` gives each block what ``decode_block`` (and the slow path) gives it, or
    declines; it takes them when every one is taken alone."""
    parts = [p if p.endswith(b"\n") else p + b"\n" for p in parts]
    decoder = ArrowDecoder.create(PAYLOAD)
    assert decoder is not None and decoder.groups
    batches = decoder.decode_blocks(parts)
    alone = [decoder.decode_block(p) for p in parts]
    if batches is None:  # then one block declines alone, or the blocks' rows differ in width
        assert None in alone or len({(*b.field_counts, len(b.predictions)) for b in alone}) > 1
        return
    assert len(batches) == len(parts)
    for batch, block in zip(batches, parts, strict=True):
        _same_batch(batch, block)


def test_large_files_profile_identically(tmp_path: Path) -> None:
    """A file of several 1 MiB blocks goes through ``decode_blocks`` (4 MiB per call); one with
    a bad line in its second group goes block by block from there; both profile as the slow
    path does."""
    good = b"".join(_line(f"{i % 97},{'xyz'[i % 3]},{i / 7:.3f}") for i in range(12_000))
    for name, content in (("clean", good), ("bad", good * 3 + b"{not json\n" + good)):
        path = tmp_path / f"{name}.jsonl"
        path.write_bytes(content)
        assert _exact(path, arrow="csv") == _exact(path, arrow="off")
