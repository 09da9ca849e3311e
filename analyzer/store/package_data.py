"""Files shipped inside the package (package data), read here so that ``analyzer.web`` does
no file I/O: the OpenAPI document the API serves at ``/monitor/openapi.json``.

Examples
--------
>>> read_openapi().startswith(b"{")
True
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["OPENAPI_PATH", "read_openapi"]

OPENAPI_PATH = Path(__file__).resolve().parents[1] / "web" / "openapi.json"


def read_openapi() -> bytes:
    """The OpenAPI 3.1 document of the analyzer's API (``analyzer/web/openapi.json``)."""
    return OPENAPI_PATH.read_bytes()
