"""``modelmon baseline``: statistics.json and constraints.json from training data."""

from __future__ import annotations

import sys
from pathlib import Path

from modelmon.config import ModelmonConfig

__all__ = ["run_baseline"]


def run_baseline(
    config: ModelmonConfig | None,
    data: Path,
    fmt: str | None,
    out: Path | None,
    header: bool = True,
) -> int:
    """Not ready yet (work in progress)."""
    print("modelmon baseline: not implemented yet", file=sys.stderr)
    return 2
