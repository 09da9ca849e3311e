"""Fixtures shared by the analyzer's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from analyzer.store.database import Store
from modelmon.config import ModelmonConfig


@pytest.fixture
def store(config: ModelmonConfig) -> Iterator[Store]:
    """The service's store on ``config``'s database (the module's own ``config`` fixture),
    started, and closed after the test."""
    store = Store(config.analyzer.db)
    store.start()
    yield store
    store.close()
