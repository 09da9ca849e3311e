"""The Arrow fast path on JSON payloads gives exactly what the existing decode gives, or declines.

Blocks of capture lines with JSON bodies (``analyzer.arrow: csv_and_json``) of the shapes the
slow path reads: rows as objects, positional rows, scalars; one or several rows per body; under
``instances``/``inputs``/``predictions``/``outputs``; with values that Arrow types differently
from orjson (``3`` against ``3.0``, large integers, ``-0``), numeric-looking strings, empty
strings, nulls, missing keys, booleans, nested values, columns mixing numbers and strings,
and odd bodies and records. Whenever the fast path takes a block, every column must split into
the same counts, numbers (bit for bit) and string counts (in order) as the existing path's,
with the same column order, rows, records, field counts and times; clean blocks must take it;
whole files must profile to the same exact parts with and without it.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.decoding.codecs import PayloadDecoder
from analyzer.ingest.capture_files import block_lines
from modelmon.config import PayloadConfig

pytest.importorskip("pyarrow", reason="pyarrow (the optional 'fast' extra) is not installed")

from analyzer.decoding.arrow_batch import ArrowDecoder
from tests.analyzer.test_arrow_batch import _exact, same_as_slow

PAYLOAD = PayloadConfig.model_validate(
    {
        "input": {"format": "json", "columns": ["a", "b", "c"]},
        "output": {"format": "json", "columns": ["score"]},
    }
)

clean_number = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(-1e6, 1e6).map(lambda x: round(x, 2)),
    st.integers(-50, 50).map(float),  # integer-valued floats: 3.0 is Fractional
)
clean_text = st.sampled_from(["a", "b", "v1", "x y", "é", "n/a", "ü-ß", "a:1", "{x}"])
odd_value = st.one_of(
    st.sampled_from(["", "3", "3.0", "-1", ".5", " 1", "nan", None, True, False, 0, -0.0]),
    st.sampled_from([2**63, 2**64 - 1, -(2**63) - 1, 2**70, 10**18]),
    st.sampled_from([[1, 2], {"x": 1}, []]),
)


def _dumps(value: Any) -> str:
    """JSON text as a client may write it (integers of any size, no escapes for "é")."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _value(draw: st.DrawFn, kind: str, clean: bool) -> Any:
    choice: st.SearchStrategy[Any] = clean_number if kind == "num" else clean_text
    if kind == "mixed":
        choice = st.one_of(clean_number, clean_text)
    return draw(st.one_of(choice, odd_value) if not clean else choice)


@st.composite
def blocks(draw: st.DrawFn, clean: bool, odd_records: bool = False) -> bytes:
    shape = draw(st.sampled_from(["obj", "pos", "scalar"]))
    width = draw(st.integers(1, 4))
    kind = st.sampled_from(["num", "text"] if clean else ["num", "text", "mixed"])
    kinds = draw(st.lists(kind, min_size=5, max_size=5))
    key = draw(st.sampled_from(["instances", "inputs"]))
    names = draw(st.permutations(["a", "b", "c", "d", "e"]))[:width]
    lines = []
    for index in range(draw(st.integers(1, 20))):
        n_rows = draw(st.integers(1, 3)) if draw(st.booleans()) else 1
        rows: list[Any] = []
        for _ in range(n_rows):
            if shape == "scalar":
                rows.append(_value(draw, kinds[0], clean))
            elif shape == "pos":
                # one kind for all positions: Arrow types a list's items as one
                rows.append([_value(draw, kinds[0], clean) for _ in range(width)])
            else:
                row = {name: _value(draw, kinds[j], clean) for j, name in enumerate(names)}
                if not clean and draw(st.integers(0, 4)) == 0:
                    row.pop(draw(st.sampled_from(names)))  # a missing key
                rows.append(row)
        request: Any = {key: rows}
        if not clean and draw(st.integers(0, 9)) == 0:
            request["parameters"] = {"k": 1}  # another key: ignored by both paths
        scores = [draw(clean_number) for _ in range(n_rows)]
        response: Any = {"predictions": scores}
        body, answer = _dumps(request), _dumps(response)
        if odd_records:
            corner = draw(st.integers(0, 12))
            body = {
                0: "",
                1: "[1, 2]",
                2: body + " " + body,
                3: body.replace(key, "features"),
                4: '{"instances": []}',
                5: '{"instances": null}',
                6: body.replace(":", ": "),
                7: " " + body,
                8: body[:-1],
                9: '{"instances": [1, {"a": 2}]}',
            }.get(corner, body)
            if draw(st.integers(0, 6)) == 0:
                answer = _dumps({"predictions": [*scores, 0.5]})
        record = {
            "captureData": {
                "endpointInput": {"data": body, "encoding": "JSON", "mode": "INPUT"},
                "endpointOutput": {"data": answer, "encoding": "JSON"},
            },
            "eventMetadata": {"eventId": f"e{index}", "inferenceTime": "2024-05-01T10:20:30Z"},
        }
        lines.append(orjson.dumps(record) + b"\n")
    return b"".join(lines)


def _check(block: bytes, payload: PayloadConfig = PAYLOAD) -> bool:
    """Compare both paths on ``block``; True when the fast path took it."""
    decoder = ArrowDecoder.create(payload, json=True)
    assert decoder is not None
    fast = decoder.decode_block(block)
    slow = PayloadDecoder(payload).decode_lines(block_lines(block))
    if fast is None:
        return False
    same_as_slow(fast, slow)
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks(clean=False))
def test_odd_values_are_identical_or_decline(block: bytes) -> None:
    _check(block)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks(clean=False, odd_records=True))
def test_odd_bodies_are_identical_or_decline(block: bytes) -> None:
    _check(block)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks(clean=True))
def test_clean_blocks_take_the_fast_path(block: bytes) -> None:
    assert _check(block)


def _line(body: str, answer: str = '{"predictions": [0.5]}') -> bytes:
    record = {
        "captureData": {
            "endpointInput": {"data": body, "encoding": "JSON"},
            "endpointOutput": {"data": answer, "encoding": "JSON"},
        },
        "eventMetadata": {"eventId": "e", "inferenceTime": "2024-05-01T10:20:30Z"},
    }
    return orjson.dumps(record) + b"\n"


@pytest.mark.parametrize(
    ("body", "taken"),
    [
        ('{"instances": [{"a": 3, "b": "x"}]}', True),
        ('{"instances": [{"a": 3.0, "b": "y", "c": null}]}', True),  # 3.0 Fractional, a null
        ('{"instances": [{"a": -0, "d": true}]}', True),  # -0 an Integral 0.0; a boolean
        ('{"instances": [{"a": 18446744073709551615}]}', True),  # orjson: an int
        ('{"instances": [{"a": 18446744073709551616}]}', True),  # orjson: a float
        ('{"instances": [{"a": "3"}]}', False),  # a column mixing numbers and strings
        ('{"instances": [{"a": [1, 2]}]}', False),  # a nested value
        ('{"instances": [{"a": 1, "a": 2}]}', False),  # a duplicate key
        ('{"instances": [{"a": 1e400}]}', False),  # infinite: orjson rejects the body
        ('{"instances": [{"a": "a\\\\b"}]}', False),  # an escape inside the body
    ],
)
def test_fixed_cases(body: str, taken: bool) -> None:
    good = _line('{"instances": [{"a": 2, "b": "z", "c": 1.5}]}')
    assert _check(good + _line(body)) is taken


def test_a_row_arrow_cannot_combine_is_declined_not_raised() -> None:
    # found by Hypothesis: combine_chunks raised ArrowIndexError on this nested row
    body = '{"instances": [[null, "a"]], "parameters": {"k": 1}}'
    assert not _check(_line(body, '{"predictions": [0]}'))


def test_positional_and_scalar_rows() -> None:
    assert _check(_line('{"inputs": [[1, 2.5], [3.0, 4]]}', '{"outputs": [1, 0.5]}') * 2)
    assert _check(_line('{"instances": [1, 2.0, 3]}', '{"predictions": [0, 1.0, 2]}'))
    assert not _check(_line('{"instances": [[1], [2, 3]]}', '{"predictions": [0, 1]}'))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(blocks(clean=True), blocks(clean=False)), min_size=1, max_size=3))
def test_profiles_of_files_are_identical(parts: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "capture.jsonl"
        path.write_bytes(b"".join(parts))
        assert _exact(path, PAYLOAD, "csv_and_json") == _exact(path, PAYLOAD, "off")
