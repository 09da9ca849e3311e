"""The batch join (sort-merge on hashed keys) against a dictionary, and the record readers."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from analyzer.monitors.model_quality.extraction import OutputReader, Unusable, capture_record
from analyzer.monitors.model_quality.labels import LabelReader
from analyzer.monitors.model_quality.pairs import CHUNK, Columns, join, key_hashes
from analyzer.monitors.model_quality.records import (
    BadValue,
    Encoder,
    ground_truth_record,
)
from modelmon.config import ModelQualityConfig, PayloadSide


def oracle(
    predictions: list[str], labels: list[str]
) -> tuple[list[tuple[int, int]], dict[str, int]]:
    first_label: dict[str, int] = {}
    for j, key in enumerate(labels):
        first_label.setdefault(key, j)
    first_prediction: dict[str, int] = {}
    for i, key in enumerate(predictions):
        first_prediction.setdefault(key, i)
    pairs = sorted((i, first_label[k]) for k, i in first_prediction.items() if k in first_label)
    counts = {
        "matched": len(pairs),
        "unmatched": len(set(first_label) - set(first_prediction)),
        "unlabelled": len(set(first_prediction) - set(first_label)),
        "duplicate_labels": len(labels) - len(first_label),
        "duplicate_predictions": len(predictions) - len(first_prediction),
    }
    return pairs, counts


@pytest.mark.parametrize("seed", range(8))
def test_join_matches_a_dictionary(seed: int) -> None:
    rng = np.random.default_rng(seed)
    universe = [f"id-{k}" for k in range(int(rng.integers(1, 3000)))]
    predictions = [universe[k] for k in rng.integers(0, len(universe), int(rng.integers(0, 2000)))]
    labels = [universe[k] for k in rng.integers(0, len(universe), int(rng.integers(0, 2000)))]
    joined = join(key_hashes(predictions), key_hashes(labels))
    pairs, counts = oracle(predictions, labels)
    got = list(zip(joined.prediction_rows.tolist(), joined.label_rows.tolist(), strict=True))
    assert got == pairs
    assert joined.counts.to_json() == counts


@pytest.mark.parametrize("consume", [False, True])
def test_join_across_chunks_matches_a_dictionary(consume: bool) -> None:
    """Repeats within a chunk and across chunks of the predictions (CHUNK rows at a time):
    the first prediction of a key stands; ``consume`` sorts the keys in place, same result."""
    rng = np.random.default_rng(7)
    n = 2 * CHUNK + 999
    predictions = rng.integers(0, n, n).tolist()
    labels = rng.integers(0, n, n // 2).tolist()
    p_keys, l_keys = np.array(predictions, np.int64), np.array(labels, np.int64)
    joined = join(p_keys, l_keys, consume=consume)
    pairs, counts = oracle(predictions, labels)  # type: ignore[arg-type]
    got = list(zip(joined.prediction_rows.tolist(), joined.label_rows.tolist(), strict=True))
    assert got == pairs
    assert joined.counts.to_json() == counts
    assert joined.prediction_rows.dtype == np.int32  # row numbers below 2³¹
    assert (p_keys.tolist() == sorted(predictions)) is consume  # consumed: sorted in place


def test_join_of_nothing() -> None:
    empty = key_hashes([])
    joined = join(empty, key_hashes(["a"]))
    assert joined.counts.matched == 0 and joined.counts.unmatched == 1
    assert join(key_hashes(["a"]), empty).counts.unlabelled == 1


def test_columns_grow_by_chunks() -> None:
    columns = Columns({"key": np.int64, "value": np.float64})
    columns.append(key=[1, 2], value=[0.5, 0.25])
    columns.append(key=np.array([3]), value=[1.0])
    assert columns.rows == 3 and columns.column("key").tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="one length"):
        columns.append(key=[1], value=[])


def test_ground_truth_records() -> None:
    line = (
        b'{"groundTruthData": {"data": "%s", "encoding": "%s"}, "eventMetadata": {"eventId": "k"}}'
    )
    assert ground_truth_record(line % (b"1", b"CSV"), LabelReader(None)) == ("k", "1")
    assert ground_truth_record(line % (b"0,1", b"CSV"), LabelReader("1")) == ("k", "1")
    as_json = b'{\\"y\\": 1.0}'
    assert ground_truth_record(line % (as_json, b"JSON"), LabelReader("y")) == ("k", "1")
    coded = base64.b64encode(b"1").decode().encode()
    assert ground_truth_record(line % (coded, b"BASE64"), LabelReader(None)) == ("k", "1")
    with pytest.raises(BadValue, match="eventId"):
        ground_truth_record(b'{"groundTruthData": {"data": "1"}}', LabelReader(None))
    # without an attribute the whole data is the label (as the service reads it): a class
    # name may hold a comma; for a binary problem the encoder refuses it
    assert ground_truth_record(line % (b"0,1", b"CSV"), LabelReader(None)) == ("k", "0,1")
    with pytest.raises(BadValue, match="not 0 or 1"):
        Encoder("BinaryClassification").label("0,1")
    with pytest.raises(BadValue, match="not JSON"):
        ground_truth_record(b"{oops", LabelReader(None))


def test_capture_records_pick_by_index_name_and_jmespath() -> None:
    def record(data: str, encoding: str, inference_id: str | None = None) -> bytes:
        import orjson

        meta = {"eventId": "e", "inferenceTime": "2026-01-01T00:00:00Z"}
        if inference_id:
            meta["inferenceId"] = inference_id
        return orjson.dumps(
            {
                "captureData": {"endpointOutput": {"data": data, "encoding": encoding}},
                "eventMetadata": meta,
            }
        )

    def reader(
        inference: str | None, probability: str | None, columns: list[str] | None = None
    ) -> OutputReader:
        quality = ModelQualityConfig(
            problem_type="BinaryClassification",
            inference_attribute=inference,
            probability_attribute=probability,
        )
        return OutputReader(quality, PayloadSide(columns=columns or []))

    one = capture_record(record("1,0.8", "CSV", "inf"), reader("0", "1"))
    assert (one.key, one.prediction, one.probability) == ("inf", "1", 0.8)
    assert one.inference_time == 1767225600.0
    named = capture_record(record("0.8", "CSV"), reader(None, "score", ["score"]))
    assert (named.key, named.prediction, named.probability) == ("e", "1", 0.8)
    path = capture_record(record('{"p": [0.2, 0.8]}', "JSON"), reader(None, "p[1]"))
    assert path.probability == 0.8
    with pytest.raises(Unusable, match=r"^no_probability: .*payload\.output\.columns"):
        capture_record(record("0.8", "CSV"), reader(None, "score"))
    with pytest.raises(Unusable, match=r"^no_prediction: .*not found"):
        capture_record(record('{"q": 1}', "JSON"), reader("p", None))


def test_encoder() -> None:
    binary = Encoder("BinaryClassification", threshold=0.7)
    assert [binary.label(v) for v in ("1", "0.0", True, 0, "false")] == [1, 0, 1, 0, 0]
    assert binary.prediction(None, 0.7) == 1 and binary.prediction(None, 0.69) == 0
    with pytest.raises(BadValue, match="not 0 or 1"):
        binary.label("2")
    with pytest.raises(BadValue, match="between 0 and 1"):
        binary.probability("1.5")
    multi = Encoder("MulticlassClassification")
    assert [multi.label(v) for v in ("cat", 1, "1.0", "dog", "cat")] == [0, 1, 1, 2, 0]
    assert multi.class_names() == ["cat", "1", "dog"]
    regression = Encoder("Regression")
    assert regression.label("2.5") == 2.5
    with pytest.raises(BadValue, match="finite"):
        regression.label("nan")


@pytest.mark.parametrize("decimals", [0, 1, 3, 8])
def test_average_ranks_equal_scipys(decimals: int) -> None:
    from scipy.stats import rankdata

    from analyzer.monitors.model_quality.metrics import average_ranks

    values = np.round(np.random.default_rng(decimals).random(2000), decimals)
    assert np.array_equal(average_ranks(values), rankdata(values))
    assert average_ranks(np.zeros(0)).size == 0


def test_normal_quantile_equals_scipys() -> None:
    from scipy.stats import norm

    from analyzer.monitors.model_quality.verdict import normal_margin

    for rate in (1e-6, 0.001, 0.005, 0.01, 0.1, 0.3, 0.5, 0.7):
        assert abs(normal_margin(1.0, rate) - float(norm.isf(min(rate, 0.5)))) < 1e-12


def test_one_label_reader_per_config_shared_by_every_post() -> None:
    """The intake takes its reader from label_reader: built once per (attribute, problem
    type), not per POST, and the shared one reads and checks as a fresh one does."""
    import analyzer.web.intake as intake
    from analyzer.monitors.model_quality.labels import LabelError, label_reader

    first = label_reader("label.value", "BinaryClassification")
    assert label_reader("label.value", "BinaryClassification") is first
    assert label_reader("label.value", "Regression") is not first
    assert first('{"label": {"value": 1}}', "JSON") == "1"
    with pytest.raises(LabelError):
        first('{"label": {"value": 2}}', "JSON")
    assert intake.label_reader is label_reader  # the POST handler's reader is this one
