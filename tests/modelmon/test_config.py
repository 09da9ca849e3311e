from pathlib import Path

import pytest
import yaml

from modelmon.config import ConfigError, load_config, parse_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path) -> None:
    config = load_config(path)
    assert config.proxy.upstream.startswith("http")
    assert config.capture.dir.is_absolute()
    written = Path((yaml.safe_load(path.read_text()).get("capture") or {}).get("dir", "."))
    if written.is_absolute():  # e.g. docker.yaml: kept as written
        assert config.capture.dir == written
    else:  # relative paths are taken from the config's folder
        assert config.capture.dir.is_relative_to(CONFIGS)


def test_example_matches_design_defaults() -> None:
    config = load_config(CONFIGS / "example.yaml")
    assert config.endpoint.name == "churn-model"
    assert config.capture.sampling_percentage == 20
    assert config.capture.min_free_disk_fraction == 0.05
    assert config.analyzer.payload.input.columns == ["age", "income", "state"]
    assert config.analyzer.alerts.webhooks[0].url == "http://127.0.0.1:9000/hook"
    assert config.analyzer_url == "http://127.0.0.1:8090"


def test_only_upstream_is_required(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("proxy: {upstream: 'http://127.0.0.1:1'}\n")
    config = load_config(path)
    assert config.capture.sampling_percentage == 20
    assert config.analyzer.db == tmp_path / "data" / "modelmon.db"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("proxy: {upstream: 'http://x:1', colour: red}", "proxy.colour: unknown key"),
        ("proxy: {}", "proxy.upstream: required key is missing"),
        ("proxy: {upstream: 'ftp://x'}", "proxy.upstream"),
        (
            "proxy: {upstream: 'http://x:1'}\ncapture: {sampling_percentage: 150}",
            "capture.sampling_percentage",
        ),
        (
            "proxy: {upstream: 'http://x:1'}\ncapture: {rotate_interval_s: soon}",
            "capture.rotate_interval_s",
        ),
        ("proxy: {upstream: 'http://x:1', listen: 'nowhere'}", "proxy.listen"),
        (
            "proxy: {upstream: 'http://x:1'}\nanalyzer: {payload: {input: {format: xml}}}",
            "analyzer.payload.input.format",
        ),
        (
            "proxy: {upstream: 'http://x:1'}\nanalyzer: {drift_verdict: strict}",
            "analyzer.drift_verdict",
        ),
        ("- just\n- a list", "top level must be a mapping"),
        ("proxy: [unclosed", "not valid YAML"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, body: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert expected in message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_config_is_frozen() -> None:
    config = parse_config(yaml.safe_load("proxy: {upstream: 'http://x:1'}"))
    with pytest.raises(ValueError):
        config.proxy.upstream = "http://y:2"  # type: ignore[misc]
