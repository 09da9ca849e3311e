"""Malformed configs end in exit 2 with the file, the key and what is allowed; never a traceback.

The listed cases come from an outside probe (issue 9): each ran ``modelmon proxy`` and
``modelmon analyzer`` into a traceback, or was accepted and broke at run time. Here both
commands run as real subprocesses on each. The Hypothesis test mutates valid configs (wrong
types, extreme numbers, random strings, nesting, unknown keys) and loads them in-process: the
loader returns a config that the proxy's and the analyzer's start-up objects accept, or raises
:class:`ConfigError` naming the file and the section.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from analyzer.decoding.side_codec import SideCodec
from capture_proxy.redact import Redactor
from modelmon.config import ConfigError, ModelmonConfig, load_config, parse_listen

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
UP = b"proxy: {upstream: 'http://127.0.0.1:1'}\n"


def _nested(depth: int) -> bytes:
    return b"x: " + b"[" * depth + b"]" * depth + b"\n"


def _alias_bomb() -> bytes:
    lines = [b"a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]".encode() for i in range(1, 8)]
    return UP + b"\n".join(lines) + b"\n"


# (id, file content, what the error must name besides the file); the probe's cases first
CASES: list[tuple[str, bytes, str]] = [
    ("latin-1", UP + "endpoint: {name: café}\n".encode("latin-1"), "not UTF-8 text"),
    ("utf-16", (UP.decode() + "endpoint: {name: x}\n").encode("utf-16"), "UTF-16"),
    ("deep-3000", UP + _nested(3000), "nested deeper than"),
    ("deep-40", UP + _nested(40), "nested deeper than"),
    ("alias-bomb", _alias_bomb(), "more than 100,000 values"),
    ("bad-json-path", UP + b"capture: {redact: {json_paths: ['a..b']}}\n", "json_paths.0"),
    ("bad-json-path-2", UP + b"capture: {redact: {json_paths: ['a[x']}}\n", "json_paths.0"),
    ("port-99999", b"proxy: {upstream: 'http://127.0.0.1:99999'}\n", "proxy.upstream"),
    ("port-abc", b"proxy: {upstream: 'http://127.0.0.1:abc'}\n", "proxy.upstream"),
    ("port-empty", b"proxy: {upstream: 'http://127.0.0.1:'}\n", "proxy.upstream"),
    ("trailing-space", b"proxy: {upstream: 'http://127.0.0.1:1 '}\n", "proxy.upstream"),
    ("crlf-in-url", b'proxy: {upstream: "http://127.0.0.1:1\\r\\n"}\n', "proxy.upstream"),
    ("webhook-port", UP + b"analyzer: {alerts: {webhooks: [{url: 'http://h:0x1'}]}}\n", "url"),
    ("window-1e21", UP + b"analyzer: {window_s: 1e21}\n", "analyzer.window_s"),
    ("flush-1e-300", UP + b"capture: {flush_interval_s: 1e-300}\n", "capture.flush_interval_s"),
    ("schedule-1e-300", UP + b"analyzer: {schedule_interval_s: 1e-300}\n", "schedule_interval_s"),
    ("rotate-inf", UP + b"capture: {rotate_interval_s: .inf}\n", "capture.rotate_interval_s"),
    ("sampling-nan", UP + b"capture: {sampling_percentage: .nan}\n", "sampling_percentage"),
    ("name-5000", UP + b"endpoint: {name: " + b"n" * 5000 + b"}\n", "endpoint.name"),
    ("name-dotdot", UP + b"endpoint: {variant: '../x'}\n", "endpoint.variant"),
    ("schedule-name", UP + b"analyzer: {schedule_name: '../../../x'}\n", "schedule_name"),
    ("jmespath", UP + b"analyzer: {payload: {input: {format: json, path: 'a[?'}}}\n", ".path"),
    ("duplicate", UP + b"capture:\n  compress: true\n  compress: false\n", "compress"),
    ("bucket-7", UP + b"analyzer: {bucket_s: 7}\n", "analyzer.bucket_s"),
    ("cron", UP + b"analyzer: {schedule_cron: '* * *'}\n", "analyzer.schedule_cron"),
    ("nul-path", UP + b'capture: {dir: "a\\0b"}\n', "capture.dir"),
    (
        "header-crlf",
        UP + b'capture: {inference_id_headers: ["X\\r\\nY"]}\n',
        "inference_id_headers",
    ),
]


SUBPROCESS = {  # run as real commands too (each costs a Python start-up, so not all of them)
    "latin-1", "utf-16", "deep-3000", "bad-json-path", "port-99999", "port-abc",
    "trailing-space", "crlf-in-url", "window-1e21", "flush-1e-300", "schedule-1e-300",
    "name-5000", "jmespath", "duplicate", "bucket-7",
}  # fmt: skip


@pytest.mark.parametrize(("content", "key"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_loader_names_file_and_key(tmp_path: Path, content: bytes, key: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ") and key in str(info.value)


def _run(command: list[str], path: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "modelmon", *command, "--config", str(path)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize(
    ("content", "key"),
    [c[1:] for c in CASES if c[0] in SUBPROCESS],
    ids=[c[0] for c in CASES if c[0] in SUBPROCESS],
)
def test_proxy_and_analyzer_exit_2_naming_file_and_key(
    tmp_path: Path, content: bytes, key: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    procs = [_run([command], path) for command in ("proxy", "analyzer")]  # both at once
    for proc in procs:
        out, err = proc.communicate(timeout=50)
        assert proc.returncode == 2, (out, err)
        assert "Traceback" not in err
        assert str(path) in err and key in err, err


@pytest.mark.parametrize(
    "command",
    [["up"], ["analyze"], ["baseline", "--data", "train.csv"], ["config", "check"], ["status"]],
    ids=lambda c: c[0],
)
def test_every_command_that_reads_the_file_refuses_it_alike(
    tmp_path: Path, command: list[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(UP + b"analyzer:\n  bucket_s: 60\n  bucket_s: 7\n")
    out, err = _run(command, path).communicate(timeout=50)
    assert "bucket_s: duplicate key on line 4 (first on line 3)" in err, (out, err)
    assert str(path) in err and "Traceback" not in err
    assert "started" not in out


# --- Hypothesis: mutations of valid configs, loaded in-process ---------------------------------

_SEEDS = [yaml.safe_load((CONFIGS / name).read_text()) for name in ("example.yaml", "docker.yaml")]

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e-300, 1e21, 1e308, 65536, 99999, 3600, 7, 0.001]),
    st.text(max_size=30),
    st.text(alphabet="abc:/.?[]*@{}$&-_ \t\r\n\x00", max_size=40),
    st.sampled_from(
        ["http://h:99999", "http://h:abc", "http://h:1 ", "a[?", "../x", "cron(0 * ? * * *)"]
    ),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


@st.composite
def _mutated(draw: st.DrawFn) -> tuple[dict[str, Any], tuple[Any, ...]]:
    doc = copy.deepcopy(draw(st.sampled_from(_SEEDS)))
    path = draw(st.sampled_from(_paths(doc)))
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    how = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
    if how == "replace":
        parent[path[-1]] = draw(_values)
    elif how == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=12))] = draw(_values)
    else:
        parent.append(draw(_values))
    return doc, path


def _starts_cleanly(config: ModelmonConfig) -> None:
    """What the proxy and the analyzer build from the config at start must accept it."""
    Redactor(config.capture.redact)
    for side, output in (
        (config.analyzer.payload.input, False),
        (config.analyzer.payload.output, True),
    ):
        SideCodec(side, output)
    for url in (
        config.proxy.upstream,
        config.analyzer_url,
        *(w.url for w in config.analyzer.alerts.webhooks),
    ):
        assert URL(url).port is not None and urlsplit(url).port is not None
    parse_listen(config.proxy.listen)
    parse_listen(config.analyzer.listen)
    schedule = config.analyzer.schedule()
    if schedule is not None:
        schedule.next_after(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    datetime.fromtimestamp(1.8e9 - config.analyzer.window_s, UTC)


@settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(_mutated())
def test_a_mutated_config_loads_or_names_file_and_section(
    case: tuple[dict[str, Any], tuple[Any, ...]],
) -> None:
    doc, path = case
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "fuzzed.yaml"
        file.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
        try:
            config = load_config(file)
        except ConfigError as exc:
            message = str(exc)
            assert message.startswith(f"{file}: ")
            assert str(path[0]) in message, message
            assert "Traceback" not in message
            return
    _starts_cleanly(config)


_EXAMPLE = (CONFIGS / "example.yaml").read_text()
_snippets = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [": ", "- ", "[", "]", "{", "}", "&a ", "*a", "<<: *a", "!!binary x", "!!int x",
         "!!float", "!!timestamp", "2026-02-31", "2026-13-01 25:61:61", "0x", "0o9", "1_0",
         ".nan", "~", "'", '"', "\\x", "\t", "\r\n", "\n  ", "?", "%YAML 1.1\n", "---\n",
         "...\n", "|\n", ">-\n", "#"]
    ),
)  # fmt: skip


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(st.tuples(st.integers(0, len(_EXAMPLE)), st.integers(0, 8), _snippets), max_size=4))
def test_an_edited_file_loads_or_is_a_config_error(edits: list[tuple[int, int, str]]) -> None:
    """Text edits (inserted YAML syntax, tags, dates, cut spans) never escape as another error."""
    text = _EXAMPLE
    for at, cut, snippet in edits:
        text = text[:at] + snippet + text[at + cut :]
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "edited.yaml"
        file.write_text(text, encoding="utf-8")
        try:
            load_config(file)
        except ConfigError as exc:
            assert str(exc).startswith(f"{file}: ")
