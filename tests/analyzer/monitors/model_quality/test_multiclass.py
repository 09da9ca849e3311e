"""Multiclass metrics from class codes equal those from the labels as strings, to the bit."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from analyzer.monitors.model_quality import multiclass
from analyzer.monitors.model_quality.evaluate import evaluate_window

MULTICLASS = "MulticlassClassification"


def test_doctests_run() -> None:
    failed, attempted = doctest.testmod(multiclass)  # type: ignore[arg-type]
    assert attempted > 0 and failed == 0


@pytest.mark.parametrize("rows", [0, 1, 7, 199, 200, 1500])
@pytest.mark.parametrize("seed", range(4))
def test_codes_give_the_strings_metrics(rows: int, seed: int) -> None:
    """Rare classes (absent from some of the 5 subsamples), names not in code order."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 9))
    names = [f"class-{int(v)}" for v in rng.permutation(50)[:k]]
    share = rng.dirichlet(np.full(k, 0.3))
    truth = rng.choice(k, rows, p=share)
    guess = np.where(rng.random(rows) < 0.6, truth, rng.choice(k, rows, p=share))

    def evaluate(y: object, p: object, classes: list[str] | None) -> str:
        result = evaluate_window(MULTICLASS, y, p, None, {}, None, false_alarm_rate=0.01,  # type: ignore[arg-type]
                                 min_labels=1, classes=classes)  # fmt: skip
        return repr(result.metrics)  # NaN and every digit compared

    strings = evaluate([names[c] for c in truth], [names[c] for c in guess], None)
    assert evaluate(truth.astype(np.int16), guess.astype(np.int16), names) == strings
