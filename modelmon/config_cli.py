"""``modelmon config example|check``: the annotated example, and a file checked as at start.

The example is package data (``modelmon/example.yaml``, a copy of ``configs/example.yaml``
that a test keeps equal), so a pip install has it.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path

import yaml

from modelmon.config import load_config

__all__ = ["example_text", "run_config"]


def example_text() -> str:
    """The annotated example config, as shipped in the package."""
    return resources.files("modelmon").joinpath("example.yaml").read_text(encoding="utf-8")


def run_config(action: str, path: Path | None) -> int:
    """``example`` prints the example; ``check`` prints the resolved config (errors: exit 2)."""
    if action == "example":
        sys.stdout.write(example_text())
        return 0
    assert path is not None  # argparse requires --config for check
    config = load_config(path)  # a ConfigError becomes exit 2 in modelmon.cli
    resolved = json.loads(config.model_dump_json(exclude={"source"}))
    print(f"# {path}: valid; every key with its value (defaults filled in, paths resolved)")
    sys.stdout.write(yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))
    return 0
