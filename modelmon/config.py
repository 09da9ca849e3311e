"""The one YAML configuration file, parsed once at start into frozen pydantic models.

This module is a leaf: it imports neither ``capture_proxy`` nor ``analyzer``; both import it.
Every key has a default except ``proxy.upstream``. An unknown key, a wrong type, an
impossible value or a setting a process could not honour (a ``bucket_s`` that does not divide
an hour, a JMESPath that does not compile, a schedule that never fires) raises
:class:`ConfigError` naming the file, the key and what is allowed, when the file is loaded, so
that every command (``up`` before it starts anything) refuses the same files. Every duration
and size has a lower and an upper bound; names that become folder names are single safe path
segments. Relative paths are resolved against the folder of the config file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from modelmon.config_messages import HELP, describe_error
from modelmon.config_sections import (
    AlertsConfig,
    BaselineConfig,
    DaskConfig,
    GroundTruthConfig,
    ModelQualityConfig,
    ModelQualityGroundTruthConfig,
    PayloadConfig,
    PayloadSide,
    WebhookConfig,
)
from modelmon.config_types import (
    DAY_S,
    DEFAULT_EXCLUDE_PATHS,
    GIB,
    HOUR_S,
    STATUS_CLASSES,
    ArrowMode,
    ConfigError,
    ContentType,
    FilePath,
    HeaderName,
    SegmentName,
    check_listen,
    http_url,
    parse_listen,
    storage_url,
)
from modelmon.config_yaml import YamlProblem, read_yaml
from modelmon.json_path import parse_json_path
from modelmon.schedule import Schedule

__all__ = [
    "AlertsConfig",
    "AnalyzerConfig",
    "ArrowMode",
    "BaselineConfig",
    "CaptureConfig",
    "CaptureFiltersConfig",
    "ConfigError",
    "DaskConfig",
    "EndpointConfig",
    "GroundTruthConfig",
    "ModelQualityConfig",
    "ModelQualityGroundTruthConfig",
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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class EndpointConfig(_Model):
    name: SegmentName = "endpoint"
    variant: SegmentName = "AllTraffic"


class ProxyConfig(_Model):
    listen: str = "127.0.0.1:8080"
    upstream: str
    connect_timeout_s: Annotated[float, Field(ge=0.01, le=600)] = 5.0
    upstream_timeout_s: Annotated[float, Field(ge=0.01, le=DAY_S)] = 60.0
    workers: Annotated[int, Field(ge=1, le=256)] = 1
    max_connections: Annotated[int, Field(ge=1, le=65_536)] = 256
    # Slow and idle clients (both engines): a request head must arrive within
    # header_timeout_s of its first byte, a request body may pause at most body_idle_timeout_s
    # between bytes (408 and close), a connection with nothing in progress closes after
    # keepalive_timeout_s; over max_client_connections a new connection gets 503 (health and
    # metrics are still answered on it). The cap is lowered to fit `ulimit -n` when needed.
    header_timeout_s: Annotated[float, Field(ge=0.01, le=HOUR_S)] = 10.0
    body_idle_timeout_s: Annotated[float, Field(ge=0.01, le=HOUR_S)] = 30.0
    keepalive_timeout_s: Annotated[float, Field(ge=0.01, le=DAY_S)] = 75.0
    max_client_connections: Annotated[int, Field(ge=1, le=1_000_000)] = 4096
    analyzer_url: str | None = None  # where /monitor/* goes; default: analyzer.listen
    # fast: raw asyncio + llhttp (httptools); aiohttp: web.Application + ClientSession
    engine: Literal["fast", "aiohttp"] = "fast"

    _listen = field_validator("listen")(check_listen)

    @field_validator("upstream", "analyzer_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value) > 2048:
            raise ValueError(f"at most 2048 characters, got {len(value)}")
        return http_url(value).rstrip("/")


def _json_path(value: str) -> str:
    parse_json_path(value)
    return value


class RedactConfig(_Model):
    json_paths: Annotated[
        list[Annotated[str, Field(max_length=1024), AfterValidator(_json_path)]],
        Field(max_length=1000),
    ] = []
    csv_columns: Annotated[
        list[Annotated[int, Field(ge=0, le=100_000)]], Field(max_length=1000)
    ] = []


# Routes that are not inference on the common model servers (SageMaker, KServe/MLServer Open
# Inference Protocol, TorchServe, OpenAI-compatible servers, FastAPI/BentoML): health,
# readiness, metadata, model management, docs. Globs on the normalized path.


class CaptureFiltersConfig(_Model):
    """Which exchanges may be captured (then sampled); an empty list lets everything through."""

    methods: Annotated[
        list[Annotated[str, Field(max_length=32, pattern=r"^[A-Za-z]+$")]], Field(max_length=50)
    ] = ["POST"]
    include_paths: Annotated[
        list[Annotated[str, Field(max_length=1024)]], Field(max_length=1000)
    ] = []
    exclude_paths: Annotated[
        list[Annotated[str, Field(max_length=1024)]], Field(max_length=1000)
    ] = DEFAULT_EXCLUDE_PATHS
    status_classes: Annotated[list[STATUS_CLASSES], Field(max_length=5)] = ["2xx"]


class CaptureConfig(_Model):
    enabled: bool = True
    dir: FilePath = Path("data/capture")
    sampling_percentage: Annotated[float, Field(ge=0, le=100)] = 20.0
    mode: Annotated[list[Literal["input", "output"]], Field(max_length=2)] = ["input", "output"]
    csv_content_types: Annotated[list[ContentType], Field(max_length=100)] = ["text/csv"]
    json_content_types: Annotated[list[ContentType], Field(max_length=100)] = ["application/json"]
    inference_id_headers: Annotated[list[HeaderName], Field(max_length=100)] = [
        "X-Amzn-SageMaker-Inference-Id",
        "X-Inference-Id",
    ]
    max_capture_bytes: Annotated[int, Field(ge=0, le=GIB)] = 1_048_576
    queue_max_records: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000
    rotate_interval_s: Annotated[float, Field(ge=0.1, le=DAY_S)] = 60.0
    max_file_bytes: Annotated[int, Field(ge=1024, le=1024 * GIB)] = 64 * 1024 * 1024
    flush_interval_s: Annotated[float, Field(ge=0.01, le=HOUR_S)] = 1.0
    # bytes of bodies waiting for the writer or in its hands (at most max_capture_bytes each)
    queue_max_bytes: Annotated[int, Field(ge=1024, le=64 * GIB)] = 64 * 1024 * 1024
    # names an environment variable holding a secret: sampling then hashes the inference id
    # with it (a client cannot pick ids that are always or never sampled)
    sampling_key_env: (
        Annotated[str, Field(max_length=256, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None
    ) = None
    filters: CaptureFiltersConfig = CaptureFiltersConfig()
    compress: bool = False
    retention_max_age_h: Annotated[float, Field(ge=0.001, le=87_600)] = 168.0
    retention_max_bytes: Annotated[int, Field(ge=1, le=1024**5)] = 10 * GIB
    min_free_disk_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.05
    redact: RedactConfig = RedactConfig()
    # Names this replica in capture file names ({MM}-{SS}-{mmm}-{instance}-{uuid}.jsonl), so
    # that proxies on several hosts share one tree; default: the hostname, sanitized.
    instance_id: SegmentName | None = None
    # Each sealed file is uploaded to {upload}/{endpoint}/{variant}/yyyy/mm/dd/hh/{file}
    # (s3://bucket/prefix, gs://bucket/prefix, file:///dir; absent: off). Credentials come from
    # the environment or the provider's config files, never from this file.
    upload: Annotated[str, Field(max_length=1024), AfterValidator(storage_url)] | None = None
    upload_backoff_initial_s: Annotated[float, Field(ge=0.01, le=HOUR_S)] = 1.0
    upload_backoff_max_s: Annotated[float, Field(ge=0.01, le=DAY_S)] = 300.0
    # at shutdown, how long the files not yet uploaded are tried once more (then: next start)
    upload_drain_s: Annotated[float, Field(ge=0, le=HOUR_S)] = 10.0

    @field_validator("mode")
    @classmethod
    def _mode_not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("capture.mode needs at least one of input, output")
        return value


class AnalyzerConfig(_Model):
    listen: str = "127.0.0.1:8090"
    db: FilePath = Path("data/modelmon.db")
    reports_dir: FilePath = Path("data/reports")
    schedule_name: SegmentName = "modelmon"
    schedule_interval_s: Annotated[float, Field(ge=0.1, le=7 * DAY_S)] = 60.0
    schedule_cron: str | None = None  # see modelmon.schedule; replaces schedule_interval_s
    bucket_s: Annotated[int, Field(ge=1, le=HOUR_S)] = 300
    window_s: Annotated[int, Field(ge=1, le=90 * DAY_S)] = 3600
    min_samples: Annotated[int, Field(ge=1, le=1_000_000_000)] = 100
    baseline: BaselineConfig = BaselineConfig()
    payload: PayloadConfig = PayloadConfig()
    alerts: AlertsConfig = AlertsConfig()
    auth_token_env: (
        Annotated[str, Field(max_length=256, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None
    ) = None
    session_max_age_s: Annotated[int, Field(ge=60, le=30 * 86400)] = 12 * 3600
    ground_truth: GroundTruthConfig = GroundTruthConfig()
    model_quality: ModelQualityConfig | None = None
    false_alarm_rate: Annotated[float, Field(gt=0, lt=1)] = 0.01
    drift_verdict: Literal["significant", "confident"] = "significant"
    kll_k: Annotated[int, Field(ge=1024, le=65535)] = 2048
    # Hostile traffic bounds (docs/operations.md, "Hostile traffic").
    max_line_bytes: Annotated[int, Field(ge=1024, le=1 << 30)] = 16 << 20
    max_features: Annotated[int, Field(ge=1, le=100_000)] = 1000
    retention_days: Annotated[float, Field(ge=0.01, le=36_500)] = 30.0
    # Window runs keep their full detail (violations' descriptions, every per-feature figure)
    # and the buckets behind them this long; then summaries and one row per hour.
    run_detail_s: Annotated[int, Field(ge=0, le=90 * DAY_S)] = 3600
    # Which payloads `analyze --once` reads with the optional Arrow fast path (pyarrow).
    arrow: ArrowMode = "csv"
    # Where the service decodes the capture files' chunks: in a process of its own (on), on
    # its ingest thread (off), or in a process when it may run on two cores or more (auto).
    ingest_process: Literal["auto", "on", "off"] = "auto"
    # Where `modelmon baseline` and `analyze --once` run their map (docs/dask.md).
    dask: DaskConfig = DaskConfig()
    # Ingest from this prefix (s3://bucket/prefix, gs://…, file:///dir: where the proxies'
    # capture.upload writes) instead of capture.dir; absent: the local folder.
    capture_url: Annotated[str, Field(max_length=1024), AfterValidator(storage_url)] | None = None

    _listen = field_validator("listen")(check_listen)

    @field_validator("arrow", mode="before")
    @classmethod
    def _arrow_off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML reads a bare `off` as false

    @field_validator("ingest_process", mode="before")
    @classmethod
    def _on_off(cls, value: Any) -> Any:
        # YAML reads a bare `on`/`off` as true/false
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("bucket_s")
    @classmethod
    def _whole_hours(cls, value: int) -> int:
        if HOUR_S % value:
            raise ValueError(
                "must divide 3600 (e.g. 60, 300, 600, 3600) so that hourly reports are whole "
                f"buckets, got {value}"
            )
        return value

    @field_validator("window_s")
    @classmethod
    def _at_least_a_bucket(cls, value: int, info: ValidationInfo) -> int:
        bucket = info.data.get("bucket_s")
        if bucket is not None and value < bucket:
            raise ValueError(f"must be at least analyzer.bucket_s ({bucket}), got {value}")
        return value

    @field_validator("schedule_cron")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is not None:
            Schedule.parse(value)
        return value

    def schedule(self) -> Schedule | None:
        """The parsed ``schedule_cron``, or ``None`` to run every ``schedule_interval_s``."""
        return Schedule.parse(self.schedule_cron) if self.schedule_cron is not None else None


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

    def fix_local(where: Path | str) -> Path | str:  # a URL stays as it is
        return fix(where) if isinstance(where, Path) else where

    capture = config.capture.model_copy(update={"dir": fix(config.capture.dir)})
    baseline = config.analyzer.baseline.model_copy(
        update={
            "statistics": fix_local(config.analyzer.baseline.statistics),
            "constraints": fix_local(config.analyzer.baseline.constraints),
        }
    )
    quality = config.analyzer.model_quality
    if quality is not None:
        quality = quality.model_copy(
            update={
                "baseline": quality.baseline.model_copy(
                    update={
                        "statistics": fix_local(quality.baseline.statistics),
                        "constraints": fix_local(quality.baseline.constraints),
                    }
                ),
                "ground_truth": quality.ground_truth.model_copy(
                    update={
                        "dir": fix_local(quality.ground_truth.dir)
                        if quality.ground_truth.dir is not None
                        else None
                    }
                ),
            }
        )
    analyzer = config.analyzer.model_copy(
        update={
            "db": fix(config.analyzer.db),
            "reports_dir": fix(config.analyzer.reports_dir),
            "baseline": baseline,
            "model_quality": quality,
        }
    )
    return config.model_copy(update={"capture": capture, "analyzer": analyzer})


def parse_config(
    data: Any, source: str | Path = "<config>", base: Path | None = None
) -> ModelmonConfig:
    """Validate a mapping already read from YAML; relative paths are taken from ``base``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the top level must be a mapping of sections, got {type(data).__name__}"
            f"\n({HELP})"
        )
    if "source" in data:
        raise ConfigError(f"{source}: source: unknown key")
    try:
        config = ModelmonConfig.model_validate(data)
    except ValidationError as exc:
        lines = [describe_error(ModelmonConfig, error) for error in exc.errors()]
        raise ConfigError(
            f"{source}: invalid configuration\n  " + "\n  ".join(lines) + f"\n({HELP})"
        ) from exc
    base = base if base is not None else Path.cwd()
    config = _resolve_paths(config, base)
    return config.model_copy(update={"source": Path(source) if source != "<config>" else None})


def load_config(path: str | Path) -> ModelmonConfig:
    """Read and validate the YAML file at ``path``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from exc
    try:
        data = read_yaml(raw)
    except YamlProblem as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return parse_config(data, source=path, base=path.resolve().parent)
