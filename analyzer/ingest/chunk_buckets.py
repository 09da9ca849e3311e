"""A chunk's lines split by the time bucket of their records (the service's ingest).

Most chunks fall in one bucket and are decoded once as a whole. One that spans buckets is
decoded a bucket at a time, each bucket's lines on their own. Which lines go where comes
either from the whole chunk's decoded times (:func:`lines_by_bucket`: a decode spent only to
learn them) or, when the chunk's first and last lines already show two buckets, from the
``inferenceTime`` each line's text shows, read without parsing its JSON
(:func:`lines_by_time`): a guess the caller checks against each group's decoded times.
"""

from __future__ import annotations

import re

from analyzer.decoding.inference_time import parse_inference_times

__all__ = ["lines_by_bucket", "lines_by_time"]

# the time a capture record's text shows: the decoders read eventMetadata.inferenceTime from
# the parsed JSON; a quote inside a JSON string is escaped, so this finds a key (any object's,
# or one ending in an escaped quote: what the decoded times are checked for)
_TIME = re.compile(rb'"inferenceTime"\s*:\s*"([^"\\]*)"')


def lines_by_bucket(
    chunk: list[bytes], keys: list[int], stamps: list[float]
) -> dict[int, tuple[list[bytes], list[float]]] | None:
    """The chunk's lines, and their records' times, grouped by bucket start (``keys`` and
    ``stamps``: one per decoded record, in order), when every non-blank line gave exactly one
    record; else None."""
    lines = [line for line in chunk if line and not line.isspace()]
    if len(lines) != len(keys):
        return None
    groups: dict[int, tuple[list[bytes], list[float]]] = {}
    for line, key, stamp in zip(lines, keys, stamps, strict=True):
        group = groups.get(key)
        if group is None:
            group = groups[key] = ([], [])
        group[0].append(line)
        group[1].append(stamp)
    return groups


def lines_by_time(chunk: list[bytes], bucket_s: int) -> dict[int, list[bytes]] | None:
    """The chunk's non-blank lines grouped by the bucket of the ``inferenceTime`` their text
    shows, in the order of each bucket's first line, when the first and the last line show
    two buckets and every line shows a time the parser reads; else None (one bucket likely,
    or a line to decode to know).

    Only a guess: a record's text may show another time than its JSON gives (a repeated
    key, an object where the time should be). The caller decodes each group and keeps the
    split only when every group's records decoded, one a line, into its bucket."""
    lines = [line for line in chunk if line and not line.isspace()]
    if len(lines) < 2:
        return None
    ends = _buckets([lines[0], lines[-1]], bucket_s)
    if ends is None or ends[0] == ends[1]:
        return None
    keys = _buckets(lines, bucket_s)
    if keys is None:
        return None
    groups: dict[int, list[bytes]] = {}
    for line, key in zip(lines, keys, strict=True):
        group = groups.get(key)
        if group is None:
            group = groups[key] = []
        group.append(line)
    return groups


def _buckets(lines: list[bytes], bucket_s: int) -> list[int] | None:
    """The bucket start of each line's shown time, or None if a line shows none."""
    texts = []
    for line in lines:
        found = _TIME.search(line)
        if found is None:
            return None
        try:
            texts.append(found.group(1).decode())
        except UnicodeDecodeError:
            return None
    moments = parse_inference_times(texts)
    if moments is None:
        return None
    return [int(moment.timestamp()) // bucket_s * bucket_s for moment in moments]
