"""The decoding contract: capture lines in, one :class:`DecodedBatch` out, whichever path.

Four paths decode capture records (JSON Lines, one record per line), each a
:class:`BatchDecoder`:

- ``records``: :class:`analyzer.decoding.codecs.PayloadDecoder` record by record; it takes
  every batch and counts what it cannot decode (the reference);
- ``columnwise``: :class:`analyzer.decoding.codecs.PlainDecoder`, the same records taken apart
  column-wise (:mod:`analyzer.decoding.record_batch`) when every record is plain;
- ``arrow_csv`` and ``arrow_json``: :class:`analyzer.decoding.arrow_batch.ArrowDecoder`, the
  optional Arrow fast path for CSV (and JSON) payloads of plain records.

A path may decline a batch (``decode`` returns ``None``: nothing was counted; decode the lines
with the next path, the last being ``records``). When it takes one, its batch equals the
reference in every field: the rows and columns of each side (a column is either the values as
the payload held them or a :class:`~analyzer.decoding.value_types.PreSplit`, and two columns
are equal when :func:`~analyzer.decoding.value_types.split_values` splits them into the same
counts, the same numbers in the same order and the same string counts), the event ids,
inference ids and inference times of the records kept, the bad records by reason (and
those refused for a body, :class:`Refused`) and the warnings by reason (a truncated side:
``truncated_input``, ``output_truncated_output``).
``tests/analyzer/test_decoding_contract.py`` checks this on one corpus for every path. Pure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypeVar, overload

from analyzer.decoding.inference_time import time_span
from analyzer.decoding.value_types import PreSplit

__all__ = ["BatchDecoder", "Column", "DecodedBatch", "Later", "Refused"]

Column = Sequence[Any] | PreSplit
T = TypeVar("T")


class BatchDecoder(Protocol):
    """One way to decode capture lines (see the module)."""

    def decode(self, lines: list[bytes]) -> DecodedBatch | None:
        """The batch of ``lines`` (each one record, with or without its ``\\n``), or None."""
        ...


class Later(Sequence[T]):
    """A list of known length made only when first read (per-record fields a fast path
    rarely needs, e.g. event ids of an Arrow block that is only profiled)."""

    def __init__(self, n: int, make: Callable[[], list[T]]) -> None:
        self._n, self._make = n, make
        self._values: list[T] | None = None

    def _list(self) -> list[T]:
        if self._values is None:
            self._values = self._make()
        return self._values

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        return self._list()[index]

    def __iter__(self) -> Iterator[T]:
        return iter(self._list())


class Refused(NamedTuple):
    """A record the decoder refused for a body in its configured format (``bad_csv``,
    ``payload_not_json``, …) after its envelope was read: what model quality reads of it,
    which needs only the output (see :attr:`DecodedBatch.refused`)."""

    at: int  # records kept before it in the batch (its place among them)
    event_id: str
    inference_id: str | None
    inference_time: datetime
    output_body: str | None
    output_encoding: str


@dataclass
class DecodedBatch:
    """Rows decoded from many records, column-oriented.

    ``columns`` and ``predictions`` map a name to ``n_rows`` values each (``None`` or ``""`` is
    missing), or to a :class:`~analyzer.decoding.value_types.PreSplit` of them. Values are what
    the payload held: strings for CSV, JSON scalars for JSON.
    Per successfully decoded record: ``record_rows`` (rows it contributed), ``event_ids``,
    ``inference_ids``, ``inference_times``. ``rows_without_input`` / ``rows_without_output``
    count rows whose record had no such side (capture mode input or output only): their
    values are padding, not missing data. ``field_counts`` counts input rows by their number
    of fields. ``bad`` counts the records left out, by reason; ``warnings`` counts problems
    of records that were kept (e.g. an output that did not decode). ``untracked`` /
    ``untracked_predictions``: names left out by the decoder's
    :class:`~analyzer.monitors.data_quality.cardinality.FeatureLimit`, with how many values
    each held. ``output_bodies`` / ``output_encodings``: per record, its output's ``data``
    as captured and its ``encoding`` (``CSV``, ``JSON``, ``BASE64``; the model-quality
    extraction reads the prediction from it, :mod:`analyzer.monitors.model_quality.
    extraction`); a record without a usable output has None and, as encoding, why:
    ``no_output`` (none captured) or ``truncated_output`` (cut by the proxy).
    ``refused``: the records of ``bad`` refused only for a body that did not parse in its
    configured format (the input's; without an input, the output's), their envelope fine:
    for model quality, which reads the output with its own rule as the batch readers do,
    each one's place, event id, inference id, inference time, output body and encoding
    (:class:`Refused`; data quality neither profiles nor counts them as records).
    """

    columns: dict[str, Column] = field(default_factory=dict)
    n_rows: int = 0
    record_rows: Sequence[int] = field(default_factory=list)
    event_ids: Sequence[str] = field(default_factory=list)
    inference_ids: Sequence[str | None] = field(default_factory=list)
    inference_times: Sequence[datetime] = field(default_factory=list)
    bad: Counter[str] = field(default_factory=Counter)
    predictions: dict[str, Column] = field(default_factory=dict)
    field_counts: Counter[int] = field(default_factory=Counter)
    rows_without_input: int = 0
    rows_without_output: int = 0
    warnings: Counter[str] = field(default_factory=Counter)
    untracked: Counter[str] = field(default_factory=Counter)
    untracked_predictions: Counter[str] = field(default_factory=Counter)
    output_bodies: Sequence[str | None] = field(default_factory=list)
    output_encodings: Sequence[str] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)

    @property
    def n_records(self) -> int:
        """Records decoded (bad ones excluded)."""
        return len(self.record_rows)

    def time_span(self) -> tuple[datetime, datetime] | None:
        """The first and last inference time of the batch (None when no record was kept)."""
        return time_span(self.inference_times)
