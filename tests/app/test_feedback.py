"""`items.feedback`: accepted without `add_feedback`, ids checked either way.

The ChatKit UI's thumbs buttons send `items.feedback` whatever the server does with it,
and openai-chatkit accepts it by default; so a responder without `add_feedback` answers
200 `{}` (the feedback is dropped) rather than refusing it. Unlike the reference, the ids
are still checked: the thread must exist for this user and every item must be a visible
item of that thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request

from chatkit_asgi import ChatKitApp, Turn
from chatkit_asgi.stores import SQLiteStore
from chatkit_asgi.testing import ChatKitTestClient
from chatkit_asgi.types import (
    HiddenContextItem,
    ThreadCreatedEvent,
    ThreadItemDoneEvent,
    ThreadStreamEvent,
)
from tests.streaming._support import assistant_message


def tenant(context: dict[str, str]) -> str:
    return context["user"]


def user(request: Request) -> dict[str, str]:
    return {"user": request.headers.get("x-user", "alice")}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore[Any]]:
    store: SQLiteStore[Any] = SQLiteStore(tmp_path / "chatkit.db", tenant=tenant)
    yield store
    await store.aclose()


async def plain_respond(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
    """A plain function responder: it has no `add_feedback`."""
    yield assistant_message(turn, f"echo: {turn.input_text()}")


class OnlyRespond:
    """An object responder without `add_feedback`."""

    async def respond(self, turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        async for event in plain_respond(turn):
            yield event


class Recording:
    """A responder that records the feedback it gets."""

    def __init__(self) -> None:
        self.feedback: list[tuple[str, list[str], str]] = []

    async def respond(self, turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        yield assistant_message(turn, "recorded")

    def add_feedback(self, turn: Turn[Any], item_ids: list[str], kind: str) -> None:
        self.feedback.append((turn.thread.id, item_ids, kind))


async def new_thread(client: ChatKitTestClient, text: str = "hello") -> tuple[str, list[str]]:
    """A thread with a user message and an answer: its id and the two item ids."""
    events = await client.create_thread(text)
    thread_id = next(e.thread.id for e in events if isinstance(e, ThreadCreatedEvent))
    item_ids = [e.item.id for e in events if isinstance(e, ThreadItemDoneEvent)]
    assert len(item_ids) == 2
    return thread_id, item_ids


async def everything(store: SQLiteStore[Any], context: dict[str, str]) -> list[str]:
    out: list[str] = []
    for thread in (await store.load_threads(100, None, "asc", context)).data:
        out.append(thread.model_dump_json())
        items = await store.load_thread_items(thread.id, None, 100, "asc", context)
        out.extend(item.model_dump_json() for item in items.data)
    return out


def feedback(thread_id: str, item_ids: list[str], kind: str = "positive") -> dict[str, Any]:
    return {
        "type": "items.feedback",
        "params": {"thread_id": thread_id, "item_ids": item_ids, "kind": kind},
    }


@pytest.mark.parametrize("responder", [plain_respond, OnlyRespond()], ids=["function", "object"])
@pytest.mark.parametrize("kind", ["positive", "negative"])
async def test_feedback_without_add_feedback_is_accepted(
    store: SQLiteStore[Any], responder: Any, kind: str
) -> None:
    app = ChatKitApp(responder, store=store, context=user)
    async with ChatKitTestClient(app) as client:
        thread_id, item_ids = await new_thread(client)
        before = await everything(store, {"user": "alice"})

        response = await client.post(feedback(thread_id, item_ids[1:], kind))

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == b"{}"
    assert await everything(store, {"user": "alice"}) == before  # dropped, nothing stored


async def test_feedback_reaches_add_feedback_when_there_is_one(store: SQLiteStore[Any]) -> None:
    responder = Recording()
    app = ChatKitApp(responder, store=store, context=user)
    async with ChatKitTestClient(app) as client:
        thread_id, item_ids = await new_thread(client)
        response = await client.post(feedback(thread_id, item_ids, "negative"))

    assert (response.status_code, response.content) == (200, b"{}")
    assert responder.feedback == [(thread_id, item_ids, "negative")]


@pytest.mark.parametrize("responder", [plain_respond, Recording()], ids=["without", "with"])
async def test_feedback_ids_are_checked_with_or_without_add_feedback(
    store: SQLiteStore[Any], responder: Any
) -> None:
    """Ids must name a thread of this user and visible items of that thread."""
    app = ChatKitApp(responder, store=store, context=user)
    async with (
        ChatKitTestClient(app) as alice,
        ChatKitTestClient(app, headers={"x-user": "bob"}) as bob,
    ):
        thread_id, item_ids = await new_thread(alice)
        _, other_items = await new_thread(alice, "another")
        hidden = HiddenContextItem(
            id="msg_hidden", thread_id=thread_id, created_at=Turn.now(), content="secret"
        )
        await store.add_thread_item(thread_id, hidden, {"user": "alice"})

        cases = [
            (alice, feedback("thr_missing", item_ids), "thread_not_found"),
            (alice, feedback(thread_id, [item_ids[1], "msg_missing"]), "item_not_found"),
            (alice, feedback(thread_id, [other_items[1]]), "item_not_found"),  # other thread
            (alice, feedback(thread_id, [hidden.id]), "item_not_found"),
            (bob, feedback(thread_id, item_ids), "thread_not_found"),  # another user's
        ]
        for client, body, code in cases:
            response = await client.post(body)
            assert response.status_code == 404, body
            assert response.json()["error"]["code"] == code, body

    if isinstance(responder, Recording):
        assert responder.feedback == []  # never called with ids that were refused
