"""Streaming assistant text is checkpointed at a bounded interval, without a write per token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from chatkit_asgi import ChatKitApp, CustomStreamError, Turn
from chatkit_asgi.stores import MemoryStore
from chatkit_asgi.testing import ChatKitTestClient
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    ThreadItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadStreamEvent,
)

ALICE = {"user": "alice"}


class CountingStore(MemoryStore[Any]):
    """A MemoryStore that counts item writes."""

    def __init__(self) -> None:
        super().__init__()
        self.item_writes = 0

    async def add_thread_item(self, thread_id: str, item: ThreadItem, context: Any) -> None:
        self.item_writes += 1
        await super().add_thread_item(thread_id, item, context)


def _message(turn: Turn) -> AssistantMessageItem:
    return AssistantMessageItem(
        id=turn.new_id("message"),
        thread_id=turn.thread.id,
        created_at=turn.now(),
        content=[AssistantMessageContent(text="")],
    )


def _delta(item: AssistantMessageItem, text: str) -> ThreadItemUpdatedEvent:
    return ThreadItemUpdatedEvent(
        item_id=item.id, update=AssistantMessageContentPartTextDelta(content_index=0, delta=text)
    )


async def _stored_items(store: MemoryStore[Any], thread_id: str) -> list[ThreadItem]:
    return (await store.load_thread_items(thread_id, None, 100, "asc", {})).data


async def test_text_in_flight_is_in_the_store_within_the_interval() -> None:
    store = CountingStore()
    checked = anyio.Event()
    observed: list[list[str]] = []

    async def respond(turn: Turn) -> AsyncIterator[ThreadStreamEvent]:
        item = _message(turn)
        yield ThreadItemAddedEvent(item=item)
        yield _delta(item, "Hello")
        yield _delta(item, ", world")
        await anyio.sleep(0.2)  # silence: the checkpoint must still happen
        stored = await _stored_items(store, turn.thread.id)
        observed.append([i.content[0].text for i in stored if isinstance(i, AssistantMessageItem)])
        checked.set()
        item.content = [AssistantMessageContent(text="Hello, world!")]
        yield ThreadItemDoneEvent(item=item)

    app = ChatKitApp(respond, store=store, checkpoint_interval=0.05)
    async with ChatKitTestClient(app) as client:
        events = await client.create_thread("hi")
    assert observed == [["Hello, world"]]
    thread_id = events[0].thread.id  # type: ignore[union-attr]
    final = await _stored_items(store, thread_id)
    assert [type(i).__name__ for i in final] == ["UserMessageItem", "AssistantMessageItem"]
    assert final[1].content[0].text == "Hello, world!"  # type: ignore[union-attr]


async def test_many_fast_tokens_cost_a_handful_of_writes() -> None:
    store = CountingStore()

    async def respond(turn: Turn) -> AsyncIterator[ThreadStreamEvent]:
        item = _message(turn)
        yield ThreadItemAddedEvent(item=item)
        for n in range(2000):
            yield _delta(item, f"t{n} ")
            if n % 100 == 0:
                await anyio.sleep(0.01)  # ~0.2 s of streaming in all
        item.content = [AssistantMessageContent(text="".join(f"t{n} " for n in range(2000)))]
        yield ThreadItemDoneEvent(item=item)

    app = ChatKitApp(respond, store=store, checkpoint_interval=0.05)
    async with ChatKitTestClient(app) as client:
        await client.create_thread("hi")
    # One write for the user message, one for the final answer, and at most one
    # checkpoint per interval in between: never one per token.
    assert 2 <= store.item_writes <= 2 + 10


@pytest.mark.parametrize("ending", ["error", "no done"])
async def test_unfinished_answers_leave_no_checkpoint_behind(ending: str) -> None:
    store = CountingStore()

    async def respond(turn: Turn) -> AsyncIterator[ThreadStreamEvent]:
        item = _message(turn)
        yield ThreadItemAddedEvent(item=item)
        yield _delta(item, "Half an ans")
        await anyio.sleep(0.15)  # long enough for a checkpoint
        if ending == "error":
            raise CustomStreamError("The model gave up")

    app = ChatKitApp(respond, store=store, checkpoint_interval=0.05)
    async with ChatKitTestClient(app) as client:
        events = await client.create_thread("hi")
    assert store.item_writes >= 2  # the checkpoint did happen
    thread_id = events[0].thread.id  # type: ignore[union-attr]
    stored = await _stored_items(store, thread_id)
    assert [type(i).__name__ for i in stored] == ["UserMessageItem"]


async def test_checkpoints_can_be_turned_off() -> None:
    store = CountingStore()

    async def respond(turn: Turn) -> AsyncIterator[ThreadStreamEvent]:
        item = _message(turn)
        yield ThreadItemAddedEvent(item=item)
        yield _delta(item, "Hello")
        await anyio.sleep(0.1)
        item.content = [AssistantMessageContent(text="Hello")]
        yield ThreadItemDoneEvent(item=item)

    app = ChatKitApp(respond, store=store, checkpoint_interval=None)
    async with ChatKitTestClient(app) as client:
        await client.create_thread("hi")
    assert store.item_writes == 2
