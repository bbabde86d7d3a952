"""`GET {mount}/healthz`: 200 while the store and attachment store answer, else 503."""

from __future__ import annotations

import gc
import shutil
import socket
import warnings
from pathlib import Path
from typing import Any

import anyio
import httpx
from pymongo import AsyncMongoClient
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Mount

from chatkit_asgi import ChatKitApp
from chatkit_asgi.stores import FileSystemAttachmentStore, MemoryStore, SQLiteStore
from chatkit_asgi.stores.mongodb import MongoStore
from tests._mongo_server import _LocalServer

from .conftest import Responder


async def get(app: Any, path: str = "/healthz", method: str = "GET") -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://lb") as client:
        return await client.request(method, path)


def healthy_app(tmp_path: Path, **options: Any) -> ChatKitApp:
    return ChatKitApp(
        Responder(),
        store=SQLiteStore(tmp_path / "chatkit.db"),
        attachment_store=FileSystemAttachmentStore(tmp_path / "files"),
        health=True,
        **options,
    )


async def test_healthy_stores_answer_200(tmp_path: Path) -> None:
    app = healthy_app(tmp_path)
    response = await get(Starlette(routes=[Mount("/chatkit", app=app)]), "/chatkit/healthz")
    head = await get(app, method="HEAD")
    await app.aclose()

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"store": "ok", "attachment_store": "ok"},
    }
    assert response.headers["cache-control"] == "no-store"
    assert head.status_code == 200 and head.content == b""


async def test_a_store_that_cannot_be_reached_answers_503(tmp_path: Path) -> None:
    app = ChatKitApp(Responder(), store=SQLiteStore(tmp_path / "gone" / "chatkit.db"), health=True)
    response = await get(app)

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json() == {"status": "unavailable", "checks": {"store": "unavailable"}}


async def test_an_attachment_store_that_lost_its_disk_answers_503(tmp_path: Path) -> None:
    app = healthy_app(tmp_path)
    assert (await get(app)).status_code == 200
    shutil.rmtree(tmp_path / "files")
    response = await get(app)
    await app.aclose()

    assert response.status_code == 503
    assert response.json()["checks"] == {"store": "ok", "attachment_store": "unavailable"}


async def test_a_store_that_does_not_answer_in_time_is_down() -> None:
    class Hanging(MemoryStore[Any]):
        async def ping(self) -> None:
            await anyio.sleep(60)

    app = ChatKitApp(Responder(), store=Hanging(), health=True, health_timeout=0.2)
    with anyio.fail_after(10):
        response = await get(app)

    assert response.status_code == 503
    assert response.json()["checks"] == {"store": "timeout"}


async def test_the_health_route_skips_the_context_factory(tmp_path: Path) -> None:
    def authenticated(request: Request) -> Any:
        raise HTTPException(401, "who are you?")

    app = healthy_app(tmp_path, context=authenticated)
    response = await get(app)
    await app.aclose()
    assert response.status_code == 200


async def test_no_health_route_unless_asked(tmp_path: Path) -> None:
    app = ChatKitApp(Responder(), store=MemoryStore())
    response = await get(app)
    assert response.status_code == 404


async def test_a_stopped_mongodb_answers_503() -> None:
    """A MongoDB server of this test's own: up, then stopped."""
    server = _LocalServer()
    uri = server.acquire()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        uri, serverSelectionTimeoutMS=500, connectTimeoutMS=500
    )
    try:
        app = ChatKitApp(
            Responder(), store=MongoStore(client["chatkit_health"]), health=True, health_timeout=5
        )
        up = await get(app)
        server.release()  # stops the server
        with anyio.fail_after(20):
            down = await get(app)
    finally:
        server.release()
        await client.close()
        # PyMongo's monitor may be reconnecting to the stopped server while the client
        # closes, and rarely leaves that socket to the garbage collector: let its
        # cancelled tasks finish, then collect it here.
        await anyio.sleep(0.2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()

    assert up.status_code == 200
    assert down.status_code == 503
    assert down.json()["checks"]["store"] in ("unavailable", "timeout")


async def test_a_closed_mongodb_store_answers_503(mongo_uri: str) -> None:
    store: MongoStore[Any] = MongoStore.from_uri(mongo_uri, "chatkit_health")
    app = ChatKitApp(Responder(), store=store, health=True)
    up = await get(app)
    await store.aclose()
    down = await get(app)

    assert up.status_code == 200
    assert down.status_code == 503


async def test_an_unreachable_mongodb_answers_503() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{port}", serverSelectionTimeoutMS=300, connectTimeoutMS=300
    )
    try:
        app = ChatKitApp(Responder(), store=MongoStore(client["chatkit"]), health=True)
        response = await get(app)
    finally:
        await client.close()

    assert response.status_code == 503
