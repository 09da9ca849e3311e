"""The standing fuzz suite of the analyzer's data path (issue 9): capture lines and payloads
into the codecs, numbers at the float limits into profiles and their merge, stored profile
bytes read back, capture files read under a line limit, ground-truth bodies.

Bounded by the ``ci`` Hypothesis profile (tests/conftest.py); search longer by hand with
``pytest -m fuzz --hypothesis-profile=long``.
"""

from __future__ import annotations

import base64
import gzip
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from analyzer.decoding.codecs import PayloadDecoder
from analyzer.decoding.payload_rows import PayloadError
from analyzer.decoding.side_codec import decode_body
from analyzer.ingest.capture_files import TooLarge, read_pieces
from analyzer.ingest.ground_truth import parse_ground_truth
from analyzer.monitors.data_quality.cardinality import FeatureLimit
from analyzer.monitors.data_quality.feature_profile import FeatureProfile
from analyzer.monitors.data_quality.profile import DatasetProfile, ProfileError, profile_rows
from analyzer.monitors.data_quality.statistics_format import parse_statistics, statistics_json
from modelmon.capture_record import CaptureSide, build_record
from modelmon.config import PayloadConfig, PayloadSide

pytestmark = pytest.mark.fuzz

FLOAT_MAX = 1.7976931348623157e308
LIMITS = [
    1e308,
    -1e308,
    FLOAT_MAX,
    -FLOAT_MAX,
    math.inf,
    -math.inf,
    math.nan,
    5e-324,
    -5e-324,
    0.0,
    -0.0,
    1e154,
    -1e200,
]
HUGE_INTS = [2**63, -(2**63) - 1, 2**64, 10**30, 10**308, 10**400, -(10**400)]
TEXTS = ["1e400", "-1e400", "NaN", "nan", "Infinity", "-inf", "1_000", " 1", "1e-400", "+5", "."]

numbers = st.one_of(
    st.sampled_from(LIMITS),
    st.sampled_from(HUGE_INTS),
    st.floats(),
    st.integers(),
    st.floats(min_value=-1e6, max_value=1e6),
)
scalars = st.one_of(numbers, st.none(), st.booleans(), st.text(max_size=8))
cells = st.one_of(numbers.map(repr), st.sampled_from(TEXTS), st.text(max_size=6), st.just("")).map(
    lambda s: s.replace(",", ";").replace("\n", " ").replace("\r", " ").replace('"', "'")
)
keys = st.one_of(st.sampled_from(["age", "income", "state"]), st.text(min_size=1, max_size=6))
T0 = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)


def _json_safe(value: Any) -> Any:
    """orjson writes integers of 64 bits at most (the raw literals are in NUMBER_TEXTS)."""
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return float(value) if abs(value) < 10**308 else None
    return value


# JSON number literals beyond what orjson writes: huge integers, overflowing exponents.
NUMBER_TEXTS = [
    '{"age": 1e400, "income": -1e400}',
    '{"age": 123456789012345678901234567890, "income": 1e-400}',
    '{"instances": [[1e308, -1e308, 5e-324, 99999999999999999999999]]}',
    '{"age": NaN}',
    '{"age": Infinity}',
    '[{"age": -0.0}, {"age": 1.7976931348623157e308}]',
]


json_values = st.one_of(
    st.dictionaries(keys, scalars.map(_json_safe), max_size=6),
    st.lists(st.dictionaries(keys, scalars.map(_json_safe), max_size=4), max_size=4),
    st.lists(st.lists(numbers.map(_json_safe), max_size=4), max_size=4),
    st.dictionaries(
        st.sampled_from(["instances", "inputs", "data"]), st.lists(scalars.map(_json_safe))
    ),
)
json_texts = st.one_of(
    json_values.map(lambda d: orjson.dumps(d).decode()), st.sampled_from(NUMBER_TEXTS)
)


@st.composite
def capture_lines(draw: st.DrawFn) -> bytes:
    """One capture line: a record with a CSV, JSON or BASE64 body, or something broken."""
    kind = draw(st.sampled_from(["csv", "json", "base64", "bytes", "cut", "blank", "json_any"]))
    moment = T0 + timedelta(seconds=draw(st.integers(0, 7200)))
    if kind == "bytes":
        return draw(st.binary(max_size=200)).replace(b"\n", b" ") + b"\n"
    if kind == "blank":
        return b"  \n"
    if kind == "json_any":
        return orjson.dumps(draw(json_values)) + b"\n"
    if kind == "json":
        body, encoding, media = draw(json_texts), "JSON", "application/json"
    else:
        rows = draw(st.lists(st.lists(cells, min_size=1, max_size=5), min_size=1, max_size=3))
        body, encoding, media = "\n".join(",".join(r) for r in rows), "CSV", "text/csv"
    if kind == "base64":
        body, encoding = base64.b64encode(body.encode()).decode(), "BASE64"
    line = build_record(
        event_id=f"e{draw(st.integers(0, 10**6))}",
        inference_time=moment,
        request=CaptureSide(media, body, encoding),
        response=CaptureSide("text/csv", draw(cells), "CSV"),
    )
    if kind == "cut":
        return line[: draw(st.integers(0, len(line) - 1))] + b"\n"
    return line


def _ties_sorted(report: dict[str, Any]) -> dict[str, Any]:
    """Categories of equal counts come in hash order, which a sketch's bytes do not keep."""
    for entry in report["features"]:
        categorical = entry.get("string_statistics", {}).get("distribution", {})
        buckets = categorical.get("categorical", {}).get("buckets")
        if buckets:
            buckets.sort(key=lambda b: (-b["count"], b["value"]))
    return report


def _check_profile(profile: DatasetProfile, consistent: bool = True) -> None:
    """Every moment finite (and the mean within [min, max] when ``consistent``), the bytes
    read back the same, the report reads back."""
    for feature in [*profile.features.values(), *profile.predictions.values()]:
        assert all(math.isfinite(x) for x in (feature.sum, feature.m2))
        if feature.count:
            assert feature.min is not None and feature.max is not None
            assert feature.mean is not None and feature.std is not None
            assert math.isfinite(feature.mean) and math.isfinite(feature.std)
            slack = 1e-9 * max(abs(feature.min), abs(feature.max))
            if consistent:
                assert feature.min - slack <= feature.mean <= feature.max + slack
    again = DatasetProfile.from_bytes(profile.to_bytes())
    report = orjson.loads(orjson.dumps(statistics_json(again)))
    assert _ties_sorted(report) == _ties_sorted(
        orjson.loads(orjson.dumps(statistics_json(profile)))
    )
    for entry in report["features"]:
        numeric = entry.get("numerical_statistics")
        if numeric is not None:
            for key in ("mean", "sum", "std_dev", "min", "max"):
                assert isinstance(numeric[key], float) and math.isfinite(numeric[key])
    parse_statistics(report)


@pytest.mark.parametrize("fmt", ["csv", "json"])
@given(lines=st.lists(capture_lines(), max_size=6))
def test_any_capture_lines_decode_count_and_profile(fmt: str, lines: list[bytes]) -> None:
    payload = PayloadConfig(input=PayloadSide(format=fmt, columns=["age", "income"]))
    limit = FeatureLimit(4, frozenset({"age", "income"}))
    batch = PayloadDecoder(payload, limit).decode_lines(lines)
    non_blank = sum(1 for line in lines if line.strip())
    assert batch.n_records + sum(batch.bad.values()) == non_blank
    assert all(len(column) == batch.n_rows for column in batch.columns.values())
    assert len(set(batch.columns) - {"age", "income"}) <= 4
    profile = DatasetProfile(limit=limit)
    profile.update(batch)
    assert profile.item_count == batch.n_rows - batch.rows_without_input
    _check_profile(profile)


@given(
    text=st.one_of(
        st.text(max_size=300),
        json_texts,
        st.lists(json_texts, max_size=3).map("\n".join),
    ),
    fmt=st.sampled_from(["csv", "json", "v2", "tfserving"]),
    output=st.booleans(),
)
def test_any_body_decodes_to_rows_or_a_counted_reason(text: str, fmt: str, output: bool) -> None:
    try:
        rows = decode_body(text, PayloadSide(format=fmt), output)
    except PayloadError as exc:
        assert exc.reason and exc.reason.isidentifier()
        return
    assert rows.n >= 1


@given(
    chunks=st.lists(
        st.lists(st.one_of(numbers, st.none(), st.sampled_from(TEXTS)), max_size=20),
        min_size=1,
        max_size=5,
    )
)
def test_profiles_of_numbers_at_the_limits_merge_in_any_order(chunks: list[list[Any]]) -> None:
    parts = [profile_rows({"x": chunk}) for chunk in chunks]
    forward, backward = DatasetProfile(), DatasetProfile()
    for part in parts:
        forward.merge(DatasetProfile.from_bytes(part.to_bytes()))
    for part in reversed(parts):
        backward.merge(part)
    _check_profile(forward)
    _check_profile(backward)
    if "x" in forward.features:
        f, b = forward.features["x"], backward.features["x"]
        assert (f.count, f.num_present, f.num_missing, f.type_counts) == (
            b.count,
            b.num_present,
            b.num_missing,
            b.type_counts,
        )
        assert (f.min, f.max) == (b.min, b.max)
        if f.count:
            spread = max(abs(f.min or 0.0), abs(f.max or 0.0))
            assert f.mean == pytest.approx(b.mean, rel=1e-6, abs=1e-9 * spread)
            assert f.std == pytest.approx(b.std, rel=1e-6, abs=1e-6 * spread)


def _blob() -> bytes:
    profile = profile_rows({"x": [1.0, 2.5, 1e200, None], "s": ["a", "b", "a", ""]})
    return profile.to_bytes()


BLOB = _blob()


@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(BLOB) - 1), st.integers(0, 255)), min_size=1, max_size=6
    ),
    cut=st.one_of(st.none(), st.integers(0, len(BLOB))),
)
def test_corrupt_profile_bytes_are_refused_or_read(
    edits: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(BLOB)
    for index, value in edits:
        data[index] = value
    blob = bytes(data[:cut] if cut is not None else data)
    try:
        profile = DatasetProfile.from_bytes(blob)
    except ProfileError:
        return
    _check_profile(profile)


@given(
    field=st.sampled_from(["sum", "m2", "min", "max", "count", "present", "scale", "k"]),
    value=st.one_of(scalars.map(_json_safe), st.lists(st.integers(0, 9), max_size=2)),
)
def test_profile_headers_with_any_value_are_refused_or_read(field: str, value: Any) -> None:
    feature = profile_rows({"x": [1.0, 2.0]}).features["x"]
    blob = feature.to_bytes()
    header_size = int.from_bytes(blob[4:8], "little")
    head = orjson.loads(blob[20 : 20 + header_size])
    head[field] = value
    header = orjson.dumps(head)
    forged = blob[:4] + len(header).to_bytes(4, "little") + blob[8:20] + header
    forged += blob[20 + header_size :]
    profile = DatasetProfile()
    try:
        read = FeatureProfile.from_bytes(forged)
    except ProfileError:
        return
    profile._inputs.features["x"] = read
    profile._inputs.rows = read.num_present + read.num_missing
    _check_profile(profile, consistent=False)  # a forged sum need not fit min and max


@given(
    lines=st.lists(
        st.one_of(st.integers(0, 3000), st.sampled_from([1023, 1024, 1025, 2047, 2048, 2049])),
        max_size=8,
    ),
    last_newline=st.booleans(),
    compressed=st.booleans(),
)
def test_reading_under_a_line_limit_keeps_offsets_exact(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[int],
    last_newline: bool,
    compressed: bool,
) -> None:
    limit = 1024
    content = b"".join(b"x" * n + b"\n" for n in lines)
    if lines and not last_newline:
        content = content[:-1]
    path = tmp_path_factory.mktemp("pieces") / ("f.jsonl.gz" if compressed else "f.jsonl")
    path.write_bytes(gzip.compress(content) if compressed else content)
    pieces = list(read_pieces(Path(path), 0, limit))
    assert sum(p.size if isinstance(p, TooLarge) else len(p) for p in pieces) == len(content)
    expected: list[int | TooLarge] = []
    for line in content.splitlines(keepends=True):
        length = len(line.rstrip(b"\n"))
        expected.append(TooLarge(len(line)) if length > limit else length)
    got: list[int | TooLarge] = []
    for piece in pieces:
        if isinstance(piece, TooLarge):
            got.append(piece)
        else:
            got.extend(len(line.rstrip(b"\n")) for line in piece.splitlines(keepends=True))
    assert got == expected


@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.lists(json_texts.map(str.encode), max_size=5).map(b"\n".join),
        st.lists(
            st.fixed_dictionaries(
                {
                    "groundTruthData": st.fixed_dictionaries(
                        {"data": st.one_of(st.text(max_size=4), scalars.map(_json_safe))},
                        optional={"encoding": st.text(max_size=6)},
                    ),
                    "eventMetadata": st.dictionaries(
                        st.sampled_from(["eventId", "inferenceId", "inferenceTime"]),
                        scalars.map(_json_safe),
                    ),
                }
            ).map(orjson.dumps),
            max_size=5,
        ).map(b"\n".join),
    )
)
def test_any_ground_truth_body_is_parsed_or_reported(body: bytes) -> None:
    rows, bad = parse_ground_truth(body, received_at=0.0)
    assert len(rows) + len(bad) <= len(body.splitlines())
    orjson.dumps(bad)  # the answer is JSON
