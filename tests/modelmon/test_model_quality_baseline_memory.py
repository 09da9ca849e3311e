"""``modelmon baseline --model-quality`` past the budget: its peak does not grow with the rows.

Structural, not timed, as tests/analyzer/test_model_quality_spill_memory.py: the peak of the
allocations tracemalloc sees (numpy's included) from the reduce's sink through the join on
disk to what the command writes (:func:`built_on_disk`: SageMaker's binary metrics with
their subsamples, AUC and curves from the external sort, and the calibrator fitted on its
sample of half the budget's pairs), above what was held before, at two sizes with one budget
of 30,000 rows (5.5 MB at both, ~40 kB apart). In memory the baseline holds every pair, and
fits on all of them.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.optimize  # noqa: F401  (the fit imports it lazily: not what the rows cost)

from analyzer.ingest.model_quality_spill import Sink
from analyzer.monitors.model_quality.estimate import MAX_ROWS_PER_DRAW_BLOCK
from analyzer.monitors.model_quality.records import Encoder
from modelmon.cli.model_quality_baseline import built_on_disk
from modelmon.config import ModelQualityConfig
from tests.analyzer.test_model_quality_spill_memory import (  # noqa: F401 (traced: a fixture)
    binary_pairs,
    joined,
    traced,
)

BUDGET = 30_000
MQ = ModelQualityConfig(problem_type="BinaryClassification", probability_attribute="p",
                        batch_memory_rows=BUDGET)  # fmt: skip


def peak_of_a_baseline(rows: int) -> int:
    """Bytes allocated at the peak of the baseline past the budget for ``rows`` pairs."""
    rng = np.random.default_rng(rows)
    keys = rng.integers(-(2**63), 2**63 - 1, rows, dtype=np.int64)
    label_keys, scores, predicted, labels = binary_pairs(rng, keys)
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    spilled = joined(Sink(np.int8, BUDGET, True), keys, predicted, scores, label_keys, labels)
    with spilled.spill:
        built = built_on_disk(None, MQ, Encoder(MQ.problem_type), spilled)
    assert built.labelled == rows and built.calibration is not None
    assert (built.calibration["rows"], built.calibration["sampled_from"]) == (BUDGET // 2, rows)
    assert built.statistics["dataset"]["item_count"] == rows
    return tracemalloc.get_traced_memory()[1] - held


@pytest.mark.usefixtures("traced")
def test_the_baselines_peak_does_not_grow_with_the_rows() -> None:
    small, large = peak_of_a_baseline(150_000), peak_of_a_baseline(450_000)
    assert large - small < 1_000_000, (small, large)
    # the budget's rows in a few copies, and the calibrator's held-out check, which draws its
    # 200 label sets in blocks of MAX_ROWS_PER_DRAW_BLOCK numbers (two float arrays: 4 MB)
    assert large < 120 * BUDGET + 2 * 8 * MAX_ROWS_PER_DRAW_BLOCK, large
