"""The value types and checks of the config file's keys: shared by every section of
:mod:`modelmon.config` (safe path segments, header names, media types, URLs, listen addresses,
storage URLs)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field

__all__ = [
    "DAY_S",
    "DEFAULT_EXCLUDE_PATHS",
    "GIB",
    "HOUR_S",
    "STATUS_CLASSES",
    "ArrowMode",
    "ConfigError",
    "ContentType",
    "FileOrUrl",
    "FilePath",
    "HeaderName",
    "HttpUrl",
    "SegmentName",
    "Text",
    "check_listen",
    "header_value",
    "http_url",
    "no_control",
    "parse_listen",
    "storage_url",
]


class ConfigError(Exception):
    """A configuration file that cannot be used; the message says where and how to fix it."""


HOUR_S = 3600
DAY_S = 86_400
#: ``analyzer.arrow``: the payloads the optional Arrow fast path reads (docs/analyzer.md).
ArrowMode = Literal["csv", "csv_and_json", "off"]
GIB = 1024**3


# Durations and sizes are bounded on both sides: too small spins a CPU (a flush every 1e-300 s),
# too large overflows a clock (a window of 1e21 s).
def no_control(value: str) -> str:
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError(f"must not contain spaces or control characters, got {value!r}")
    return value


_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")
_MEDIA_TYPE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _segment(value: str) -> str:
    """A name that becomes one folder of a path (``{endpoint}/{variant}/…``, ``{schedule}``)."""
    if not _SEGMENT.fullmatch(value):
        raise ValueError(
            "a name of 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit "
            "(it names a folder)"
        )
    return value


def _header_name(value: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise ValueError("an HTTP header name: 1-256 letters, digits or !#$%&'*+.^_`|~-")
    return value


SegmentName = Annotated[str, AfterValidator(_segment)]
Text = Annotated[str, Field(min_length=1, max_length=256)]
HeaderName = Annotated[str, AfterValidator(_header_name)]


def _media_type(value: str) -> str:
    if len(value) > 256 or not _MEDIA_TYPE.fullmatch(value):
        raise ValueError(
            "a media type such as text/csv, without parameters (it is compared with the "
            "Content-Type before any ';')"
        )
    return value


ContentType = Annotated[str, AfterValidator(_media_type)]


def _check_path(value: Path) -> Path:
    text = str(value)
    if "\x00" in text or len(text) > 4096:
        raise ValueError("must be a path of at most 4096 characters without NUL bytes")
    return value


FilePath = Annotated[Path, AfterValidator(_check_path)]


def _path_or_url(value: Any) -> Any:
    """A storage URL (``s3://``, ``gs://``, ``file://``; anything with ``://``) stays a checked
    ``str``; anything else becomes a ``Path`` (relative ones are resolved later, against the
    config file's folder)."""
    if isinstance(value, str) and "://" in value:
        if len(value) > 1024:
            raise ValueError("a storage URL has at most 1024 characters")
        return storage_url(value)
    if isinstance(value, str):
        return _check_path(Path(value))
    return value


# A local path, or an fsspec URL (a str) read through fsspec: the baseline files, the
# ground-truth folder.
FileOrUrl = Annotated[Path | str, BeforeValidator(_path_or_url)]


def header_value(value: str) -> str:
    if any(ch in value for ch in "\r\n\x00"):
        raise ValueError("a header value must not contain CR, LF or NUL")
    return value


def http_url(value: str) -> str:
    """An ``http(s)://host[:port][/path]`` URL that the HTTP clients will accept as written."""
    no_control(value)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for :99999 or :abc
    except ValueError as exc:
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    if ":" in parts.netloc.rpartition("@")[2].rpartition("]")[2] and parts.port is None:
        raise ValueError(f"expected a port number after ':' in {value!r}")
    return value


HttpUrl = Annotated[str, Field(max_length=2048), AfterValidator(http_url)]


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:8080`` for IPv6) into its parts."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port with a port in 0-65535, got {value!r}")
    if len(value) > 300 or any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise ValueError(f"expected host:port without spaces, got {value!r}")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def check_listen(value: str) -> str:
    parse_listen(value)
    return value


_STORAGE_SCHEMES = ("s3", "gs", "gcs", "file")


def storage_url(value: str) -> str:
    """``s3://bucket[/prefix]``, ``gs://bucket[/prefix]`` or ``file:///absolute/dir``."""
    no_control(value)
    parts = urlsplit(value)
    if parts.scheme not in _STORAGE_SCHEMES:
        raise ValueError(f"expected an s3://, gs:// or file:/// URL, got {value!r}")
    if "@" in parts.netloc or parts.password is not None:
        raise ValueError(
            "no credentials in the URL: they come from the environment or the provider's "
            "config files (AWS_*, ~/.aws, GOOGLE_APPLICATION_CREDENTIALS)"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"no query or fragment in a storage URL, got {value!r}")
    if parts.scheme == "file":
        if parts.netloc or not parts.path.startswith("/") or not parts.path.strip("/"):
            raise ValueError(f"expected file:///absolute/path, got {value!r}")
    elif not parts.netloc:
        raise ValueError(f"expected {parts.scheme}://bucket[/prefix], got {value!r}")
    return value.rstrip("/")


# capture.filters defaults: what may be captured at all (docs/proxy.md)
DEFAULT_EXCLUDE_PATHS = [
    "/ping",
    "/health",
    "/health/*",
    "/healthz",
    "/livez",
    "/readyz",
    "/ready",
    "/metrics",
    "/favicon.ico",
    "/v2",
    "/v2/health/*",
    "/v2/models/*/ready",
    "/v2/repository/*",
    "/v1/models",
    "/docs",
    "/docs/*",
    "/openapi.json",
    "/api-description",
]
STATUS_CLASSES = Literal["1xx", "2xx", "3xx", "4xx", "5xx"]
