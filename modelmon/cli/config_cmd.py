"""``modelmon config example|check``: the annotated example, and a file checked as at start.

The example is package data (``modelmon/example.yaml``, a copy of ``configs/example.yaml``
that a test keeps equal), so a pip install has it.
"""

from __future__ import annotations

import json
import sys
from importlib import resources

import yaml

from modelmon.config import ModelmonConfig

__all__ = ["example_text", "run_config"]


def example_text() -> str:
    """The annotated example config, as shipped in the package."""
    return resources.files("modelmon").joinpath("example.yaml").read_text(encoding="utf-8")


def run_config(action: str, config: ModelmonConfig | None) -> int:
    """``example`` prints the example; ``check`` prints the resolved config.

    ``check`` gets the config already loaded: a file that does not load has ended in exit 2
    with its errors (in :mod:`modelmon.cli`).
    """
    if action == "example":
        sys.stdout.write(example_text())
        return 0
    assert config is not None  # argparse requires --config for check
    resolved = json.loads(config.model_dump_json(exclude={"source"}))
    print(f"# {config.source}: valid; every key with its value (defaults, resolved paths)")
    sys.stdout.write(yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))
    return 0
