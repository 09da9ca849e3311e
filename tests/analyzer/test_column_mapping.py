"""Matching unnamed captured columns to a named baseline; the baseline's advice."""

from __future__ import annotations

import doctest

import pytest

from analyzer.decoding import column_mapping
from analyzer.decoding.column_mapping import (
    baseline_name_warnings,
    positional_mapping,
    positional_note,
)
from analyzer.monitors.data_quality import baseline_advice
from analyzer.monitors.data_quality.baseline_advice import noise_margin, small_baseline_warning
from analyzer.monitors.data_quality.drift import sampling_margin


@pytest.mark.parametrize("module", [column_mapping, baseline_advice])
def test_docstring_examples_run(module: object) -> None:
    failed, attempted = doctest.testmod(module)  # type: ignore[arg-type]
    assert attempted > 0 and failed == 0


def test_positions_map_to_the_baseline_names_skipping_predictions() -> None:
    baseline = ["prediction", "a", "b", "c"]  # a baseline from capture: predictions first
    assert positional_mapping(["_c0", "_c1", "_c2"], baseline, {"prediction"}) == {
        "_c0": "a",
        "_c1": "b",
        "_c2": "c",
    }


def test_wider_or_narrower_rows_map_as_far_as_they_go() -> None:
    assert positional_mapping(["_c0", "_c1", "_c2"], ["a", "b"], ()) == {"_c0": "a", "_c1": "b"}
    assert positional_mapping(["_c0"], ["a", "b"], ()) == {"_c0": "a"}


def test_no_mapping_when_names_already_match_or_are_mixed() -> None:
    assert positional_mapping(["_c0", "_c1"], ["_c0", "_c1"], ()) is None  # headerless baseline
    assert positional_mapping(["age", "_c1"], ["age", "income"], ()) is None
    assert positional_mapping([], ["age"], ()) is None
    assert positional_mapping(["_c0"], [], ()) is None


def test_the_baseline_command_says_what_will_happen() -> None:
    assert positional_note(["a", "b"], [], "csv") is not None
    assert positional_note(["a", "b"], [], "json") is None  # JSON objects carry names
    assert positional_note(["a", "b"], ["a", "b"], "csv") is None
    assert positional_note(["_c0", "_c1"], [], "csv") is None
    assert baseline_name_warnings(["a", "b"], ["a", "b"], "csv") == []
    (order,) = baseline_name_warnings(["a", "b"], ["b", "a"], "csv")
    assert "another order" in order
    (mismatch,) = baseline_name_warnings(["a", "b"], ["a", "x"], "csv")
    assert "names x" in mismatch and "the baseline has b" in mismatch


def test_the_margin_is_the_drift_rules() -> None:
    # The floor is the drift rule's margin with an endless window.
    assert noise_margin(178, 10**12, 13, 0.01) == pytest.approx(
        noise_margin(178, None, 13, 0.01), abs=1e-6
    )
    assert noise_margin(5000, 1000, 11, 0.01) == sampling_margin(5000, 1000, 0.01 / 11)


def test_small_baseline_warning_at_and_around_the_limit() -> None:
    assert small_baseline_warning(178, 13, 0.1, 0.01) is not None
    assert small_baseline_warning(1572, 13, 0.1, 0.01) is not None  # floor just above 0.05
    assert small_baseline_warning(1573, 13, 0.1, 0.01) is None
    confident = small_baseline_warning(178, 13, 0.1, 0.01, verdict="confident")
    assert confident is not None and "≈0.249" in confident  # τ + M under `confident`
