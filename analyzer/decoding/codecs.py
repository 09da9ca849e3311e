"""Payload codecs: capture records to column-oriented rows of named features and predictions.

This is the analyzer's hot path, so a batch of records is decoded in two steps: a cheap pass
per record (parse the line once with orjson, decode BASE64, find the rows of the body) and one
vectorized step per batch that splits all CSV lines at once and transposes rows into columns.
A record that does not decode is counted by reason in :attr:`DecodedBatch.bad` and skipped;
nothing here raises on bad input. One refused only for a body in its configured format (its
envelope and BASE64 fine) is also listed in :attr:`DecodedBatch.refused`, for model quality.

Input columns are the features; output columns are predictions (``prediction``,
``prediction_1``, … when the config names none). A row with more fields than
``payload.input.columns`` names the extras ``_c{i}`` by position; fewer leave the rest missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson

from analyzer.decoding.columns import ColumnBuilder, input_name, output_name
from analyzer.decoding.contract import DecodedBatch, Refused
from analyzer.decoding.envelope import (
    NOT_CAPTURE,
    NOT_JSON,
    VERBATIM,
    no_output,
    read_envelope,
    side_text,
)
from analyzer.decoding.payload_rows import PayloadError, Rows
from analyzer.decoding.record_batch import (
    PlainFields,
    body_rows,
    plain_fields,
    plain_fields_of_lines,
    rows_per_record,
)
from analyzer.decoding.side_codec import SideCodec, decode_body
from analyzer.monitors.data_quality.cardinality import FeatureLimit
from modelmon.config import PayloadConfig

__all__ = ["DecodedBatch", "PayloadDecoder", "PlainDecoder", "SideCodec", "decode_body"]


def _row_width(rows: Rows) -> int:
    if rows.kind == "csv":
        return int(rows.data[0].count(",")) + 1
    if rows.kind == "pos":
        return len(rows.data[0])
    return 0


def _transposed(rows: Rows) -> Rows:
    """A one-row output holding one value per input row (``0.1,0.2,0.3``) as a column."""
    values = rows.data[0].split(",") if rows.kind == "csv" else list(rows.data[0])
    return Rows("cols", {0: values}, len(values))


class PayloadDecoder:
    """Decodes capture records with the configured input and output codecs: every batch,
    bad records counted (the reference path of :mod:`analyzer.decoding.contract`).

    ``columnwise``: try :class:`PlainDecoder` first (the default; off only to test the
    record-by-record path on its own).
    """

    def __init__(
        self, payload: PayloadConfig, limit: FeatureLimit | None = None, columnwise: bool = True
    ) -> None:
        self.payload = payload
        self.limit = limit
        self.columnwise = columnwise

    def decode(self, lines: list[bytes]) -> DecodedBatch:
        """The :class:`~analyzer.decoding.contract.BatchDecoder` call: :meth:`decode_lines`."""
        return self.decode_lines(lines)

    def decode_lines(self, lines: Iterable[bytes]) -> DecodedBatch:
        """Raw JSON Lines (each parsed once); blank lines are skipped, bad ones counted."""
        run = _Run(self.payload, self.limit)
        loads = orjson.loads
        lines = lines if isinstance(lines, list) else list(lines)
        if self.columnwise:
            if run.add_fields(plain_fields_of_lines(lines)):
                return run.finish()
        for line in lines:
            if not line or line.isspace():
                continue
            try:
                record = loads(line)
            except orjson.JSONDecodeError:
                run.batch.bad[NOT_JSON] += 1
                continue
            run.add(record)
        return run.finish()

    def decode_records(self, records: Iterable[dict[str, Any]]) -> DecodedBatch:
        """Records already parsed into dicts."""
        run = _Run(self.payload, self.limit)
        records = records if isinstance(records, list) else list(records)
        if self.columnwise and run.add_plain(records):
            return run.finish()
        for record in records:
            run.add(record)
        return run.finish()


class PlainDecoder:
    """The column-wise path alone: a batch of plain records (see
    :mod:`analyzer.decoding.record_batch`), else None (:class:`PayloadDecoder` tries it first)."""

    def __init__(self, payload: PayloadConfig, limit: FeatureLimit | None = None) -> None:
        self.payload = payload
        self.limit = limit

    def decode(self, lines: list[bytes]) -> DecodedBatch | None:
        run = _Run(self.payload, self.limit)
        return run.finish() if run.add_fields(plain_fields_of_lines(lines)) else None


class _Run:
    """The state of one decode call."""

    def __init__(self, payload: PayloadConfig, limit: FeatureLimit | None = None) -> None:
        self.payload = payload
        self.limit = limit
        self.batch = DecodedBatch()
        self.inputs = ColumnBuilder(
            payload.input.columns, input_name, track_fields=True, limit=limit
        )
        self.outputs = ColumnBuilder(
            payload.output.columns, output_name, track_fields=False, limit=limit
        )
        self.request = SideCodec(payload.input, output=False)
        self.response = SideCodec(payload.output, output=True)
        self.parse_in, self.parse_out = self.request.body_rows, self.response.body_rows
        self.record_rows: list[int] = []
        self.event_ids: list[str] = []
        self.inference_ids: list[str | None] = []
        self.inference_times: list[datetime] = []
        self.output_bodies: list[str | None] = []
        self.output_encodings: list[str] = []

    def add_plain(self, records: list[Any]) -> bool:
        """Add a whole batch at once when every record is plain; False (nothing added) if not.

        Plain: see :mod:`analyzer.decoding.record_batch`; besides, every body must decode and
        both sides of a record must hold the same number of rows. Anything else is left to
        :meth:`add`.
        """
        return self.add_fields(plain_fields(records))

    def add_fields(self, fields: PlainFields | None) -> bool:
        """:meth:`add_plain` of the fields of a batch, when it is plain (not None)."""
        if fields is None:
            return False
        inputs = body_rows(self.request, fields.inputs)
        outputs = body_rows(self.response, fields.outputs) if inputs is not None else None
        if inputs is None or outputs is None:
            return False
        counts = rows_per_record(inputs, len(fields.event_ids))
        if counts != rows_per_record(outputs, len(fields.event_ids)):
            return False
        for builder, rows in ((self.inputs, inputs), (self.outputs, outputs)):
            if isinstance(rows, Rows):
                builder.add(rows)
            else:
                builder.add_all(rows)
        self.batch.n_rows += sum(counts)
        self.record_rows.extend(counts)
        self.event_ids.extend(fields.event_ids)
        self.inference_ids.extend(fields.inference_ids)
        self.inference_times.extend(fields.inference_times)
        self.output_bodies.extend(fields.outputs)
        self.output_encodings.extend(fields.output_encodings)
        return True

    def add(self, record: Any) -> None:
        # The hot path: one call per record, locals only, exceptions for the rare bad record.
        # ``body``: past the envelope and the first side's text, a failure is that body's
        # in its format (the record is then handed to model quality: :meth:`_refuse`).
        batch = self.batch
        body = False
        try:
            event_id, inference_id, moment, request, response, problem = read_envelope(record)
            in_rows = out_rows = None
            if request is not None:
                if request.get("encoding") in VERBATIM:
                    text = request["data"]
                else:
                    text = side_text(request)
                body = True
                in_rows = self.parse_in(text)
            if response is not None:
                try:
                    if response.get("encoding") in VERBATIM:
                        text = response["data"]
                    else:
                        text = side_text(response)
                    body = True
                    out_rows = self.parse_out(text)
                except PayloadError as exc:
                    if in_rows is None:
                        raise
                    batch.warnings[f"output_{exc.reason}"] += 1
            elif problem is not None:
                batch.warnings[f"output_{problem}"] += 1
        except PayloadError as exc:
            batch.bad[exc.reason] += 1
            if body:
                self._refuse(event_id, inference_id, moment, response, problem)
            return
        except (KeyError, TypeError, AttributeError, IndexError, RecursionError):
            batch.bad[NOT_CAPTURE] += 1  # a body the parsers did not foresee
            if body:
                self._refuse(event_id, inference_id, moment, response, problem)
            return
        if in_rows is not None:
            n = in_rows.n
            self.inputs.add(in_rows)
        else:
            n = out_rows.n  # type: ignore[union-attr]
            self.inputs.pad(n)
            batch.rows_without_input += n
        if out_rows is None:
            self.outputs.pad(n)
            batch.rows_without_output += n
        elif out_rows.n == n:
            self.outputs.add(out_rows)
        else:
            self._add_output(out_rows, n)
        batch.n_rows += n
        self.record_rows.append(n)
        self.event_ids.append(event_id)
        self.inference_ids.append(inference_id)
        self.inference_times.append(moment)
        if response is not None:  # the output as captured, for model quality
            encoding = response.get("encoding")
            self.output_bodies.append(response["data"])
            self.output_encodings.append(encoding if type(encoding) is str else "CSV")
        else:
            self.output_bodies.append(None)
            self.output_encodings.append(no_output(problem))

    def _refuse(
        self,
        event_id: str,
        inference_id: str | None,
        moment: datetime,
        response: dict[str, Any] | None,
        problem: str | None,
    ) -> None:
        """Keep, for model quality, a record refused for a body (:class:`Refused`)."""
        if response is not None:
            encoding = response.get("encoding")
            data, why = response["data"], encoding if type(encoding) is str else "CSV"
        else:
            data, why = None, no_output(problem)
        at = len(self.record_rows)
        self.batch.refused.append(Refused(at, event_id, inference_id, moment, data, why))

    def _add_output(self, rows: Rows, n: int) -> None:
        if rows.n == n:
            self.outputs.add(rows)
            return
        if rows.n == 1 and len(self.payload.output.columns) <= 1 and _row_width(rows) == n:
            self.outputs.add(_transposed(rows))
            return
        self.batch.warnings["output_row_mismatch"] += 1
        if rows.n > n:
            self.outputs.add(rows.take(n))
        else:
            self.outputs.add(rows)
            self.outputs.pad(n - rows.n)

    def finish(self) -> DecodedBatch:
        batch = self.batch
        batch.columns = dict(self.inputs.finish())
        batch.predictions = dict(self.outputs.finish())
        batch.field_counts = self.inputs.field_counts
        batch.untracked = self.inputs.untracked
        batch.untracked_predictions = self.outputs.untracked
        batch.record_rows, batch.event_ids = self.record_rows, self.event_ids
        batch.inference_ids, batch.inference_times = self.inference_ids, self.inference_times
        batch.output_bodies, batch.output_encodings = self.output_bodies, self.output_encodings
        return batch
