"""Profiles: exact statistics against numpy, Deequ's type rule, merge laws, serialization."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.decoding.codecs import PayloadDecoder
from analyzer.monitors.data_quality.profile import DatasetProfile, FeatureProfile, profile_rows
from analyzer.monitors.data_quality.sketches import (
    kll_rank_error,
    kll_weighted_items,
    weighted_rank_counts,
)
from analyzer.monitors.data_quality.statistics_format import statistics_json
from modelmon.config import PayloadConfig
from tests.shared_data import DATA as SHARED_DATA

DATA = SHARED_DATA
NUMERIC = ["age", "income", "balance", "tenure_months", "num_products", "credit_score"]


def read_columns(path: Path) -> dict[str, list[str]]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    return {name: [row[j] for row in rows[1:]] for j, name in enumerate(rows[0])}


@pytest.fixture(scope="module")
def baseline_columns() -> dict[str, list[str]]:
    return read_columns(DATA / "baseline.csv")


def test_baseline_statistics_equal_numpy(baseline_columns: dict[str, list[str]]) -> None:
    # Three chunks merged: the exact parts must not depend on how the rows were split.
    profile = DatasetProfile()
    n = len(baseline_columns["age"])
    for lo, hi in ((0, 7000), (7000, 7100), (7100, n)):
        chunk = {k: v[lo:hi] for k, v in baseline_columns.items()}
        profile.update_columns(chunk, hi - lo, None)
    assert profile.item_count == n
    for name in [*NUMERIC, "utilization", "score"]:
        x = np.array(baseline_columns[name], dtype=np.float64)
        f = profile.features[name]
        assert (f.num_present, f.num_missing, f.count) == (n, 0, n)
        assert f.min == x.min() and f.max == x.max()
        assert f.sum == pytest.approx(x.sum(), rel=1e-12)
        assert f.mean == pytest.approx(x.mean(), rel=1e-12)
        assert f.std == pytest.approx(x.std(), rel=1e-10)


def test_kll_buckets_within_the_sketch_error(baseline_columns: dict[str, list[str]]) -> None:
    profile = profile_rows(baseline_columns)
    doc = statistics_json(profile)
    eps = kll_rank_error(profile.k)
    for entry in doc["features"]:
        if "numerical_statistics" not in entry:
            continue
        x = np.array(baseline_columns[entry["name"]], dtype=np.float64)
        buckets = entry["numerical_statistics"]["distribution"]["kll"]["buckets"]
        edges = [b["lower_bound"] for b in buckets] + [buckets[-1]["upper_bound"]]
        exact, _ = np.histogram(x, bins=edges)
        counts = np.array([b["count"] for b in buckets])
        assert counts.sum() == pytest.approx(len(x))
        # Each count is a difference of two ranks, each within eps * n.
        assert np.abs(counts - exact).max() <= 2 * eps * len(x), entry["name"]


@pytest.mark.parametrize(
    ("values", "kind", "counts"),
    [
        (["3.0", "1.0"], "Fractional", (0, 2, 0)),
        (["3", "-1", "+7"], "Integral", (3, 0, 0)),
        (["3", "2.5"], "Fractional", (1, 1, 0)),
        (["3", "n/a", ""], "String", (1, 0, 1)),
        (["1e-3", ".5", "5."], "Fractional", (0, 3, 0)),
        (["nan", "inf"], "String", (0, 0, 2)),
        ([1, 2.0, None], "Fractional", (1, 1, 0)),
        ([True, 1], "String", (1, 0, 1)),
        (["", None], "Unknown", (0, 0, 0)),
    ],
)
def test_type_inference_follows_deequ(
    values: list[Any], kind: str, counts: tuple[int, ...]
) -> None:
    f = FeatureProfile("x")
    f.update(values)
    assert f.inferred_type == kind
    assert (
        f.type_counts["Integral"],
        f.type_counts["Fractional"],
        f.type_counts["String"],
    ) == counts
    assert f.num_present + f.num_missing == len(values)


def test_categories_are_exact_counts() -> None:
    rng = np.random.default_rng(3)
    values = rng.choice([f"v{i}" for i in range(2000)], size=20_000).tolist()
    f = FeatureProfile("s")
    f.update(values[:5000])
    f.update(values[5000:])
    assert f.category_counts() == {k: float(v) for k, v in Counter(values).items()}
    assert f.distinct_count() == len(set(values))


def test_missing_counts_hold_when_columns_come_and_go() -> None:
    profile = DatasetProfile()
    profile.update_columns({"a": ["1", "2"]}, 2, None)
    profile.update_columns({"a": ["3"], "b": ["x"]}, 1, None)
    profile.update_columns({"b": ["y", ""]}, 2, None)
    assert profile.item_count == 5
    a, b = profile.features["a"], profile.features["b"]
    assert (a.num_present, a.num_missing) == (3, 2)
    assert (b.num_present, b.num_missing) == (2, 3)


def test_sides_not_captured_are_not_missing() -> None:
    dec = PayloadDecoder(PayloadConfig.model_validate({"input": {"columns": ["a"]}}))

    def rec(inp: str | None, out: str | None) -> dict[str, Any]:
        capture = {}
        if inp is not None:
            capture["endpointInput"] = {"data": inp, "encoding": "CSV"}
        if out is not None:
            capture["endpointOutput"] = {"data": out, "encoding": "CSV"}
        meta = {"eventId": "e", "inferenceTime": "2024-01-01T00:00:00Z"}
        return {"captureData": capture, "eventMetadata": meta}

    profile = DatasetProfile()
    records = [rec("1", "0.5"), rec(None, "0.7"), rec("2", None), rec('""', None)]
    profile.update(dec.decode_records(records))
    a, p = profile.features["a"], profile.predictions["prediction"]
    assert profile.item_count == 3 and profile.prediction_count == 2
    assert (a.num_present, a.num_missing) == (2, 1)
    assert (p.num_present, p.num_missing, p.mean) == (2, 0, pytest.approx(0.6))


chunks = st.lists(
    st.one_of(
        st.none(),
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
        st.integers(min_value=-1000, max_value=1000),
        st.sampled_from(["a", "b", "c", "", "1.5", "7"]),
    ),
    max_size=120,
)


def build(values: list[Any], k: int) -> DatasetProfile:
    profile = DatasetProfile(k)
    profile.update_columns({"x": values}, len(values), None)
    return profile


def exact_parts(p: DatasetProfile) -> tuple[Any, ...]:
    f = p.features.get("x")
    if f is None:
        return (p.item_count,)
    cats = f.category_counts()
    n = f.kll.n if f.kll is not None else 0
    return (
        p.item_count,
        f.num_present,
        f.num_missing,
        f.type_counts,
        f.count,
        f.min,
        f.max,
        n,
        cats,
    )


@settings(max_examples=60, deadline=None)
@given(a=chunks, b=chunks, c=chunks)
def test_merge_is_associative_and_commutative(a: list[Any], b: list[Any], c: list[Any]) -> None:
    k = 16  # small, so that the sketch compacts and its error matters
    left = build(a, k)
    left.merge(build(b, k))
    left.merge(build(c, k))
    right = build(c, k)
    bc = build(b, k)
    bc.merge(build(a, k))
    right.merge(bc)
    assert exact_parts(left) == exact_parts(right)
    everything = a + b + c
    if "x" not in left.features or not left.features["x"].count:
        return
    fl, fr = left.features["x"], right.features["x"]
    numbers = np.array(
        [float(v) for v in everything if v not in (None, "", "a", "b", "c")], dtype=np.float64
    )
    assert fl.sum == pytest.approx(numbers.sum(), rel=1e-9, abs=1e-6)
    assert fr.sum == pytest.approx(numbers.sum(), rel=1e-9, abs=1e-6)
    assert fl.std == pytest.approx(numbers.std(), rel=1e-6, abs=1e-6)
    assert fr.std == pytest.approx(numbers.std(), rel=1e-6, abs=1e-6)
    # Quantiles: ranks within the sketch's error of the true ranks (a generous 3x bound).
    bound = 3 * kll_rank_error(k) * len(numbers) + 1
    points = np.quantile(numbers, [0.1, 0.5, 0.9])
    for f in (fl, fr):
        values, weights = kll_weighted_items(f.kll)
        got = weighted_rank_counts(values, weights, points, inclusive=True)
        true = np.searchsorted(np.sort(numbers), points, side="right")
        assert np.all(np.abs(got - true) <= bound)


@settings(max_examples=40, deadline=None)
@given(a=chunks, b=chunks)
def test_serialization_round_trips(a: list[Any], b: list[Any]) -> None:
    profile = build(a, 32)
    profile.update_columns({"y": b}, len(b), Counter({1: len(b)}))
    blob = profile.to_bytes()
    again = DatasetProfile.from_bytes(blob)
    assert again.to_bytes() == blob
    assert statistics_json(again) == statistics_json(profile)
    assert again.column_counts == profile.column_counts
    for f in profile.features.values():
        g = FeatureProfile.from_bytes(f.to_bytes())
        assert (g.sum, g.m2, g.min, g.max, g.type_counts) == (
            f.sum,
            f.m2,
            f.min,
            f.max,
            f.type_counts,
        )


def test_from_bytes_rejects_other_bytes() -> None:
    with pytest.raises(ValueError, match="not a serialized"):
        DatasetProfile.from_bytes(b"nonsense")
    with pytest.raises(ValueError, match="not a serialized"):
        FeatureProfile.from_bytes(b"nonsense")


def test_numpy_columns_are_profiled_directly() -> None:
    rng = np.random.default_rng(11)
    ints = rng.integers(0, 10, size=1000)
    floats = rng.normal(size=1000)
    floats[::10] = np.nan
    p = profile_rows({"i": ints, "f": floats})
    assert p.features["i"].inferred_type == "Integral"
    f = p.features["f"]
    assert (f.inferred_type, f.num_missing, f.count) == ("Fractional", 100, 900)
    assert f.mean == pytest.approx(np.nanmean(floats), rel=1e-12)
