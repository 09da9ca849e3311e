"""One extraction of a capture record's prediction, on every path that reads one.

The running service keeps a prediction with :class:`~analyzer.monitors.model_quality.
predictions.PredictionExtractor` (on the decoded batch: each record's output body, from the
column-wise and the record-by-record decoder); ``analyze --once`` and ``modelmon baseline
--model-quality`` read capture files with :func:`~analyzer.ingest.model_quality_files.
read_predictions` (line by line with :func:`~analyzer.monitors.model_quality.extraction.
capture_record`, or Arrow's fast path for a whole file). All use
:class:`~analyzer.monitors.model_quality.extraction.OutputReader` (docs/model-quality.md,
"Which prediction"): one config gives one prediction and probability, or one counted reason
(the service's ``model_quality:skipped:{reason}``, the batch's bad line ``{reason}: …``), on
every path, and each case says which.
"""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analyzer.decoding.codecs import PayloadDecoder
from analyzer.ingest import model_quality_arrow
from analyzer.ingest.model_quality_files import BadLines, Pairs, read_predictions
from analyzer.ingest.model_quality_map import joined_pairs_or_spilled
from analyzer.monitors.model_quality import extraction_batch
from analyzer.monitors.model_quality.extraction import OutputReader, Unusable
from analyzer.monitors.model_quality.labels import as_text
from analyzer.monitors.model_quality.predictions import PredictionExtractor
from analyzer.monitors.model_quality.records import Encoder
from modelmon.capture_record import CaptureSide, build_record
from modelmon.config import ModelQualityConfig, PayloadConfig

CSV = ("text/csv", "CSV")
JSON = ("application/json", "JSON")
NESTED = json.dumps({"predictions": [{"label": 1, "score": 0.8}]})
TWO = json.dumps({"predictions": [{"label": 1, "score": 0.8}, {"label": 0, "score": 0.1}]})
BINARY = "BinaryClassification"


def _line(body: str | None, kind: tuple[str, str], **extra: Any) -> bytes:
    truncated = extra.pop("truncated", False)
    response = None
    if body is not None:
        data = base64.b64encode(body.encode()).decode() if truncated else body
        encoding = "BASE64" if truncated else kind[1]
        response = CaptureSide(kind[0], data, encoding, truncated)  # type: ignore[arg-type]
    return build_record(
        event_id="e-1",
        inference_time=datetime(2026, 1, 1, tzinfo=UTC),
        request=CaptureSide("text/csv", "1,2", "CSV"),
        response=response,
        **extra,
    )


def _service(line: bytes, payload: PayloadConfig, mq: ModelQualityConfig, columnwise: bool) -> Any:
    batch = PayloadDecoder(payload, columnwise=columnwise).decode_lines([line])
    extracted = PredictionExtractor(mq, payload.output).extract(batch)
    if extracted.rows:
        return extracted.rows[0][4], extracted.rows[0][5]  # the prediction's text, probability
    assert sum(extracted.skipped.values()) == 1, extracted.skipped
    return next(iter(extracted.skipped))


def _decoded(columns: Any, encoder: Encoder, row: int) -> tuple[str, float | None]:
    value = float(columns.column("prediction")[row])
    if encoder.problem_type == "MulticlassClassification":
        text = encoder.class_names()[int(value)]
    else:
        text = as_text(value) or ""
    score = float(columns.column("probability")[row])
    return text, None if np.isnan(score) else score


def _batch(path: Path, payload: PayloadConfig, mq: ModelQualityConfig, arrow: bool) -> Any:
    """What ``read_predictions`` makes of the file: the line reader, or Arrow's fast path
    (None when it declines the file: the line reader then reads it)."""
    encoder = Encoder(mq.problem_type, mq.probability_threshold_attribute)
    reader = OutputReader(mq, payload.output)
    if arrow:
        whole = model_quality_arrow.arrow_predictions(
            path, reader.inference, reader.probability, encoder, list(reader.columns),
            hash_keys=False,
        )  # fmt: skip
        if whole is None:
            return None
        value, score = float(whole[2][0]), float(whole[3][0])
        return as_text(value), None if np.isnan(score) else score
    bad = BadLines()
    columns = read_predictions([path], reader, encoder, bad, arrow_mode="off", hash_keys=False)
    if columns.rows:
        return _decoded(columns, encoder, 0)
    assert bad.count == 1, bad.shown
    return bad.shown[0].split(": line 1: ", 1)[1].split(":", 1)[0]


def _case(
    id: str, body: str | None, kind: tuple[str, str], output: dict[str, Any],
    quality: dict[str, Any], expected: Any, arrow: bool = False, **extra: Any,
) -> Any:  # fmt: skip
    return pytest.param(body, kind, output, quality, expected, arrow, extra, id=id)


def _q(inference: str | None, probability: str | None, problem: str = BINARY) -> dict[str, Any]:
    out: dict[str, Any] = {"problem_type": problem}
    if inference is not None:
        out["inference_attribute"] = inference
    if probability is not None:
        out["probability_attribute"] = probability
    return out


LS = {"format": "csv", "columns": ["label", "score"]}
J = {"format": "json"}
C = {"format": "csv"}
MULTI = json.dumps({"label": "cat", "probabilities": [0.1, 0.7, 0.2]})
CASES = [
    _case("csv-by-index", "0,0.73", CSV, LS, _q("0", "1"), ("0", 0.73), arrow=True),
    _case("csv-by-name", "1,0.73", CSV, LS, _q("label", "score"), ("1", 0.73), arrow=True),
    _case("csv-spaces", " 1 , 0.73 ", CSV, LS, _q("0", "1"), ("1", 0.73), arrow=True),
    _case("csv-no-header", "1,0.8", CSV, C, _q("0", "1"), ("1", 0.8), arrow=True),
    _case("csv-with-header", "label,score\n1,0.8", CSV, C, _q("0", "1"), "several_rows"),
    _case("csv-threshold", "0.8", CSV, C, _q(None, "0"), ("1", 0.8), arrow=True),
    _case("csv-threshold-below", "0.3", CSV, C, _q(None, "0"), ("0", 0.3), arrow=True),
    _case("csv-quoted", '"1","0.8"', CSV, C, _q("0", "1"), ("1", 0.8)),
    _case("csv-regression-whole", "3.5", CSV, C, _q(None, None, "Regression"), ("3.5", None),
          arrow=True),
    _case("csv-non-numeric-probability", "1,abc", CSV, C, _q("0", "1"), "bad_probability"),
    _case("csv-missing-column", "1", CSV, C, _q("0", "1"), "no_probability"),
    _case("csv-name-not-a-column", "1,0.8", CSV, C, _q("label", None), "no_prediction"),
    _case("csv-empty-prediction", ",0.8", CSV, C, _q("0", "1"), "no_prediction"),
    _case("csv-inf-prediction", "inf", CSV, C, _q(None, None, "Regression"), "bad_prediction"),
    _case("csv-nan-prediction", "nan", CSV, C, _q("0", None, "Regression"), "bad_prediction"),
    _case("csv-binary-not-0-or-1", "2,0.8", CSV, C, _q("0", "1"), "bad_prediction"),
    _case("csv-binary-true", "true,0.8", CSV, C, _q("0", "1"), ("1", 0.8)),
    _case("csv-regression-not-a-number", "abc", CSV, C, _q("0", None, "Regression"),
          "bad_prediction"),
    _case("csv-regression", "-2.5,x", CSV, C, _q("0", None, "Regression"), ("-2.5", None),
          arrow=True),
    _case("json-keys", json.dumps({"label": 1, "score": 0.8}), JSON, J, _q("label", "score"),
          ("1", 0.8)),
    _case("json-keys-0", json.dumps({"label": 0, "score": 0.3}), JSON, J,
          _q("label", "score"), ("0", 0.3)),
    _case("json-list-path", json.dumps({"label": 1, "scores": [0.2, 0.8]}), JSON, J,
          _q("label", "scores[1]"), ("1", 0.8)),
    _case("sagemaker-jmespath-into-the-body", NESTED, JSON, J,
          _q("predictions[0].label", "predictions[0].score"), ("1", 0.8)),
    _case("key-of-the-one-decoded-row", NESTED, JSON, J, _q("label", "score"), ("1", 0.8)),
    _case("index-into-the-one-decoded-object", NESTED, JSON, J, _q(None, "1"), ("1", 0.8)),
    _case("key-of-several-decoded-rows", TWO, JSON, J, _q("label", "score"), "several_rows"),
    _case("jmespath-into-several-rows", TWO, JSON, J,
          _q("predictions[1].label", "predictions[1].score"), ("0", 0.1)),
    _case("json-list-body", "[0.8]", JSON, J, _q(None, "0"), ("1", 0.8)),
    _case("json-scalar-body", "0.8", JSON, J, _q(None, "0"), ("1", 0.8)),
    _case("json-no-attribute", json.dumps({"label": 1, "score": 0.8}), JSON, J,
          _q(None, None, "MulticlassClassification"), ("1", None)),
    _case("multiclass-probability-list", MULTI, JSON, J,
          _q("label", "probabilities", "MulticlassClassification"), ("cat", 0.7)),
    _case("multiclass-too-long", json.dumps({"label": "x" * 1025}), JSON, J,
          _q("label", None, "MulticlassClassification"), "prediction_too_long"),
    _case("json-missing-probability", json.dumps({"label": 1}), JSON, J, _q("label", "score"),
          "no_probability"),
    _case("json-missing-prediction", json.dumps({"score": 0.8}), JSON, J,
          _q("label", "score"), "no_prediction"),
    _case("json-bool-probability", json.dumps({"label": 1, "score": True}), JSON, J,
          _q("label", "score"), "bad_probability"),
    _case("json-text-probability", json.dumps({"label": 1, "score": "high"}), JSON, J,
          _q("label", "score"), "bad_probability"),
    _case("json-probability-list-out-of-range", json.dumps({"label": 1, "p": [0.5, 1.5]}),
          JSON, J, _q("label", "p"), "bad_probability"),
    _case("json-nan-literal", '{"label": 1, "score": NaN}', JSON, J, _q("label", "score"),
          "unreadable_output"),
    _case("base64-csv", base64.b64encode(b"1,0.8").decode(), ("text/csv", "BASE64"), C,
          _q("0", "1"), ("1", 0.8)),
    _case("truncated-by-the-proxy", "1,0.8", CSV, C, _q("0", "1"), "truncated_output",
          truncated=True),
    _case("no-output-captured", None, CSV, C, _q("0", "1"), "no_output"),
    _case("key-over-the-limit", "1,0.8", CSV, C, _q("0", "1"), "key_too_long",
          inference_id="k" * 1025),
    _case("key-at-the-limit", "1,0.8", CSV, C, _q("0", "1"), ("1", 0.8), arrow=True,
          inference_id="k" * 1024),
]  # fmt: skip
PATHS = ["service", "service-records", "batch-lines", "batch-arrow"]


@pytest.mark.parametrize(("body", "kind", "output", "quality", "expected", "arrow", "extra"), CASES)
def test_one_config_gives_one_answer_on_every_path(
    tmp_path: Path,
    body: str | None,
    kind: tuple[str, str],
    output: dict[str, Any],
    quality: dict[str, Any],
    expected: Any,
    arrow: bool,
    extra: dict[str, Any],
) -> None:
    payload = PayloadConfig.model_validate({"input": {"format": "csv"}, "output": output})
    mq = ModelQualityConfig.model_validate(quality)
    line = _line(body, kind, **extra)
    path = tmp_path / "capture.jsonl"
    path.write_bytes(line)
    got = {
        "service": _service(line, payload, mq, columnwise=True),
        "service-records": _service(line, payload, mq, columnwise=False),
        "batch-lines": _batch(path, payload, mq, arrow=False),
    }
    if model_quality_arrow.available(Encoder(mq.problem_type)):
        fast = _batch(path, payload, mq, arrow=True)
        assert (fast is not None) == arrow, "Arrow takes the file" if arrow else "declines"
        if fast is not None:
            got["batch-arrow"] = fast
    assert got == dict.fromkeys(got, expected)


@pytest.mark.parametrize("value", ["1.7", "-0.1", "1e308", "inf", "nan", "-inf", "1.0000001"])
def test_a_number_that_is_no_probability_is_refused_on_every_path(
    tmp_path: Path, value: str
) -> None:
    payload = PayloadConfig.model_validate({"input": {"format": "csv"}, "output": C})
    mq = ModelQualityConfig.model_validate(_q("0", "1"))
    line = _line(f"0,{value}", CSV)
    path = tmp_path / "capture.jsonl"
    path.write_bytes(line)
    assert _service(line, payload, mq, columnwise=True) == "bad_probability"
    assert _service(line, payload, mq, columnwise=False) == "bad_probability"
    assert _batch(path, payload, mq, arrow=False) == "bad_probability"
    assert _batch(path, payload, mq, arrow=True) is None  # declined: the lines report it


def _random_body(rng: random.Random, kind: str) -> str:
    if kind == "CSV":
        fields = [
            rng.choice(["0", "1", " 1 ", "0.5", "1.0", "", "x", "nan", "2", "1e-3", "7", "-0"])
            for _ in range(rng.randint(1, 3))
        ]
        return ",".join(fields)
    label = rng.choice([0, 1, "1", True, 1.0, 0, 1, None, "x", 2])
    score = rng.choice([0.5, "0.3", 0, 1, 0.9, 1.5, True, None, [0.2, 0.8], "x"])
    row = {"label": label, "score": score}
    if rng.random() < 0.2:
        del row[rng.choice(["label", "score"])]
    shape = rng.choice(["flat", "flat", "nested", "nested", "two", "list", "text"])
    body: Any = {
        "flat": row,
        "nested": {"predictions": [row]},
        "two": {"predictions": [row, row]},
        "list": [score],
    }.get(shape)
    return json.dumps(body) if body is not None else "not json"


@pytest.mark.parametrize("kind", ["CSV", "JSON"])
@pytest.mark.parametrize(
    "quality",
    [_q("0", "1"), _q(None, "0"), _q("1", None, "Regression"), _q("label", "score"),
     _q(None, "score"), _q(None, None, "MulticlassClassification")],
)  # fmt: skip
def test_the_column_at_a_time_path_is_the_record_reading(
    quality: dict[str, Any], kind: str
) -> None:
    """``read_many`` takes a batch of one-row CSV bodies, or of JSON objects by plain keys, a
    column at a time when every body gives a value; it then gives what ``read`` gives each
    body, and else leaves the batch to ``read`` (the same answers by construction). Random
    bodies; where the shapes allow it, both outcomes are seen."""
    output = LS if kind == "CSV" else J
    reader = OutputReader(
        ModelQualityConfig.model_validate(quality),
        PayloadConfig.model_validate({"output": output}).output,
    )
    rng = random.Random(11)
    taken = declined = 0
    for _ in range(400):
        bodies: list[str | None] = [_random_body(rng, kind) for _ in range(rng.randint(1, 3))]
        encodings = [kind] * len(bodies)
        fast = extraction_batch._columns(reader, bodies, encodings)
        one: list[Any] = []
        for body in bodies:
            try:
                one.append(reader.read(body, kind))
            except Unusable as exc:
                one.append(exc.reason)
        predictions, probabilities, reasons = extraction_batch.read_many(reader, bodies, encodings)
        many = [
            reason if reason is not None else (prediction, probability)
            for prediction, probability, reason in zip(
                predictions, probabilities, reasons or [None] * len(bodies), strict=True
            )
        ]
        assert many == one
        if fast is None:
            declined += 1
        else:
            taken += 1
            assert list(zip(*fast, strict=True)) == one
    assert declined
    keys = [quality.get(name) for name in ("inference_attribute", "probability_attribute")]
    if kind == "CSV" or (any(keys) and not any(k is not None and k.isdigit() for k in keys)):
        assert taken  # JSON goes a column at a time by plain keys only


def test_json_bodies_of_two_shapes_in_chunks_go_a_column_at_a_time() -> None:
    """JSON bodies are parsed 64 at a time: a chunk of flat objects, a chunk of SageMaker's
    ``{"predictions": [{…}]}`` (the decoder's one row) and the rest flat again give, a column
    at a time, what ``read`` gives each; one body that has the key at the top among bodies
    that do not sends the batch to ``read``."""
    reader = OutputReader(
        ModelQualityConfig.model_validate(_q("label", "score")),
        PayloadConfig.model_validate({"output": J}).output,
    )
    flat = [json.dumps({"label": i % 2, "score": i / 200}) for i in range(66)]
    nested = [json.dumps({"predictions": [{"label": i % 2, "score": i / 100}]}) for i in range(64)]
    bodies: list[str | None] = [*flat[:64], *nested, *flat[64:]]
    encodings = ["JSON"] * len(bodies)
    fast = extraction_batch._columns(reader, bodies, encodings)
    assert fast is not None
    assert list(zip(*fast, strict=True)) == [reader.read(body, "JSON") for body in bodies]
    mixed = [*nested[:10], flat[0], *nested[10:]]
    assert extraction_batch._columns(reader, mixed, ["JSON"] * len(mixed)) is None
    assert extraction_batch.read_many(reader, mixed, ["JSON"] * len(mixed))[2] is None


@pytest.mark.parametrize("configured", [True, False])
def test_the_batch_join_splits_bodies_with_the_configured_output(
    tmp_path: Path, configured: bool
) -> None:
    """``analyze --once`` and ``modelmon baseline --model-quality`` hand ``payload.output``
    to the map over the files (``joined_pairs_or_spilled``, in memory): SageMaker's
    ``{"predictions": [{…}]}`` read by key needs the JSON decoder's row; with the default
    (CSV) output there is none, and each line is a bad line by its reason."""
    capture = tmp_path / "capture.jsonl"
    truth = tmp_path / "gt" / "2026" / "01" / "01" / "00"
    truth.mkdir(parents=True)
    records, labels = [], []
    for i in range(4):
        body = {"predictions": [{"label": i % 2, "score": 0.9 if i % 2 else 0.1}]}
        records.append(
            build_record(
                event_id=f"e-{i}",
                inference_time=datetime(2026, 1, 1, tzinfo=UTC),
                request=CaptureSide("text/csv", "1,2", "CSV"),
                response=CaptureSide("application/json", json.dumps(body), "JSON"),
            )
        )
        label = {"data": str(i % 2), "encoding": "CSV"}
        labels.append(
            json.dumps({"groundTruthData": label, "eventMetadata": {"eventId": f"e-{i}"}})
        )
    capture.write_bytes(b"".join(records))
    (truth / "l.jsonl").write_text("\n".join(labels) + "\n")
    mq = ModelQualityConfig.model_validate(_q("label", "score"))
    output = PayloadConfig.model_validate({"output": J}).output if configured else None
    pairs = joined_pairs_or_spilled(mq, Encoder(BINARY), [capture], tmp_path / "gt", output=output)
    assert isinstance(pairs, Pairs)
    if configured:
        assert len(pairs.labels) == 4 and pairs.bad.count == 0
        assert pairs.predictions.tolist() == [0.0, 1.0, 0.0, 1.0]
    else:
        assert len(pairs.labels) == 0 and pairs.bad.count == 4
        assert all(": line " in s and ": no_probability: " in s for s in pairs.bad.shown)
