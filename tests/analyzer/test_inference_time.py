"""The one ``inferenceTime`` parser (analyzer/decoding/inference_time.py) at its edges."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pytest

from analyzer.decoding.codecs import PayloadDecoder
from analyzer.decoding.inference_time import (
    InferenceTimes,
    arrow_stamps,
    parse_inference_time,
    parse_inference_times,
    time_span,
)
from analyzer.decoding.payload_rows import PayloadError
from modelmon.config import PayloadConfig

GOOD = {
    "2024-05-01T10:20:30Z": datetime(2024, 5, 1, 10, 20, 30, tzinfo=UTC),
    "2024-05-01T10:20:30+00:00": datetime(2024, 5, 1, 10, 20, 30, tzinfo=UTC),
    "2024-05-01T12:20:30+02:00": datetime(2024, 5, 1, 10, 20, 30, tzinfo=UTC),
    "2024-05-01T10:20:30": datetime(2024, 5, 1, 10, 20, 30, tzinfo=UTC),  # no offset: UTC
    "2024-05-01T10:20:30.5Z": datetime(2024, 5, 1, 10, 20, 30, 500_000, tzinfo=UTC),
    "2024-05-01T10:20:30.123Z": datetime(2024, 5, 1, 10, 20, 30, 123_000, tzinfo=UTC),
    "2024-05-01T10:20:30.123456Z": datetime(2024, 5, 1, 10, 20, 30, 123_456, tzinfo=UTC),
    "2024-05-01T10:20:30.1234567Z": datetime(2024, 5, 1, 10, 20, 30, 123_456, tzinfo=UTC),
    "2024-05-01 10:20:30Z": datetime(2024, 5, 1, 10, 20, 30, tzinfo=UTC),
    "2024-05-01T00:00:00-00:30": datetime(2024, 5, 1, 0, 30, tzinfo=UTC),
    "0001-01-01T00:00:00Z": datetime(1, 1, 1, tzinfo=UTC),
}
BAD: list[Any] = [
    "2024-05-01T24:00:00Z",
    "2024-05-01T10:20:30z",
    " 2024-05-01T10:20:30Z",
    "2024-05-01T10:20:30Z ",
    "2024-13-01T00:00:00Z",
    "yesterday",
    "",
    5,
    1.5,
    None,
    ["2024-05-01T10:20:30Z"],
]


@pytest.mark.parametrize(("text", "moment"), list(GOOD.items()))
def test_good_times_read_in_utc(text: str, moment: datetime) -> None:
    parsed = parse_inference_time(text)
    assert parsed == moment
    assert parsed.tzinfo is UTC
    assert parse_inference_times([text]) == [moment]


def test_z_and_plus_zero_are_the_same_moment() -> None:
    z, offset = (
        parse_inference_time("2024-05-01T10:20:30Z"),
        parse_inference_time("2024-05-01T10:20:30+00:00"),
    )
    assert z == offset and z.isoformat() == offset.isoformat()
    assert z.tzinfo is offset.tzinfo is UTC
    assert parse_inference_time("2024-05-01T10:20:30+00:00").utcoffset() == timedelta(0)


@pytest.mark.parametrize("value", BAD, ids=repr)
def test_bad_times_raise_with_their_reason(value: Any) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_inference_time(value)
    assert caught.value.reason == "bad_inference_time"
    assert isinstance(caught.value, ValueError)
    assert parse_inference_times(["2024-05-01T10:20:30Z", value]) is None


def test_bad_times_are_counted_by_the_decoder() -> None:
    payload = PayloadConfig.model_validate({"input": {"format": "csv"}})

    def line(time: Any) -> bytes:
        return orjson.dumps(
            {
                "captureData": {"endpointInput": {"data": "1", "encoding": "CSV"}},
                "eventMetadata": {"eventId": "e", "inferenceTime": time},
            }
        )

    batch = PayloadDecoder(payload).decode([line(t) for t in [*GOOD, *BAD]])
    assert batch.bad == {"bad_inference_time": len(BAD)}
    assert list(batch.inference_times) == list(GOOD.values())


def test_inference_times_are_made_when_read() -> None:
    moments = [GOOD["2024-05-01T10:20:30.5Z"], GOOD["0001-01-01T00:00:00Z"]]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    stamps = np.array([(m - epoch) // timedelta(microseconds=1) for m in moments])
    times = InferenceTimes(stamps)
    assert (len(times), list(times), times[1], times[0:1]) == (2, moments, moments[1], moments[:1])
    assert times.span() == time_span(moments) == (moments[1], moments[0])
    assert InferenceTimes(np.array([], dtype=np.int64)).span() is None
    assert time_span([]) is None


@pytest.mark.skipif(
    importlib.util.find_spec("pyarrow") is None,
    reason="pyarrow (the optional 'fast' extra) is not installed: no Arrow conversion to check",
)
def test_arrow_converts_exactly_what_the_parser_reads() -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    taken = [t for t in GOOD if t.endswith("Z") and "T" in t and len(t) <= 27]
    stamps = arrow_stamps(pa, pc, pa.array(taken))
    assert stamps is not None
    assert list(InferenceTimes(stamps)) == [parse_inference_time(t) for t in taken]
    for other in [t for t in GOOD if t not in taken] + [b for b in BAD if isinstance(b, str)]:
        assert arrow_stamps(pa, pc, pa.array([taken[0], other])) is None, other
