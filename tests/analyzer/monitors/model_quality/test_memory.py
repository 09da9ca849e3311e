"""Memory per row of the batch model-quality pass: the join, the binary metrics with their
subsamples and the label-free estimate (docs/model-quality.md, "The batch join").

Structural, not timed: the peak of the numpy allocations tracemalloc sees above the inputs,
in bytes per row, for one window of ``ROWS`` rows. Before this work these were 65 (join),
98 (metrics) and 74 (estimate) bytes a row, now ~24, ~28 and ~32; the bounds leave room for
the blocks' and chunks' fixed temporaries (~65,536 rows each), not for another float array.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from analyzer.monitors.model_quality.estimate import estimate_binary, fit_calibrator
from analyzer.monitors.model_quality.evaluate import evaluate_window
from analyzer.monitors.model_quality.metrics import binary_metrics_with_deviation
from analyzer.monitors.model_quality.pairs import join

ROWS = 300_000


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    yield
    tracemalloc.stop()


def peak_per_row(run: Callable[[], Any]) -> float:
    """Bytes per row allocated at the peak of ``run`` above what was held before it."""
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    run()
    return (tracemalloc.get_traced_memory()[1] - held) / ROWS


def window() -> tuple[Any, Any, Any, Any]:
    rng = np.random.default_rng(0)
    score = rng.beta(2, 3, ROWS).round(6)
    label = (rng.random(ROWS) < score).astype(np.int8)
    keys = rng.integers(-(2**63), 2**63 - 1, ROWS, dtype=np.int64)
    return score, label, (score >= 0.5).astype(np.int8), keys


@pytest.mark.usefixtures("traced")
def test_the_join_holds_about_a_key_and_a_pair_per_row() -> None:
    _, _, _, keys = window()
    columns = [keys.copy(), keys[::-1].copy()]  # handed over: the join may consume them
    del keys
    joined: list[Any] = []
    per_row = peak_per_row(
        lambda: joined.append(join(columns.pop(0), columns.pop(0), consume=True))
    )
    assert joined[0].counts.matched == ROWS
    assert per_row < 40, per_row  # the sort order (8), the pairs (8); ~24 measured


@pytest.mark.usefixtures("traced")
def test_the_binary_metrics_hold_a_sorted_score_and_a_few_bytes_per_row() -> None:
    score, label, predicted, _ = window()
    out: list[Any] = []
    per_row = peak_per_row(
        lambda: out.append(binary_metrics_with_deviation(label, predicted, score))
    )
    assert 0.5 < out[0]["auc"]["value"] < 1 and out[0]["auc"]["standard_deviation"] > 0
    assert per_row < 40, per_row  # the sorted score and its order (16) + bytes; ~28


@pytest.mark.usefixtures("traced")
def test_the_estimate_holds_at_most_four_float_arrays() -> None:
    score, label, predicted, _ = window()
    calibrator = fit_calibrator(score[:20_000], label[:20_000].astype(np.int64))
    out: list[Any] = []
    per_row = peak_per_row(lambda: out.append(estimate_binary(score, predicted, calibrator)))
    assert 0.5 < out[0]["accuracy"].value < 1
    assert per_row < 45, per_row  # ranks, q, 1 − q, ŷ (32); ~32 measured


@pytest.mark.usefixtures("traced")
def test_multiclass_metrics_keep_the_codes() -> None:
    """2-byte class codes, not two lists of names a row (~66 bytes a row before)."""
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 5, ROWS).astype(np.int16)
    guess = np.where(rng.random(ROWS) < 0.7, truth, rng.integers(0, 5, ROWS)).astype(np.int16)
    out: list[Any] = []
    per_row = peak_per_row(
        lambda: out.append(evaluate_window("MulticlassClassification", truth, guess, None, {},
                                           None, false_alarm_rate=0.01, min_labels=1,
                                           classes=["cat", "dog", "emu", "fox", "gnu"]))
    )  # fmt: skip
    assert 0.7 < out[0].metrics["accuracy"]["value"] < 0.8
    assert per_row < 25, per_row  # ranks of both sides and their cells (12), ~14 measured
