"""`examples/mongodb`: the app configured from MONGODB_URL answers like the echo demo."""

from __future__ import annotations

import importlib
import sys

import httpx
import pytest

from chatkit_asgi.testing import parse_sse, user_input

from .conftest import unique_name


async def test_the_example_runs_against_the_database_in_the_environment(
    mongo_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = unique_name("chatkit_example")
    monkeypatch.setenv("MONGODB_URL", mongo_uri)
    monkeypatch.setenv("MONGODB_DATABASE", name)
    monkeypatch.delitem(sys.modules, "examples.mongodb.app", raising=False)
    example = importlib.import_module("examples.mongodb.app")
    monkeypatch.delitem(sys.modules, "examples.mongodb.app")
    body = {"type": "threads.create", "params": {"input": user_input("hi")}}
    try:
        async with example.lifespan(example.app):
            try:
                transport = httpx.ASGITransport(app=example.app)
                async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                    response = await client.post("/chatkit/", json=body)
                assert response.status_code == 200, response.text
                events = parse_sse(response.content)
                done = [e for e in events if e["type"] == "thread.item.done"]
                assert done[-1]["item"]["content"][0]["text"] == "Echo: hi"
                assert example.store.database.name == name
                assert await example.store.database["chatkit_threads"].count_documents({}) == 1
            finally:
                await example.store.database.client.drop_database(name)
    finally:
        await example.store.aclose()  # the lifespan closed it already: a no-op
