"""Turn leases: one reply per thread across every worker sharing the database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from starlette.requests import Request

from chatkit_asgi import ChatKitApp, Turn
from chatkit_asgi.stores.mongodb import MongoStore, TurnLeaseLostError
from chatkit_asgi.testing import ChatKitTestClient, ProtocolHTTPError
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    ThreadItemDoneEvent,
    ThreadStreamEvent,
)
from tests.stores._lease_contract import PATIENCE, LeaseContract

from .conftest import by_user, open_client


class TestMongoLeases(LeaseContract):
    """Each store is built over the test's database, like a separate worker."""

    lost_error = TurnLeaseLostError


# -- two apps, one database ---------------------------------------------------------


class Gate:
    """A responder that holds its first reply open until `release` is called."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.released = anyio.Event()
        self.thread_id = ""
        self.replies = 0

    def release(self) -> None:
        self.released.set()

    async def __call__(self, turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        self.replies += 1
        if self.replies == 1:
            self.thread_id = turn.thread.id
            self.started.set()
            await self.released.wait()
        yield ThreadItemDoneEvent(
            item=AssistantMessageItem(
                id=turn.new_id("message"),
                thread_id=turn.thread.id,
                created_at=turn.now(),
                content=[AssistantMessageContent(text=f"reply to {turn.input_text()}")],
            )
        )


def user_context(request: Request) -> dict[str, str]:
    return {"user": request.headers.get("x-user", "anonymous")}


@pytest.fixture
async def second_database(mongo_uri: str, driver: Any, database: Any) -> AsyncIterator[Any]:
    """The test's database through a second client: another worker process's view."""
    async with open_client(mongo_uri, driver) as client:
        yield client[database.name]


def worker_app(database: Any, responder: Any, turn_wait: float) -> ChatKitApp:
    store: MongoStore[Any] = MongoStore(database, tenant=by_user)
    return ChatKitApp(responder, store=store, context=user_context, turn_wait=turn_wait)


async def test_a_second_worker_gets_thread_busy_while_the_first_replies(
    database: Any, second_database: Any
) -> None:
    gate = Gate()
    first = ChatKitTestClient(worker_app(database, gate, turn_wait=1.0), headers={"x-user": "a"})
    second = ChatKitTestClient(
        worker_app(second_database, gate, turn_wait=0.5), headers={"x-user": "a"}
    )
    async with first, second:
        async with anyio.create_task_group() as tg:
            tg.start_soon(first.create_thread, "one")
            with anyio.fail_after(PATIENCE):
                await gate.started.wait()

            with pytest.raises(ProtocolHTTPError) as busy:
                await second.add_message(gate.thread_id, "two")
            assert (busy.value.status, busy.value.code) == (409, "thread_busy")

            gate.release()
        # The first reply finished and freed the turn: the second worker may go now.
        await second.add_message(gate.thread_id, "three")
        items = await second.list_items(gate.thread_id, order="asc")
    texts = [getattr(item.content[0], "text", None) for item in items.data]
    assert texts == ["one", "reply to one", "three", "reply to three"]


async def test_a_second_worker_waits_for_the_turn_then_proceeds(
    database: Any, second_database: Any
) -> None:
    gate = Gate()
    first = ChatKitTestClient(worker_app(database, gate, turn_wait=1.0), headers={"x-user": "a"})
    second = ChatKitTestClient(
        worker_app(second_database, gate, turn_wait=PATIENCE), headers={"x-user": "a"}
    )
    async with first, second:
        async with anyio.create_task_group() as tg:
            tg.start_soon(first.create_thread, "one")
            with anyio.fail_after(PATIENCE):
                await gate.started.wait()
            tg.start_soon(second.add_message, gate.thread_id, "two")
            await anyio.sleep(0.3)  # the second request is now waiting for the turn
            gate.release()
        items = await second.list_items(gate.thread_id, order="asc")
    texts = [getattr(item.content[0], "text", None) for item in items.data]
    # Never interleaved: the whole first reply comes before the second message.
    assert texts == ["one", "reply to one", "two", "reply to two"]
