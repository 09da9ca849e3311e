"""The README stays true: its first commands are what CI runs, its YAML is the example config."""

import re
from pathlib import Path

from modelmon.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def test_first_lines_are_the_two_commands_and_ci_runs_the_second() -> None:
    first = _blocks("bash")[0].splitlines()
    demo, tests = (line.split("#")[0].strip() for line in first[:2])
    assert demo == "pip install . && modelmon demo"
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci
    assert README.index("```bash") < README.index("modelmon is a self-hosted")


def test_readme_yaml_is_the_example_config() -> None:
    example = (ROOT / "configs" / "example.yaml").read_text()
    assert _blocks("yaml")[0] == example


def test_every_command_in_the_readme_exists() -> None:
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    used = set(re.findall(r"^modelmon (\w+)", "\n".join(_blocks("bash")), re.M))
    used |= set(re.findall(r"&& modelmon (\w+)", README))
    assert used and used <= commands
