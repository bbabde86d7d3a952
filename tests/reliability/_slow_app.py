"""An app whose assistant streams forever, one word every 10 ms (for crash tests)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import anyio

from chatkit_asgi import ChatKitApp, Turn
from chatkit_asgi.stores import SQLiteStore
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadStreamEvent,
)


async def respond(turn: Turn) -> AsyncIterator[ThreadStreamEvent]:
    """'quick' answers at once; anything else streams 'w0 w1 w2 ...' until killed."""
    item = AssistantMessageItem(
        id=turn.new_id("message"),
        thread_id=turn.thread.id,
        created_at=turn.now(),
        content=[AssistantMessageContent(text="")],
    )
    if turn.input_text() == "quick":
        item.content = [AssistantMessageContent(text="done")]
        yield ThreadItemDoneEvent(item=item)
        return
    yield ThreadItemAddedEvent(item=item)
    n = 0
    while True:
        yield ThreadItemUpdatedEvent(
            item_id=item.id,
            update=AssistantMessageContentPartTextDelta(content_index=0, delta=f"w{n} "),
        )
        n += 1
        await anyio.sleep(0.01)


app = ChatKitApp(
    respond,
    # A killed worker's turn lease blocks its thread until it expires: keep that short here.
    store=SQLiteStore(os.environ["CHATKIT_TEST_DB"], lease_ttl=1.5),
    checkpoint_interval=float(os.environ.get("CHATKIT_TEST_CHECKPOINT", "0.2")),
)
