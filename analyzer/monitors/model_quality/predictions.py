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
kept as a compact JSON object (name → value, missing values left out) of at most
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
from analyzer.monitors.model_quality.labels import MAX_TEXT, as_text
from modelmon.config import ModelQualityConfig, PayloadSide

__all__ = ["MAX_KEY", "MAX_ROW_BYTES", "Extracted", "PredictionExtractor", "PredictionRow"]

MAX_KEY = 1024
MAX_ROW_BYTES = 4096
# key, event_id, inference_id, inference_time (epoch s), prediction, probability, input row
PredictionRow = tuple[str, str | None, str | None, float, str, float | None, bytes | None]
_MISSING = (None, "")
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
        outputs, inputs = batch.predictions, batch.columns
        row = 0
        for i, n in enumerate(batch.record_rows):
            first, row = row, row + n
            if n != 1:
                out.skipped["several_rows" if n else "no_rows"] += 1
                continue
            event_id = batch.event_ids[i]
            inference_id = batch.inference_ids[i]
            key = inference_id or event_id
            if len(key) > MAX_KEY:
                out.skipped["key_too_long"] += 1
                continue
            probability = (
                _probability(self._probability(outputs, first)) if self._probability else None
            )
            if self._from_probability:
                if probability is None:
                    out.skipped["no_probability"] += 1
                    continue
                prediction: str | None = "1" if probability >= self.threshold else "0"
            else:
                getter = self._prediction or _first
                prediction = as_text(getter(outputs, first))
            if prediction is None:
                out.skipped["no_prediction"] += 1
                continue
            if len(prediction) > MAX_TEXT:
                out.skipped["prediction_too_long"] += 1
                continue
            moment = batch.inference_times[i].timestamp()
            out.rows.append(
                (key, event_id, inference_id, moment, prediction, probability,
                 self._row(inputs, first, out))
            )  # fmt: skip
        return out

    def _row(self, columns: Mapping[str, Sequence[Any]], row: int, out: Extracted) -> bytes | None:
        values = {name: v for name, col in columns.items() if (v := col[row]) not in _MISSING}
        if not values:
            return None
        try:
            blob = orjson.dumps(values)
        except TypeError:  # e.g. an integer over 64 bits: the row is left out, not the record
            blob = b""
        if not blob or len(blob) > self.max_row_bytes:
            out.rows_too_large += 1
            return None
        return blob
