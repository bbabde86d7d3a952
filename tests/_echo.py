"""The responder of tests that only need some reply: `echo: <the user's text>`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from chatkit_asgi import Turn
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    ThreadItemDoneEvent,
    ThreadStreamEvent,
)


async def echo(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
    """One finished assistant message: `echo: ` and the input's text."""
    yield ThreadItemDoneEvent(
        item=AssistantMessageItem(
            id=turn.new_id("message"),
            thread_id=turn.thread.id,
            created_at=turn.now(),
            content=[AssistantMessageContent(text=f"echo: {turn.input_text()}")],
        )
    )
