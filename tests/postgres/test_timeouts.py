"""SQLAlchemyStore fails fast: an unreachable database answers 503 within the timeout.

Two kinds of outage: a port that refuses connections (fails at once), and a server
that accepts the connection but never answers (the 5 s default `timeout` bounds it).
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from chatkit_asgi import ChatKitApp, Turn
from chatkit_asgi.store import StoreUnavailableError
from chatkit_asgi.stores.sqlalchemy import SQLAlchemyStore
from chatkit_asgi.types import ThreadStreamEvent


async def silent(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
    return
    yield


@pytest.fixture
def refused_url() -> str:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return f"postgresql://chatkit@127.0.0.1:{port}/chatkit"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A port whose connections are accepted by the kernel and never answered."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"postgresql://chatkit@127.0.0.1:{sock.getsockname()[1]}/chatkit"


async def post(app: Any, body: dict[str, Any]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        return await client.post("/", json=body)


async def test_a_refused_connection_answers_503_at_once(refused_url: str) -> None:
    store: SQLAlchemyStore[Any] = SQLAlchemyStore(refused_url)
    app = ChatKitApp(silent, store=store)
    started = time.monotonic()
    response = await post(app, {"type": "threads.list", "params": {}})
    elapsed = time.monotonic() - started
    await store.aclose()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_unavailable"
    assert response.headers["retry-after"]
    assert elapsed < 2.0


async def test_a_silent_server_answers_503_within_the_default_timeout(silent_url: str) -> None:
    store: SQLAlchemyStore[Any] = SQLAlchemyStore(silent_url)
    app = ChatKitApp(silent, store=store)
    started = time.monotonic()
    response = await post(app, {"type": "threads.list", "params": {}})
    elapsed = time.monotonic() - started
    await store.aclose()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_unavailable"
    assert 4.0 < elapsed < 6.5  # the 5 s default


async def test_the_timeout_is_configurable(silent_url: str) -> None:
    store: SQLAlchemyStore[Any] = SQLAlchemyStore(silent_url, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError):
        await store.load_threads(10, None, "asc", None)
    assert time.monotonic() - started < 2.0
    await store.aclose()


async def test_the_health_check_fails_within_the_timeout(silent_url: str) -> None:
    store: SQLAlchemyStore[Any] = SQLAlchemyStore(silent_url, timeout=1.0)
    app = ChatKitApp(silent, store=store, health=True)
    transport = httpx.ASGITransport(app=app)
    started = time.monotonic()
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        response = await client.get("/healthz")
    elapsed = time.monotonic() - started
    await store.aclose()
    assert response.status_code == 503
    assert response.json()["checks"]["store"] == "unavailable"
    assert elapsed < 2.5


async def test_a_slow_statement_is_cut_at_the_timeout(make_store: Any) -> None:
    store: SQLAlchemyStore[Any] = make_store(timeout=1.0)
    await store.ping()
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError):
        async with store._bounded(), store.engine.connect() as conn:
            await conn.execute(text("SELECT pg_sleep(10)"))
    assert time.monotonic() - started < 2.5
    # The pool is still usable afterwards.
    await store.ping()
    assert (await store.load_threads(1, None, "asc", {"user": "alice"})).data == []


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="timeout"):
        SQLAlchemyStore("sqlite+aiosqlite:///x.db", timeout=0)
    with pytest.raises(ValueError, match="lease_ttl"):
        SQLAlchemyStore("sqlite+aiosqlite:///x.db", lease_ttl=0)
    with pytest.raises(ValueError, match="table_prefix"):
        SQLAlchemyStore("sqlite+aiosqlite:///x.db", table_prefix="x; drop")
