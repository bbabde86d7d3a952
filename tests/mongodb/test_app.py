"""The engine end to end over MongoStore: what the ChatKit UI does, through both drivers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.requests import Request

from chatkit_asgi import ChatKitApp, Turn
from chatkit_asgi.stores.mongodb import MongoStore
from chatkit_asgi.testing import ChatKitTestClient, ProtocolHTTPError
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    ThreadCreatedEvent,
    ThreadItemDoneEvent,
    ThreadStreamEvent,
    UserMessageItem,
)

from .conftest import by_user, open_client


async def echo(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
    if turn.thread.title is None:
        turn.thread.title = turn.input_text()
    yield ThreadItemDoneEvent(
        item=AssistantMessageItem(
            id=turn.new_id("message"),
            thread_id=turn.thread.id,
            created_at=turn.now(),
            content=[AssistantMessageContent(text=f"echo: {turn.input_text()}")],
        )
    )


def user_context(request: Request) -> dict[str, str]:
    return {"user": request.headers.get("x-user", "anonymous")}


@pytest.fixture
def app(database: Any) -> ChatKitApp:
    return ChatKitApp(
        echo, store=MongoStore(database, tenant=by_user), context=user_context, page_size=3
    )


@pytest.fixture
async def alice(app: ChatKitApp) -> AsyncIterator[ChatKitTestClient]:
    async with ChatKitTestClient(app, headers={"x-user": "alice"}) as client:
        yield client


@pytest.fixture
async def bob(app: ChatKitApp) -> AsyncIterator[ChatKitTestClient]:
    async with ChatKitTestClient(app, headers={"x-user": "bob"}) as client:
        yield client


def texts(items: list[Any]) -> list[str]:
    return [
        part.text
        for item in items
        if isinstance(item, (UserMessageItem, AssistantMessageItem))
        for part in item.content
    ]


async def test_a_conversation_from_create_to_delete(
    alice: ChatKitTestClient, bob: ChatKitTestClient
) -> None:
    events = await alice.create_thread("hello")
    created = events[0]
    assert isinstance(created, ThreadCreatedEvent)
    thread_id = created.thread.id
    assert texts([e.item for e in events if isinstance(e, ThreadItemDoneEvent)]) == [
        "hello",
        "echo: hello",
    ]
    await alice.add_message(thread_id, "again")

    thread = await alice.get_thread(thread_id)
    assert thread.title == "hello"
    assert texts(thread.items.data) == ["hello", "echo: hello", "again"]  # page_size=3
    assert thread.items.has_more

    first = await alice.list_items(thread_id, order="asc", limit=3)
    rest = await alice.list_items(thread_id, order="asc", after=first.after)
    assert texts(first.data + rest.data) == ["hello", "echo: hello", "again", "echo: again"]
    newest = await alice.list_items(thread_id, order="desc", limit=1)
    assert texts(newest.data) == ["echo: again"]

    await alice.create_thread("second")
    listed = await alice.list_threads()
    assert [t.title for t in listed.data] == ["second", "hello"]  # newest first
    assert (await bob.list_threads()).data == []
    with pytest.raises(ProtocolHTTPError) as hidden:
        await bob.get_thread(thread_id)
    assert hidden.value.status == 404

    await alice.call("threads.delete", thread_id=thread_id)
    with pytest.raises(ProtocolHTTPError) as gone:
        await alice.get_thread(thread_id)
    assert (gone.value.status, gone.value.code) == (404, "thread_not_found")
    assert [t.title for t in (await alice.list_threads()).data] == ["second"]


async def test_renaming_a_thread_keeps_its_items(alice: ChatKitTestClient) -> None:
    events = await alice.create_thread("hello")
    assert isinstance(events[0], ThreadCreatedEvent)
    thread_id = events[0].thread.id
    await alice.call("threads.update", thread_id=thread_id, title="Renamed")
    thread = await alice.get_thread(thread_id)
    assert thread.title == "Renamed"
    assert texts(thread.items.data) == ["hello", "echo: hello"]


async def test_an_unreachable_database_answers_503_store_unavailable() -> None:
    # Through motor: PyMongo's async client leaves the socket of a failed connection
    # attempt to the garbage collector (PyMongo 4.20, upstream PYTHON-3923), and the
    # app's log record of the outage keeps it alive into later tests.
    unreachable = "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200&connectTimeoutMS=200"
    async with open_client(unreachable, "motor") as client:
        app = ChatKitApp(
            echo, store=MongoStore(client["chatkit"], tenant=by_user), context=user_context
        )
        async with ChatKitTestClient(app, headers={"x-user": "alice"}) as alice:
            with pytest.raises(ProtocolHTTPError) as refused:
                await alice.list_threads()
    assert (refused.value.status, refused.value.code) == (503, "store_unavailable")
