"""Capture file names: ``{MM}-{SS}-{mmm}-{instance}-{uuid}.jsonl`` (pure, no I/O).

``MM-SS-mmm`` is the minute, second and millisecond of the file's first record (its hour is
the folder), ``instance`` names the writer's host or replica (``capture.instance_id``, or the
hostname, sanitized: 1-63 of ``A-Za-z0-9._-``, starting with a letter or digit) and ``uuid``
is a random UUID4. So proxies on several hosts writing into one tree (a shared folder, or one
upload prefix) never clash, and the instance is recoverable from the name with
:func:`instance_of`. SageMaker's own files (``{MM}-{SS}-{mmm}-{uuid}.jsonl``) and ours from
before the instance part have none. SageMaker's readers do not parse names: any ``.jsonl``
in the hour folder is read.
"""

from __future__ import annotations

import re

__all__ = ["capture_stem", "instance_of", "sanitize_instance"]

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_NAME = re.compile(
    rf"(?P<stamp>\d\d-\d\d-\d\d\d)-(?:(?P<instance>[A-Za-z0-9][A-Za-z0-9._-]{{0,62}})-)?"
    rf"(?P<uuid>{_UUID})\.jsonl(?:\.gz)?(?:\.part)?"
)
_BAD = re.compile(r"[^A-Za-z0-9._-]")
MAX_INSTANCE = 63


def sanitize_instance(raw: str) -> str:
    """``raw`` (a hostname, a pod name) as an instance part: other characters become ``_``,
    leading non-alphanumerics are dropped, at most 63 characters; ``host`` when nothing is
    left."""
    cleaned = _BAD.sub("_", raw).lstrip("._-")[:MAX_INSTANCE]
    return cleaned or "host"


def capture_stem(minute: int, second: int, millisecond: int, instance: str, uid: str) -> str:
    """The name without its suffix: ``05-09-042-web-1-<uuid>``."""
    return f"{minute:02d}-{second:02d}-{millisecond:03d}-{instance}-{uid}"


def instance_of(name: str) -> str | None:
    """The instance part of a capture file name (``.jsonl``, ``.jsonl.gz``, ``.part``), or
    None for a name without one (SageMaker's, ours before) or not a capture file name."""
    match = _NAME.fullmatch(name)
    return match["instance"] if match else None
