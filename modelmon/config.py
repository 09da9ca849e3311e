"""The one YAML configuration file, parsed once at start into frozen pydantic models.

This module is a leaf: it imports neither ``capture_proxy`` nor ``analyzer``; both import it.
Every key has a default except ``proxy.upstream``. An unknown key, a wrong type or an
impossible value raises :class:`ConfigError` naming the file, the key and what is allowed.
Relative paths are resolved against the folder of the config file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "AlertsConfig",
    "AnalyzerConfig",
    "BaselineConfig",
    "CaptureConfig",
    "ConfigError",
    "EndpointConfig",
    "ModelmonConfig",
    "PayloadConfig",
    "PayloadSide",
    "ProxyConfig",
    "RedactConfig",
    "WebhookConfig",
    "load_config",
    "parse_config",
    "parse_listen",
]


class ConfigError(Exception):
    """A configuration file that cannot be used; the message says where and how to fix it."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:8080`` for IPv6) into its parts."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port with a port in 0-65535, got {value!r}")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def _check_listen(value: str) -> str:
    parse_listen(value)
    return value


class EndpointConfig(_Model):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")] = "endpoint"
    variant: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")] = (
        "AllTraffic"
    )


class ProxyConfig(_Model):
    listen: str = "127.0.0.1:8080"
    upstream: str
    connect_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    upstream_timeout_s: Annotated[float, Field(gt=0)] = 60.0
    workers: Annotated[int, Field(ge=1, le=256)] = 1
    max_connections: Annotated[int, Field(ge=1)] = 256
    analyzer_url: str | None = None  # where /monitor/* goes; default: analyzer.listen
    # fast: raw asyncio + llhttp (httptools); aiohttp: web.Application + ClientSession
    engine: Literal["fast", "aiohttp"] = "fast"

    _listen = field_validator("listen")(_check_listen)

    @field_validator("upstream", "analyzer_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")


class RedactConfig(_Model):
    json_paths: list[str] = []
    csv_columns: list[Annotated[int, Field(ge=0)]] = []


class CaptureConfig(_Model):
    enabled: bool = True
    dir: Path = Path("data/capture")
    sampling_percentage: Annotated[float, Field(ge=0, le=100)] = 20.0
    mode: list[Literal["input", "output"]] = ["input", "output"]
    csv_content_types: list[str] = ["text/csv"]
    json_content_types: list[str] = ["application/json"]
    inference_id_headers: list[str] = ["X-Amzn-SageMaker-Inference-Id", "X-Inference-Id"]
    max_capture_bytes: Annotated[int, Field(ge=0)] = 1_048_576
    queue_max_records: Annotated[int, Field(ge=1)] = 10_000
    rotate_interval_s: Annotated[float, Field(gt=0)] = 60.0
    max_file_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024 * 1024
    flush_interval_s: Annotated[float, Field(gt=0)] = 1.0
    compress: bool = False
    retention_max_age_h: Annotated[float, Field(gt=0)] = 168.0
    retention_max_bytes: Annotated[int, Field(gt=0)] = 10 * 1024**3
    min_free_disk_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.05
    redact: RedactConfig = RedactConfig()

    @field_validator("mode")
    @classmethod
    def _mode_not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("capture.mode needs at least one of input, output")
        return value


class BaselineConfig(_Model):
    statistics: Path = Path("baseline/statistics.json")
    constraints: Path = Path("baseline/constraints.json")


class PayloadSide(_Model):
    """How one side (request or response) of a capture record becomes rows."""

    format: Literal["csv", "json", "v2", "tfserving"] = "csv"
    columns: list[str] = []
    path: str | None = None  # a JMESPath expression for format: json


class PayloadConfig(_Model):
    input: PayloadSide = PayloadSide()
    output: PayloadSide = PayloadSide()


class WebhookConfig(_Model):
    url: str
    headers: dict[str, str] = {}

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value


class AlertsConfig(_Model):
    webhooks: list[WebhookConfig] = []
    cooldown_s: Annotated[float, Field(ge=0)] = 3600.0
    max_attempts: Annotated[int, Field(ge=1)] = 5
    timeout_s: Annotated[float, Field(gt=0)] = 10.0


class AnalyzerConfig(_Model):
    listen: str = "127.0.0.1:8090"
    db: Path = Path("data/modelmon.db")
    reports_dir: Path = Path("data/reports")
    schedule_name: Annotated[str, Field(min_length=1)] = "modelmon"
    schedule_interval_s: Annotated[float, Field(gt=0)] = 60.0
    schedule_cron: str | None = None
    bucket_s: Annotated[int, Field(ge=1)] = 300
    window_s: Annotated[int, Field(ge=1)] = 3600
    min_samples: Annotated[int, Field(ge=1)] = 100
    baseline: BaselineConfig = BaselineConfig()
    payload: PayloadConfig = PayloadConfig()
    alerts: AlertsConfig = AlertsConfig()
    auth_token_env: str | None = None
    false_alarm_rate: Annotated[float, Field(gt=0, lt=1)] = 0.01
    drift_verdict: Literal["significant", "confident"] = "significant"
    kll_k: Annotated[int, Field(ge=1024, le=65535)] = 2048
    # Hostile traffic bounds (docs/operations.md, "Hostile traffic").
    max_line_bytes: Annotated[int, Field(ge=1024, le=1 << 30)] = 16 << 20
    max_features: Annotated[int, Field(ge=1, le=100_000)] = 1000
    retention_days: Annotated[float, Field(gt=0, le=36_500)] = 30.0

    _listen = field_validator("listen")(_check_listen)


class ModelmonConfig(_Model):
    endpoint: EndpointConfig = EndpointConfig()
    proxy: ProxyConfig
    capture: CaptureConfig = CaptureConfig()
    analyzer: AnalyzerConfig = AnalyzerConfig()
    source: Path | None = None  # the file this was read from, set by load_config

    @property
    def analyzer_url(self) -> str:
        """Where the proxy forwards ``/monitor/*``."""
        if self.proxy.analyzer_url:
            return self.proxy.analyzer_url
        host, port = parse_listen(self.analyzer.listen)
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{host}:{port}"


_PATH_KEYS = (
    ("capture", "dir"),
    ("analyzer", "db"),
    ("analyzer", "reports_dir"),
    ("analyzer", "baseline", "statistics"),
    ("analyzer", "baseline", "constraints"),
)


def _resolve_paths(config: ModelmonConfig, base: Path) -> ModelmonConfig:
    def fix(path: Path) -> Path:
        return path if path.is_absolute() else (base / path).resolve()

    capture = config.capture.model_copy(update={"dir": fix(config.capture.dir)})
    baseline = config.analyzer.baseline.model_copy(
        update={
            "statistics": fix(config.analyzer.baseline.statistics),
            "constraints": fix(config.analyzer.baseline.constraints),
        }
    )
    analyzer = config.analyzer.model_copy(
        update={
            "db": fix(config.analyzer.db),
            "reports_dir": fix(config.analyzer.reports_dir),
            "baseline": baseline,
        }
    )
    return config.model_copy(update={"capture": capture, "analyzer": analyzer})


def _describe(error: Any) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key"
    if kind == "missing":
        return f"{key}: required key is missing"
    message = error["msg"]
    if "input" in error and kind not in ("model_type", "dict_type"):
        return f"{key}: {message} (got {error['input']!r})"
    return f"{key}: {message}"


def parse_config(
    data: Any, source: str | Path = "<config>", base: Path | None = None
) -> ModelmonConfig:
    """Validate a mapping already read from YAML; relative paths are taken from ``base``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the top level must be a mapping of sections, got {type(data).__name__}"
        )
    if "source" in data:
        raise ConfigError(f"{source}: source: unknown key")
    try:
        config = ModelmonConfig.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(error) for error in exc.errors()]
        allowed = ", ".join(sorted(k for k in ModelmonConfig.model_fields if k != "source"))
        raise ConfigError(
            f"{source}: invalid configuration\n  "
            + "\n  ".join(lines)
            + f"\n(sections allowed: {allowed}; see configs/example.yaml)"
        ) from exc
    base = base if base is not None else Path.cwd()
    config = _resolve_paths(config, base)
    return config.model_copy(update={"source": Path(source) if source != "<config>" else None})


def load_config(path: str | Path) -> ModelmonConfig:
    """Read and validate the YAML file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_config(data, source=path, base=path.resolve().parent)
