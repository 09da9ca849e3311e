"""What the model-quality join keeps of each captured record: key, time, prediction, input row.

Works on the decoder's output (:class:`~analyzer.decoding.codecs.DecodedBatch`), so a
capture file is decoded once for both monitors. SageMaker's attributes are applied to the
record's output row as the decoder found it (``analyzer.payload.output``):

- a column index (``"0"``) is the output column at that position (named as the decoder names
  it: ``payload.output.columns[i]``, else ``prediction``, ``prediction_1``, …);
- a name is the output column of that name (a key of a JSON output object);
- anything else is a JMESPath expression searched in the output row as an object
  (``{"label": 1, "scores": [0.1, 0.9]}`` with ``scores[1]``).

The prediction is ``inference_attribute``; without it, for BinaryClassification with a
``probability_attribute``, ``1`` when the probability is at least
``probability_threshold_attribute`` and ``0`` below; otherwise the first output column. A
probability that is a list (one per class) is kept as its largest value. The input row is
kept as a compact JSON object (name → value, as decoded) of at most
``max_row_bytes``; a longer one is left out and counted (``row_too_large``), the prediction
is kept.

One prediction per record: a record whose body held several rows is skipped and counted
(``several_rows``): a SageMaker ground-truth record labels one ``eventId``. Every record
that cannot give a prediction is counted by reason, never raised. Pure.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jmespath
import orjson

from analyzer.decoding.codecs import DecodedBatch
from analyzer.decoding.columns import output_name
from analyzer.decoding.value_types import PreSplit
from analyzer.monitors.model_quality.labels import MAX_TEXT, as_text
from modelmon.config import ModelQualityConfig, PayloadSide

__all__ = ["MAX_KEY", "MAX_ROW_BYTES", "Extracted", "PredictionExtractor", "PredictionRow"]

MAX_KEY = 1024
MAX_ROW_BYTES = 4096
# key, event_id, inference_id, inference_time (epoch s), prediction, probability, input row
PredictionRow = tuple[str, str | None, str | None, float, str, float | None, bytes | None]
Getter = Callable[[Mapping[str, list[Any]], int], Any]


@dataclass
class Extracted:
    """The predictions of one decoded batch, and the records left out by reason."""

    rows: list[PredictionRow] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    rows_too_large: int = 0

    def add(self, other: Extracted) -> None:
        self.rows.extend(other.rows)
        self.skipped.update(other.skipped)
        self.rows_too_large += other.rows_too_large


def _probability(value: Any) -> float | None:
    if isinstance(value, list):
        numbers = [p for p in map(_probability, value) if p is not None]
        return max(numbers) if numbers else None
    if value is None or isinstance(value, bool | dict):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _getter(attribute: str, output: PayloadSide) -> Getter:
    """How to read ``attribute`` from the output columns at a row."""
    if attribute.isdigit():
        index = int(attribute)
        name = output.columns[index] if index < len(output.columns) else output_name(index)
        return lambda columns, row: columns[name][row] if name in columns else None
    path = jmespath.compile(attribute)

    def get(columns: Mapping[str, list[Any]], row: int) -> Any:
        if attribute in columns:
            return columns[attribute][row]
        try:
            return path.search({name: values[row] for name, values in columns.items()})
        except jmespath.exceptions.JMESPathError:
            return None

    return get


def _first(columns: Mapping[str, list[Any]], row: int) -> Any:
    for values in columns.values():
        return values[row]
    return None


def _lists(columns: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The record decoders' columns (values in record order). Arrow's pre-split columns have
    lost that order: the service's ingest never hands them over."""
    out: dict[str, list[Any]] = {}
    for name, values in columns.items():
        if isinstance(values, PreSplit):
            raise TypeError(f"column {name!r} is pre-split (Arrow): no per-record values")
        out[name] = values if isinstance(values, list) else list(values)
    return out


class PredictionExtractor:
    """Turns decoded capture records into the join's prediction rows (see the module doc)."""

    def __init__(
        self,
        config: ModelQualityConfig,
        output: PayloadSide,
        *,
        max_row_bytes: int = MAX_ROW_BYTES,
    ) -> None:
        self.threshold = config.probability_threshold_attribute
        self.max_row_bytes = max_row_bytes
        self._prediction: Getter | None = (
            _getter(config.inference_attribute, output) if config.inference_attribute else None
        )
        self._probability: Getter | None = (
            _getter(config.probability_attribute, output) if config.probability_attribute else None
        )
        self._from_probability = (
            self._prediction is None
            and self._probability is not None
            and config.problem_type == "BinaryClassification"
        )

    def extract(self, batch: DecodedBatch) -> Extracted:
        """One prediction per decoded record of ``batch`` (the bad ones are the decoder's)."""
        out = Extracted()
        outputs = _lists(batch.predictions)
        blobs = self._rows(_lists(batch.columns), batch.n_rows, out)
        probabilities = self._probability
        getter = self._prediction or _first
        threshold, from_probability = self.threshold, self._from_probability
        event_ids, inference_ids, times = (
            batch.event_ids,
            batch.inference_ids,
            batch.inference_times,
        )
        if from_probability and batch.n_rows == len(batch.record_rows) and probabilities:
            return self._single_rows(batch, blobs, probabilities, out)
        append = out.rows.append
        row = 0
        for i, n in enumerate(batch.record_rows):
            first, row = row, row + n
            if n != 1:
                out.skipped["several_rows" if n else "no_rows"] += 1
                continue
            event_id = event_ids[i]
            inference_id = inference_ids[i]
            key = inference_id or event_id
            if len(key) > MAX_KEY:
                out.skipped["key_too_long"] += 1
                continue
            probability = _probability(probabilities(outputs, first)) if probabilities else None
            prediction: str | None
            if from_probability:
                if probability is None:
                    out.skipped["no_probability"] += 1
                    continue
                prediction = "1" if probability >= threshold else "0"
            else:
                prediction = as_text(getter(outputs, first))
            if prediction is None:
                out.skipped["no_prediction"] += 1
                continue
            if len(prediction) > MAX_TEXT:
                out.skipped["prediction_too_long"] += 1
                continue
            append((key, event_id, inference_id, times[i].timestamp(), prediction, probability,
                    blobs[first]))  # fmt: skip
        return out

    def _single_rows(
        self, batch: DecodedBatch, blobs: list[bytes | None], probabilities: Getter, out: Extracted
    ) -> Extracted:
        """The common binary case, a column at a time: one row per record, the prediction from
        the probability."""
        outputs, threshold = _lists(batch.predictions), self.threshold
        keys = [i or e for i, e in zip(batch.inference_ids, batch.event_ids, strict=True)]
        found = [_probability(probabilities(outputs, row)) for row in range(batch.n_rows)]
        times = [moment.timestamp() for moment in batch.inference_times]
        for key, event_id, inference_id, moment, probability, blob in zip(
            keys, batch.event_ids, batch.inference_ids, times, found, blobs, strict=True
        ):
            if probability is None:
                out.skipped["no_probability"] += 1
            elif len(key) > MAX_KEY:
                out.skipped["key_too_long"] += 1
            else:
                prediction = "1" if probability >= threshold else "0"
                out.rows.append((key, event_id, inference_id, moment, prediction, probability,
                                 blob))  # fmt: skip
        return out

    def _rows(
        self, columns: Mapping[str, Sequence[Any]], n: int, out: Extracted
    ) -> list[bytes | None]:
        """Each input row as a JSON object (the whole batch at once), None when too large."""
        if not columns:
            return [None] * n
        names = list(columns)
        dumps, limit = orjson.dumps, self.max_row_bytes
        blobs: list[bytes | None] = []
        for values in zip(*columns.values(), strict=True):
            try:
                blob: bytes | None = dumps(dict(zip(names, values, strict=True)))
            except TypeError:  # e.g. an integer over 64 bits: the row is left out
                blob = None
            if blob is None or len(blob) > limit:
                out.rows_too_large += 1
                blob = None
            blobs.append(blob)
        return blobs
