"""MongoStore fails fast: an unreachable MongoDB answers 503 within the store's timeout.

The client keeps PyMongo's default 30 s server-selection timeout; the store's own
client-side operation timeout (5 s by default, `timeout=`) is what bounds a request.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from chatkit_asgi import ChatKitApp, Turn
from chatkit_asgi.store import StoreUnavailableError
from chatkit_asgi.stores.mongodb import MongoStore
from chatkit_asgi.types import ThreadStreamEvent


async def silent(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
    return
    yield


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def unreachable() -> AsyncIterator[Any]:
    """A database handle on a server that refuses connections; default client settings."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{closed_port()}/", directConnection=True
    )
    try:
        yield client["chatkit"]
    finally:
        await client.close()


async def post(app: Any, body: dict[str, Any]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        return await client.post("/", json=body)


async def test_an_unreachable_mongodb_answers_503_within_the_default_timeout(
    unreachable: Any,
) -> None:
    app = ChatKitApp(silent, store=MongoStore(unreachable))
    started = time.monotonic()
    response = await post(app, {"type": "threads.list", "params": {}})
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_unavailable"
    assert response.headers["retry-after"]
    assert 4.0 < elapsed < 6.5  # the 5 s default, not the client's 30 s


async def test_the_timeout_is_configurable(unreachable: Any) -> None:
    store: MongoStore[Any] = MongoStore(unreachable, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError):
        await store.load_threads(10, None, "asc", None)
    assert time.monotonic() - started < 2.0


async def test_the_health_check_fails_within_the_timeout(unreachable: Any) -> None:
    app = ChatKitApp(silent, store=MongoStore(unreachable, timeout=1.0), health=True)
    transport = httpx.ASGITransport(app=app)
    started = time.monotonic()
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        response = await client.get("/healthz")
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert response.json()["checks"]["store"] == "unavailable"
    assert elapsed < 2.5


async def test_a_turn_may_wait_longer_than_the_timeout(mongo_uri: str) -> None:
    """The timeout bounds each attempt of `acquire_turn`, not its `wait`."""
    store: MongoStore[Any] = MongoStore.from_uri(mongo_uri, "chatkit_timeouts", timeout=0.3)
    try:
        lease = await store.acquire_turn("thr_1", None, wait=0)
        started = time.monotonic()
        with pytest.raises(Exception) as raised:
            await store.acquire_turn("thr_1", None, wait=0.8)
        waited = time.monotonic() - started
        await lease.release()
    finally:
        await store.aclose()
    assert type(raised.value).__name__ == "TurnBusyError"
    assert waited >= 0.75


def test_a_non_positive_timeout_is_refused(unreachable: Any) -> None:
    with pytest.raises(ValueError, match="timeout"):
        MongoStore(unreachable, timeout=0)
