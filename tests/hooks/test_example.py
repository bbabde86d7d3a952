"""`examples/production`: everything on, configured from the environment."""

from __future__ import annotations

import importlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from chatkit_asgi.testing import parse_sse, user_input

ALICE = {"authorization": "Bearer secret-token-of-alice"}
BOB = {"authorization": "Bearer secret-token-of-bob"}
CREATE = {"type": "threads.create", "params": {"input": user_input("pineapple secret")}}


@pytest.fixture
def load_example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """Imports the example afresh; puts back the logger it configures."""
    library = logging.getLogger("chatkit_asgi")
    saved = (library.level, library.propagate, list(library.handlers))
    monkeypatch.setenv("CHATKIT_DB", str(tmp_path / "chatkit.db"))
    monkeypatch.delenv("MONGODB_URI", raising=False)
    monkeypatch.delenv("OTEL_CONSOLE", raising=False)
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    # Five turns at once, then one per 100 minutes: no refill while a test runs.
    monkeypatch.setenv("CHATKIT_TURNS_PER_MINUTE", "0.01")
    monkeypatch.setenv("CHATKIT_TURN_BURST", "5")

    def load() -> ModuleType:
        monkeypatch.delitem(sys.modules, "examples.production.app", raising=False)
        return importlib.import_module("examples.production.app")

    try:
        yield load
    finally:
        sys.modules.pop("examples.production.app", None)
        library.setLevel(saved[0])
        library.propagate = saved[1]
        library.handlers[:] = saved[2]


def client_of(example: ModuleType) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=example.app)
    return httpx.AsyncClient(transport=transport, base_url="http://api.example.com")


def created(response: httpx.Response) -> bool:
    assert response.status_code == 200, response.text
    return any(e["type"] == "thread.created" for e in parse_sse(response.content))


async def test_the_production_example_limits_logs_and_reports_health(
    load_example: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    example = load_example()
    async with client_of(example) as client:
        anonymous = await client.post("/chatkit/", json=CREATE)
        alice = [await client.post("/chatkit/", json=CREATE, headers=ALICE) for _ in range(6)]
        bob = await client.post("/chatkit/", json=CREATE, headers=BOB)
        health = await client.get("/chatkit/healthz")
        browser = await client.post(
            "/chatkit/", json=CREATE, headers={**BOB, "origin": "http://localhost:5173"}
        )
    await example.chatkit.aclose()

    assert anonymous.status_code == 401
    assert [created(r) for r in alice] == [True] * 5 + [False]  # a burst of 5
    assert parse_sse(alice[-1].content)[0]["type"] == "error"
    assert created(bob)
    assert health.json()["status"] == "ok"
    assert browser.headers["access-control-expose-headers"] == "X-ChatKit-Run-Id"

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    turns = [line for line in lines if line.get("kind") == "turn"]
    assert {t["run_id"] for t in turns} >= {r.headers["x-chatkit-run-id"] for r in alice}
    assert [t["outcome"] for t in turns].count("refused") == 1
    assert all("pineapple" not in json.dumps(line) for line in lines)  # no message contents


async def test_the_production_example_shares_limits_in_mongodb(
    load_example: Any, mongo_uri: str, monkeypatch: pytest.MonkeyPatch, database_name: str
) -> None:
    monkeypatch.setenv("MONGODB_URI", f"{mongo_uri}/{database_name}")
    workers = [load_example(), load_example()]  # two processes' worth of app
    try:
        answers = []
        for n in range(6):
            async with client_of(workers[n % 2]) as client:
                answers.append(await client.post("/chatkit/", json=CREATE, headers=ALICE))
    finally:
        for worker in workers:
            await worker.chatkit.aclose()
        admin: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)
        await admin.drop_database(database_name)
        await admin.close()

    assert [created(r) for r in answers] == [True] * 5 + [False]
