"""The documented limits on what a client may send, and the hook for rate limits.

- body size: `max_body_size` (8 MiB by default) bounds every string too; past it, 413;
- nesting: a body nested deeper than the JSON parser's limit (about 200 levels) is
  400 `invalid_json`, however deep, without recursion trouble;
- pages: `limit` is clamped to `max_page_size` (100 by default); a missing or 0
  `limit` means `page_size` (20); a negative one is 400;
- rate: the context factory runs before anything else and may raise
  `HTTPException(429)`; the client gets 429 `rate_limited` with the headers given.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request

from chatkit_asgi import ChatKitApp, Turn
from chatkit_asgi.stores import MemoryStore
from chatkit_asgi.testing import ChatKitTestClient, user_input
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    ThreadItemDoneEvent,
    ThreadMetadata,
    ThreadStreamEvent,
)

from ._apps import by_user
from .conftest import ALICE


async def echo(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
    yield ThreadItemDoneEvent(
        item=AssistantMessageItem(
            id=turn.new_id("message"),
            thread_id=turn.thread.id,
            created_at=turn.now(),
            content=[AssistantMessageContent(text="echo")],
        )
    )


@pytest.fixture
async def store() -> MemoryStore[Any]:
    """Alice with 150 threads, the first of them with 150 items."""
    store: MemoryStore[Any] = MemoryStore(tenant=by_user)
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    for n in range(150):
        await store.save_thread(
            ThreadMetadata(id=f"thr_{n:04d}", created_at=start + timedelta(seconds=n)), ALICE
        )
    for n in range(150):
        await store.add_thread_item(
            "thr_0000",
            AssistantMessageItem(
                id=f"msg_{n:04d}",
                thread_id="thr_0000",
                created_at=start,
                content=[AssistantMessageContent(text=str(n))],
            ),
            ALICE,
        )
    return store


def alice(request: Request) -> dict[str, str]:
    return {"user": "alice"}


@pytest.mark.parametrize(
    ("limit", "size"),
    [(None, 20), (0, 20), (1, 1), (100, 100), (101, 100), (1000, 100), (2**40, 100)],
)
async def test_limit_is_clamped_to_the_largest_page(
    store: MemoryStore[Any], limit: int | None, size: int
) -> None:
    app = ChatKitApp(echo, store=store, context=alice)
    params = {} if limit is None else {"limit": limit}
    async with ChatKitTestClient(app) as client:
        threads = await client.list_threads(**params)
        items = await client.list_items("thr_0000", **params)
    assert (len(threads.data), threads.has_more) == (size, True)
    assert (len(items.data), items.has_more) == (size, True)


async def test_the_largest_page_is_configurable(store: MemoryStore[Any]) -> None:
    app = ChatKitApp(echo, store=store, context=alice, page_size=5, max_page_size=10)
    async with ChatKitTestClient(app) as client:
        assert len((await client.list_items("thr_0000")).data) == 5
        assert len((await client.list_items("thr_0000", limit=50)).data) == 10
        assert len((await client.get_thread("thr_0000")).items.data) == 5


async def test_a_negative_limit_is_refused(store: MemoryStore[Any]) -> None:
    app = ChatKitApp(echo, store=store, context=alice)
    async with ChatKitTestClient(app) as client:
        response = await client.post({"type": "threads.list", "params": {"limit": -1}})
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_request")


@pytest.mark.parametrize("depth", [150, 250, 1_000, 1_000_000])
async def test_nesting_past_the_parsers_limit_is_invalid_json(depth: int) -> None:
    app = ChatKitApp(echo, store=MemoryStore(), max_body_size=4 * 1024 * 1024)
    body = b'{"type":"threads.list","params":{},"metadata":{"x":' + b"[" * depth
    body += b"]" * depth + b"}}"
    async with ChatKitTestClient(app) as client:
        response = await client.post(body)
    if depth < 190:
        assert response.status_code == 200
    else:
        assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_json")


async def test_strings_are_bounded_by_the_body_limit() -> None:
    store: MemoryStore[Any] = MemoryStore()
    app = ChatKitApp(echo, store=store, max_body_size=1024 * 1024)
    async with ChatKitTestClient(app) as client:
        fits = await client.create_thread("x" * (1024 * 1024 - 200))
        assert fits[-1].type == "thread.item.done"
        too_big = await client.post(
            {"type": "threads.create", "params": {"input": user_input("x" * 1024 * 1024)}}
        )
    assert (too_big.status_code, too_big.json()["error"]["code"]) == (413, "body_too_large")


class RateLimit:
    """A context factory allowing `per_user` requests per user, then 429 (a token bucket
    or a shared counter in Redis would go here)."""

    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self.seen: dict[str, int] = {}

    def __call__(self, request: Request) -> dict[str, str]:
        user = request.headers.get("x-user", "anonymous")
        self.seen[user] = self.seen.get(user, 0) + 1
        if self.seen[user] > self.per_user:
            raise HTTPException(429, "Slow down", headers={"Retry-After": "30"})
        return {"user": user}


async def test_the_context_factory_is_the_rate_limit_hook() -> None:
    store: MemoryStore[Any] = MemoryStore(tenant=by_user)
    app = ChatKitApp(echo, store=store, context=RateLimit(per_user=2))
    async with ChatKitTestClient(app, headers={"x-user": "alice"}) as client:
        events = await client.create_thread("one")
        thread_id = events[0].thread.id  # type: ignore[union-attr]
        await client.add_message(thread_id, "two")
        limited = await client.post(
            {
                "type": "threads.add_user_message",
                "params": {"thread_id": thread_id, "input": user_input("three")},
            }
        )
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "30"
    assert limited.json()["error"] == {
        "code": "rate_limited",
        "message": "Slow down",
        "details": [],
    }
    stored = (await store.load_thread_items(thread_id, None, 100, "asc", ALICE)).data
    assert len(stored) == 4  # nothing of the third message
    assert json.dumps([i.type for i in stored]).count("user_message") == 2
