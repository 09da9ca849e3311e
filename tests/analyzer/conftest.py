"""Fixtures shared by the analyzer's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from analyzer.ingest.decode_process import DecodeProcess
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


@pytest.fixture
def process(tmp_path: Path) -> Iterator[DecodeProcess]:
    """A decoding process (its worker started at the first chunk) handing chunks over in
    ``tmp_path/handover``; closed after the test."""
    handover = tmp_path / "handover"
    handover.mkdir()
    process = DecodeProcess(folder=handover)
    yield process
    process.close()
