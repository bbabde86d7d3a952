"""chatkit-asgi: `ChatKitApp` mounted in Starlette as the README shows.

`memory_app` uses `MemoryStore`, `sqlite_app` uses `SQLiteStore` on the file named by
`BENCH_DB` (a fresh temporary file by default), `postgres_app` uses `SQLAlchemyStore`
on `BENCH_POSTGRES_URL` with fresh tables (prefix `BENCH_TABLE_PREFIX`). Everything
else is the library's defaults: heartbeats, buffer, checkpoints, turn locks.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.routing import Mount

from chatkit_asgi import ChatKitApp, Turn
from chatkit_asgi.store import Store
from chatkit_asgi.stores import MemoryStore, SQLiteStore
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageContentPartAdded,
    AssistantMessageContentPartDone,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadStreamEvent,
)

from ..workload import DELTA_TEXTS, FULL_TEXT, WAIT_SECONDS, mode_of


async def respond(turn: Turn) -> AsyncIterator[ThreadStreamEvent]:
    text = turn.input_text()
    mode = mode_of(text)
    message = AssistantMessageItem(
        id=turn.new_id("message"),
        thread_id=turn.thread.id,
        created_at=turn.now(),
        content=[],
    )
    if mode == "deltas":
        yield ThreadItemAddedEvent(item=message)
        yield ThreadItemUpdatedEvent(
            item_id=message.id,
            update=AssistantMessageContentPartAdded(
                content_index=0, content=AssistantMessageContent(text="")
            ),
        )
        for delta in DELTA_TEXTS:
            yield ThreadItemUpdatedEvent(
                item_id=message.id,
                update=AssistantMessageContentPartTextDelta(content_index=0, delta=delta),
            )
        done = AssistantMessageContent(text=FULL_TEXT)
        yield ThreadItemUpdatedEvent(
            item_id=message.id,
            update=AssistantMessageContentPartDone(content_index=0, content=done),
        )
        message.content = [done]
        yield ThreadItemDoneEvent(item=message)
    elif mode == "wait":
        yield ThreadItemAddedEvent(item=message)
        await anyio.sleep(WAIT_SECONDS)
    else:
        message.content = [AssistantMessageContent(text=f"Echo: {text}")]
        yield ThreadItemDoneEvent(item=message)


def _app(store: Store[Any]) -> Starlette:
    chatkit = ChatKitApp(respond, store=store)
    return Starlette(routes=[Mount("/chatkit", app=chatkit)], lifespan=chatkit.lifespan)


def _db_path() -> str:
    path = os.environ.get("BENCH_DB")
    if path:
        return path
    fd, path = tempfile.mkstemp(prefix="chatkit-bench-", suffix=".db")
    os.close(fd)
    os.unlink(path)
    return path


def memory_app() -> Starlette:
    return _app(MemoryStore())


def sqlite_app() -> Starlette:
    return _app(SQLiteStore(_db_path()))


def postgres_app() -> Starlette:
    """`SQLAlchemyStore` on `BENCH_POSTGRES_URL`, tables prefixed `BENCH_TABLE_PREFIX`."""
    from chatkit_asgi.stores.sqlalchemy import SQLAlchemyStore

    store: SQLAlchemyStore[Any] = SQLAlchemyStore(
        os.environ["BENCH_POSTGRES_URL"],
        table_prefix=os.environ.get("BENCH_TABLE_PREFIX", "chatkit_"),
    )
    return _app(store)
