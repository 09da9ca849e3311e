"""The fast record encoders give byte for byte the lines of the plain ``build_record`` path."""

from __future__ import annotations

import gzip
import zlib
from datetime import UTC, datetime

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from capture_proxy.exchange import Exchange, LineEncoder, to_line, to_line_reference
from capture_proxy.redact import Redactor
from modelmon.capture_record import (
    RecordEncoder,
    choose_encoding,
    format_inference_time,
    parse_record_line,
)
from modelmon.config import CaptureConfig, RedactConfig

# 1970 to 2100: the seconds a capture can carry.
_LAST_SECOND = 4_102_444_800

# Fractions where the millisecond or the second turns over, and where datetime's
# microsecond rounding (half-even) decides: .0005, .9995, .9999995 ...
_EDGE_FRACTIONS = [
    0.0,
    1e-7,
    4.999e-4,
    5e-4,
    5.000001e-4,
    1e-3,
    0.5,
    0.9985,
    0.9995,
    0.999,
    0.9999994,
    0.9999995,
    0.9999996,
    1.0 - 1e-9,
]

epochs = st.one_of(
    st.floats(min_value=0.0, max_value=_LAST_SECOND, allow_nan=False),
    st.builds(  # around an hour (and so a day, a month, a year) boundary
        lambda hour, before, fraction: hour * 3600 - before + fraction,
        st.integers(1, _LAST_SECOND // 3600),
        st.integers(0, 1),
        st.sampled_from(_EDGE_FRACTIONS),
    ),
    st.builds(
        lambda second, fraction: second + fraction,
        st.integers(0, _LAST_SECOND),
        st.sampled_from(_EDGE_FRACTIONS) | st.floats(0.0, 1.0, exclude_max=True),
    ),
)

content_types = st.sampled_from(
    [
        None,
        "",
        "application/json",
        "Application/JSON; charset=utf-8",
        " text/csv ;header=present",
        "TEXT/CSV",
        "application/jsonlines",
        "image/png",
        "application/octet-stream",
    ]
)

bodies = st.one_of(
    st.binary(max_size=300),  # mostly not UTF-8
    st.text(max_size=200).map(lambda t: t.encode("utf-8")),
    st.sampled_from([b"", b'{"x": [1, 2.5, "\\u00e9"]}', b"1,2,3\n4,5,6\n", b"\xff\xfe\x00"]),
)


@st.composite
def sides(draw: st.DrawFn) -> tuple[bytes | None, str | None, bool, str | None]:
    """(body, content type, truncated, content encoding) of one side, or a missing side."""
    if draw(st.integers(0, 5)) == 0:
        return None, draw(content_types), False, None
    body = draw(bodies)
    encoding = draw(st.sampled_from([None, None, None, "identity", "gzip", "deflate", "br"]))
    if encoding == "gzip" and draw(st.booleans()):
        body = gzip.compress(body)  # decodable; otherwise a body that is not gzip at all
    elif encoding == "deflate" and draw(st.booleans()):
        body = zlib.compress(body)
    return body, draw(content_types), draw(st.booleans()), encoding


@st.composite
def exchanges(draw: st.DrawFn) -> Exchange:
    req_body, req_type, req_cut, req_enc = draw(sides())
    resp_body, resp_type, resp_cut, resp_enc = draw(sides())
    return Exchange(
        event_id=draw(st.uuids()).hex,
        inference_time=draw(epochs),
        inference_id=draw(st.none() | st.text(max_size=20)),
        custom_attributes=draw(
            st.none() | st.sampled_from(["", "a=1", " a=1, b , ,c=x"]) | st.text(max_size=30)
        ),
        request_body=req_body,
        request_content_type=req_type,
        request_truncated=req_cut,
        response_body=resp_body,
        response_content_type=resp_type,
        response_truncated=resp_cut,
        status=draw(st.integers(100, 599)),
        latency_ms=draw(
            st.floats(0.0, 1e7)
            | st.floats()  # nan, infinities, negatives: the same line either way
            | st.sampled_from([0.0005, 0.0015, 2.675, 1.0005, 123.4565, 999999.9995, -0.0001])
        ),
        request_content_encoding=req_enc,
        response_content_encoding=resp_enc,
        request_partial=draw(st.booleans()),
    )


CONFIGS = [
    CaptureConfig(),
    CaptureConfig(
        csv_content_types=["text/csv", "Text/Plain"],
        json_content_types=["application/json", "APPLICATION/JSONLINES"],
    ),
]


@settings(max_examples=300, deadline=None)
@given(st.lists(exchanges(), min_size=1, max_size=8), st.sampled_from(CONFIGS))
def test_line_encoder_equals_the_reference(batch: list[Exchange], config: CaptureConfig) -> None:
    encoder = LineEncoder(config)  # one encoder for the whole batch: its caches are exercised
    for exchange in batch:
        expected = to_line_reference(exchange, config)
        assert encoder(exchange) == expected
        assert to_line(exchange, config) == expected
    parse_record_line(expected)


@settings(max_examples=100, deadline=None)
@given(st.lists(exchanges(), min_size=1, max_size=5))
def test_line_encoder_equals_the_reference_with_redaction(batch: list[Exchange]) -> None:
    config = CaptureConfig()
    redactor = Redactor(RedactConfig(json_paths=["x", "user.ssn"], csv_columns=[1]))
    encoder = LineEncoder(config)
    for exchange in batch:
        prepared = redactor.prepare(exchange, config)
        assert encoder(prepared, redactor) == to_line_reference(prepared, config, redactor)


@settings(max_examples=500, deadline=None)
@given(st.lists(epochs, min_size=1, max_size=10))
def test_inference_time_equals_datetimes(moments: list[float]) -> None:
    encoder = RecordEncoder(["text/csv"], ["application/json"])
    for epoch in moments:  # in any order: the cached second must follow
        expected = format_inference_time(datetime.fromtimestamp(epoch, UTC))
        assert encoder.inference_time(epoch) == expected


def test_encoding_caches_stay_right_past_their_size() -> None:
    csv_types, json_types = ["text/csv"], ["application/json"]
    encoder = RecordEncoder(csv_types, json_types)
    types = [f"text/x-{i}" for i in range(700)] + ["text/csv", "APPLICATION/json; q=1"]
    for content_type in types * 2:
        assert encoder.encoding(content_type) == choose_encoding(
            content_type, csv_types, json_types
        )


def test_bombs_and_control_characters_stay_within_the_line_bound() -> None:
    """A body that inflates past max_capture_bytes is cut there and flagged; a body of control
    characters (sixfold in JSON) is stored as BASE64; no line passes ~4x the limit."""
    config = CaptureConfig(max_capture_bytes=8192)
    bomb = gzip.compress(b"a,b\n" * 1_000_000)
    controls = bytes(range(1, 9)) * 1024  # 8 KiB, "valid UTF-8", escaped \u00XX
    exchange = Exchange(
        "e",
        1.0,
        None,
        None,
        bomb,
        "text/csv",
        False,
        controls,
        "text/csv",
        False,
        200,
        1.0,
        request_content_encoding="gzip",
    )
    for line in (LineEncoder(config)(exchange), to_line_reference(exchange, config)):
        assert len(line) < 4 * 8192 + 1024
        record = parse_record_line(line)
        assert record["modelmon"]["truncated"] == ["input"]
        assert record["captureData"]["endpointOutput"]["encoding"] == "BASE64"


def test_to_line_follows_a_changed_config() -> None:
    exchange = Exchange(
        "e-1", 1.5, None, None, b"a,b", "text/plain", False, None, None, False, 200, 1.0
    )
    config = CaptureConfig()
    first = parse_record_line(to_line(exchange, config))
    config.csv_content_types.append("text/plain")  # the same object, other lists
    second = parse_record_line(to_line(exchange, config))
    assert first["captureData"]["endpointInput"]["encoding"] == "BASE64"
    assert second["captureData"]["endpointInput"]["encoding"] == "CSV"


@settings(max_examples=2000, deadline=None)
@given(
    st.floats()
    | st.floats(-1e6, 1e6)
    | st.integers(-(10**9), 10**9).map(lambda k: (k + 0.5) / 1000)  # ties and near-ties
    | st.integers(-(10**12), 10**12).map(lambda k: k / 1e6)
)
def test_latency_is_rounded_like_round(latency: float) -> None:
    encoder = RecordEncoder([], [])
    line = encoder.line("e", 0.0, None, None, None, None, None, latency, None)
    assert line == orjson.dumps(
        {
            "captureData": {},
            "eventMetadata": {"eventId": "e", "inferenceTime": "1970-01-01T00:00:00.000Z"},
            "eventVersion": "0",
            "modelmon": {"latency_ms": round(latency, 3)},
        },
        option=orjson.OPT_APPEND_NEWLINE,
    )
