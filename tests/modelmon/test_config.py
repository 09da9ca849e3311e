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


def _load(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    return info.value


UP = "proxy: {upstream: 'http://127.0.0.1:1'}\n"


@pytest.mark.parametrize(
    ("analyzer", "expected"),
    [
        ("{bucket_s: 7}", "analyzer.bucket_s: must divide 3600"),
        ("{bucket_s: 600, window_s: 300}", "analyzer.window_s: must be at least"),
        (
            "{schedule_cron: '0 0 31 2 *'}",
            "analyzer.schedule_cron: '0 0 31 2 *': this expression never fires",
        ),
        ("{schedule_cron: '61 * * * *'}", "analyzer.schedule_cron"),
        ("{schedule_cron: NOW}", "modelmon analyze --once"),
    ],
)
def test_what_the_analyzer_cannot_honour_is_refused_at_load(
    tmp_path: Path, analyzer: str, expected: str
) -> None:
    assert expected in str(_load(tmp_path, UP + f"analyzer: {analyzer}\n"))


@pytest.mark.parametrize(
    ("key", "lowest", "highest", "allowed"),
    [
        ("max_line_bytes", 1024, 1 << 30, "≥ 1,024 and ≤ 1,073,741,824"),
        ("max_features", 1, 100_000, "≥ 1 and ≤ 100,000"),
        ("retention_days", 0.01, 36_500, "≥ 0.01 and ≤ 36,500"),
    ],
)
def test_the_hostile_traffic_bounds_are_bounded_both_ways(
    tmp_path: Path, key: str, lowest: float, highest: float, allowed: str
) -> None:
    """The analyzer's hostile-traffic keys: their bounds are accepted, one step beyond is not."""
    for value in (lowest, highest):
        config = parse_config(yaml.safe_load(UP + f"analyzer: {{{key}: {value}}}"))
        assert getattr(config.analyzer, key) == value
    step = 0.001 if isinstance(lowest, float) else 1
    for value in (lowest - step, highest + step):
        error = str(_load(tmp_path, UP + f"analyzer: {{{key}: {value}}}\n"))
        assert f"analyzer.{key}" in error and allowed in error


def test_a_typo_in_a_nested_key_suggests_the_key_and_lists_its_section(tmp_path: Path) -> None:
    message = str(_load(tmp_path, UP + "capture: {sampling_percentge: 5}\n"))
    assert (
        "capture.sampling_percentge: unknown key — did you mean 'sampling_percentage'?" in message
    )
    assert "keys of capture: enabled, dir, sampling_percentage," in message
    assert "sections" not in message  # the section's keys, not the top-level ones
    assert "configs/example.yaml" not in message  # not shipped by pip
    assert "modelmon config example" in message


def test_a_typo_in_a_list_item_suggests_from_the_item_model(tmp_path: Path) -> None:
    text = UP + "analyzer: {alerts: {webhooks: [{url: 'http://h:1/x', header: {}}]}}\n"
    message = str(_load(tmp_path, text))
    assert "analyzer.alerts.webhooks.0.header: unknown key — did you mean 'headers'?" in message


def test_an_unknown_section_lists_the_sections(tmp_path: Path) -> None:
    message = str(_load(tmp_path, UP + "analyser: {}\n"))
    assert "analyser: unknown key — did you mean 'analyzer'? (sections: endpoint, proxy," in message


def test_a_duplicate_key_is_an_error_with_its_lines(tmp_path: Path) -> None:
    text = UP + "analyzer:\n  window_s: 600\n  bucket_s: 60\n  window_s: 7200\n"
    assert "window_s: duplicate key on line 5 (first on line 3)" in str(_load(tmp_path, text))
    flow = UP + "capture: {compress: true, compress: false}\n"
    assert "compress: duplicate key on line 2 (first on line 2)" in str(_load(tmp_path, flow))


def test_a_yaml_merge_key_may_repeat_keys(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        UP + "x_defaults: &d {format: csv, columns: [a]}\n"
        "analyzer: {payload: {input: {<<: *d, columns: [b]}}}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "x_defaults: unknown key" in message and "duplicate" not in message


def test_the_example_shipped_in_the_package_is_configs_example() -> None:
    shipped = Path(__file__).resolve().parents[2] / "modelmon" / "example.yaml"
    assert shipped.read_bytes() == (CONFIGS / "example.yaml").read_bytes()


def test_model_quality_is_off_unless_configured(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(UP)
    assert load_config(path).analyzer.model_quality is None
    path.write_text(
        UP + "analyzer:\n  model_quality:\n    problem_type: BinaryClassification\n"
        "    inference_attribute: '0'\n    probability_attribute: predictions[0].score\n"
        "    ground_truth: {dir: labels}\n"
    )
    quality = load_config(path).analyzer.model_quality
    assert quality is not None
    assert quality.ground_truth.dir == tmp_path / "labels"
    assert quality.baseline.statistics == tmp_path / "baseline/model_quality/statistics.json"
    assert (quality.min_labels, quality.window_s, quality.probability_threshold_attribute) == (
        100,
        3600,
        0.5,
    )


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("{problem_type: Binary}", "analyzer.model_quality.problem_type"),
        ("{inference_attribute: '0'}", "analyzer.model_quality.problem_type: required key"),
        (
            "{problem_type: Regression, inference_attribute: 'a[[['}",
            "analyzer.model_quality.inference_attribute: not a column index",
        ),
        (
            "{problem_type: Regression, probability_threshold_attribute: 2}",
            "analyzer.model_quality.probability_threshold_attribute",
        ),
        (
            "{problem_type: Regression, ground_truth: {folder: x}}",
            "analyzer.model_quality.ground_truth.folder: unknown key",
        ),
    ],
)
def test_bad_model_quality_config_names_the_key(
    tmp_path: Path, section: str, expected: str
) -> None:
    assert expected in str(_load(tmp_path, UP + f"analyzer: {{model_quality: {section}}}\n"))
