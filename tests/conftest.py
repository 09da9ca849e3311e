"""Hypothesis profiles for the whole suite.

``ci`` (loaded by default) keeps the standing fuzz suite (``-m fuzz``) to well under a minute:
few examples, no per-example deadline (the machine is shared and noisy), no database of
failing examples written next to the checkout. ``long`` is for a hand run that searches much
harder: ``pytest -m fuzz --hypothesis-profile=long`` (Hypothesis's own pytest option picks the
profile, after this file has registered it). Tests that pin ``max_examples`` themselves keep
their own count under either profile.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# the `s3` fixture: moto's S3 server on 127.0.0.1 (tests/s3_support.py)
pytest_plugins = ["tests.s3_support"]

settings.register_profile(  # fixed examples: a CI run is reproducible (`-m fuzz` with
    "ci",  # MODELMON_HYPOTHESIS_PROFILE=long explores at random)
    derandomize=True,
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "long",
    max_examples=4000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile(os.environ.get("MODELMON_HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under the ``long`` profile the fuzz tests may run past the suite's 60 s timeout."""
    if config.getoption("hypothesis_profile", None) != "long":
        return
    for item in items:
        if item.get_closest_marker("fuzz") is not None:
            item.add_marker(pytest.mark.timeout(0))
