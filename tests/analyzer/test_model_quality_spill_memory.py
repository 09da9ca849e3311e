"""The spill path's memory does not grow with the rows (docs/model-quality.md, "Memory").

Structural, not timed: the peak of the allocations tracemalloc sees (numpy's included) while
a window goes through the spill path (:class:`Sink` → the join on disk → the binary metrics
with their subsamples, AUC and curves from the external sort → the estimate over every
prediction), above what was held before, at two sizes with one budget of 30,000 rows. The
in-memory path grows by ~40 bytes a row (tests/analyzer/monitors/model_quality/test_memory.py);
this one by nothing but its fixed-size lists of files.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from analyzer.ingest.model_quality_files import BadLines
from analyzer.ingest.model_quality_spill import Sink, Spilled
from analyzer.ingest.model_quality_spilled import estimate_spilled, evaluate_spilled
from analyzer.monitors.model_quality.estimate import fit_calibrator
from modelmon.config import ModelQualityConfig

BUDGET = 30_000
MQ = ModelQualityConfig(problem_type="BinaryClassification", probability_attribute="p")


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    yield
    tracemalloc.stop()


def binary_pairs(rng: np.random.Generator, keys: Any) -> tuple[Any, Any, Any, Any]:
    """For predictions of ``keys``: their labels' keys (shuffled), scores, predictions, labels."""
    label_keys = keys[rng.permutation(keys.size)]
    scores = rng.beta(2, 3, keys.size).round(4)
    predicted = (scores >= 0.5).astype(np.int8)
    labels = (rng.random(keys.size) < 0.4).astype(np.int8)
    return label_keys, scores, predicted, labels


def joined(sink: Sink, *columns: Any) -> Spilled:
    """``sink`` fed the predictions and labels ``columns`` (keys, predictions, scores, label
    keys, labels) 10,000 rows at a time, as a map's files give them, and finished."""
    keys, predicted, scores, label_keys, labels = columns
    for lo in range(0, keys.size, 10_000):
        hi = lo + 10_000
        sink.add_predictions(keys[lo:hi], predicted[lo:hi], scores[lo:hi])
        sink.add_labels(label_keys[lo:hi], labels[lo:hi])
    return sink.finish(BadLines(), (0.0, 1.0))


def peak_of_a_window(rows: int) -> int:
    """Bytes allocated at the peak of the spill path for ``rows`` predictions and labels."""
    rng = np.random.default_rng(rows)
    keys = rng.integers(-(2**63), 2**63 - 1, rows, dtype=np.int64)
    order = rng.permutation(rows)
    label_keys = keys[order]
    scores = rng.beta(2, 3, rows).round(4)
    predicted = (scores >= 0.5).astype(np.int8)
    labels = (rng.random(rows) < scores[order]).astype(np.int8)
    base = rng.beta(2, 3, 5000)
    calibrator = fit_calibrator(base, (rng.random(5000) < base).astype(np.int64))
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    spilled = joined(Sink(np.int8, BUDGET, True), keys, predicted, scores, label_keys, labels)
    with spilled.spill:
        result = evaluate_spilled(MQ, spilled, {}, None, false_alarm_rate=0.01, classes=None)
        estimate = estimate_spilled(spilled, calibrator)
    assert result.labels == rows and estimate is not None
    assert 0.6 < result.metrics["auc"]["value"] < 0.9
    return tracemalloc.get_traced_memory()[1] - held


@pytest.mark.usefixtures("traced")
def test_the_peak_does_not_grow_with_the_rows() -> None:
    small, large = peak_of_a_window(150_000), peak_of_a_window(450_000)
    # in memory, 300,000 more rows of each side would be ~12 MB more (40 bytes a row)
    assert large - small < 1_000_000, (small, large)
    assert large < 120 * BUDGET, large  # the budget's rows in a few copies, not the window


def peak_of_one_key_repeated(repeats: int) -> tuple[int, int]:
    """The peak of the join (:meth:`Sink.finish`) when one key is ``repeats`` of 20,000
    predictions and as many labels: its partition cannot be split below the budget.
    Returns the peak and the duplicates counted."""
    rng = np.random.default_rng(repeats)
    rows = 20_000 + repeats
    keys = rng.integers(-(2**63), 2**63 - 1, rows, dtype=np.int64)
    keys[rng.permutation(rows)[:repeats]] = keys[0]
    label_keys, scores, predicted, labels = binary_pairs(rng, keys)
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    spilled = joined(Sink(np.int8, BUDGET // 10, False), keys, predicted, scores, label_keys,
                     labels)  # fmt: skip
    spilled.spill.close()
    duplicates = spilled.counts.duplicate_predictions
    assert duplicates == spilled.counts.duplicate_labels == rows - np.unique(keys).size
    assert spilled.counts.matched == rows - duplicates  # every distinct key has its label
    return tracemalloc.get_traced_memory()[1] - held, duplicates


@pytest.mark.usefixtures("traced")
def test_one_key_repeated_past_the_budget_is_not_read_whole() -> None:
    small, repeated_small = peak_of_one_key_repeated(50_000)
    large, repeated_large = peak_of_one_key_repeated(400_000)
    assert repeated_small >= 49_999 and repeated_large >= 399_999
    # read whole, 350,000 more repeats of each side were ~18.6 MB more (5.3 -> 23.9 MB); what
    # grows now is the bookkeeping of the row ranges per partition, (rows / budget)² (~1-3 MB)
    assert large - small < 8_000_000, (small, large)
