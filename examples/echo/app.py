"""The echo assistant: the smallest complete ChatKit backend.

Run it with `make demo` (uvicorn on http://127.0.0.1:8000, endpoint `/chatkit`)
and point the ChatKit UI's `api.url` at http://127.0.0.1:8000/chatkit.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount

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
    """Echo the user's message back, word by word, and title the thread."""
    text = f"Echo: {turn.input_text()}"
    if turn.thread.title is None:
        turn.thread.title = turn.input_text()[:40] or "New chat"

    message = AssistantMessageItem(
        id=turn.new_id("message"),
        thread_id=turn.thread.id,
        created_at=turn.now(),
        content=[AssistantMessageContent(text="")],
    )
    yield ThreadItemAddedEvent(item=message)
    for word in text.split(" "):
        delta = word if word == text.split(" ")[0] else " " + word
        yield ThreadItemUpdatedEvent(
            item_id=message.id,
            update=AssistantMessageContentPartTextDelta(content_index=0, delta=delta),
        )
        await anyio.sleep(0.02)  # so the UI visibly streams
    message.content = [AssistantMessageContent(text=text)]
    yield ThreadItemDoneEvent(item=message)


chatkit = ChatKitApp(
    respond, store=SQLiteStore(os.environ.get("CHATKIT_DB", "chatkit-demo.db")), playground=True
)

app = Starlette(
    routes=[Mount("/chatkit", app=chatkit)],
    middleware=[
        # The ChatKit UI usually runs on another origin during development.
        Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["POST"], allow_headers=["*"])
    ],
    lifespan=chatkit.lifespan,
)
