"""Predictions out of decoded capture records, and labels out of ground-truth data."""

from __future__ import annotations

import base64
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from analyzer.decoding.codecs import PayloadDecoder
from analyzer.monitors.model_quality.extraction import OutputReader, Unusable
from analyzer.monitors.model_quality.labels import LabelError, LabelReader, as_text
from analyzer.monitors.model_quality.predictions import (
    Extracted,
    PredictionColumns,
    PredictionExtractor,
    PredictionRow,
)
from modelmon.capture_record import CaptureSide, build_record
from modelmon.config import ModelQualityConfig, PayloadConfig

T = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)


def line(request: str, response: str, fmt: str = "CSV", inference_id: str | None = None) -> bytes:
    kind = "text/csv" if fmt == "CSV" else "application/json"
    return build_record(
        event_id=str(uuid.uuid4()),
        inference_time=T,
        request=CaptureSide(kind, request, fmt),
        response=CaptureSide(kind, response, fmt),
        inference_id=inference_id,
    )


def extract(
    lines: list[bytes], payload: dict[str, Any], max_row_bytes: int = 4096, **quality: Any
) -> Any:
    config = ModelQualityConfig.model_validate(quality)
    payload_config = PayloadConfig.model_validate(payload)
    batch = PayloadDecoder(payload_config).decode_lines(lines)
    extractor = PredictionExtractor(config, payload_config.output, max_row_bytes=max_row_bytes)
    return extractor.extract(batch)


CSV = {"input": {"format": "csv", "columns": ["a", "b"]}, "output": {"format": "csv"}}


def test_binary_from_the_probability_and_the_threshold() -> None:
    lines = [line("1,x", "0.7"), line("2,y", "0.3"), line("3,z", "0.5", inference_id="inf-3")]
    out = extract(
        lines,
        CSV,
        problem_type="BinaryClassification",
        probability_attribute="0",
        probability_threshold_attribute=0.5,
    )
    assert [r[4] for r in out.rows] == ["1", "0", "1"]  # >= the threshold is positive
    assert [r[5] for r in out.rows] == [0.7, 0.3, 0.5]
    assert out.rows[2][0] == "inf-3" and out.rows[2][2] == "inf-3"  # the key: inferenceId
    assert out.rows[0][0] == out.rows[0][1]  # else the eventId
    assert out.rows[0][3] == T.timestamp()
    assert orjson.loads(out.rows[0][6]) == {"a": "1", "b": "x"}


def test_csv_columns_by_index_with_label_and_probability() -> None:
    out = extract(
        [line("1", "0.9,1.0"), line("2", "0.2,0")],
        CSV,
        problem_type="BinaryClassification",
        probability_attribute="0",
        inference_attribute="1",
    )
    assert [(r[4], r[5]) for r in out.rows] == [("1", 0.9), ("0", 0.2)]


def test_json_by_key_and_by_jmespath_into_the_row() -> None:
    payload = {"input": {"format": "json"}, "output": {"format": "json"}}
    body = orjson.dumps({"predictions": [{"label": "cat", "scores": [0.1, 0.8, 0.1]}]}).decode()
    request = orjson.dumps({"instances": [{"x": 1.5}]}).decode()
    out = extract(
        [line(request, body, "JSON")],
        payload,
        problem_type="MulticlassClassification",
        inference_attribute="label",
        probability_attribute="scores",
    )
    assert out.rows[0][4] == "cat" and out.rows[0][5] == 0.8  # a list: its largest value
    assert orjson.loads(out.rows[0][6]) == {"x": 1.5}
    path = extract(
        [line(request, body, "JSON")],
        payload,
        problem_type="Regression",
        inference_attribute="scores[1]",
    )
    assert path.rows[0][4] == "0.8"


def test_records_without_a_prediction_are_counted_by_reason() -> None:
    payload = {"input": {"format": "json"}, "output": {"format": "json"}}
    several = line('{"instances": [[1], [2]]}', '{"predictions": [1, 0]}', "JSON")
    no_prob = line('{"instances": [[1]]}', '{"predictions": [{"other": 1}]}', "JSON")
    good = line('{"instances": [[1]]}', '{"predictions": [{"p": 0.9}]}', "JSON")
    out = extract(
        [several, no_prob, good, b"not json\n"],
        payload,
        problem_type="BinaryClassification",
        probability_attribute="p",
    )
    assert len(out.rows) == 1 and out.rows[0][4] == "1"
    assert out.skipped == {"several_rows": 1, "no_probability": 1}
    missing = extract(
        [line("1", "")], CSV, problem_type="Regression", inference_attribute="0"
    )  # an empty output body: the decoder keeps the record with a warning
    assert missing.rows == [] and sum(missing.skipped.values()) == 1


def test_an_input_row_over_the_bound_is_left_out_and_counted() -> None:
    config = ModelQualityConfig(problem_type="Regression")
    payload = PayloadConfig.model_validate(CSV)
    batch = PayloadDecoder(payload).decode_lines([line("1," + "x" * 200, "3.5")])
    at_limit = PredictionExtractor(config, payload.output, max_row_bytes=216)
    over = PredictionExtractor(config, payload.output, max_row_bytes=215)
    assert len(orjson.dumps({"a": "1", "b": "x" * 200})) == 216
    kept, dropped = at_limit.extract(batch), over.extract(batch)
    assert kept.rows[0][6] is not None and kept.rows_too_large == 0
    assert dropped.rows[0][6] is None and dropped.rows_too_large == 1
    assert dropped.rows[0][4] == "3.5"  # the prediction is kept: the first output column


@pytest.mark.parametrize(
    ("value", "text"),
    [(1, "1"), (1.0, "1"), ("1.0", "1"), (" 0 ", "0"), ("007", "7"), (True, "1"), ("False", "0"),
     (0.25, "0.25"), ("cat", "cat"), ("", None), (None, None), ([1], None),
     (float("nan"), None), ("nan", "nan")],
)  # fmt: skip
def test_labels_and_predictions_share_one_text(value: Any, text: str | None) -> None:
    assert as_text(value) == text


def test_label_reader_by_encoding_and_attribute() -> None:
    assert LabelReader(None)("1", "CSV") == "1"
    assert LabelReader("2")('a,"b,c",1.0', "CSV") == "1"
    assert LabelReader("label")('{"label": 0}', "JSON") == "0"
    assert LabelReader("a.b[0]")('{"a": {"b": ["x"]}}', "JSON") == "x"
    assert LabelReader(None)("[3]", "JSON") == "3"
    encoded = base64.b64encode(b'{"label": 1}').decode()
    assert LabelReader("label")(encoded, "BASE64") == "1"
    assert LabelReader("0")(base64.b64encode(b"1,0").decode(), "BASE64") == "1"
    # one CSV value is the label whatever the attribute (it names the table's column for
    # `modelmon baseline --model-quality`), as in the batch path
    assert LabelReader("label")("1", "CSV") == "1" and LabelReader("3")("0", "CSV") == "0"
    for reader, data, encoding, reason in [
        (LabelReader("3"), "1,0", "CSV", "no_label"),
        (LabelReader("label"), "1,0", "CSV", "attribute_not_in_csv"),
        (LabelReader("label"), '{"other": 1}', "JSON", "no_label"),
        (LabelReader(None), '{"label": 1}', "JSON", "label_not_scalar"),
        (LabelReader(None), "{oops", "JSON", "label_not_json"),
        (LabelReader(None), "!!", "BASE64", "bad_base64"),
        (LabelReader(None), "x" * 1025, "CSV", "too_long"),
    ]:
        with pytest.raises(LabelError) as caught:
            reader(data, encoding)
        assert caught.value.reason == reason
    assert LabelReader(None)("x" * 1024, "CSV") == "x" * 1024  # at the limit


JSON = {"input": {"format": "json"}, "output": {"format": "json"}}
HOSTILE_OUTPUTS = [
    {"p": 0.9, "label": 1}, {"p": "0.25", "label": "0"}, {"p": " 0.5 ", "label": True},
    {"p": "nan", "label": "cat"}, {"p": "1e400", "label": 2.0}, {"p": True, "label": None},
    {"p": [0.2, 0.7], "label": [1]}, {"p": None, "label": "x" * 1025}, {"p": "n/a", "label": 7},
    {"p": 10**30, "label": {"a": 1}}, {"label": " 007 "},
]  # fmt: skip
HOSTILE_INPUTS = [
    {"a%s": 1, 'q"uote': "x"}, {"a%s": "é ✓", 'q"uote': None}, {"a%s": [1, {"b": 2}]},
    {"a%s": 1.5e300, 'q"uote': "\n"}, {"a%s": -(2**63)}, {'q"uote': "y" * 300},
]  # fmt: skip


def _hostile_lines() -> list[bytes]:
    lines = []
    for i, output in enumerate(HOSTILE_OUTPUTS):
        request = json.dumps({"instances": [HOSTILE_INPUTS[i % len(HOSTILE_INPUTS)]]})
        response = json.dumps({"predictions": [output]})  # 10**30: orjson reads a float
        inference_id = "k" * 1025 if i == 2 else None  # a key over the bound
        lines.append(line(request, response, "JSON", inference_id=inference_id))
    return lines


@pytest.mark.parametrize(
    "quality",
    [
        {"problem_type": "BinaryClassification", "probability_attribute": "p"},
        {"problem_type": "BinaryClassification", "probability_attribute": "p",
         "inference_attribute": "label"},
        {"problem_type": "MulticlassClassification", "inference_attribute": "label"},
        {"problem_type": "Regression"},
    ],
)  # fmt: skip
def test_the_column_path_gives_what_the_record_loop_gives(quality: dict[str, Any]) -> None:
    """A batch of one row per record goes a column at a time; one record of two rows sends the
    same batch through the record-by-record loop: the same rows, blobs and counts."""
    several = line('{"instances": [{"a%s": 1}, {"a%s": 2}]}', '{"predictions": [1, 0]}', "JSON")
    lines = _hostile_lines()
    columns = extract(lines, JSON, max_row_bytes=200, **quality)
    records = extract([*lines, several], JSON, max_row_bytes=200, **quality)
    assert records.skipped.pop("several_rows") == 1
    assert columns.rows == records.rows and columns.skipped == records.skipped
    assert columns.rows_too_large == records.rows_too_large >= 1
    assert columns.rows  # some rows kept, some skipped
    assert sum(columns.skipped.values()) >= 2 and "key_too_long" in columns.skipped


def test_input_rows_are_the_bytes_of_each_rows_object_and_bad_values_fall_back() -> None:
    """The template fill equals ``orjson.dumps`` of each row's dict; a value orjson refuses
    (an integer over 64 bits) leaves that row out, the others are kept."""
    config = ModelQualityConfig(problem_type="Regression")
    payload = PayloadConfig.model_validate(JSON)
    rows = [
        {"a%s": 1, 'q"uote': 'é","\\', "n": True},
        {"a%s": 2.5, 'q"uote': '\\","', "n": None},
        {"a%s": None, 'q"uote': "", "n": -3},
        {"a%s": -7, 'q"uote': '"%b,"\n', "n": 1e300},
    ]  # strings that hold the separator, a trailing backslash, quotes, %; numbers and null
    lines = [
        line(orjson.dumps({"instances": [row]}).decode(), '{"predictions": [1]}', "JSON")
        for row in rows
    ]
    batch = PayloadDecoder(payload).decode_lines(lines)
    names = list(batch.columns)
    expected = [
        orjson.dumps(dict(zip(names, values, strict=True)))
        for values in zip(*batch.columns.values(), strict=True)
    ]
    fast = PredictionExtractor(config, payload.output).extract(batch)
    assert [r[6] for r in fast.rows] == expected and fast.rows_too_large == 0
    column = batch.columns["a%s"]
    assert isinstance(column, list)
    column[1] = 2**70  # as a decoder handing over a Python int might
    out = PredictionExtractor(config, payload.output).extract(batch)
    assert [r[6] for r in out.rows] == [expected[0], None, *expected[2:]]
    assert out.rows_too_large == 1
    column[1] = 2.5
    strings = batch.columns['q"uote']
    assert isinstance(strings, list)
    strings[2] = "\ud800"  # a lone surrogate, which orjson refuses to encode
    out = PredictionExtractor(config, payload.output).extract(batch)
    assert [r[6] for r in out.rows] == [*expected[:2], None, expected[3]]
    assert out.rows_too_large == 1


@pytest.mark.parametrize("several", [False, True])
def test_times_handed_in_are_the_rows_times(several: bool) -> None:
    """The ingest hands over the epoch times it already computed: they are each row's time
    (column path and record loop), and a list that does not fit the batch is not used."""
    config = ModelQualityConfig.model_validate(
        {"problem_type": "BinaryClassification", "probability_attribute": "p"}
    )
    payload = PayloadConfig.model_validate(JSON)
    lines = _hostile_lines()
    if several:
        lines.append(line('{"instances": [{"a": 1}, {"a": 2}]}', '{"predictions": [1, 0]}', "JSON"))
    batch = PayloadDecoder(payload).decode_lines(lines)
    extractor = PredictionExtractor(config, payload.output)
    given = [1000.0 + i for i in range(batch.n_records)]
    plain = extractor.extract(batch)
    handed = extractor.extract(batch, given)
    keys = [i or e for i, e in zip(batch.inference_ids, batch.event_ids, strict=True)]
    assert [r[3] for r in handed.rows] == [given[keys.index(r[0])] for r in handed.rows]
    assert [r[:3] + r[4:] for r in handed.rows] == [r[:3] + r[4:] for r in plain.rows]
    assert extractor.extract(batch, given[:-1]).rows == plain.rows  # does not fit: its own


@pytest.mark.parametrize("several", [False, True])  # the column path, the record loop
def test_a_number_that_is_no_probability_skips_its_record_at_the_limits(several: bool) -> None:
    """0 and 1 are probabilities; a hair outside, 1e308, inf and NaN are not: the record is
    skipped as ``bad_probability`` (the batch's reader rejects the same lines)."""
    values: list[Any] = [0, "1", -0.0, 1.0000001, "-1e-12", 1e308, "inf", "-inf", "nan", 0.5]
    lines = [
        line('{"instances": [{"a": 1}]}', json.dumps({"predictions": [{"p": v, "y": 1}]}), "JSON")
        for v in values
    ]
    if several:  # a record of two rows sends the batch through the record-by-record loop
        two = json.dumps({"predictions": [{"p": 0.5, "y": 1}, {"p": 0.5, "y": 0}]})
        lines.append(line('{"instances": [{"a": 1}, {"a": 2}]}', two, "JSON"))
    out = extract(
        lines,
        JSON,
        problem_type="BinaryClassification",
        probability_attribute="p",
        inference_attribute="y",
    )
    assert [r[5] for r in out.rows] == [0.0, 1.0, -0.0, 0.5]
    assert out.skipped["bad_probability"] == 6
    assert out.skipped.get("several_rows", 0) == int(several)


@pytest.mark.parametrize("given_times", [False, True], ids=["times-read", "times-given"])
def test_records_refused_for_their_input_keep_their_place_time_and_prediction(
    given_times: bool,
) -> None:
    """A record the decoder refused only because its input does not parse (``bad`` for data
    quality) gives its prediction in its place among the kept ones, with its own time and no
    input row; the caller's ``times`` are the kept records' (one per decoded record)."""

    def record(key: str, seconds: int, request: str, response: str | None = "0.7") -> bytes:
        return build_record(
            event_id=key,
            inference_time=T + timedelta(seconds=seconds),
            request=CaptureSide("text/csv", request, "CSV"),
            response=None if response is None else CaptureSide("text/csv", response, "CSV"),
        )

    lines = [
        record("r0", 0, ""),  # refused first
        record("k1", 1, "1,2"),
        record("r2", 2, "", "0.2"),
        record("r3", 3, "", "n/a"),  # refused, and no probability either
        record("k4", 4, "3,4", "0.1"),
        record("k5", 5, "5,6\n7,8"),  # kept, two input rows: no input row
        record("r6", 6, "", None),  # refused, no output
        record("r7", 7, ""),  # refused last
    ]
    payload = PayloadConfig.model_validate(CSV)
    batch = PayloadDecoder(payload).decode_lines(lines)
    assert (batch.n_records, batch.n_rows, dict(batch.bad)) == (3, 4, {"empty_payload": 5})
    assert [r.event_id for r in batch.refused] == ["r0", "r2", "r3", "r6", "r7"]
    assert [r.at for r in batch.refused] == [0, 1, 1, 3, 3]
    config = ModelQualityConfig.model_validate(
        {"problem_type": "BinaryClassification", "probability_attribute": "0"}
    )
    times = [t.timestamp() for t in batch.inference_times] if given_times else None
    out = PredictionExtractor(config, payload.output).extract(batch, times)
    assert [(r[0], r[3] - T.timestamp(), r[4], r[5]) for r in out.rows] == [
        ("r0", 0, "1", 0.7),
        ("k1", 1, "1", 0.7),
        ("r2", 2, "0", 0.2),
        ("k4", 4, "0", 0.1),
        ("k5", 5, "1", 0.7),
        ("r7", 7, "1", 0.7),
    ]
    rows = {r[0]: r[6] for r in out.rows}
    assert orjson.loads(rows["k1"]) == {"a": "1", "b": "2"}
    assert [rows[k] for k in ("r0", "r2", "k5", "r7")] == [None] * 4
    assert dict(out.skipped) == {"bad_probability": 1, "no_output": 1}


@pytest.mark.parametrize("problem", ["BinaryClassification", "MulticlassClassification",
                                     "Regression"])  # fmt: skip
def test_an_output_nested_past_the_recursion_limit_is_unreadable_on_the_column_path(
    problem: str,
) -> None:
    """A JSON output read by key whose value is a list nested 1,000 deep (orjson parses up
    to 1,024): the column-wise reading hands the batch to the record-by-record one, which
    says ``unreadable_output`` for that record; the others keep their predictions, the same
    as the batch readers' ``OutputReader.read`` of each body."""
    deep = '{"pred": ' + "[" * 1000 + '"x"' + "]" * 1000 + "}"
    bodies = ['{"pred": 1}', deep, '{"pred": 0}']
    json_io = {"input": {"format": "json"}, "output": {"format": "json"}}
    out = extract([line('{"a": 1}', body, "JSON") for body in bodies], json_io,
                  problem_type=problem, inference_attribute="pred")  # fmt: skip
    assert [r[4] for r in out.rows] == ["1", "0"]
    assert out.skipped == {"unreadable_output": 1}
    config = ModelQualityConfig.model_validate(
        {"problem_type": problem, "inference_attribute": "pred"}
    )
    reader = OutputReader(config, PayloadConfig.model_validate(json_io).output)
    with pytest.raises(Unusable) as refused:
        reader.read(deep, "JSON")
    assert refused.value.reason == "unreadable_output"


def test_prediction_columns_give_back_the_rows_and_take_any_of_them() -> None:
    """The extraction hands the store columns, not a tuple per row: the same rows back, and
    a selection of them in the order asked (of one row too, where ``itemgetter`` of a single
    index would give the value itself, and a string would be taken apart)."""
    rows: list[PredictionRow] = [
        ("k1", "k1", None, 1.0, "1", 0.9, b'{"a":1}'),
        ("i2", "e2", "i2", 2.0, "0", None, None),
        ("k3", "k3", None, 3.5, "1", 0.6, b'{"a":3}'),
    ]
    columns = PredictionColumns.of_rows(rows)
    assert len(columns) == 3 and columns.rows() == rows
    assert columns.take([2, 0]).rows() == [rows[2], rows[0]]
    assert columns.take([1]).rows() == [rows[1]]
    assert columns.take([]).rows() == [] and not columns.take([])
    more = PredictionColumns.of_rows(rows[:1])
    more.extend(columns.take([2]))
    assert more.rows() == [rows[0], rows[2]] and columns.rows() == rows  # columns unchanged
    extracted = Extracted(columns=PredictionColumns.of_rows(rows[:2]))
    extracted.add(Extracted(columns=columns.take([2])))
    assert extracted.rows == rows


def test_a_string_ending_in_quote_comma_keeps_both_rows_exact() -> None:
    """A value ending in ``",`` encodes as ``\\","`` before the next value's quote: the
    column's one encoding is not split there (the rows stored are orjson's of each row)."""
    payload = PayloadConfig.model_validate(
        {"input": {"format": "csv", "columns": ["a", "b"]}, "output": {"format": "csv"}}
    )
    config = ModelQualityConfig(problem_type="BinaryClassification", probability_attribute="0")
    lines = [line('"x"",",1', "0.7", "CSV"), line("y,2", "0.4", "CSV")]
    batch = PayloadDecoder(payload).decode_lines(lines)
    assert batch.columns["a"] == ['x",', "y"]
    out = PredictionExtractor(config, payload.output).extract(batch)
    assert [r[6] for r in out.rows] == [
        orjson.dumps({"a": 'x",', "b": "1"}),
        orjson.dumps({"a": "y", "b": "2"}),
    ]


def test_string_columns_of_quotes_commas_and_backslashes_encode_as_orjson_does() -> None:
    """Random strings of the characters the split of an encoded column must respect: each
    row's bytes equal ``orjson.dumps`` of its dict, whatever the column holds."""
    rng = random.Random(11)
    alphabet = ['"', ",", "\\", "a", '","', '",']
    config = ModelQualityConfig(problem_type="Regression")
    payload = PayloadConfig.model_validate(JSON)
    for _ in range(200):
        rows = [
            {name: "".join(rng.choices(alphabet, k=rng.randrange(4))) for name in ("p", "q")}
            for _ in range(rng.randrange(1, 6))
        ]
        lines = [
            line(orjson.dumps({"instances": [row]}).decode(), '{"predictions": [1]}', "JSON")
            for row in rows
        ]
        batch = PayloadDecoder(payload).decode_lines(lines)
        out = PredictionExtractor(config, payload.output).extract(batch)
        assert [r[6] for r in out.rows] == [orjson.dumps(row) for row in rows]


def test_prediction_columns_of_different_lengths_are_refused() -> None:
    """A decoder's columns out of step (a time missing) would store a block whose times do
    not match its keys: refused where the columns are built."""
    with pytest.raises(ValueError, match="different lengths"):
        PredictionColumns(["k1", "k2"], ["k1", "k2"], [None, None], [1.0], ["1", "0"],
                          [0.5, 0.5], [None, None])  # fmt: skip
