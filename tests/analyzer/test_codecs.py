"""Payload codecs: every format, batches, BASE64, bad records counted, never raising."""

from __future__ import annotations

import base64
import gc
import json
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.decoding.codecs import PayloadDecoder
from analyzer.monitors.data_quality.cardinality import FeatureLimit
from modelmon.config import PayloadConfig

TIME = "2024-05-01T10:20:30Z"


def record(
    data_in: Any = None,
    data_out: Any = None,
    enc_in: str = "CSV",
    enc_out: str = "CSV",
    event_id: str = "e1",
    **meta: Any,
) -> dict[str, Any]:
    capture: dict[str, Any] = {}
    if data_in is not None:
        capture["endpointInput"] = {"mode": "INPUT", "data": data_in, "encoding": enc_in}
    if data_out is not None:
        capture["endpointOutput"] = {"mode": "OUTPUT", "data": data_out, "encoding": enc_out}
    metadata = {"eventId": event_id, "inferenceTime": TIME, **meta}
    return {"captureData": capture, "eventMetadata": metadata, "eventVersion": "0"}


def decoder(inp: dict[str, Any] | None = None, out: dict[str, Any] | None = None) -> PayloadDecoder:
    return PayloadDecoder(PayloadConfig.model_validate({"input": inp or {}, "output": out or {}}))


def test_csv_named_columns_extras_and_missing_fields() -> None:
    dec = decoder({"format": "csv", "columns": ["a", "b", "c"]}, {"columns": ["score"]})
    batch = dec.decode_records(
        [record("1,2,3", "0.5"), record("4,5", "0.6"), record("7,8,9,10", "0.7")]
    )
    assert batch.n_rows == 3
    assert batch.columns == {
        "a": ["1", "4", "7"],
        "b": ["2", "5", "8"],
        "c": ["3", None, "9"],
        "_c3": [None, None, "10"],
    }
    assert batch.predictions == {"score": ["0.5", "0.6", "0.7"]}
    assert batch.field_counts == {3: 1, 2: 1, 4: 1}
    assert not batch.bad


def test_csv_quoted_fields_and_multi_line_batch() -> None:
    dec = decoder({"columns": ["name", "n"]})
    batch = dec.decode_records([record('"Smith, J",3\n"O\'Neil",4\n', "0.1\n0.2")])
    assert batch.columns == {"name": ["Smith, J", "O'Neil"], "n": ["3", "4"]}
    assert batch.predictions == {"prediction": ["0.1", "0.2"]}
    assert batch.record_rows == [2]


def test_unnamed_columns_follow_sagemaker() -> None:
    batch = decoder().decode_records([record("1,x", "0.3")])
    assert list(batch.columns) == ["_c0", "_c1"]
    assert list(batch.predictions) == ["prediction"]


def test_one_line_of_predictions_for_a_batch_is_a_column() -> None:
    batch = decoder().decode_records([record("1\n2\n3", "0.1,0.2,0.3")])
    assert batch.predictions == {"prediction": ["0.1", "0.2", "0.3"]}
    assert not batch.warnings


def test_json_instances_lists_objects_and_single_object() -> None:
    dec = decoder({"format": "json", "columns": ["x", "y"]}, {"format": "json"})
    batch = dec.decode_records(
        [
            record(
                '{"instances": [[1, 2.5], [3, 4.5]]}', '{"predictions": [0.1, 0.2]}', "JSON", "JSON"
            ),
            record('{"inputs": [{"x": 5, "y": "u"}]}', '{"predictions": [0.3]}', "JSON", "JSON"),
            record('{"features": {"x": 6, "y": 7, "z": true}}', "[0.4]", "JSON", "JSON"),
        ]
    )
    assert batch.columns == {
        "x": [1, 3, 5, 6],
        "y": [2.5, 4.5, "u", 7],
        "z": [None, None, None, True],
    }
    assert batch.predictions == {"prediction": [0.1, 0.2, 0.3, 0.4]}


def test_json_jmespath_and_flat_instances() -> None:
    dec = decoder({"format": "json", "path": "payload.rows[*].{a: a, b: b}"}, {"format": "json"})
    body = {"payload": {"rows": [{"a": 1, "b": 2, "c": 3}, {"a": 4, "b": 5}]}}
    batch = dec.decode_records([record(orjson.dumps(body).decode(), "[1, 0]", "JSON", "JSON")])
    assert batch.columns == {"a": [1, 4], "b": [2, 5]}
    flat = decoder({"format": "json"}, {"format": "json"}).decode_records(
        [
            record(
                '{"instances": [1.0, 2.0, 5.0]}', '{"predictions": [3.5, 4.0, 5.5]}', "JSON", "JSON"
            )
        ]
    )
    assert flat.columns == {"_c0": [1.0, 2.0, 5.0]}
    assert flat.predictions == {"prediction": [3.5, 4.0, 5.5]}


def test_kserve_v2_inputs_and_outputs() -> None:
    request = {
        "inputs": [
            {"name": "input-0", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]},
            {"name": "region", "shape": [2], "datatype": "BYTES", "data": ["eu", "us"]},
        ]
    }
    response = {
        "outputs": [{"name": "proba", "shape": [2, 1], "datatype": "FP32", "data": [[0.1], [0.9]]}]
    }
    dec = decoder({"format": "v2"}, {"format": "v2"})
    batch = dec.decode_records(
        [record(orjson.dumps(request).decode(), orjson.dumps(response).decode(), "JSON", "JSON")]
    )
    assert batch.columns == {
        "input-0_0": [1, 4],
        "input-0_1": [2, 5],
        "input-0_2": [3, 6],
        "region": ["eu", "us"],
    }
    assert batch.predictions == {"proba": [0.1, 0.9]}
    named = decoder({"format": "v2", "columns": ["a", "b", "c", "r"]}).decode_records(
        [record(orjson.dumps(request).decode(), enc_in="JSON")]
    )
    assert list(named.columns) == ["a", "b", "c", "r"]
    bad = dict(request)
    bad["inputs"] = [{"name": "x", "shape": [3, 2], "data": [1, 2]}]
    assert dec.decode_records([record(orjson.dumps(bad).decode(), enc_in="JSON")]).bad == {
        "v2_shape_mismatch": 1
    }


def test_tfserving_row_and_columnar_formats() -> None:
    dec = decoder({"format": "tfserving", "columns": ["a", "b"]}, {"format": "tfserving"})
    batch = dec.decode_records(
        [
            record(
                '{"instances": [{"a": 1, "b": 2}]}', '{"predictions": [[0.2, 0.8]]}', "JSON", "JSON"
            ),
            record(
                '{"inputs": {"a": [3, 4], "b": [5, 6]}}',
                '{"outputs": [[0.3, 0.7], [0.4, 0.6]]}',
                "JSON",
                "JSON",
            ),
        ]
    )
    assert batch.columns == {"a": [1, 3, 4], "b": [2, 5, 6]}
    assert batch.predictions == {"prediction": [0.2, 0.3, 0.4], "prediction_1": [0.8, 0.7, 0.6]}


def test_base64_sides_are_decoded_first() -> None:
    data = base64.b64encode(b"1,2\n3,4").decode()
    out = base64.b64encode(b'{"predictions": [1, 0]}').decode()
    batch = decoder({}, {"format": "json"}).decode_records([record(data, out, "BASE64", "BASE64")])
    assert batch.columns == {"_c0": ["1", "3"], "_c1": ["2", "4"]}
    assert batch.predictions == {"prediction": [1, 0]}


def test_bad_records_are_counted_by_reason_and_skipped() -> None:
    dec = decoder({"format": "json"}, {"format": "json"})
    lines = [
        b"not json",
        b'{"no": "capture"}',
        orjson.dumps(record('{"instances": [[1]]}', enc_in="JSON")),
        orjson.dumps(record("{oops", enc_in="JSON")),
        orjson.dumps(record("@@@", enc_in="BASE64")),
        orjson.dumps(record('{"instances": [[2]]}', enc_in="JSON", inferenceTime="{%s}")),
        orjson.dumps(record('{"instances": [[3]]}', "not json either", "JSON", "JSON")),
        b"",
    ]
    batch = dec.decode_lines(lines)
    assert batch.bad == {
        "not_json": 1,
        "not_capture_record": 1,
        "payload_not_json": 1,
        "bad_base64": 1,
        "bad_inference_time": 1,
    }
    assert batch.columns == {"_c0": [1, 3]}
    assert batch.predictions == {}  # no output ever decoded: no prediction column
    assert batch.warnings == {"output_payload_not_json": 1}
    assert batch.record_rows == [1, 1]


def test_metadata_per_record_and_missing_sides() -> None:
    dec = decoder({"columns": ["a"]})
    batch = dec.decode_records(
        [
            record("1", "0.1", event_id="e1", inferenceId="order-1"),
            record(None, "0.2", event_id="e2"),
            record("3", None, event_id="e3"),
        ]
    )
    assert batch.event_ids == ["e1", "e2", "e3"]
    assert batch.inference_ids == ["order-1", None, None]
    assert [t.isoformat() for t in batch.inference_times] == ["2024-05-01T10:20:30+00:00"] * 3
    assert batch.columns == {"a": ["1", None, "3"]}
    assert batch.predictions == {"prediction": ["0.1", "0.2", None]}
    assert (batch.rows_without_input, batch.rows_without_output) == (1, 1)


def test_truncated_input_is_not_decoded() -> None:
    rec = record("1,2", "0.1")
    rec["modelmon"] = {"truncated": ["input"]}
    assert decoder().decode_records([rec]).bad == {"truncated_input": 1}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=6))
def test_decode_lines_never_raises_on_arbitrary_bytes(lines: list[bytes]) -> None:
    for fmt in ("csv", "json", "v2", "tfserving"):
        batch = decoder({"format": fmt}, {"format": fmt}).decode_lines(lines)
        assert batch.n_records + sum(batch.bad.values()) <= len(lines)


@settings(max_examples=150, deadline=None)
@given(
    body_in=json_values,
    body_out=json_values,
    enc=st.sampled_from(["CSV", "JSON", "BASE64", "weird"]),
    fmt=st.sampled_from(["csv", "json", "v2", "tfserving"]),
    path=st.sampled_from([None, "a", "a[*].b", "[0]"]),
)
def test_decode_records_never_raises_and_stays_aligned(
    body_in: Any, body_out: Any, enc: str, fmt: str, path: str | None
) -> None:
    text_in = json.dumps(body_in) if not isinstance(body_in, str) else body_in
    text_out = json.dumps(body_out)
    if enc == "BASE64":
        text_in = base64.b64encode(text_in.encode()).decode()
    dec = decoder({"format": fmt, "path": path}, {"format": fmt})
    records: list[Any] = [
        record(text_in, text_out, enc, "JSON"),
        body_in,
        record(text_in, None, enc),
    ]
    batch = dec.decode_records(records)
    assert batch.n_records + sum(batch.bad.values()) == len(records)
    assert sum(batch.record_rows) == batch.n_rows
    for column in [*batch.columns.values(), *batch.predictions.values()]:
        assert len(column) == batch.n_rows


def test_object_rows_with_different_keys_of_the_same_count() -> None:
    dec = decoder({"format": "json", "columns": ["c", "a"]})
    batch = dec.decode_records(
        [
            record('[{"a": 1, "b": 2}, {"a": 3, "c": 4}]', enc_in="JSON"),
            record('{"b": 5, "a": 6}', enc_in="JSON"),
        ]
    )
    assert batch.columns == {"c": [None, 4, None], "a": [1, 3, 6], "b": [2, None, 5]}
    assert batch.field_counts == {2: 3}


class _GcWatch(FeatureLimit):
    """A limit that notes, each time the decoder asks it, whether the collector runs."""

    def admits(self, name: str, others: int) -> bool:
        WATCHED.append(gc.isenabled())
        return super().admits(name, others)


WATCHED: list[bool] = []


def test_decoding_leaves_the_garbage_collector_alone() -> None:
    """The collector is process-wide: a decoder running in one of a Dask worker's threads
    must not pause it for the other threads, so it stays on while a batch decodes."""
    lines = [orjson.dumps(record('{"a": 1, "b": "x"}', enc_in="JSON"))] * 20
    payload = PayloadConfig.model_validate({"input": {"format": "json"}})
    was = gc.isenabled()
    gc.enable()
    WATCHED.clear()
    try:
        assert PayloadDecoder(payload, _GcWatch(10)).decode_lines(lines).n_rows == 20
    finally:
        (gc.enable if was else gc.disable)()
    assert WATCHED and all(WATCHED)
