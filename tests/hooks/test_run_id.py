"""Run ids: every streaming response carries `X-ChatKit-Run-Id`, equal to `Turn.run_id`
and to the `run_id` of the turn's log record and span."""

from __future__ import annotations

import logging
import re

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount

from chatkit_asgi.app import RUN_ID_HEADER
from chatkit_asgi.testing import ChatKitTestClient, user_input

from .conftest import STREAMING_TYPES, Otel, World

RUN_ID = re.compile(r"run_[0-9a-f]{24}")


@pytest.mark.parametrize("request_type", STREAMING_TYPES)
async def test_every_streaming_response_carries_the_turns_run_id(
    world: World, request_type: str
) -> None:
    body, _ = await world.request(request_type)
    async with ChatKitTestClient(world.app()) as client:
        response = await client.post(body)

    assert response.status_code == 200
    run_id = response.headers[RUN_ID_HEADER]
    assert RUN_ID.fullmatch(run_id)
    [turn] = world.responder.turns
    assert turn.run_id == run_id


async def test_each_reply_has_its_own_run_id(world: World) -> None:
    async with ChatKitTestClient(world.app()) as client:
        ids = {
            (
                await client.post({"type": "threads.create", "params": {"input": user_input("hi")}})
            ).headers[RUN_ID_HEADER]
            for _ in range(3)
        }
    assert len(ids) == 3


async def test_non_streaming_responses_have_no_run_id(world: World) -> None:
    async with ChatKitTestClient(world.app()) as client:
        response = await client.post({"type": "threads.list", "params": {}})
    assert RUN_ID_HEADER.lower() not in response.headers


async def test_the_run_id_is_the_one_in_logs_and_traces(
    world: World, otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chatkit_asgi")
    app = world.app(tracer_provider=otel.tracer_provider)
    async with ChatKitTestClient(app) as client:
        response = await client.post(
            {"type": "threads.create", "params": {"input": user_input("hi")}}
        )
    run_id = response.headers[RUN_ID_HEADER]

    logged = {getattr(r, "run_id", None) for r in caplog.records if hasattr(r, "kind")}
    assert logged == {run_id}
    for name in ("chatkit.request", "chatkit.turn"):
        attributes = otel.span(name).attributes
        assert attributes is not None and attributes["chatkit.run.id"] == run_id
    assert world.responder.turns[0].run_id == run_id


async def test_browsers_can_read_the_run_id_when_cors_exposes_it(world: World) -> None:
    app = Starlette(
        routes=[Mount("/chatkit", app=world.app())],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=["https://chat.example.com"],
                allow_methods=["POST"],
                allow_headers=["content-type"],
                expose_headers=[RUN_ID_HEADER],
            )
        ],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        response = await client.post(
            "/chatkit/",
            json={"type": "threads.create", "params": {"input": user_input("hi")}},
            headers={"origin": "https://chat.example.com"},
        )

    assert response.headers["access-control-allow-origin"] == "https://chat.example.com"
    assert response.headers["access-control-expose-headers"] == RUN_ID_HEADER
    assert RUN_ID.fullmatch(response.headers[RUN_ID_HEADER])
