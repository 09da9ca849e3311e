"""One reader of a capture line's envelope (analyzer/decoding/envelope.py), every path.

Each case is one capture line and two expected verdicts: the data-quality decoder's (``keep``
or the ``bad`` reason it counts) and model quality's (``keep`` or the reason: the decoder's
word when the decoder refuses the line, else the extraction's). Every path that reads a line
gives its monitor's verdict, and the same kept fields (event id, inference id, time; the
join key and time):

- data quality: the record-by-record decoder (the reference), the default decoder
  (column-wise first), the column-wise path alone and both Arrow paths (which may decline);
- model quality: the service (the decoder, then ``PredictionExtractor``, both decoder
  paths), the batch's line reader (``read_predictions`` line by line: ``capture_record``,
  whose bad line says ``{reason}: {detail}``) and its Arrow fast path (which may decline a
  file, never refuse a line).

Where the decoder refuses a line for its envelope, model quality gives the same word on every
path. Where it refuses one only for a body that does not parse in its configured format (the
input's; without an input, the output's: ``bad_csv``, ``empty_payload``, …), data quality
counts it bad as ever and model quality reads its output on every path (the batch readers
never look at the input): kept, or the extraction's word, with the same key and time.
"""

from __future__ import annotations

import base64
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from analyzer.decoding.arrow_batch import ArrowDecoder
from analyzer.decoding.codecs import PayloadDecoder, PlainDecoder
from analyzer.decoding.contract import BatchDecoder, DecodedBatch
from analyzer.decoding.envelope import MAX_KEY, parse_record, read_envelope
from analyzer.decoding.payload_rows import PayloadError
from analyzer.ingest import model_quality_arrow
from analyzer.ingest.model_quality_files import BadLines, read_predictions
from analyzer.monitors.model_quality.extraction import OutputReader
from analyzer.monitors.model_quality.predictions import PredictionExtractor
from analyzer.monitors.model_quality.records import Encoder
from modelmon.config import ModelQualityConfig, PayloadConfig

PAYLOAD = PayloadConfig.model_validate(
    {"input": {"format": "csv", "columns": ["a", "b"]}, "output": {"format": "csv"}}
)
QUALITY = ModelQualityConfig.model_validate(
    {"problem_type": "BinaryClassification", "probability_attribute": "0"}
)
TIME = "2024-05-01T10:20:30Z"
IN, OUT = {"data": "1,2", "encoding": "CSV"}, {"data": "0.8", "encoding": "CSV"}
META = {"eventId": "e", "inferenceTime": TIME}
KEEP = "keep"
_ABSENT = object()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def line(
    request: Any = IN,
    response: Any = OUT,
    event_id: Any = "e1",
    time: Any = TIME,
    extra: Any = _ABSENT,
    **metadata: Any,
) -> bytes:
    """A capture line; ``_ABSENT`` leaves a field out."""
    capture = {
        name: side
        for name, side in (("endpointInput", request), ("endpointOutput", response))
        if side is not _ABSENT
    }
    meta = {"eventId": event_id, "inferenceTime": time, **metadata}
    meta = {k: v for k, v in meta.items() if v is not _ABSENT}
    record: dict[str, Any] = {"captureData": capture, "eventMetadata": meta, "eventVersion": "0"}
    if extra is not _ABSENT:
        record["modelmon"] = extra
    return orjson.dumps(record)


def _case(id: str, data: bytes, dq: str, mq: str | None = None, utc: str | None = None) -> Any:
    """``mq`` None: as ``dq``; ``utc``: the time every path must keep (ISO, UTC)."""
    return pytest.param(data, dq, dq if mq is None else mq, utc, id=id)


BAD_PAD = "MSw"  # "1," without its padding
EMPTY = {"data": "", "encoding": "CSV"}  # a body that does not parse: empty_payload
BAD_CSV = {"data": '"' + "a" * 131_073 + '"', "encoding": "CSV"}  # a field over csv's limit
DEEP = {"data": "[" * 900 + "0.8" + "]" * 900, "encoding": "JSON"}
DEEPER = {"data": "[" * 5000 + "0.8" + "]" * 5000, "encoding": "JSON"}
CASES = [
    _case("plain", line(), KEEP),
    # eventId
    _case("event-id-missing", line(event_id=_ABSENT), "not_capture_record"),
    _case("event-id-empty", line(event_id=""), "not_capture_record"),
    _case("event-id-not-a-string", line(event_id=7), "not_capture_record"),
    _case("event-id-null", line(event_id=None), "not_capture_record"),
    _case("event-id-at-the-key-limit", line(event_id="e" * MAX_KEY), KEEP),
    _case("event-id-over-the-key-limit", line(event_id="e" * (MAX_KEY + 1)), KEEP, "key_too_long"),
    # inferenceId
    _case("inference-id", line(inferenceId="i-1"), KEEP),
    _case("inference-id-empty", line(inferenceId=""), KEEP),
    _case("inference-id-null", line(inferenceId=None), KEEP),
    _case("inference-id-not-a-string", line(inferenceId=12), KEEP),
    _case("inference-id-at-the-limit", line(inferenceId="i" * MAX_KEY), KEEP),
    _case("inference-id-too-long", line(inferenceId="i" * (MAX_KEY + 1)), KEEP, "key_too_long"),
    # inferenceTime
    _case("time-missing", line(time=_ABSENT), "bad_inference_time"),
    _case("time-null", line(time=None), "bad_inference_time"),
    _case("time-a-number", line(time=1714558830), "bad_inference_time"),
    _case("time-malformed", line(time="yesterday"), "bad_inference_time"),
    _case("time-hour-24", line(time="2024-05-01T24:00:00Z"), "bad_inference_time"),
    _case("time-lower-case-z", line(time="2024-05-01T10:20:30z"), "bad_inference_time"),
    _case("time-blanks", line(time=f" {TIME}"), "bad_inference_time"),
    _case("time-month-13", line(time="2024-13-01T10:20:30Z"), "bad_inference_time"),
    _case("time-z", line(), KEEP, utc="2024-05-01T10:20:30+00:00"),
    _case("time-offset", line(time="2024-05-01T12:20:30+02:00"), KEEP,
          utc="2024-05-01T10:20:30+00:00"),
    _case("time-zero-offset", line(time="2024-05-01T10:20:30+00:00"), KEEP,
          utc="2024-05-01T10:20:30+00:00"),
    _case("time-no-offset", line(time="2024-05-01T10:20:30"), KEEP,
          utc="2024-05-01T10:20:30+00:00"),
    _case("time-fraction", line(time="2024-05-01T10:20:30.5Z"), KEEP,
          utc="2024-05-01T10:20:30.500000+00:00"),
    _case("time-microseconds", line(time="2024-05-01T10:20:30.123456Z"), KEEP,
          utc="2024-05-01T10:20:30.123456+00:00"),
    _case("time-nanoseconds", line(time="2024-05-01T10:20:30.1234567Z"), KEEP,
          utc="2024-05-01T10:20:30.123456+00:00"),
    _case("time-first", line(time="0001-01-01T00:00:00Z"), KEEP, utc="0001-01-01T00:00:00+00:00"),
    _case("time-last", line(time="9999-12-31T23:59:59.999999Z"), KEEP,
          utc="9999-12-31T23:59:59.999999+00:00"),
    _case("time-before-the-first", line(time="0001-01-01T00:00:00+01:00"), "bad_inference_time"),
    _case("time-after-the-last", line(time="9999-12-31T23:59:59-01:00"), "bad_inference_time"),
    _case("time-year-10000", line(time="10000-01-01T00:00:00Z"), "bad_inference_time"),
    # the record
    _case("not-json", b"{not json", "not_json"),
    _case("two-records-on-one-line", line() + b" " + line(event_id="e2"), "not_json"),
    _case("blanks-around", b"  " + line() + b"  ", KEEP),
    _case("a-list", b"[1, 2]", "not_capture_record"),
    _case("a-string", b'"text"', "not_capture_record"),
    _case("null", b"null", "not_capture_record"),
    _case("no-capture-data", orjson.dumps({"eventMetadata": META}), "not_capture_record"),
    _case("capture-data-not-an-object", orjson.dumps({"captureData": "x", "eventMetadata": META}),
          "not_capture_record"),
    _case("no-event-metadata", orjson.dumps({"captureData": {"endpointInput": IN}}),
          "not_capture_record"),
    _case("no-side", line(_ABSENT, _ABSENT), "no_capture_data"),
    _case("both-sides-null", line(None, None), "no_capture_data"),
    # the sides
    _case("no-output", line(response=_ABSENT), KEEP, "no_output"),
    _case("output-null", line(response=None), KEEP, "no_output"),
    _case("output-only", line(request=_ABSENT), KEEP),
    _case("input-not-an-object", line(request=5), "bad_capture_side"),
    _case("input-without-data", line(request={"encoding": "CSV"}), "no_data"),
    _case("output-not-an-object", line(response=5), KEEP, "no_output"),
    _case("output-only-without-data", line(request=_ABSENT, response={"encoding": "CSV"}),
          "no_data"),
    _case("base64", line({"data": b64(b"1,2"), "encoding": "BASE64"},
                         {"data": b64(b"0.8"), "encoding": "BASE64"}), KEEP),
    _case("base64-lower-case", line({"data": b64(b"1,2"), "encoding": "base64"}), KEEP),
    _case("base64-input-bad-padding", line({"data": BAD_PAD, "encoding": "BASE64"}), "bad_base64"),
    _case("base64-input-not-utf8", line({"data": b64(b"\xff"), "encoding": "BASE64"}), "not_utf8"),
    _case("base64-output-bad-padding", line(response={"data": BAD_PAD, "encoding": "BASE64"}),
          KEEP, "unreadable_output"),
    _case("base64-output-only-bad-padding",
          line(_ABSENT, {"data": BAD_PAD, "encoding": "BASE64"}), "bad_base64"),
    # a body that does not parse in its configured format: bad for data quality, and model
    # quality reads the output as the batch readers do
    _case("input-bad-csv", line(BAD_CSV), "bad_csv", KEEP),
    _case("input-empty", line(EMPTY), "empty_payload", KEEP),
    _case("input-empty-base64", line({"data": "", "encoding": "BASE64"}), "empty_payload", KEEP),
    _case("input-empty-inference-id", line(EMPTY, inferenceId="i-1"), "empty_payload", KEEP),
    _case("input-empty-time-offset", line(EMPTY, time="2024-05-01T12:20:30+02:00"),
          "empty_payload", KEEP),
    _case("input-empty-no-output", line(EMPTY, _ABSENT), "empty_payload", "no_output"),
    _case("input-empty-output-null", line(EMPTY, None), "empty_payload", "no_output"),
    _case("input-empty-output-not-an-object", line(EMPTY, 5), "empty_payload", "no_output"),
    _case("input-empty-truncated-output", line(EMPTY, extra={"truncated": ["output"]}),
          "empty_payload", "truncated_output"),
    _case("input-empty-output-bad-base64", line(EMPTY, {"data": BAD_PAD, "encoding": "BASE64"}),
          "empty_payload", "unreadable_output"),
    _case("input-empty-output-empty", line(EMPTY, EMPTY), "empty_payload", "bad_probability"),
    _case("input-empty-output-text", line(EMPTY, {"data": "yes", "encoding": "CSV"}),
          "empty_payload", "bad_probability"),
    _case("input-empty-key-too-long", line(EMPTY, event_id="e" * (MAX_KEY + 1)),
          "empty_payload", "key_too_long"),
    _case("output-only-empty", line(_ABSENT, EMPTY), "empty_payload", "bad_probability"),
    _case("output-only-bad-csv", line(_ABSENT, BAD_CSV), "bad_csv", "unreadable_output"),
    # an output nested deeper than Python's recursion limit (a list of lists of … numbers):
    # unreadable for model quality on every path, never a RecursionError out of an ingest;
    # past orjson's limit (1,024) it is not JSON, and its CSV field no number
    _case("output-nested-deep", line(response=DEEP), KEEP, "unreadable_output"),
    _case("output-nested-past-the-parser", line(response=DEEPER), KEEP, "bad_probability"),
    # the proxy's flags
    _case("truncated-input", line(extra={"truncated": ["input"]}), "truncated_input"),
    _case("truncated-output", line(extra={"truncated": ["output"]}), KEEP, "truncated_output"),
    _case("truncated-both", line(extra={"truncated": ["input", "output"]}), "truncated_input"),
    _case("truncated-output-only", line(request=_ABSENT, extra={"truncated": ["output"]}),
          "truncated_output"),
    _case("truncated-as-a-string", line(extra={"truncated": "input"}), "truncated_input"),
    _case("truncated-none", line(extra={"truncated": []}), KEEP),
    _case("truncated-other-side-name", line(extra={"truncated": ["inp"]}), KEEP),
    _case("truncated-a-number", line(extra={"truncated": 5}), "not_capture_record"),
    _case("proxy-fields", line(extra={"status": 200, "latency_ms": 1.5}), KEEP),
    _case("modelmon-null", line(extra=None), KEEP),
    _case("modelmon-not-an-object", line(extra="x"), "not_capture_record"),
]  # fmt: skip
#: The decoder's words for a body that does not parse in its configured format.
BODY = ("bad_csv", "empty_payload")
#: Cases each fast path must take (so that a decline does not skip the comparison).
TAKEN = {"plain", "inference-id", "time-z", "time-first", "time-last", "inference-id-at-the-limit"}
#: ... and the ones model quality's Arrow path must take (it reads only the output).
ARROW_TAKEN = TAKEN | {"input-bad-csv", "input-empty", "input-empty-inference-id"}
ARROW = importlib.util.find_spec("pyarrow") is not None


Verdict = tuple[str, tuple[Any, ...]]


def _dq(batch: DecodedBatch) -> Verdict:
    """``keep`` and the kept fields, or the bad reason (and, for a record refused for a
    body, what the batch keeps of it for model quality)."""
    if batch.n_records:
        assert batch.n_records == 1 and not batch.bad and not batch.refused
        time = batch.inference_times[0].isoformat()
        return KEEP, (batch.event_ids[0], batch.inference_ids[0], time)
    assert sum(batch.bad.values()) == 1, batch.bad
    refused = tuple((*r[:3], r.inference_time.isoformat(), *r[4:]) for r in batch.refused)
    return next(iter(batch.bad)), refused


def _service(data: bytes, columnwise: bool) -> Verdict:
    batch = PayloadDecoder(PAYLOAD, columnwise=columnwise).decode_lines([data])
    if batch.bad and not batch.refused:
        return _dq(batch)
    extracted = PredictionExtractor(QUALITY, PAYLOAD.output).extract(batch)
    if extracted.rows:
        key, _, _, time, prediction, probability, _ = extracted.rows[0]
        return KEEP, (key, time, prediction, probability)
    assert sum(extracted.skipped.values()) == 1, extracted.skipped
    return next(iter(extracted.skipped)), ()


def _batch(path: Path, arrow: bool) -> Verdict | None:
    reader = OutputReader(QUALITY, PAYLOAD.output)
    encoder = Encoder(QUALITY.problem_type, QUALITY.probability_threshold_attribute)
    if arrow:
        whole = model_quality_arrow.arrow_predictions(
            path, reader.inference, reader.probability, encoder, [], hash_keys=False
        )
        if whole is None:
            return None
        keys, times, predictions, scores = whole
        prediction = "1" if predictions[0] == 1.0 else "0"
        return KEEP, (keys[0], float(times[0]), prediction, float(scores[0]))
    bad = BadLines()
    columns = read_predictions([path], reader, encoder, bad, arrow_mode="off", hash_keys=False)
    if columns.rows:
        prediction = "1" if columns.column("prediction")[0] == 1.0 else "0"
        score = float(columns.column("probability")[0])
        key, time = columns.column("key")[0], float(columns.column("time")[0])
        return KEEP, (key, time, prediction, None if np.isnan(score) else score)
    assert bad.count == 1, bad.shown
    message = bad.shown[0].split(": line 1: ", 1)[1]
    reason = message.split(":", 1)[0]
    assert message == reason or message.startswith(f"{reason}: "), message
    return reason, ()


DQ_PATHS: dict[str, Callable[[], BatchDecoder | None]] = {
    "records": lambda: PayloadDecoder(PAYLOAD, columnwise=False),
    "default": lambda: PayloadDecoder(PAYLOAD),
    "columnwise": lambda: PlainDecoder(PAYLOAD),
}
if ARROW:
    DQ_PATHS["arrow_csv"] = lambda: ArrowDecoder.create(PAYLOAD)
    DQ_PATHS["arrow_json"] = lambda: ArrowDecoder.create(PAYLOAD, json=True)


@pytest.mark.parametrize(("data", "dq", "mq", "utc"), CASES)
def test_every_path_gives_one_verdict(
    tmp_path: Path, request: pytest.FixtureRequest, data: bytes, dq: str, mq: str, utc: str | None
) -> None:
    case = request.node.callspec.id
    # data quality
    verdicts: dict[str, Verdict] = {}
    for name, make in DQ_PATHS.items():
        decoder = make()
        assert decoder is not None
        got = decoder.decode([data + b"\n"])
        if got is None:
            assert name not in ("records", "default") and case not in TAKEN, f"{name} declines"
            continue
        verdicts[name] = _dq(got)
    reference = verdicts["records"]
    assert reference[0] == dq
    assert verdicts == dict.fromkeys(verdicts, reference)
    envelope = None if dq not in (KEEP, *BODY) else read_envelope(parse_record(data))
    if dq in BODY:  # refused for its body: kept for model quality (its place, envelope, output)
        assert envelope is not None
        body, encoding = envelope.output_body()
        time = envelope.inference_time.isoformat()
        kept = (0, envelope.event_id, envelope.inference_id, time, body, encoding)
        assert reference[1] == (kept,)
    elif dq != KEEP:
        assert reference[1] == ()  # refused for its envelope: nothing kept
    if utc is not None:
        assert reference[1][2] == utc
    # model quality
    path = tmp_path / "capture.jsonl"
    path.write_bytes(data + b"\n")
    answers = {
        "service": _service(data, columnwise=True),
        "service-records": _service(data, columnwise=False),
        "batch-lines": _batch(path, arrow=False),
    }
    if ARROW and model_quality_arrow.available(Encoder(QUALITY.problem_type)):
        fast = _batch(path, arrow=True)
        assert fast is not None or case not in ARROW_TAKEN, "Arrow must take it"
        if fast is not None:
            answers["batch-arrow"] = fast
    first = answers["service"]
    assert first[0] == mq
    assert answers == dict.fromkeys(answers, first)
    if dq not in (KEEP, *BODY):
        assert mq == dq  # a line the decoder refuses for its envelope: the same word everywhere
    if mq == KEEP:
        assert envelope is not None
        assert first[1][0] == envelope.key
        # the same time for both monitors (epoch seconds)
        assert first[1][1] == envelope.inference_time.timestamp()


@pytest.mark.parametrize(("data", "dq", "mq", "utc"), CASES)
def test_the_envelope_reader_alone(data: bytes, dq: str, mq: str, utc: str | None) -> None:
    """:func:`read_envelope` refuses exactly the lines whose reason is one of its rules;
    BASE64 that does not decode is refused after it, by :func:`side_text` (every reader
    calls it on the side it reads first); a body in its format, by the decoder alone."""
    try:
        envelope = read_envelope(parse_record(data))
    except PayloadError as exc:
        assert exc.reason == dq
        return
    assert dq in (KEEP, "bad_base64", "not_utf8", *BODY)
    if utc is not None:
        assert envelope.inference_time.isoformat() == utc


@pytest.mark.skipif(not ARROW, reason="pyarrow (the optional 'fast' extra) is not installed")
@pytest.mark.parametrize(
    "first",
    [b"null", b"[]", b"  " + line(), line() + b" " + line()],
    ids=["null", "a-list", "blanks-first", "two-on-one-line"],
)
def test_the_model_quality_arrow_reader_leaves_odd_lines_to_the_line_reader(
    tmp_path: Path, first: bytes
) -> None:
    """A file whose first line is not one object (pyarrow 26 crashes on ``null``; it reads
    two records on one line) is read line by line, for captures and labels alike."""
    reader = OutputReader(QUALITY, PAYLOAD.output)
    encoder = Encoder(QUALITY.problem_type)
    capture, truth = tmp_path / "capture.jsonl", tmp_path / "truth.jsonl"
    capture.write_bytes(first + b"\n" + line(event_id="e2") + b"\n")
    label = orjson.dumps({"groundTruthData": {"data": "1"}, "eventMetadata": {"eventId": "e2"}})
    truth.write_bytes(first + b"\n" + label + b"\n")
    fast = model_quality_arrow.arrow_predictions(capture, None, reader.probability, encoder, [])
    assert fast is None
    assert model_quality_arrow.arrow_labels(truth, None, encoder) is None
