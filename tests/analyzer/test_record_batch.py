"""The whole-batch decode gives exactly what the record-by-record decode gives.

A batch with a blank line (or any record that is not plain) is decoded record by record; the
same lines without it take the whole-batch path when every record is plain. Both must produce
the same :class:`DecodedBatch`, field by field.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.decoding.codecs import DecodedBatch, PayloadDecoder
from analyzer.decoding.record_batch import parse_lines, plain_fields
from modelmon.config import PayloadConfig

CSV = {"input": {"format": "csv", "columns": ["a", "b"]}, "output": {"columns": ["score"]}}
JSON = {"input": {"format": "json"}, "output": {"format": "json"}}

csv_field = st.sampled_from(["1", "2.5", "-3", "x", "", "1e3", "nan", '"q,1"', "7"])
csv_body = st.lists(csv_field, min_size=1, max_size=4).map(",".join)
csv_bodies = st.one_of(csv_body, st.lists(csv_body, min_size=2, max_size=3).map("\n".join))
scalar = st.one_of(st.integers(-5, 5), st.floats(-10, 10), st.sampled_from(["u", "v", None]))
json_row = st.dictionaries(st.sampled_from(["f", "g", "h"]), scalar, min_size=1, max_size=3)
json_rows = st.one_of(
    st.lists(json_row, min_size=1, max_size=2),
    st.lists(st.lists(scalar, min_size=1, max_size=3), min_size=1, max_size=2),
    st.lists(st.one_of(scalar, json_row), min_size=0, max_size=2),
)
json_doc = st.dictionaries(
    st.sampled_from(["instances", "inputs", "predictions", "outputs", "other"]),
    json_rows,
    min_size=1,
    max_size=3,
)
json_body = st.one_of(json_doc, json_row, json_rows).map(lambda doc: orjson.dumps(doc).decode())
times = st.sampled_from(
    ["2024-05-01T10:20:30Z", "2024-05-01T10:20:30", "2024-05-01T12:20:30+02:00", "bad", None]
)
extras = st.sampled_from([None, {}, {"truncated": []}, {"truncated": ["output"]}, "x"])


def record(
    data_in: str, data_out: str, enc: str, time: str | None, extra: Any, index: int
) -> bytes:
    meta: dict[str, Any] = {"eventId": f"e{index}", "inferenceTime": time}
    if index % 2:
        meta["inferenceId"] = f"i{index}"
    doc: dict[str, Any] = {
        "captureData": {
            "endpointInput": {"data": data_in, "encoding": enc},
            "endpointOutput": {"data": data_out, "encoding": enc},
        },
        "eventMetadata": meta,
    }
    if extra is not None:
        doc["modelmon"] = extra
    return orjson.dumps(doc) + b"\n"


def both_paths(payload: dict[str, Any], lines: list[bytes]) -> tuple[DecodedBatch, DecodedBatch]:
    decoder = PayloadDecoder(PayloadConfig.model_validate(payload))
    return decoder.decode_lines(lines), decoder.decode_lines([*lines, b"\n"])


def assert_same(fast: DecodedBatch, slow: DecodedBatch) -> None:
    assert asdict(fast) == asdict(slow)
    for name, values in fast.columns.items():  # same types too ("3" is not 3)
        assert list(map(type, values)) == list(map(type, slow.columns[name]))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(csv_bodies, csv_bodies, st.sampled_from(["CSV", "CSV", "JSON"]), times, extras),
        min_size=1,
        max_size=6,
    )
)
def test_csv_batches_decode_the_same_both_ways(rows: list[tuple[Any, ...]]) -> None:
    lines = [record(*row, index=i) for i, row in enumerate(rows)]
    fast, slow = both_paths(CSV, lines)
    assert_same(fast, slow)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(json_body, json_body, times, extras), min_size=1, max_size=6))
def test_json_batches_decode_the_same_both_ways(rows: list[tuple[Any, ...]]) -> None:
    lines = [
        record(data_in, data_out, "JSON", time, extra, index=i)
        for i, (data_in, data_out, time, extra) in enumerate(rows)
    ]
    fast, slow = both_paths(JSON, lines)
    assert_same(fast, slow)


def test_plain_batches_take_the_whole_batch_path() -> None:
    lines = [record("1,2", "0.5", "CSV", "2024-05-01T10:20:30Z", None, i) for i in range(3)]
    records = parse_lines(lines)
    assert records is not None
    fields = plain_fields(records)
    assert fields is not None
    assert fields.inputs == ["1,2"] * 3
    assert fields.inference_ids == [None, "i1", None]
    truncated = [record("1,2", "0.5", "CSV", "2024-05-01T10:20:30Z", {"truncated": ["input"]}, 0)]
    assert plain_fields(parse_lines(truncated) or []) is None
    assert parse_lines([*lines, b"  \n"]) is None


def test_json_key_preference_is_per_body() -> None:
    # The first body has only the second-choice key; another has the first choice as well.
    bodies = [
        ('{"inputs": [{"a": 1}]}', '{"predictions": [0.1]}'),
        (
            '{"instances": [{"b": 2}], "inputs": [{"a": 3}]}',
            '{"outputs": [1], "predictions": [0.2]}',
        ),
        ('{"inputs": [[4, 5]]}', '{"predictions": [[0.3]]}'),
    ]
    for chosen in ([0, 1], [0, 2], [1, 0], [0, 1, 2]):
        lines = [
            record(*bodies[b], "JSON", "2024-05-01T10:20:30Z", None, i)
            for i, b in enumerate(chosen)
        ]
        fast, slow = both_paths(JSON, lines)
        assert_same(fast, slow)
        assert fast.n_records == len(chosen)
