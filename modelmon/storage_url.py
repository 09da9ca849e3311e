"""fsspec URLs (``s3://``, ``gs://``, ``file://``) for capture uploads and remote capture trees.

fsspec and the provider's library (s3fs, gcsfs) are optional extras: nothing imports them
unless a URL is configured, and a missing one is a :class:`StorageUnavailable` whose message
says what to install. Credentials and endpoints come only from where the provider's library
looks for them (``AWS_*`` environment variables, ``~/.aws/config``, an instance role;
``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's files), never from modelmon's YAML.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

__all__ = [
    "SCHEMES",
    "StorageUnavailable",
    "install_hint",
    "is_local",
    "open_url",
    "shared_fs",
    "storage_errors",
]

# scheme -> the extra that brings its library
SCHEMES = {"s3": "s3", "gs": "gcs", "gcs": "gcs", "file": "s3"}

# Per attempt, our own backoff retries: fail fast instead of the library's long retry loops.
_OPTIONS: dict[str, dict[str, Any]] = {
    "s3": {
        "config_kwargs": {"connect_timeout": 10, "read_timeout": 60, "retries": {"max_attempts": 2}}
    },
}


class StorageUnavailable(Exception):
    """A URL whose filesystem library is not installed; the message says how to install it."""


def install_hint(url: str) -> str:
    """``pip install 'modelmon[s3]'`` (or ``[gcs]``) for the scheme of ``url``."""
    extra = SCHEMES.get(urlsplit(url).scheme, "s3")
    return f"pip install 'modelmon[{extra}]'"


def open_url(url: str) -> tuple[AbstractFileSystem, str]:
    """The filesystem of ``url`` (a fresh instance: no cached client, no stale listing) and the
    path in its terms (``bucket/prefix`` for object stores, ``/abs/dir`` for ``file://``)."""
    scheme = urlsplit(url).scheme
    try:
        import fsspec.core
    except ImportError:
        raise StorageUnavailable(
            f"{url} needs fsspec, which is not installed: {install_hint(url)}"
        ) from None
    options = _OPTIONS.get(scheme, {})
    for name in ("botocore", "aiobotocore"):  # a line per client made ("Found credentials …")
        logging.getLogger(name).setLevel(
            max(logging.getLogger().getEffectiveLevel(), logging.WARNING)
        )
    try:
        fs, path = fsspec.core.url_to_fs(url, skip_instance_cache=True, **options)
    except ImportError as exc:
        raise StorageUnavailable(
            f"{url} needs a library that is not installed ({exc}): {install_hint(url)}"
        ) from None
    return fs, str(path).rstrip("/")


# One client per process (a forked or Dask worker makes its own), scheme and provider settings
# in the environment (where credentials and endpoints come from): making one costs about a
# second, so not one per file or per tick.
_CLIENTS: dict[tuple[int, str, int], AbstractFileSystem] = {}
_PROVIDER_ENV = ("AWS_", "GOOGLE_", "GCS", "FSSPEC_")


def shared_fs(url: str) -> tuple[AbstractFileSystem, str]:
    """As :func:`open_url`, but the filesystem is this process's one for the scheme (a listing
    that must be fresh calls ``invalidate_cache`` first)."""
    scheme = urlsplit(url).scheme
    settings = sorted((k, v) for k, v in os.environ.items() if k.startswith(_PROVIDER_ENV))
    key = (os.getpid(), scheme, hash(tuple(settings)))
    fs = _CLIENTS.get(key)
    if fs is None:
        fs = _CLIENTS[key] = open_url(url)[0]
    return fs, str(fs._strip_protocol(url)).rstrip("/")


def is_local(fs: AbstractFileSystem) -> bool:
    """A local filesystem (``file://``): writes are not atomic there, uploads go through a
    temporary name."""
    protocol = fs.protocol
    names = (protocol,) if isinstance(protocol, str) else tuple(protocol)
    return "file" in names or "local" in names


def storage_errors() -> tuple[type[BaseException], ...]:
    """What a filesystem call may raise when the store cannot be read: ``OSError`` (no such
    bucket or key, access denied, a timeout: s3fs and gcsfs translate theirs) and botocore's
    own errors, which s3fs passes on as they are (an endpoint that does not answer, no
    credentials)."""
    try:
        from botocore.exceptions import BotoCoreError  # type: ignore[import-untyped]
    except ImportError:  # no s3fs: nothing raises it
        return (OSError,)
    return (OSError, BotoCoreError)
