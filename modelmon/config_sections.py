"""The analyzer's sub-sections of the configuration: the baseline files, the payload's
columns, alerts, the ground-truth intake, Dask, and the model-quality monitor (see
:mod:`modelmon.config` for the whole file and how it is checked)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import jmespath
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from modelmon.config_types import (
    DAY_S,
    FileOrUrl,
    HeaderName,
    HttpUrl,
    Text,
    header_value,
)

__all__ = [
    "AlertsConfig",
    "BaselineConfig",
    "DaskConfig",
    "GroundTruthConfig",
    "ModelQualityConfig",
    "ModelQualityGroundTruthConfig",
    "PayloadConfig",
    "PayloadSide",
    "WebhookConfig",
]


class _Model(BaseModel):  # as modelmon.config's sections: no unknown key, frozen, finite
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class BaselineConfig(_Model):
    # a path (relative: to the config file's folder) or an s3:// gs:// file:// URL
    statistics: FileOrUrl = Path("baseline/statistics.json")
    constraints: FileOrUrl = Path("baseline/constraints.json")


class PayloadSide(_Model):
    """How one side (request or response) of a capture record becomes rows."""

    format: Literal["csv", "json", "v2", "tfserving"] = "csv"
    columns: Annotated[list[Text], Field(max_length=10_000)] = []
    path: Annotated[str, Field(min_length=1, max_length=1024)] | None = None  # JMESPath

    @field_validator("path")
    @classmethod
    def _jmespath(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                jmespath.compile(value)
            except jmespath.exceptions.JMESPathError as exc:
                message = " ".join(str(exc).split())
                raise ValueError(f"not a JMESPath expression: {message}") from None
        return value


class PayloadConfig(_Model):
    input: PayloadSide = PayloadSide()
    output: PayloadSide = PayloadSide()


class WebhookConfig(_Model):
    url: HttpUrl
    headers: Annotated[
        dict[HeaderName, Annotated[str, Field(max_length=8192), AfterValidator(header_value)]],
        Field(max_length=100),
    ] = {}


class AlertsConfig(_Model):
    webhooks: Annotated[list[WebhookConfig], Field(max_length=100)] = []
    cooldown_s: Annotated[float, Field(ge=0, le=30 * DAY_S)] = 3600.0
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 5
    timeout_s: Annotated[float, Field(ge=0.01, le=600)] = 10.0


class GroundTruthConfig(_Model):
    """Limits of ``POST /monitor/ground-truth`` (one request at a time is bounded by these)."""

    max_body_bytes: Annotated[int, Field(ge=1024, le=1024**3)] = 16 * 1024 * 1024
    max_line_bytes: Annotated[int, Field(ge=256, le=16 * 1024**2)] = 64 * 1024
    max_bad_lines_shown: Annotated[int, Field(ge=0, le=10_000)] = 100
    body_idle_timeout_s: Annotated[float, Field(ge=0.01, le=3600)] = 30.0  # a pause: 408


class DaskConfig(_Model):
    """``analyzer.dask``: run the batch commands' map on Dask (docs/dask.md; the optional extra
    ``modelmon[dask]``). ``scheduler``: a running scheduler's address (``tcp://host:8786``);
    else ``workers``: a ``LocalCluster`` of that many processes on this machine; neither
    (the default): local processes without Dask. ``--scheduler``/``--dask-workers`` win."""

    scheduler: Annotated[str, Field(pattern=r"^[a-z]+://\S+$", max_length=1024)] | None = None
    workers: Annotated[int, Field(ge=1, le=1024)] | None = None
    # A task that raises is run again this many times (a dead worker's tasks always are).
    retries: Annotated[int, Field(ge=0, le=100)] = 3
    connect_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30.0


class ModelQualityGroundTruthConfig(_Model):
    """Where ground truth arrives besides ``POST /monitor/ground-truth``."""

    # SageMaker's layout: {dir}/{yyyy}/{mm}/{dd}/{hh}/*.jsonl, each file read exactly once;
    # a folder or an s3:// gs:// file:// URL (the prefix that holds yyyy/).
    dir: FileOrUrl | None = None


class ModelQualityConfig(_Model):
    """``analyzer.model_quality``: the model-quality monitor (absent = off); see
    docs/model-quality.md. The attributes say where the prediction, the probability and the
    label are, as SageMaker's do: a column index (``"0"``), a column or key name, or a
    JMESPath into a JSON body."""

    problem_type: Literal["BinaryClassification", "MulticlassClassification", "Regression"]
    inference_attribute: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    probability_attribute: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    probability_threshold_attribute: Annotated[float, Field(ge=0, le=1)] = 0.5
    ground_truth_attribute: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    baseline: BaselineConfig = BaselineConfig(
        statistics=Path("baseline/model_quality/statistics.json"),
        constraints=Path("baseline/model_quality/constraints.json"),
    )
    window_s: Annotated[int, Field(ge=10, le=90 * DAY_S)] = 3600
    min_labels: Annotated[int, Field(ge=1, le=1_000_000_000)] = 100
    # how long after its inference a label may still come (a window is re-evaluated until then)
    label_delay_s: Annotated[float, Field(ge=0, le=90 * DAY_S)] = 2 * DAY_S
    ground_truth: ModelQualityGroundTruthConfig = ModelQualityGroundTruthConfig()
    # "sagemaker" divides r2's residuals by the predictions' spread, as AWS's container does
    r2_convention: Literal["standard", "sagemaker"] = "standard"
    estimate: bool = True  # label-free estimate (CBPE) for classification
    # analyze --once, baseline --model-quality (captures or a table): past this many rows
    # (predictions + labels) the join goes to temporary files (model-quality.md: Past the budget)
    batch_memory_rows: Annotated[int, Field(ge=16, le=10**12)] = 500_000

    @field_validator("inference_attribute", "probability_attribute", "ground_truth_attribute")
    @classmethod
    def _attribute(cls, value: str | None) -> str | None:
        if value is not None and not value.isdigit():
            try:
                jmespath.compile(value)
            except jmespath.exceptions.JMESPathError as exc:
                message = " ".join(str(exc).split())
                raise ValueError(
                    f"not a column index, name or JMESPath expression: {message}"
                ) from None
        return value
