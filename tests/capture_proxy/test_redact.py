"""Redaction of JSON paths and CSV columns, and the policy for bodies that cannot be parsed."""

import gzip
import json

import orjson
import pytest

from capture_proxy.exchange import Exchange, to_line
from capture_proxy.redact import MASK, UNREDACTABLE, Redactor, parse_json_path
from modelmon.capture_record import decode_side, parse_record_line
from modelmon.config import CaptureConfig, RedactConfig


def _json_redactor(*paths: str) -> Redactor:
    return Redactor(RedactConfig(json_paths=list(paths)))


def test_disabled_when_nothing_configured() -> None:
    redactor = Redactor(RedactConfig())
    assert not redactor.enabled
    body = b'{"ssn": "123"}'
    assert redactor(body, "JSON") is body


def test_json_nested_key() -> None:
    out = _json_redactor("user.ssn")(b'{"user": {"ssn": "123-45", "age": 40}, "ssn": 7}', "JSON")
    assert orjson.loads(out) == {"user": {"ssn": MASK, "age": 40}, "ssn": 7}


def test_json_wildcards_and_indices() -> None:
    body = orjson.dumps(
        {
            "instances": [{"email": "a@x", "v": 1}, {"email": "b@x", "v": 2}, {"v": 3}],
            "users": {"u1": {"ssn": "1"}, "u2": {"ssn": "2", "name": "n"}},
            "list": [10, 20, 30],
        }
    )
    out = orjson.loads(
        _json_redactor("instances[*].email", "users.*.ssn", "list[-1]", "list[0]")(body, "JSON")
    )
    assert out["instances"] == [{"email": MASK, "v": 1}, {"email": MASK, "v": 2}, {"v": 3}]
    assert out["users"] == {"u1": {"ssn": MASK}, "u2": {"ssn": MASK, "name": "n"}}
    assert out["list"] == [MASK, 20, MASK]


def test_json_top_level_list_quoted_key_and_whole_subtree() -> None:
    body = b'[{"card": {"no": 1}, "a.b": {"c": "secret"}}, {"card": [1, 2]}]'
    out = orjson.loads(_json_redactor("[*].card", '[*]."a.b".c')(body, "JSON"))
    assert out == [{"card": MASK, "a.b": {"c": MASK}}, {"card": MASK}]


def test_json_nothing_matched_is_byte_identical() -> None:
    body = b'{ "a" :  1,\n "b": [1, 2] }'
    assert _json_redactor("user.ssn", "b[5]", "a.x")(body, "JSON") is body


def test_json_lines_body_is_masked_line_by_line() -> None:
    body = b'{"ssn": "1", "k": 1}\n{"ssn": "2"}\n'
    out = _json_redactor("ssn")(body, "JSON")
    assert out.endswith(b"\n")
    assert [orjson.loads(line) for line in out.splitlines()] == [
        {"ssn": MASK, "k": 1},
        {"ssn": MASK},
    ]


def test_json_big_integers_survive() -> None:
    body = b'{"id": 123456789012345678901234567890, "ssn": "x"}'
    out = _json_redactor("ssn")(body, "JSON")
    assert json.loads(out) == {"id": 123456789012345678901234567890, "ssn": MASK}


@pytest.mark.parametrize("body", [b'{"ssn": "123", ', b"\xff\xfe{}", b"", b"not json at all"])
def test_unparseable_json_is_replaced_whole_and_counted(body: bytes) -> None:
    calls: list[int] = []
    redactor = Redactor(RedactConfig(json_paths=["ssn"]), on_unredactable=lambda: calls.append(1))
    assert redactor(body, "JSON") == UNREDACTABLE
    assert redactor.unredactable == 1 and calls == [1]


def test_csv_columns_every_line_with_quoted_fields() -> None:
    body = b'1,"Doe, John",secret1,4\n2,"say ""hi""",secret2,5\n3,"multi\nline",secret3,6\n'
    redactor = Redactor(RedactConfig(csv_columns=[1, 2]))
    out = redactor(body, "CSV")
    assert out == b"1,***,***,4\n2,***,***,5\n3,***,***,6\n"
    for secret in (b"secret", b"Doe", b"hi", b"multi"):
        assert secret not in out


def test_csv_keeps_crlf_missing_trailing_newline_and_short_rows() -> None:
    redactor = Redactor(RedactConfig(csv_columns=[2]))
    assert redactor(b"a,b,c\r\nd,e\r\nf,g,h", "CSV") == b"a,b,***\r\nd,e\r\nf,g,***"
    short = b"1,2\n3,4\n"
    assert redactor(short, "CSV") is short


def test_csv_not_utf8_is_replaced_whole() -> None:
    redactor = Redactor(RedactConfig(csv_columns=[0]))
    assert redactor(b"\xff\xfe,1\n", "CSV") == UNREDACTABLE
    assert redactor.unredactable == 1


def test_base64_bodies_pass_through() -> None:
    redactor = Redactor(RedactConfig(json_paths=["a"], csv_columns=[0]))
    assert redactor(b"\x89PNG", "BASE64") == b"\x89PNG"
    assert redactor.unredactable == 0


@pytest.mark.parametrize("bad", ["", "a..b", "a.", ".a", "a[x]", "a[*", 'a."b'])
def test_bad_paths_are_refused_at_construction(bad: str) -> None:
    with pytest.raises(ValueError, match="redact path"):
        parse_json_path(bad)
    with pytest.raises(ValueError):
        _json_redactor(bad)


def _exchange(**changes: object) -> Exchange:
    fields: dict[str, object] = {
        "event_id": "e1",
        "inference_time": 1_700_000_000.0,
        "inference_id": None,
        "custom_attributes": None,
        "request_body": b'{"user": {"ssn": "SECRET-SSN"}}',
        "request_content_type": "application/json",
        "request_truncated": False,
        "response_body": b"0.5,0.7",
        "response_content_type": "text/csv",
        "response_truncated": False,
        "status": 200,
        "latency_ms": 1.0,
    }
    fields.update(changes)
    return Exchange(**fields)  # type: ignore[arg-type]


def _line(exchange: Exchange, redactor: Redactor) -> dict[str, object]:
    capture = CaptureConfig()
    line = to_line(redactor.prepare(exchange, capture), capture, redactor)
    assert b"SECRET" not in line
    return parse_record_line(line)


def test_record_sides_are_redacted() -> None:
    redactor = Redactor(RedactConfig(json_paths=["user.ssn"], csv_columns=[1]))
    record = _line(_exchange(response_body=b"0.5,SECRET-COL"), redactor)
    data = record["captureData"]
    assert isinstance(data, dict)
    assert orjson.loads(data["endpointInput"]["data"]) == {"user": {"ssn": MASK}}
    assert data["endpointOutput"]["data"] == "0.5,***"


def test_truncated_side_cannot_leak() -> None:
    redactor = Redactor(RedactConfig(json_paths=["user.ssn"]))
    record = _line(_exchange(request_truncated=True), redactor)
    data = record["captureData"]
    assert isinstance(data, dict)
    assert decode_side(data["endpointInput"]) == UNREDACTABLE
    assert redactor.unredactable == 2  # and the CSV answer: with JSON paths it must be JSON


def test_gzipped_side_is_decoded_then_redacted() -> None:
    redactor = Redactor(RedactConfig(json_paths=["user.ssn"]))
    body = gzip.compress(b'{"user": {"ssn": "SECRET-SSN", "ok": 1}}')
    record = _line(_exchange(request_body=body, request_content_encoding="gzip"), redactor)
    data = record["captureData"]
    assert isinstance(data, dict)
    assert data["endpointInput"]["encoding"] == "JSON"
    assert orjson.loads(data["endpointInput"]["data"]) == {"user": {"ssn": MASK, "ok": 1}}


@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_undecodable_compressed_side_cannot_leak(encoding: str) -> None:
    redactor = Redactor(RedactConfig(json_paths=["user.ssn"]))
    exchange = _exchange(request_body=b"SECRET-SSN not gzip", request_content_encoding=encoding)
    record = _line(exchange, redactor)
    data = record["captureData"]
    assert isinstance(data, dict)
    assert decode_side(data["endpointInput"]) == UNREDACTABLE


def test_docstring_examples_run() -> None:
    import doctest

    import capture_proxy.redact

    result = doctest.testmod(capture_proxy.redact)
    assert result.attempted > 0 and result.failed == 0


def test_truncated_side_is_not_stored_whatever_its_kind() -> None:
    """With any rule configured a cut side cannot be checked, so it is never stored."""
    redactor = Redactor(RedactConfig(csv_columns=[0]))  # no JSON paths
    exchange = _exchange(request_truncated=True, request_body=b'{"a": "SECRET-X"')
    record = _line(exchange, redactor)
    data = record["captureData"]
    assert isinstance(data, dict)
    assert decode_side(data["endpointInput"]) == UNREDACTABLE
    assert redactor.unredactable == 1


SECRET_JSON = b'{"user": {"ssn": "SECRET-SSN", "age": 4}}'


@pytest.mark.parametrize(
    "content_type",
    [
        "application/vnd.api+json",
        "text/plain",
        "application/octet-stream",
        None,
        "text/csv",  # mislabelled
        "application/json",
    ],
)
def test_json_is_redacted_whatever_its_label(content_type: str | None) -> None:
    """A JSON document sent under another label is still masked: the label is the client's."""
    redactor = Redactor(RedactConfig(json_paths=["user.ssn"]))
    exchange = _exchange(request_body=SECRET_JSON, request_content_type=content_type)
    data = _line(exchange, redactor)["captureData"]
    assert isinstance(data, dict)
    assert orjson.loads(decode_side(data["endpointInput"])) == {"user": {"ssn": MASK, "age": 4}}


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("image/png", b"\x89PNG\r\n SECRET-SSN"),
        ("text/plain", b"ssn=SECRET-SSN"),
        (None, b"SECRET-SSN"),
        ("application/octet-stream", b"\xff\xfe SECRET-SSN"),
        ("text/csv", b"SECRET-SSN,1\n"),
    ],
)
def test_body_that_is_not_json_is_not_stored_when_json_paths_exist(
    content_type: str | None, body: bytes
) -> None:
    redactor = Redactor(RedactConfig(json_paths=["user.ssn"]))
    exchange = _exchange(request_body=body, request_content_type=content_type)
    data = _line(exchange, redactor)["captureData"]
    assert isinstance(data, dict)
    assert decode_side(data["endpointInput"]) == UNREDACTABLE
    assert redactor.unredactable >= 1


def test_csv_columns_apply_whatever_the_label_and_binary_is_not_stored() -> None:
    redactor = Redactor(RedactConfig(csv_columns=[1]))
    csv_plain = _exchange(
        request_body=b"1,SECRET-COL,3\n", request_content_type="text/plain", response_body=b""
    )
    data = _line(csv_plain, redactor)["captureData"]
    assert isinstance(data, dict)
    assert decode_side(data["endpointInput"]) == b"1,***,3\n"
    assert decode_side(data["endpointOutput"]) == b""  # an empty body holds nothing
    binary = _exchange(request_body=b"\xff\xfeSECRET-COL", request_content_type="image/png")
    data = _line(binary, redactor)["captureData"]
    assert isinstance(data, dict)
    assert decode_side(data["endpointInput"]) == UNREDACTABLE


def test_scalar_json_counts_as_csv_when_columns_are_configured() -> None:
    redactor = Redactor(RedactConfig(json_paths=["user.ssn"], csv_columns=[0]))
    exchange = _exchange(request_body=b"4242\n", request_content_type="text/csv")
    data = _line(exchange, redactor)["captureData"]
    assert isinstance(data, dict)
    assert decode_side(data["endpointInput"]) == b"***\n"


def test_gzip_bomb_is_not_inflated_past_the_limit_for_redaction() -> None:
    redactor = Redactor(RedactConfig(json_paths=["user.ssn"]))
    bomb = gzip.compress(b"[" + b"1," * 5_000_000 + b"1]")
    exchange = _exchange(request_body=bomb, request_content_encoding="gzip")
    capture = CaptureConfig(max_capture_bytes=4096)
    prepared = redactor.prepare(exchange, capture)
    assert prepared.request_body == UNREDACTABLE and prepared.request_truncated
    record = parse_record_line(to_line(prepared, capture))
    assert record["modelmon"]["truncated"] == ["input"]
