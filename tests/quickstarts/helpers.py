"""Following docs/quickstarts.md: its files and configs by section, ``modelmon proxy`` as a real
subprocess with a section's config (only the ports and the capture folder moved), and the
capture files it wrote, decoded with the analyzer's codecs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from analyzer.decoding.codecs import DecodedBatch, PayloadDecoder
from modelmon.config import ModelmonConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "quickstarts.md"
_BLOCK = re.compile(r"^```(\w+)(?: (\S+))?\n(.*?)^```$", re.M | re.S)
DOC_LISTEN, DOC_UPSTREAM = "127.0.0.1:8080", "http://127.0.0.1:8081"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Section:
    """One ``## `` section of the page: its named files and its unnamed blocks by language."""

    files: dict[str, str]
    blocks: dict[str, list[str]]

    def command(self, starts: str) -> str:
        """The one line of the section's bash blocks that starts with ``starts``."""
        lines = [
            line
            for block in self.blocks.get("bash", [])
            for line in block.splitlines()
            if line.startswith(starts)
        ]
        assert len(lines) == 1, (starts, lines)
        return lines[0]


def section(title: str) -> Section:
    parts = re.split(r"^## ", DOC.read_text(), flags=re.M)
    (text,) = [part for part in parts if part.startswith(title)]
    files: dict[str, str] = {}
    blocks: dict[str, list[str]] = {}
    for language, name, body in _BLOCK.findall(text):
        if name:
            assert name not in files, name
            files[name] = body
        else:
            blocks.setdefault(language, []).append(body)
    return Section(files, blocks)


def local_config(doc_yaml: str, tmp: Path, upstream: str) -> tuple[Path, str]:
    """The section's config with the proxy on a free port, forwarding to ``upstream``, and
    the capture folder in ``tmp``: nothing else changes. (path, proxy URL)."""
    config = yaml.safe_load(doc_yaml)
    assert config["proxy"]["listen"] == DOC_LISTEN
    assert config["proxy"]["upstream"] == DOC_UPSTREAM
    port = free_port()
    config["proxy"].update(listen=f"127.0.0.1:{port}", upstream=upstream)
    config["capture"]["dir"] = str(tmp / "capture")
    path = tmp / "modelmon.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, f"http://127.0.0.1:{port}"


async def pause(seconds: float) -> None:
    """A bounded wait on an event nobody sets: the pacing between polls of a live process."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.Event().wait(), seconds)


async def wait_ok(
    url: str, proc: asyncio.subprocess.Process | None, within_s: float, method: str = "GET"
) -> None:
    """Until ``url`` answers 200 (a server that is starting); fails if ``proc`` exits."""
    deadline = asyncio.get_running_loop().time() + within_s
    last = ""
    async with aiohttp.ClientSession() as session:
        while asyncio.get_running_loop().time() < deadline:
            assert proc is None or proc.returncode is None, f"exited; last answer: {last}"
            with contextlib.suppress(aiohttp.ClientError):
                async with session.request(method, url) as response:
                    last = f"{response.status} {await response.text()}"
                    if response.status == 200:
                        return
            await pause(0.1)
    raise AssertionError(f"{url} not ready within {within_s} s; last answer: {last[:300]}")


async def stop(proc: asyncio.subprocess.Process) -> int:
    """SIGTERM, as a supervisor stops it; its exit status."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), 30)


async def start(argv: list[str], log: Path, **kwargs: Any) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k != "MODELMON_TOKEN"}
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(
            *argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True, **kwargs
        )


@contextlib.asynccontextmanager
async def modelmon_proxy(config: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """``modelmon proxy --config`` running; on exit SIGTERM, which seals every capture file."""
    proc = await start(
        [sys.executable, "-m", "modelmon", "proxy", "--config", str(config)],
        config.with_name("proxy.log"),
    )
    try:
        listen = load_config(config).proxy.listen
        await wait_ok(f"http://{listen}/monitor/proxy/health", proc, 30)
        yield proc
    finally:
        assert await stop(proc) == 0, config.with_name("proxy.log").read_text()[-2000:]


def captured(config_path: Path) -> tuple[ModelmonConfig, DecodedBatch]:
    """Every sealed capture file of the config's endpoint, decoded as the analyzer does."""
    config = load_config(config_path)
    files = sorted(config.capture.dir.rglob("*.jsonl"))
    assert files, f"no sealed capture file under {config.capture.dir}"
    assert not list(config.capture.dir.rglob("*.part"))
    lines = [line for path in files for line in path.read_bytes().splitlines(keepends=True)]
    return config, PayloadDecoder(config.analyzer.payload).decode_lines(lines)
