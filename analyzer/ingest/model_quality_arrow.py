"""The optional Arrow fast path of the model-quality readers (pyarrow installed).

A whole capture or ground-truth file is parsed by Arrow's JSON reader (C++, only the fields
model quality needs, the rest skipped) and its values converted column by column. It covers
the common shapes: CSV-encoded outputs and labels, a prediction or probability picked by
column index, BinaryClassification and Regression: there the one extraction
(:mod:`analyzer.monitors.model_quality.extraction`) reads the body's field at that index too,
so both give the same values (``tests/analyzer/test_model_quality_extraction_contract.py``).
Anything else, and any file with a line that does not fit (bad JSON, a line that does not
start with ``{``, two documents on one line, a missing or empty id,
an input side without data or in BASE64 (the envelope's rules,
:mod:`analyzer.decoding.envelope`, that the line reader applies), a value
that is not a number, a probability outside [0, 1], a key over ``MAX_KEY``, a body the proxy
cut), returns ``None``: the caller then reads that file line by line
(``model_quality_files``), which reports each bad line with its number. The fast path never
decides that a line is bad; it only speeds up files with none (a file with a line over
``analyzer.max_line_bytes`` is the line reader's too, which skips and reports that line).
``analyzer.arrow: off`` turns it off, as for the data-quality readers. Times go through
``decoding.inference_time`` (the one parser; its Arrow form).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from analyzer.decoding.envelope import MAX_KEY
from analyzer.decoding.inference_time import arrow_stamps
from analyzer.ingest.capture_files import DEFAULT_MAX_LINE_BYTES, TooLarge, read_pieces
from analyzer.monitors.model_quality.records import Attribute, Encoder

__all__ = ["arrow_labels", "arrow_predictions", "available", "preload"]

FloatArray = npt.NDArray[np.float64]
_NEWLINE, _BRACE = ord("\n"), ord("{")


def available(encoder: Encoder, mode: str = "csv") -> bool:
    """pyarrow is installed, not switched off (``analyzer.arrow``), and the problem type is
    one it converts."""
    if mode == "off":
        return False
    if encoder.problem_type == "MulticlassClassification":
        return False  # class names need the shared codebook: the line reader keeps it
    try:
        importlib.import_module("pyarrow.json")
    except ImportError:
        return False
    return True


def preload(encoder: Encoder, mode: str = "csv") -> None:
    """Import what the fast path uses, when it is :func:`available`: forked workers then
    inherit the modules instead of each importing them (a quarter second of CPU each)."""
    if available(encoder, mode):
        importlib.import_module("pyarrow.compute")


def _module(name: str) -> Any:
    return importlib.import_module(name)  # pyarrow has no type stubs: Any


def _content(path: Path, max_line_bytes: int) -> tuple[bytes, int] | None:
    """The file's (decompressed) bytes and its number of non-blank lines, or None when a line
    is over ``max_line_bytes`` or does not start with ``{`` (:func:`_object_lines`): the line
    reader then reports it with its number."""
    blocks: list[bytes] = []
    lines = 0
    for piece in read_pieces(path, 0, max_line_bytes):
        if isinstance(piece, TooLarge):
            return None
        found = _object_lines(piece)
        if found is None:
            return None
        blocks.append(piece)
        lines += found
    return b"".join(blocks), lines


def _object_lines(block: bytes) -> int | None:
    """The number of non-blank lines of ``block`` (whole lines), or None unless each starts
    with ``{``: Arrow reads two documents on one line where the line reader finds a line that
    is not JSON, and pyarrow 26 crashes (SIGSEGV) on a file whose first line is ``null``.
    Block by block (about 1 MiB each), as the file is read: cheaper than over the whole."""
    raw = np.frombuffer(block, dtype=np.uint8)
    if raw.size == 0:
        return 0
    starts = np.flatnonzero(raw[:-1] == _NEWLINE) + 1
    firsts = raw[starts]
    objects = int(np.count_nonzero(firsts == _BRACE)) + (raw[0] == _BRACE)
    blank = int(np.count_nonzero(firsts == _NEWLINE)) + (raw[0] == _NEWLINE)
    return objects if objects + blank == firsts.size + 1 else None


def _read(path: Path, schema: Any, max_line_bytes: int) -> Any:
    pa, pj = _module("pyarrow"), _module("pyarrow.json")

    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    try:
        found = _content(path, max_line_bytes)
        if found is None or found[1] == 0:
            return None
        table = pj.read_json(pa.BufferReader(found[0]), parse_options=options)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, EOFError):
        return None
    return table if table.num_rows == found[1] else None


def _field(table: Any, *names: str) -> Any:
    pc = _module("pyarrow.compute")

    column = table.column(names[0])
    for name in names[1:]:
        column = pc.struct_field(column, name)
    return column


def _csv_values(data: Any, encoding: Any, index: int) -> Any:
    """The ``index``-th field of CSV data strings, or None when a row is not plain CSV."""
    pc = _module("pyarrow.compute")

    if data.null_count or not pc.all(pc.equal(pc.fill_null(encoding, "CSV"), "CSV")).as_py():
        return None
    if pc.any(pc.match_substring_regex(data, '["\\n\\r]')).as_py():
        return None  # quoted fields or several rows: the line reader's
    if index == 0 and not pc.any(pc.match_substring(data, ",")).as_py():
        return pc.utf8_trim_whitespace(data)
    parts = pc.split_pattern(data, ",")
    if pc.min(pc.list_value_length(parts)).as_py() <= index:
        return None
    return pc.utf8_trim_whitespace(pc.list_element(parts, index))


def _numbers(values: Any) -> FloatArray | None:
    pa, pc = _module("pyarrow"), _module("pyarrow.compute")

    try:
        out = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    numbers: FloatArray = np.asarray(out, dtype=np.float64)
    return numbers if np.isfinite(numbers).all() else None


def _labels(values: FloatArray | None, encoder: Encoder) -> FloatArray | None:
    if values is None:
        return None
    if encoder.problem_type == "BinaryClassification" and not np.isin(values, (0.0, 1.0)).all():
        return None
    return values


def _index(attribute: Attribute | None, columns: list[str]) -> int | None:
    if attribute is None:
        return None
    if attribute.index is not None:
        return attribute.index
    return columns.index(attribute.name) if attribute.name in columns else -1


def arrow_labels(
    path: Path,
    attribute: Attribute | None,
    encoder: Encoder,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    hash_keys: bool = True,
) -> Any:
    """``(keys, labels)`` of a ground-truth file, or None (read it line by line). The keys
    are hashed (``hash_keys``) or the key strings (an object array)."""
    pa = _module("pyarrow")

    schema = pa.schema(
        [
            ("groundTruthData", pa.struct([("data", pa.string()), ("encoding", pa.string())])),
            ("eventMetadata", pa.struct([("eventId", pa.string())])),
        ]
    )
    table = _read(path, schema, max_line_bytes)
    if table is None:
        return None
    keys = _field(table, "eventMetadata", "eventId")
    if keys.null_count:
        return None
    index = attribute.index if attribute is not None and attribute.index is not None else 0
    data = _field(table, "groundTruthData", "data")
    values = _csv_values(data, _field(table, "groundTruthData", "encoding"), index)
    labels = _labels(_numbers(values) if values is not None else None, encoder)
    if labels is None:
        return None
    return _keys(keys, hash_keys), labels


def arrow_predictions(
    path: Path,
    inference: Attribute | None,
    probability: Attribute | None,
    encoder: Encoder,
    columns: list[str],
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    hash_keys: bool = True,
) -> Any:
    """``(keys, times, predictions, probabilities)`` of a capture file, or None. The keys are
    hashed (``hash_keys``) or the key strings (an object array)."""
    pa, pc = _module("pyarrow"), _module("pyarrow.compute")

    side = pa.struct([("data", pa.string()), ("encoding", pa.string())])
    meta = [("eventId", pa.string()), ("inferenceId", pa.string()), ("inferenceTime", pa.string())]
    schema = pa.schema(
        [
            ("captureData", pa.struct([("endpointInput", side), ("endpointOutput", side)])),
            ("eventMetadata", pa.struct(meta)),
            ("modelmon", pa.struct([("truncated", pa.list_(pa.string()))])),
        ]
    )
    table = _read(path, schema, max_line_bytes)
    if table is None or table.num_rows == 0:
        return None
    if pc.max(pc.list_value_length(_field(table, "modelmon", "truncated"))).as_py():
        return None  # a body the proxy cut: the line reader reports it (truncated_output)
    event_ids = _field(table, "eventMetadata", "eventId")
    inference_ids = _field(table, "eventMetadata", "inferenceId")
    if event_ids.null_count or pc.any(pc.equal(inference_ids, "")).as_py():
        return None  # the line reader's: no eventId; an empty inferenceId (the eventId joins)
    if pc.min(pc.utf8_length(event_ids)).as_py() == 0 or _unplain_inputs(table):
        return None  # the envelope refuses the line (not_capture_record, no_data, bad_base64)
    keys = pc.coalesce(inference_ids, event_ids)
    stamps = _field(table, "eventMetadata", "inferenceTime")
    if stamps.null_count or (pc.max(pc.utf8_length(keys)).as_py() or 0) > MAX_KEY:
        return None
    micros = arrow_stamps(pa, pc, stamps.combine_chunks())
    if micros is None:
        return None  # a time of another form: the line reader parses it
    times = np.asarray(micros, dtype=np.float64) / 1e6
    data = _field(table, "captureData", "endpointOutput", "data")
    encoding = _field(table, "captureData", "endpointOutput", "encoding")
    at_inference, at_probability = _index(inference, columns), _index(probability, columns)
    if at_inference == -1 or at_probability == -1:
        return None  # a name the output columns do not have: the line reader says so
    scores = np.full(table.num_rows, np.nan)
    if at_probability is not None:
        picked = _csv_values(data, encoding, at_probability)
        numbers = _numbers(picked) if picked is not None else None
        if numbers is None or ((numbers < 0) | (numbers > 1)).any():
            return None
        scores = numbers
    if at_inference is not None:
        picked = _csv_values(data, encoding, at_inference)
        predictions = _labels(_numbers(picked) if picked is not None else None, encoder)
    elif at_probability is not None and encoder.problem_type == "BinaryClassification":
        predictions = (scores >= encoder.threshold).astype(np.float64)
    else:
        picked = _csv_values(data, encoding, 0)  # no attribute: the output is the prediction
        predictions = _labels(_numbers(picked) if picked is not None else None, encoder)
    if predictions is None:
        return None
    return _keys(keys, hash_keys), times, predictions, scores


def _unplain_inputs(table: Any) -> bool:
    """Whether an input side is present without string ``data`` or is BASE64 (any case):
    the envelope checks its text (:func:`analyzer.decoding.envelope.side_text`), the line
    reader reports it."""
    pc = _module("pyarrow.compute")

    request = _field(table, "captureData", "endpointInput")
    data = _field(table, "captureData", "endpointInput", "data")
    if data.null_count != request.null_count:  # data is null where the side is, and more
        return True
    encodings = _field(table, "captureData", "endpointInput", "encoding")
    return any(e.upper() == "BASE64" for e in pc.unique(encodings).to_pylist() if e is not None)


def _keys(keys: Any, hash_keys: bool) -> Any:
    if not hash_keys:
        return np.array(keys.to_pylist(), dtype=object)
    return np.fromiter(map(hash, keys.to_pylist()), dtype=np.int64, count=len(keys))
