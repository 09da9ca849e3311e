"""A real S3 API for the tests: moto's server (``ThreadedMotoServer``) on 127.0.0.1, port 0.

One server runs per test process (``_s3_server``); the fixture ``s3`` empties it (every
bucket forgotten), points the AWS SDK at it through the environment only (the same way a
user's credentials and endpoint reach s3fs: ``AWS_*`` variables, never modelmon's YAML), and
hands it to the test. ``S3Server.stop()`` / ``start()`` take it down and bring it
back on the same port (moto keeps its buckets in the test process, so nothing stored is lost
across a restart, as with a real store that was unreachable for a while).
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelmon.storage_url import open_url


class S3Server:
    def __init__(self, home: Path) -> None:
        self.home = home  # where the AWS SDK finds no config file of the user's
        self.port = 0
        self._server: Any = None
        self._fs: Any = None

    @property
    def fs(self) -> Any:
        """One s3fs client for the test's own reads and writes (a client costs ~1 s to make)."""
        if self._fs is None:
            self._fs = open_url("s3://any-bucket")[0]
        return self._fs

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        server.start()
        self.port = server.get_host_and_port()[1]
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def reset(self) -> None:
        """Forget every bucket (moto's state lives in this process, shared by the tests)."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def make_bucket(self, name: str) -> None:
        self.fs.mkdir(name)

    def put(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(key, data)

    def objects(self, url: str) -> dict[str, bytes]:
        """Every object under ``url`` (``s3://bucket/prefix``), by key relative to it."""
        fs = self.fs
        fs.invalidate_cache()
        base = url.removeprefix("s3://").rstrip("/")
        found: dict[str, bytes] = {}
        for key in fs.find(base):
            found[str(key)[len(base) + 1 :]] = fs.cat_file(key)
        return found


def aws_environment(endpoint: str, home: Path) -> dict[str, str]:
    """What a user would export: credentials, region, endpoint; no config file of theirs."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_CONFIG_FILE": str(home / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.fixture(scope="session")
def _s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One moto server per test process (an xdist worker is one): importing moto and its S3
    backend costs seconds, and each stop waits out the server's 0.5 s poll. Its environment
    is the same for every test, so the process's s3fs client (``shared_fs``, ~1 s to make)
    is made once, as in a long-running service."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = S3Server(tmp_path_factory.mktemp("aws"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3(_s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """The process's server, emptied: no bucket of an earlier test is left (``reset``). A test
    may ``stop()`` and ``start()`` it; it runs again (same port) for the next test."""
    server = _s3_server
    if server._server is None:  # an earlier test stopped it and failed before its start()
        server.start()
    if server._fs is not None:
        server._fs.invalidate_cache()  # nothing listed by an earlier test
    for name, value in aws_environment(server.endpoint, server.home).items():
        monkeypatch.setenv(name, value)
    server.reset()
    try:
        yield server
    finally:
        if server._server is None:
            server.start()
