"""The two prediction extractions of model quality, fed the same capture records and config.

The running service keeps a prediction with :class:`~analyzer.monitors.model_quality.
predictions.PredictionExtractor` (on the decoder's output columns); ``analyze --once`` and
``modelmon baseline --model-quality`` read it with
:func:`~analyzer.monitors.model_quality.records.capture_record` and the
:class:`~analyzer.monitors.model_quality.records.Encoder` (on the output body as captured,
and Arrow's fast path, which agrees with that reader: test_model_quality_files.py). One
config must give the same prediction and probability on both; the cases where they do not
yet are marked ``xfail(strict=True)`` with what each side does, so that making them one
extraction turns those marks into failures to remove (docs/model-quality.md, "Not done
yet").
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

import pytest

from analyzer.decoding.codecs import PayloadDecoder
from analyzer.monitors.model_quality.labels import as_text
from analyzer.monitors.model_quality.predictions import PredictionExtractor
from analyzer.monitors.model_quality.records import Attribute, BadValue, Encoder, capture_record
from modelmon.capture_record import CaptureSide, build_record
from modelmon.config import ModelQualityConfig, PayloadConfig

Kind = tuple[str, Literal["CSV", "JSON"]]
CSV: Kind = ("text/csv", "CSV")
JSON: Kind = ("application/json", "JSON")
NESTED = json.dumps({"predictions": [{"label": 1, "score": 0.8}]})


def _line(body: str, kind: Kind) -> bytes:
    return build_record(
        event_id="e-1",
        inference_time=datetime(2026, 1, 1, tzinfo=UTC),
        request=CaptureSide("text/csv", "1,2", "CSV"),
        response=CaptureSide(kind[0], body, kind[1]),
    )


def _service(line: bytes, payload: PayloadConfig, mq: ModelQualityConfig) -> Any:
    extracted = PredictionExtractor(mq, payload.output).extract(
        PayloadDecoder(payload).decode_lines([line])
    )
    if not extracted.rows:
        return f"skipped: {', '.join(sorted(extracted.skipped))}"
    row = extracted.rows[0]
    return row[4], row[5]  # the prediction's text, the probability


def _batch(line: bytes, payload: PayloadConfig, mq: ModelQualityConfig) -> Any:
    def attribute(name: str | None) -> Attribute | None:
        return Attribute.of(name) if name is not None else None

    encoder = Encoder(mq.problem_type, mq.probability_threshold_attribute)
    try:
        record = capture_record(
            line,
            attribute(mq.inference_attribute),
            attribute(mq.probability_attribute),
            payload.output.columns,
        )
        score = encoder.probability(record.probability)
        return as_text(encoder.prediction(record.prediction, score)), score
    except BadValue as exc:
        return f"bad line: {exc}"


def _differs(reason: str) -> Any:
    return pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)


CASES = [
    pytest.param("0,0.73", CSV, {"format": "csv", "columns": ["label", "score"]}, "0", "1",
                 id="csv-by-index"),
    pytest.param("1,0.73", CSV, {"format": "csv", "columns": ["label", "score"]}, "label",
                 "score", id="csv-by-name"),
    pytest.param(json.dumps({"label": 1, "score": 0.8}), JSON, {"format": "json"}, "label",
                 "score", id="json-keys"),
    pytest.param(json.dumps({"label": 0, "score": 0.3}), JSON, {"format": "json"},
                 "label", "score", id="json-keys-0"),
    pytest.param(json.dumps({"label": 1, "scores": [0.2, 0.8]}), JSON, {"format": "json"},
                 "label", "scores[1]", id="json-list-path",
                 marks=_differs("service: skipped (no_prediction): the decoder's output row "
                                "is {prediction: 0.2}; batch: (1, 0.8)")),
    pytest.param(NESTED, JSON, {"format": "json"}, "predictions[0].label",
                 "predictions[0].score", id="sagemaker-jmespath-into-the-body",
                 marks=_differs("service: skipped (no_prediction), it searches the decoded "
                                "output row, not the body; batch: (1, 0.8)")),
    pytest.param(NESTED, JSON, {"format": "json"}, "label", "score", id="key-of-a-split-row",
                 marks=_differs("service: (1, 0.8) from the row the decoder split out; "
                                "batch: bad line, 'label' is not a key of the body")),
]  # fmt: skip


@pytest.mark.parametrize(("body", "kind", "output", "inference", "probability"), CASES)
def test_one_config_gives_one_prediction_on_both_paths(
    body: str, kind: Kind, output: dict[str, Any], inference: str, probability: str
) -> None:
    payload = PayloadConfig.model_validate({"input": {"format": "csv"}, "output": output})
    mq = ModelQualityConfig.model_validate(
        {
            "problem_type": "BinaryClassification",
            "inference_attribute": inference,
            "probability_attribute": probability,
        }
    )
    line = _line(body, kind)
    service, batch = _service(line, payload, mq), _batch(line, payload, mq)
    assert isinstance(service, tuple), service  # the agreeing cases are read by both
    assert service == batch


@pytest.mark.parametrize("value", ["1.7", "-0.1", "1e308", "inf", "nan"])
def test_a_number_that_is_no_probability_is_refused_on_both_paths(value: str) -> None:
    payload = PayloadConfig.model_validate(
        {"input": {"format": "csv"}, "output": {"format": "csv"}}
    )
    mq = ModelQualityConfig.model_validate(
        {
            "problem_type": "BinaryClassification",
            "inference_attribute": "0",
            "probability_attribute": "1",
        }
    )
    line = _line(f"0,{value}", CSV)
    assert _service(line, payload, mq) == "skipped: bad_probability"
    assert str(_batch(line, payload, mq)).startswith("bad line: probability")
