"""Stand-ins for the model servers too heavy to install in CI (docs/quickstarts.md says which):
aiohttp apps that answer the same routes with the same request and response bodies as the
real servers, computing what the quickstart's model computes.

- ``torchserve_app``: TorchServe's inference API, ``POST /predictions/{model}`` (+ ``GET /ping``).
- ``openai_app``: the OpenAI API as vLLM serves it: ``POST /v1/chat/completions`` (also
  streamed, as server-sent events), ``POST /v1/completions``, ``GET /v1/models``.
- ``v2_app``: the Open Inference Protocol (MLServer, KServe V2): ``POST
  /v2/models/{name}/infer`` (+ ``GET /v2/health/ready``).
- ``kserve_v1_app``: KServe's V1 protocol: ``POST /v1/models/{name}:predict``.
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid

from aiohttp import web


def churn_score(age: float, income: float) -> float:
    """The quickstarts' model."""
    return round(min(1.0, max(0.0, 0.5 + (age - 40) / 100 - (income - 50000) / 200000)), 4)


def torchserve_app() -> web.Application:
    async def predictions(request: web.Request) -> web.Response:
        rows = list(csv.reader(io.StringIO(await request.text())))
        return web.json_response([round(0.5 + (float(r[0]) - 40) / 100, 4) for r in rows])

    async def ping(request: web.Request) -> web.Response:
        return web.json_response({"status": "Healthy"})

    app = web.Application()
    app.router.add_post("/predictions/{model}", predictions)
    app.router.add_get("/ping", ping)
    return app


def _usage(prompt: str, completion: str) -> dict[str, int]:
    prompt_tokens, completion_tokens = len(prompt.split()), len(completion.split())
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def openai_app() -> web.Application:
    answer = "Your card is active; no block is recorded on it"

    def head(kind: str, model: str) -> dict[str, object]:
        return {"id": f"{kind}-{uuid.uuid4().hex}", "created": int(time.time()), "model": model}

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        prompt = body["messages"][-1]["content"]
        words = answer.split()[: body.get("max_tokens") or None]
        finish = "length" if len(words) < len(answer.split()) else "stop"
        if body.get("stream"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for i, word in enumerate(words):
                delta = {"index": 0, "delta": {"content": word + " "}, "finish_reason": None}
                if i == len(words) - 1:
                    delta["finish_reason"] = finish
                chunk = {**head("chatcmpl", body["model"]), "object": "chat.completion.chunk"}
                chunk["choices"] = [delta]
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            return response
        text = " ".join(words)
        message = {"role": "assistant", "content": text}
        return web.json_response(
            {
                **head("chatcmpl", body["model"]),
                "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": _usage(prompt, text),
            }
        )

    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        words = answer.split()[: body.get("max_tokens") or None]
        finish = "length" if len(words) < len(answer.split()) else "stop"
        text = " ".join(words)
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return web.json_response(
            {
                **head("cmpl", body["model"]),
                "object": "text_completion",
                "choices": [choice],
                "usage": _usage(body["prompt"], text),
            }
        )

    async def models(request: web.Request) -> web.Response:
        model = {"id": "Qwen/Qwen2.5-0.5B-Instruct", "object": "model", "owned_by": "vllm"}
        return web.json_response({"object": "list", "data": [model]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/v1/models", models)
    return app


def v2_app() -> web.Application:
    async def infer(request: web.Request) -> web.Response:
        body = await request.json()
        tensors = {t["name"]: t["data"] for t in body["inputs"]}
        scores = [churn_score(a, i) for a, i in zip(tensors["age"], tensors["income"], strict=True)]
        output = {
            "name": "score",
            "shape": [len(scores), 1],
            "datatype": "FP32",
            "parameters": {"content_type": "np"},
            "data": scores,
        }
        return web.json_response(
            {
                "model_name": request.match_info["name"],
                "id": body.get("id", str(uuid.uuid4())),
                "parameters": {},
                "outputs": [output],
            }
        )

    async def ready(request: web.Request) -> web.Response:
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/v2/models/{name}/infer", infer)
    app.router.add_get("/v2/health/ready", ready)
    return app


def kserve_v1_app() -> web.Application:
    async def predict(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"predictions": [churn_score(a, i) for a, i in body["instances"]]})

    async def model_ready(request: web.Request) -> web.Response:
        return web.json_response({"name": request.match_info["name"], "ready": True})

    app = web.Application()
    app.router.add_post("/v1/models/{name:[^/:]+}:predict", predict)
    app.router.add_get("/v1/models/{name:[^/:]+}", model_ready)
    return app
