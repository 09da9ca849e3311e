"""The ground-truth intake's parser as h11 is tested: a body fed split at every byte offset
(and one byte at a time) gives what it gives whole: the same rows, bad lines with the same
numbers, the same counts, at and past the line limit."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from analyzer.ingest.ground_truth import GroundTruthIntake

LIMIT = 256


def record(event_id: str, data: str = "1") -> bytes:
    return orjson.dumps(
        {
            "groundTruthData": {"data": data, "encoding": "CSV"},
            "eventMetadata": {"eventId": event_id},
        }
    )


def padded(event_id: str, size: int) -> bytes:
    """A record of exactly ``size`` bytes (its label padded with spaces inside the string)."""
    bare = record(event_id, "")
    return record(event_id, " " * (size - len(bare)))


AT_LIMIT = padded("at", LIMIT)
OVER = padded("over", LIMIT + 1)
BODY = b"".join(
    [
        record("a") + b"\n",
        b"\n",  # blank
        record("crlf") + b"\r\n",
        b"not json\n",
        AT_LIMIT + b"\n",
        OVER + b"\n",
        b"  " + record("spaced") + b"  \n",
        b'{"eventMetadata": {"eventId": 5}}\n',
        b"x" * (3 * LIMIT) + b"\n",  # far past the limit
        b"\xef\xbb\xbf" + record("bom") + b"\n",
        record("last-no-newline"),
    ]
)


def parsed(pieces: list[bytes], shown: int) -> dict[str, Any]:
    intake = GroundTruthIntake(max_line_bytes=LIMIT, max_bad_lines_shown=shown, received_at=0.0)
    for piece in pieces:
        intake.feed(piece)
    intake.finish()
    return {
        "rows": intake.rows,
        "row_lines": intake.row_lines,
        "bad_lines": intake.bad_lines,
        "bad_count": intake.bad_count,
        "long_lines": intake.long_lines,
        "lines": intake.lines,
    }


@pytest.mark.parametrize("shown", [0, 2, 100])  # the quick path once the shown lines are full
def test_a_body_split_at_every_offset_parses_as_it_does_whole(shown: int) -> None:
    whole = parsed([BODY], shown)
    assert [r[0] for r in whole["rows"]] == ["a", "crlf", "at", "spaced", "last-no-newline"]
    assert whole["row_lines"] == [1, 3, 5, 7, 11]
    assert whole["long_lines"] == 2 and whole["bad_count"] == 5 and whole["lines"] == 11
    if shown == 100:
        assert [b["line"] for b in whole["bad_lines"]] == [4, 6, 8, 9, 10]
    for cut in range(len(BODY) + 1):
        assert parsed([BODY[:cut], BODY[cut:]], shown) == whole, cut
    for cut in range(0, len(BODY), 7):  # three pieces
        third = cut + (len(BODY) - cut) // 2
        assert parsed([BODY[:cut], BODY[cut:third], BODY[third:]], shown) == whole, cut
    assert parsed([BODY[i : i + 1] for i in range(len(BODY))], shown) == whole
