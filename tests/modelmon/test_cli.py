"""The command line: every --help, ``modelmon config example|check``, ``analyze`` without --once."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modelmon.cli import build_parser, main
from modelmon.cli.demo import EXPECTED_S

ROOT = Path(__file__).resolve().parents[2]


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, prefix: tuple[str, ...]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found[" ".join((*prefix, name))] = sub
                    walk(sub, (*prefix, name))

    walk(build_parser(), ())
    return found


SUBCOMMANDS = _subcommands()


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_every_help_runs_and_lists_every_option_with_its_default(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command.split(), "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for action in SUBCOMMANDS[command]._actions:
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
            continue
        assert action.option_strings[0] in text, (command, action.dest)
        if action.default not in (None, False, argparse.SUPPRESS):
            assert re.search(rf"default:? [^)]*{re.escape(str(action.default))}", text), (
                command,
                action.dest,
            )
    if not command.startswith("config "):
        assert "--log-level" in text  # every command shows it, not only the top level


def test_up_help_shows_more_than_config(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["up", "--help"])
    out = capsys.readouterr().out
    assert "--config" in out and "--log-level" in out and "default: INFO" in out


def _modelmon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelmon", *args], capture_output=True, text=True, timeout=60
    )


def test_config_example_prints_the_shipped_example_and_check_accepts_it(tmp_path: Path) -> None:
    example = _modelmon("config", "example")
    assert example.returncode == 0
    assert example.stdout == (ROOT / "configs" / "example.yaml").read_text()
    path = tmp_path / "modelmon.yaml"
    path.write_text(example.stdout)
    check = _modelmon("config", "check", "--config", str(path))
    assert check.returncode == 0, check.stderr
    resolved = yaml.safe_load(check.stdout)
    assert resolved["capture"]["flush_interval_s"] == 1.0  # every key, written or default
    assert resolved["proxy"]["max_connections"] == 256
    assert resolved["capture"]["dir"] == str(tmp_path / "data" / "capture")


def test_config_check_prints_every_error_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("proxy: {upstream: 'http://x:1'}\ncapture: {sampling_percentge: 5, mode: []}\n")
    check = _modelmon("config", "check", "--config", str(path))
    assert check.returncode == 2 and not check.stdout
    assert "capture.sampling_percentge: unknown key — did you mean" in check.stderr
    assert "capture.mode:" in check.stderr


def test_analyze_runs_one_pass_without_once(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("proxy: {upstream: 'http://x:1'}\n")
    proc = _modelmon("analyze", "--config", str(path))  # no baseline: exit 3, not a usage error
    assert proc.returncode == 3, proc.stderr
    assert "modelmon baseline" in proc.stderr


def test_readme_and_demo_say_the_same_duration() -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"stops by itself after about {EXPECTED_S} seconds" in readme
