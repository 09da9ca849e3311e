"""The OpenAPI document: served, complete (every route documented) and true (the live
status, a run and an error validate against it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator

from analyzer.service.app import create_app, monitor_of
from tests.analyzer.service_helpers import T0, Clock, make_config, write_baseline, write_traffic

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


def _validator(document: dict[str, Any], name: str) -> Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


async def test_every_route_is_documented_and_the_document_is_served(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    app = create_app(make_config(tmp_path, None), run_loop=False)
    client = await aiohttp_client(app)
    response = await client.get("/monitor/openapi.json")
    assert response.status == 200
    document = await response.json()
    assert document["openapi"].startswith("3.1")
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    assert routes == documented
    for name in document["components"]["schemas"]:
        _validator(document, name)


@pytest.mark.parametrize("source", ["current_nodrift.csv", "current_covariate.csv"])
async def test_live_documents_validate_against_the_schema(
    aiohttp_client: Client, tmp_path: Path, source: str
) -> None:
    config = make_config(tmp_path, write_baseline(tmp_path / "baseline"))
    clock = Clock(T0 + timedelta(minutes=59))
    app = create_app(config, clock=clock, run_loop=False, report_grace_s=0)
    client = await aiohttp_client(app)
    document = await (await client.get("/monitor/openapi.json")).json()
    status_schema = _validator(document, "Status")

    status_schema.validate(await (await client.get("/monitor/status")).json())  # before any run
    write_traffic(config.capture.dir, source, 800, T0 + timedelta(minutes=5))
    await monitor_of(app).tick()
    clock.set(T0 + timedelta(hours=1, minutes=1))
    await monitor_of(app).tick()
    status = await (await client.get("/monitor/status")).json()
    status_schema.validate(status)
    expected = "alert" if source == "current_covariate.csv" else "ok"
    assert status["monitors"]["data_quality"]["state"] in (expected, "warning")

    runs = (await (await client.get("/monitor/runs")).json())["runs"]
    for run in runs:
        _validator(document, "RunSummary").validate(run)
        detail = await (await client.get(f"/monitor/runs/{run['id']}")).json()
        _validator(document, "Run").validate(detail)
    _validator(document, "Health").validate(await (await client.get("/monitor/health")).json())
    _validator(document, "Error").validate(await (await client.get("/monitor/runs/0")).json())
    bad = dict(status, state="sideways")
    assert not status_schema.is_valid(bad)
