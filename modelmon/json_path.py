"""The dotted paths of ``capture.redact.json_paths``, parsed (see :mod:`capture_proxy.redact`).

Here, in the shared layer, so that the config is checked when it is loaded, by every command,
and the proxy masks with exactly the paths that passed.
"""

from __future__ import annotations

import json
import re

__all__ = ["ANY", "Step", "parse_json_path"]

ANY = object()  # a wildcard step: every key of an object or every element of a list
Step = str | int | object
_TOKEN = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|([^.\[\]"]+)|\[\s*(\*|-?\d+)\s*\]|(\.))')


def _quoted_key(path: str, quoted: str) -> str:
    try:
        key: str = json.loads(f'"{quoted}"')
    except ValueError:
        raise ValueError(f"redact path {path!r}: bad escape in the quoted key {quoted!r}") from None
    return key


def parse_json_path(path: str) -> list[Step]:
    """Steps of a dotted path: ``str`` keys, ``int`` indices and the wildcard.

    Raises ``ValueError`` naming the path when it is not of the syntax above.
    """
    steps: list[Step] = []
    position = 0
    expect_key = True  # after a dot (or at the start) a key or an index must follow
    text = path.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ValueError(f"redact path {path!r}: unexpected text at {text[position:]!r}")
        quoted, name, index, dot = match.groups()
        if dot is not None:
            if expect_key:
                raise ValueError(f"redact path {path!r}: empty segment")
            expect_key = True
        elif index is not None:
            steps.append(ANY if index == "*" else int(index))
            expect_key = False
        else:
            if not expect_key:
                raise ValueError(f"redact path {path!r}: a '.' must separate keys")
            key = _quoted_key(path, quoted) if quoted is not None else (name or "").strip()
            steps.append(ANY if quoted is None and key == "*" else key)
            expect_key = False
        position = match.end()
    if not steps or expect_key:
        raise ValueError(f"redact path {path!r}: expected e.g. 'user.ssn' or 'items[*].email'")
    return steps
