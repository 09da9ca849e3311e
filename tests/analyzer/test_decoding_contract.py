"""The decoding contract (analyzer/decoding/contract.py): one corpus, every path, one result.

Every :class:`~analyzer.decoding.contract.BatchDecoder` is fed the same capture lines: CSV and
JSON payloads, BASE64 and plain encodings, missing fields, bad JSON, huge and non-finite
numbers, the value-type grammar's edge cases, unicode, empty bodies, truncated and partial
records, multi-row bodies, every kind of time. A path either declines a case (None) or gives
exactly what the record-by-record path gives, field by field; and each path must take the
cases it exists for, so that no comparison is skipped by a decline.
"""

from __future__ import annotations

import base64
import importlib.util
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from analyzer.decoding.codecs import PayloadDecoder, PlainDecoder
from analyzer.decoding.contract import BatchDecoder, Column, DecodedBatch
from analyzer.decoding.literals import FRACTIONAL, INTEGRAL, STRING, literal_type
from analyzer.decoding.value_types import split_values
from analyzer.monitors.data_quality.cardinality import FeatureLimit
from modelmon.config import PayloadConfig

CSV = PayloadConfig.model_validate(
    {"input": {"format": "csv", "columns": ["a", "b", "c"]}, "output": {"columns": ["score"]}}
)
JSON = PayloadConfig.model_validate({"input": {"format": "json"}, "output": {"format": "json"}})
JSON_NAMED = PayloadConfig.model_validate(
    {"input": {"format": "json", "columns": ["c", "a"]}, "output": {"format": "json"}}
)
WIDE = PayloadConfig.model_validate({"input": {"format": "csv", "columns": ["a"]}})
TIME = "2024-05-01T10:20:30Z"
#: The value-type grammar's edge cases (analyzer/decoding/literals.py), as text.
EDGES = ["1e5", " 1", "0x10", "1_000", "+1", ".5", "inf", "NaN", "", "-", ".", "5.", "-0"]
HUGE = ["1e308", "-1e308", "1e309", "-0.0", "1" * 400, "1e-400", "2.5e-308"]
UNICODE = ["é", "日本", "ü-ß", "１２", "٣", "\u00a0"]


def line(
    data_in: Any = "1,x,2",
    data_out: Any = "0.5",
    encoding: str = "CSV",
    event_id: Any = "e1",
    time: Any = TIME,
    extra: dict[str, Any] | None = None,
    **metadata: Any,
) -> bytes:
    capture: dict[str, Any] = {}
    if data_in is not None:
        capture["endpointInput"] = {"mode": "INPUT", "data": data_in, "encoding": encoding}
    if data_out is not None:
        capture["endpointOutput"] = {"mode": "OUTPUT", "data": data_out, "encoding": encoding}
    meta = {"eventId": event_id, "inferenceTime": time, **metadata}
    record: dict[str, Any] = {"captureData": capture, "eventMetadata": meta, "eventVersion": "0"}
    if extra is not None:
        record["modelmon"] = extra
    return orjson.dumps(record) + b"\n"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def csv_rows(values: list[str]) -> list[bytes]:
    return [line(f"{i},{v},é{i % 3}", f"0.{i}", event_id=f"e{i}") for i, v in enumerate(values)]


def json_rows(values: list[Any]) -> list[bytes]:
    def body(i: int, v: Any) -> str:
        return json.dumps({"instances": [{"a": i, "b": v, "c": 1.5}]})  # big ints too

    return [
        line(body(i, v), orjson.dumps({"predictions": [0.5]}).decode(), "JSON", f"e{i}")
        for i, v in enumerate(values)
    ]


def _lines_of(*parts: list[bytes]) -> list[bytes]:
    return [row for part in parts for row in part]


V2 = PayloadConfig.model_validate({"input": {"format": "v2"}, "output": {"format": "csv"}})
V2_BODY = '{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": %s}]}'
PLAIN_CSV = csv_rows([str(i) for i in range(5)])
PLAIN_JSON = json_rows(list(range(5)))
#: name -> (payload, lines, the paths that must take it besides ``records``).
CASES: dict[str, tuple[PayloadConfig, list[bytes], set[str]]] = {
    "csv_plain": (CSV, PLAIN_CSV, {"columnwise", "arrow_csv", "arrow_json"}),
    "csv_grammar_edges": (CSV, csv_rows(EDGES), {"columnwise", "arrow_csv", "arrow_json"}),
    "csv_huge_numbers": (CSV, csv_rows(HUGE), {"columnwise", "arrow_csv", "arrow_json"}),
    "csv_unicode": (CSV, csv_rows(UNICODE), {"columnwise", "arrow_csv", "arrow_json"}),
    "csv_ids_and_times": (
        CSV,
        [
            line(event_id="a", inferenceId="i1"),
            line(event_id="b", time="2024-05-01T10:20:30.123456Z"),
            line(event_id="c", time="2024-05-01T10:20:30.5Z", inferenceId=None),
        ],
        {"columnwise", "arrow_csv", "arrow_json"},
    ),
    "csv_offset_times": (
        CSV,
        [
            line(time="2024-05-01T12:20:30+02:00"),
            line(time="2024-05-01T10:20:30+00:00"),
            line(time="2024-05-01T10:20:30"),
            line(time="2024-05-01 10:20:30.1234567Z"),
        ],
        {"columnwise"},
    ),
    "csv_multi_row_bodies": (
        CSV,
        [line("1,x,2\n3,y,4", "0.1\n0.2"), line("5,z,6", "0.3"), line("7,w,8\r\n9,v,0", "1\n2")],
        {"columnwise"},
    ),
    "csv_quoted_and_ragged": (
        CSV,
        [line('"1,5",x,2'), line("1,2"), line("1,2,3,4"), line("1,,3")],
        {"columnwise"},
    ),
    "csv_base64": (
        CSV,
        [line(b64("1,x,2"), b64("0.5"), "BASE64"), line(b64("é,2,1e5"), b64("1"), "BASE64")],
        set(),
    ),
    "csv_one_output_row_per_input_rows": (CSV, [line("1,x,2\n3,y,4", "0.1,0.2")], set()),
    "csv_bad_records": (
        CSV,
        _lines_of(
            PLAIN_CSV,
            [
                b"{not json\n",
                b"\n",
                b"   \n",
                b"[1, 2]\n",
                b'"text"\n',
                line(time="2024-05-01T24:00:00Z"),
                line(time="2024-05-01T10:20:30z"),
                line(time=5),
                line(time=None),
                line(event_id=7),
                line(data_in=None, data_out=None),
                line(data_in=""),
                line(data_in=base64.b64encode(b"\xff").decode(), encoding="BASE64"),
                line(data_in="not base64!", encoding="BASE64"),
                orjson.dumps({"captureData": {}, "eventMetadata": {"inferenceTime": TIME}}),
                orjson.dumps({"eventMetadata": {"eventId": "x", "inferenceTime": TIME}}),
                line(inferenceId=12),
            ],
        ),
        set(),
    ),
    "csv_one_side_only": (
        CSV,
        [line(data_out=None), line(data_in=None), line(data_out=""), *PLAIN_CSV[:2]],
        set(),
    ),
    "csv_truncated_and_partial": (
        CSV,
        [
            line(extra={"truncated": ["input"], "partial": ["input"]}),
            line(extra={"truncated": ["output"]}),
            line(extra={"truncated": ["input", "output"]}),
            line(extra={"status": 200, "latency_ms": 1.5}),
            line(extra={"partial": ["input"]}),
            *PLAIN_CSV[:2],
        ],
        set(),
    ),
    "csv_unnamed_columns": (WIDE, PLAIN_CSV, {"columnwise", "arrow_csv", "arrow_json"}),
    "csv_record_oddities": (
        CSV,
        [
            PLAIN_CSV[0].rstrip(b"\n") + b"   \n",
            b"  " + PLAIN_CSV[1],
            PLAIN_CSV[2].replace(b'"eventId":"e2"', b'"eventId":"x","eventId":"e2"'),
            line(event_id="", inferenceId=""),
            line(extra={"truncated": []}),
            line(extra={"truncated": "input"}),
            line(extra={"truncated": ["inp"]}),
            line(extra="not an object"),
            line(data_in=5),
            line(encoding="csv"),
            line(time="0001-01-01T00:00:00Z"),
            line(time="9999-12-31T23:59:59.999999Z"),
            line(customAttributes=["a=1"]),
            orjson.dumps(
                {
                    "captureData": {
                        "endpointInput": {"data": "1,2,3", "encoding": "CSV"},
                        "endpointOutput": None,
                    },
                    "eventMetadata": {"eventId": "n", "inferenceTime": TIME},
                }
            ),
        ],
        set(),
    ),
    "csv_far_times": (
        CSV,
        [line(time="0001-01-01T00:00:00Z"), line(time="9999-12-31T23:59:59.999999Z")],
        {"columnwise", "arrow_csv", "arrow_json"},
    ),
    "csv_several_chunks": (
        CSV,
        csv_rows([str(i % 7) if i % 5 else f"v{i % 3}" for i in range(150)]),
        {"columnwise", "arrow_csv", "arrow_json"},
    ),
    "csv_bad_record_in_a_later_chunk": (
        CSV,
        [*csv_rows([str(i) for i in range(130)]), line(time="bad"), *PLAIN_CSV],
        set(),
    ),
    "json_several_chunks": (
        JSON,
        json_rows([i if i % 3 else float(i) for i in range(150)]),
        {"columnwise", "arrow_json"},
    ),
    "json_keys_change_in_a_later_chunk": (
        JSON,
        [
            *json_rows(list(range(100))),
            line('{"inputs": [{"a": 1}]}', '{"predictions": [1]}', "JSON"),
            line('{"features": [{"a": 2}], "data": [{"a": 3}]}', '{"predictions": [1]}', "JSON"),
        ],
        {"columnwise"},
    ),
    "json_earlier_key_in_a_later_chunk": (
        JSON,
        [
            *[
                line(f'{{"inputs": [{{"a": {i}}}]}}', '{"predictions": [1]}', "JSON")
                for i in range(100)
            ],
            line('{"inputs": [{"a": 1}], "instances": [{"a": 9}]}', '{"predictions": [0]}', "JSON"),
        ],
        {"columnwise"},
    ),
    "json_plain": (JSON, PLAIN_JSON, {"columnwise", "arrow_json"}),
    "json_null_and_bool_columns": (
        JSON,
        [
            line(
                orjson.dumps({"instances": [{"a": None, "b": True, "c": i}]}).decode(),
                orjson.dumps({"predictions": [None]}).decode(),
                "JSON",
                f"e{i}",
            )
            for i in range(3)
        ],
        {"columnwise", "arrow_json"},
    ),
    "json_key_order_and_named_columns": (
        JSON_NAMED,
        [
            line('{"instances": [{"a": 1, "b": 2, "c": 3}]}', '{"predictions": [1]}', "JSON"),
            line('{"instances": [{"c": 4, "a": 5, "b": 6}]}', '{"predictions": [0]}', "JSON"),
            line('{"instances": [{"d": 7, "a": 8}]}', '{"predictions": [1]}', "JSON"),
        ],
        {"columnwise", "arrow_json"},
    ),
    "json_grammar_edges_as_strings": (JSON, json_rows(EDGES), {"columnwise", "arrow_json"}),
    "json_numbers": (
        JSON,
        json_rows([1e308, -1e308, -0.0, 3, 3.0, 2**63, 10**20, 2.5e-308, 0]),
        {"columnwise", "arrow_json"},
    ),
    "json_unicode_and_odd_values": (
        JSON,
        json_rows([*UNICODE, True, None, [1, 2], {"k": "v"}]),
        {"columnwise"},
    ),
    "json_multi_row_bodies": (
        JSON,
        [
            line(
                '{"instances": [{"a": 1}, {"a": 2.5, "b": "x"}]}', '{"predictions": [1, 0]}', "JSON"
            ),
            line('{"inputs": [[1, 2], [3, 4]]}', '{"outputs": [[0.1], [0.2]]}', "JSON"),
            line('{"instances": [1, 2, 3]}', '{"predictions": [0, 1, 0]}', "JSON"),
            line('{"a": [1, 2], "b": ["x", "y"]}', "[0.5, 0.25]", "JSON"),
            line('{"a": 1}\n{"a": 2}', '{"predictions": [1, 2]}', "JSON"),
        ],
        {"columnwise"},
    ),
    "json_bad_bodies": (
        JSON,
        [
            *PLAIN_JSON[:2],
            line("{not json", '{"predictions": [1]}', "JSON"),
            line("", '{"predictions": [1]}', "JSON"),
            line('{"instances": []}', '{"predictions": [1]}', "JSON"),
            line("null", '{"predictions": [1]}', "JSON"),
            line('[1, {"a": 2}]', '{"predictions": [1]}', "JSON"),
            line('{"instances": [{"a": 1}]}', "{bad", "JSON"),
            line('{"instances": [{"a": 1}]}', '{"predictions": [1, 2, 3]}', "JSON"),
        ],
        set(),
    ),
    "v2_bad_bodies": (
        V2,
        [
            line(V2_BODY % "[1, 2]", "0.5", "JSON"),
            # nested past Python's recursion limit: a body the parsers did not foresee
            line(V2_BODY % ("[" * 1000 + "1" + "]" * 1000), "0.5", "JSON"),
            line(V2_BODY % "[1, 2, 3]", "0.5", "JSON"),  # shape [2]: v2_shape_mismatch
        ],
        set(),
    ),
    "json_base64": (
        JSON,
        [line(b64('{"instances": [{"a": 1}]}'), b64('{"predictions": [1]}'), "BASE64")],
        set(),
    ),
    "json_truncated": (
        JSON,
        [
            line(
                '{"instances": [{"a": 1',
                '{"predictions": [1]}',
                "JSON",
                extra={"truncated": ["input"]},
            ),
            line('{"instances": [{"a": 1}]}', '{"pred', "JSON", extra={"truncated": ["output"]}),
            *PLAIN_JSON[:1],
        ],
        set(),
    ),
}


def _arrow(with_json: bool) -> Callable[[PayloadConfig], BatchDecoder | None]:
    def make(payload: PayloadConfig) -> BatchDecoder | None:
        from analyzer.decoding.arrow_batch import ArrowDecoder

        return ArrowDecoder.create(payload, json=with_json)

    return make


NO_ARROW = pytest.mark.skipif(
    importlib.util.find_spec("pyarrow") is None,
    reason="pyarrow (the optional 'fast' extra) is not installed: no Arrow path to check",
)
PATHS: dict[str, Callable[[PayloadConfig], BatchDecoder | None]] = {
    "records": lambda payload: PayloadDecoder(payload, columnwise=False),
    "columnwise": PlainDecoder,
    "arrow_csv": _arrow(with_json=False),
    "arrow_json": _arrow(with_json=True),
}
PATH_PARAMS = [
    pytest.param(name, marks=[NO_ARROW] if name.startswith("arrow") else [], id=name)
    for name in PATHS
]


def _column(values: Column) -> tuple[Any, ...]:
    split = split_values(values)
    strings = split.string_counts if split.string_counts is not None else Counter(split.strings)
    return (
        split.missing,
        split.integral,
        split.fractional,
        split.numbers.tobytes(),  # bit for bit: -0.0 is not 0.0
        sorted(strings.items()),
    )


def canonical(batch: DecodedBatch) -> dict[str, Any]:
    """Everything the contract promises, in a comparable form."""
    return {
        "columns": [(name, _column(values)) for name, values in batch.columns.items()],
        "predictions": [(name, _column(values)) for name, values in batch.predictions.items()],
        "n_rows": batch.n_rows,
        "record_rows": list(batch.record_rows),
        "event_ids": list(batch.event_ids),
        "inference_ids": list(batch.inference_ids),
        "inference_times": [t.isoformat() for t in batch.inference_times],
        "time_span": batch.time_span(),
        "bad": dict(batch.bad),
        "refused": [(*r[:3], r.inference_time.isoformat(), *r[4:]) for r in batch.refused],
        "warnings": dict(batch.warnings),
        "field_counts": dict(batch.field_counts),
        "rows_without": (batch.rows_without_input, batch.rows_without_output),
        "untracked": (dict(batch.untracked), dict(batch.untracked_predictions)),
        "outputs": list(zip(batch.output_bodies, batch.output_encodings, strict=True)),
    }


def _reference(payload: PayloadConfig, lines: list[bytes]) -> DecodedBatch:
    return PayloadDecoder(payload, columnwise=False).decode(lines)


@pytest.mark.parametrize("path", PATH_PARAMS)
@pytest.mark.parametrize("case", list(CASES))
def test_every_path_gives_the_same_batch_or_declines(path: str, case: str) -> None:
    payload, lines, takers = CASES[case]
    decoder = PATHS[path](payload)
    if decoder is None:  # an Arrow path for payloads it does not read
        assert path.startswith("arrow") and path not in takers
        return
    got = decoder.decode(list(lines))
    if path == "records" or path in takers:
        assert got is not None, f"{path} must take {case}"
    if got is not None:
        assert canonical(got) == canonical(_reference(payload, lines))


def test_the_corpus_holds_what_the_contract_names() -> None:
    """The reference sees every kind of record the corpus is meant to hold."""
    seen: Counter[str] = Counter()
    for payload, lines, _ in CASES.values():
        batch = _reference(payload, lines)
        seen.update(batch.bad)
        seen.update(batch.warnings)
        seen["refused_for_a_body"] += len(batch.refused)
    expected = {
        "refused_for_a_body",
        "not_json",
        "bad_inference_time",
        "not_capture_record",
        "no_capture_data",
        "empty_payload",
        "not_utf8",
        "bad_base64",
        "truncated_input",
        "output_truncated_output",
        "payload_not_json",
        "output_payload_not_json",
        "output_row_mismatch",
        "v2_shape_mismatch",
    }
    assert expected <= set(seen), expected - set(seen)


def test_the_default_decoder_is_the_reference() -> None:
    """``PayloadDecoder`` as the ingest uses it (columnwise first) also meets the contract."""
    for payload, lines, _ in CASES.values():
        got = PayloadDecoder(payload).decode(lines)
        assert canonical(got) == canonical(_reference(payload, lines))


GRAMMAR_CASES = ("csv_grammar_edges", "json_grammar_edges_as_strings")


@pytest.mark.parametrize(
    ("path", "case"),
    [
        pytest.param(p.values[0], case, marks=p.marks, id=f"{p.id}-{case}")
        for p in PATH_PARAMS
        for case in GRAMMAR_CASES
        if p.values[0] == "records" or p.values[0] in CASES[case][2]
    ],
)
def test_every_path_types_values_by_the_one_grammar(path: str, case: str) -> None:
    """The grammar's edge cases get the types analyzer/decoding/literals.py gives them, on
    every path that reads the case's payloads."""
    payload, lines, _ = CASES[case]
    decoder = PATHS[path](payload)
    assert decoder is not None
    batch = decoder.decode(list(lines))
    assert batch is not None
    split = split_values(batch.columns["b"])
    types = Counter(literal_type(value) for value in EDGES)
    assert (split.missing, split.integral, split.fractional) == (
        types[None],
        types[INTEGRAL],
        types[FRACTIONAL],
    )
    strings = split.string_counts if split.string_counts is not None else Counter(split.strings)
    assert strings == Counter(v for v in EDGES if literal_type(v) == STRING)


@pytest.mark.parametrize("case", list(CASES))
def test_columnwise_meets_the_contract_under_a_feature_limit(case: str) -> None:
    """With ``analyzer.max_features`` in force (the ingest's decoder) the column-wise path
    leaves out and tallies the same names as the record-by-record path."""
    payload, lines, takers = CASES[case]
    limit = FeatureLimit(1, frozenset({"b"}))
    got = PlainDecoder(payload, limit).decode(list(lines))
    if "columnwise" in takers:
        assert got is not None
    if got is not None:
        reference = PayloadDecoder(payload, limit, columnwise=False).decode(lines)
        assert canonical(got) == canonical(reference)
