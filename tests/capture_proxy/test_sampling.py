"""Sampling: the rate within a binomial bound, deterministic per inference id, exact at 0/100."""

import math
import random

import pytest

from capture_proxy.sampling import Sampler

N = 20_000


@pytest.mark.parametrize("percentage", [1.0, 20.0, 50.0, 99.5])
def test_random_rate_within_binomial_bound(percentage: float) -> None:
    sampler = Sampler(percentage, rng=random.Random(1234))
    hits = sum(sampler.sample(None) for _ in range(N))
    p = percentage / 100
    sigma = math.sqrt(N * p * (1 - p))
    assert abs(hits - N * p) <= 4 * sigma, (hits, N * p, sigma)


@pytest.mark.parametrize("percentage", [1.0, 20.0, 50.0, 99.5])
def test_hashed_rate_within_binomial_bound(percentage: float) -> None:
    sampler = Sampler(percentage)
    hits = sum(sampler.sample(f"request-{i}") for i in range(N))
    p = percentage / 100
    sigma = math.sqrt(N * p * (1 - p))
    assert abs(hits - N * p) <= 4 * sigma, (hits, N * p, sigma)


def test_same_id_same_verdict_across_instances() -> None:
    ids = [f"order-{i}" for i in range(2_000)] + ["", "ünïcødé", "\ud800-lone-surrogate"]
    first = Sampler(20.0, rng=random.Random(1))
    second = Sampler(20.0, rng=random.Random(2))
    verdicts = [first.sample(i) for i in ids]
    assert verdicts == [second.sample(i) for i in ids]
    assert verdicts == [first.sample(i) for i in ids]  # and again on the same instance
    assert 0 < sum(verdicts) < len(ids)


def test_ids_sampled_at_a_lower_rate_stay_sampled_at_a_higher_one() -> None:
    ids = [f"id-{i}" for i in range(5_000)]
    low = {i for i in ids if Sampler(10.0).sample(i)}
    high = {i for i in ids if Sampler(30.0).sample(i)}
    assert low and low < high


@pytest.mark.parametrize("inference_id", [None, "abc", "order-1"])
def test_zero_and_hundred_are_exact(inference_id: str | None) -> None:
    never = Sampler(0.0, rng=random.Random(3))
    always = Sampler(100.0, rng=random.Random(3))
    assert not any(never.sample(inference_id) for _ in range(5_000))
    assert all(always.sample(inference_id) for _ in range(5_000))
    assert sum(Sampler(0.0).sample(f"x{i}") for i in range(5_000)) == 0
    assert sum(Sampler(100.0).sample(f"x{i}") for i in range(5_000)) == 5_000


@pytest.mark.parametrize("bad", [-0.1, 100.01, float("nan")])
def test_out_of_range_percentage_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="0-100"):
        Sampler(bad)


def test_docstring_examples_run() -> None:
    import doctest

    import capture_proxy.sampling

    assert doctest.testmod(capture_proxy.sampling).failed == 0
