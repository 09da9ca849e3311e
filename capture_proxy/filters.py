"""Which exchanges are eligible for capture at all (``capture.filters``), before sampling.

Decided in two steps, each before any body is copied: method and path when the request head
arrives (:meth:`CaptureFilter.reason`), the status class when the response head arrives
(:meth:`CaptureFilter.status_ok`). Paths are shell-style globs (``*`` matches ``/`` too) on
the normalized path (percent-decoded, dot segments removed; no query string), compiled once
into one regular expression per list. Pure logic: no I/O.
"""

from __future__ import annotations

import fnmatch
import re

from modelmon.config import CaptureFiltersConfig

__all__ = ["CaptureFilter"]


def _compile(patterns: list[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


class CaptureFilter:
    """The ``capture.filters`` decision for one request.

    Examples
    --------
    >>> from modelmon.config import CaptureFiltersConfig
    >>> f = CaptureFilter(CaptureFiltersConfig())
    >>> f.reason("POST", "/invocations"), f.reason(b"POST", "/v2/models/iris/infer")
    (None, None)
    >>> f.reason("GET", "/favicon.ico"), f.reason("POST", "/v2/repository/models/x/load")
    ('method', 'path')
    >>> f.status_ok(200), f.status_ok(404)
    (True, False)
    """

    __slots__ = ("_exclude", "_include", "_methods", "_statuses")

    def __init__(self, config: CaptureFiltersConfig) -> None:
        methods = {m.upper() for m in config.methods}
        self._methods: frozenset[str | bytes] | None = (
            frozenset(methods | {m.encode("ascii") for m in methods}) if methods else None
        )
        self._include = _compile(config.include_paths)
        self._exclude = _compile(config.exclude_paths)
        classes = {int(c[0]) for c in config.status_classes}
        self._statuses = frozenset(classes) if classes else None

    def reason(self, method: str | bytes, path: str) -> str | None:
        """``None`` when the request may be captured, else why not (``method`` or ``path``)."""
        if self._methods is not None and method not in self._methods:
            return "method"
        if self._include is not None and self._include.match(path) is None:
            return "path"
        if self._exclude is not None and self._exclude.match(path) is not None:
            return "path"
        return None

    def status_ok(self, status: int) -> bool:
        """True when a response of this status may be captured."""
        return self._statuses is None or status // 100 in self._statuses
