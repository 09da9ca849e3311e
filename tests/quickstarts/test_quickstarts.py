"""Each section of docs/quickstarts.md, followed: its model server up (FastAPI for real under
uvicorn; the others as the stand-ins the page names), ``modelmon proxy`` with the section's
config, the section's requests through the proxy, and the capture files decoded by the
analyzer's codecs into the features and predictions the section promises."""

from __future__ import annotations

import codecs
import csv
import importlib.util
import re
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests.quickstarts import standins
from tests.quickstarts.helpers import (
    Section,
    captured,
    local_config,
    modelmon_proxy,
    section,
    start,
    stop,
    wait_ok,
)
from tests.shared_data import DATA

_CURL = re.compile(r"curl (.*?)(?=\ncurl |\Z)", re.S)
_URL = re.compile(r"http://127\.0\.0\.1:8080(\S+)")
_TYPE = re.compile(r"-H 'Content-Type: ([^']+)'")
_DATA = re.compile(r"(?:-d|--data-binary) (\$?)'(.*?)'", re.S)


def doc_requests(part: Section) -> list[tuple[str, str, bytes]]:
    """(path, content type, body) of every ``curl`` of the section, as the shell would send."""
    found = []
    for block in part.blocks["bash"]:
        for command in _CURL.findall(block):
            url, kind, data = _URL.search(command), _TYPE.search(command), _DATA.search(command)
            assert url and kind and data, command
            body = data.group(2)
            if data.group(1):  # bash's $'…': backslash escapes
                body = codecs.decode(body, "unicode_escape")
            found.append((url.group(1), kind.group(1), body.encode()))
    assert found
    return found


async def post_all(proxy: str, requests: list[tuple[str, str, bytes]]) -> list[bytes]:
    answers = []
    async with aiohttp.ClientSession() as session:
        for path, kind, body in requests:
            headers = {"Content-Type": kind}
            async with session.post(proxy + path, data=body, headers=headers) as response:
                assert response.status == 200, await response.text()
                answers.append(await response.read())
    return answers


def reference_rows(n: int) -> list[dict[str, str]]:
    with (DATA / "current_nodrift.csv").open(newline="") as handle:
        return [row for row, _ in zip(csv.DictReader(handle), range(n), strict=False)]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[web.Application], Any]]:
    """Start a stand-in on 127.0.0.1:0; its URL. Stopped after the test."""
    runners: list[web.AppRunner] = []

    async def run(app: web.Application) -> str:
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield run
    for runner in runners:
        await runner.cleanup()


async def test_fastapi_quickstart_with_the_real_server(tmp_path: Path) -> None:
    part = section("FastAPI")
    (tmp_path / "model.py").write_text(part.files["model.py"])
    doc_command = part.command("uvicorn ")
    assert doc_command == "uvicorn model:app --host 127.0.0.1 --port 8081"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    model_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    argv = doc_command.replace("--host 127.0.0.1 --port 8081", f"--fd {listener.fileno()}")
    server = await start(
        [sys.executable, "-m", *argv.split()],
        tmp_path / "uvicorn.log",
        cwd=tmp_path,
        pass_fds=[listener.fileno()],
    )
    listener.close()  # uvicorn holds its own copy
    try:
        await wait_ok(f"{model_url}/openapi.json", server, 30)
        config, proxy = local_config(part.files["modelmon.yaml"], tmp_path, model_url)
        rows = reference_rows(40)
        body = {
            "instances": [
                {"age": int(r["age"]), "income": float(r["income"]), "state": r["state"]}
                for r in rows
            ]
        }
        requests = [*doc_requests(part), ("/predict", "application/json", _json(body))]
        async with modelmon_proxy(config):
            answers = await post_all(proxy, requests)
    finally:
        await stop(server)
    _, batch = captured(config)
    assert not batch.bad and not batch.warnings
    assert batch.n_records == 2 and batch.n_rows == 42
    assert set(batch.columns) == {"age", "income", "state"}
    assert set(batch.predictions) == {"score"}
    assert batch.columns["state"][:2] == ["CA", "TX"]
    assert batch.columns["age"][2:] == [int(r["age"]) for r in rows]
    expected = [s for a in answers for s in _loads(a)["predictions"]]
    assert batch.predictions["score"] == expected


async def test_torchserve_quickstart_with_a_standin(
    tmp_path: Path, serve: Callable[[web.Application], Any]
) -> None:
    part = section("TorchServe")
    model_url = await serve(standins.torchserve_app())
    config, proxy = local_config(part.files["modelmon.yaml"], tmp_path, model_url)
    rows = reference_rows(30)
    lines = "\n".join(f"{r['age']},{r['income']},{r['state']}" for r in rows)
    requests = [*doc_requests(part), ("/predictions/churn", "text/csv", lines.encode())]
    async with modelmon_proxy(config):
        answers = await post_all(proxy, requests)
    _, batch = captured(config)
    assert not batch.bad and not batch.warnings
    assert set(batch.columns) == {"age", "income", "state"} and batch.n_rows == 32
    assert batch.columns["age"][:2] == ["41", "29"]  # CSV values stay text until typed
    assert batch.predictions["score"] == [s for a in answers for s in _loads(a)]
    # The page's handler computes what the stand-in answers.
    handler = _module(tmp_path, "handler.py", part.files["handler.py"])
    assert handler.handle([{"body": requests[0][2]}], None) == [_loads(answers[0])]


async def test_openai_compatible_quickstart_with_a_standin(
    tmp_path: Path, serve: Callable[[web.Application], Any]
) -> None:
    part = section("OpenAI-compatible")
    model_url = await serve(standins.openai_app())
    config, proxy = local_config(part.files["modelmon.yaml"], tmp_path, model_url)
    chat, completion = doc_requests(part)
    streamed = _loads(chat[2])
    streamed["stream"] = True
    async with modelmon_proxy(config):
        answers = await post_all(proxy, [chat, completion, (chat[0], chat[1], _json(streamed))])
    assert answers[2].startswith(b"data: ") and answers[2].endswith(b"data: [DONE]\n\n")
    _, batch = captured(config)
    assert not batch.bad
    assert batch.n_rows == 3
    assert set(batch.columns) == {"model", "temperature", "max_tokens", "prompt_chars"}
    assert batch.columns["prompt_chars"] == [19, 14, 19]
    assert batch.columns["max_tokens"] == [64, 16, 64]
    assert batch.columns["temperature"] == [0.2, None, 0.2]
    assert set(batch.predictions) == {"finish_reason", "prompt_tokens", "completion_tokens"}
    chat_answer, completion_answer = _loads(answers[0]), _loads(answers[1])
    assert batch.predictions["finish_reason"][:2] == [
        chat_answer["choices"][0]["finish_reason"],
        completion_answer["choices"][0]["finish_reason"],
    ]
    assert batch.predictions["completion_tokens"][:2] == [
        chat_answer["usage"]["completion_tokens"],
        completion_answer["usage"]["completion_tokens"],
    ]
    # The streamed answer: its request is a row, its event stream is a counted warning.
    assert batch.predictions["finish_reason"][2] is None
    assert batch.warnings == {"output_payload_not_json": 1}


async def test_mlserver_quickstart_with_a_standin(
    tmp_path: Path, serve: Callable[[web.Application], Any]
) -> None:
    part = section("MLServer")
    assert part.command("mlserver ") == "mlserver start ."
    model_url = await serve(standins.v2_app())
    config, proxy = local_config(part.files["modelmon.yaml"], tmp_path, model_url)
    rows = reference_rows(25)
    tensors = [
        {
            "name": name,
            "shape": [len(rows), 1],
            "datatype": "FP32",
            "data": [float(r[name]) for r in rows],
        }
        for name in ("age", "income")
    ]
    requests = [
        *doc_requests(part),
        ("/v2/models/churn/infer", "application/json", _json({"inputs": tensors})),
    ]
    async with modelmon_proxy(config):
        answers = await post_all(proxy, requests)
    _, batch = captured(config)
    assert not batch.bad and not batch.warnings
    assert set(batch.columns) == {"age", "income"} and set(batch.predictions) == {"score"}
    assert batch.n_rows == 27
    assert batch.columns["income"][:2] == [52000, 31000]
    expected = [s for a in answers for s in _loads(a)["outputs"][0]["data"]]
    assert batch.predictions["score"] == expected


async def test_kserve_quickstart_with_a_standin(
    tmp_path: Path, serve: Callable[[web.Application], Any]
) -> None:
    part = section("KServe")
    assert part.command("python ") == "python model.py"
    model_url = await serve(standins.kserve_v1_app())
    config, proxy = local_config(part.files["modelmon.yaml"], tmp_path, model_url)
    rows = reference_rows(25)
    body = {"instances": [[int(r["age"]), float(r["income"])] for r in rows]}
    requests = [*doc_requests(part), ("/v1/models/churn:predict", "application/json", _json(body))]
    async with modelmon_proxy(config):
        answers = await post_all(proxy, requests)
    _, batch = captured(config)
    assert not batch.bad and not batch.warnings
    assert set(batch.columns) == {"age", "income"} and set(batch.predictions) == {"score"}
    assert batch.n_rows == 27
    assert batch.columns["age"][:2] == [41, 29]
    assert batch.predictions["score"] == [s for a in answers for s in _loads(a)["predictions"]]


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


def _loads(body: bytes) -> Any:
    return orjson.loads(body)


def _module(folder: Path, name: str, text: str) -> Any:
    path = folder / name
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
