"""The echo assistant over MongoDB: any number of workers, one database.

Configured from the environment::

    MONGODB_URL="mongodb://localhost:27017/chatkit?replicaSet=rs0" \
        uvicorn examples.mongodb.app:app --workers 4

`MONGODB_URL` (or `MONGODB_URI`) is a MongoDB connection string (a replica set or
Atlas for transactions; the database named in it is used, else "chatkit", or set
`MONGODB_DATABASE`). Every worker shares threads, and a turn lease in the database
keeps two workers from replying on one thread at once.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount

from chatkit_asgi import ChatKitApp, Turn
from chatkit_asgi.stores.mongodb import MongoStore
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    ThreadItemDoneEvent,
    ThreadStreamEvent,
)


async def respond(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
    """Echo the user's message and title the thread with it."""
    if turn.thread.title is None:
        turn.thread.title = turn.input_text()[:40] or "New chat"
    yield ThreadItemDoneEvent(
        item=AssistantMessageItem(
            id=turn.new_id("message"),
            thread_id=turn.thread.id,
            created_at=turn.now(),
            content=[AssistantMessageContent(text=f"Echo: {turn.input_text()}")],
        )
    )


# The store owns its client and closes it on shutdown (`chatkit.lifespan`). To give
# each user their own threads, pass `tenant=lambda ctx: ctx["user_id"]` here and a
# `context=` factory to ChatKitApp that reads the authenticated user.
store: MongoStore[Any] = MongoStore.from_uri(
    os.environ.get("MONGODB_URL")
    or os.environ.get("MONGODB_URI", "mongodb://localhost:27017/chatkit"),
    os.environ.get("MONGODB_DATABASE") or None,
)
chatkit = ChatKitApp(respond, store=store)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Create the indexes at startup (a no-op when they exist), close the client at exit."""
    await store.ensure_indexes()
    async with chatkit.lifespan(app):
        yield


app = Starlette(routes=[Mount("/chatkit", app=chatkit)], lifespan=lifespan)
