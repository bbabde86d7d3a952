"""The app the reliability tests run in uvicorn worker processes, set up by environment.

Run it as `uvicorn --factory tests.reliability._apps:make_app`.

- `CHATKIT_TEST_STORE`: `sqlite:<path>`, `mongodb:<uri>#<database>` or
  `sqlalchemy:<url>#<schema>` (the PostgreSQL schema to use, or nothing after `#`).
- `CHATKIT_TEST_PACE`: seconds between streamed words (default 0.02).
- `CHATKIT_TEST_TURN_WAIT`, `CHATKIT_TEST_LEASE_TTL`, `CHATKIT_TEST_CHECKPOINT`:
  the app's `turn_wait`, the store's `lease_ttl`, the `checkpoint_interval`.
- `CHATKIT_TEST_DISCONNECT`: the app's disconnect policy (default `auto`).

The user is whoever the `x-user` header names; stores are partitioned by user.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.requests import Request

from chatkit_asgi import ChatKitApp, Store, Turn
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadStreamEvent,
)


def user_context(request: Request) -> dict[str, str]:
    """The request context: the user named by `x-user`."""
    return {"user": request.headers.get("x-user", "anonymous")}


def by_user(context: dict[str, str]) -> str:
    """The stores' tenant key."""
    return context["user"]


def words(count: int) -> str:
    """What `say <count>` answers: "w0 w1 ... w<count-1> "."""
    return "".join(f"w{n} " for n in range(count))


class Talker:
    """Answers by the message text.

    - `say <n>`: streams n words ("w0 ", "w1 ", ...), one every `pace` seconds, then done;
    - `forever`: streams words until it is cancelled;
    - anything else: "reply to <text>" in one event.
    """

    def __init__(self, pace: float) -> None:
        self.pace = pace

    async def respond(self, turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        text = turn.input_text()
        item = AssistantMessageItem(
            id=turn.new_id("message"),
            thread_id=turn.thread.id,
            created_at=turn.now(),
            content=[AssistantMessageContent(text="")],
        )
        if text != "forever" and not text.startswith("say "):
            item.content = [AssistantMessageContent(text=f"reply to {text}")]
            yield ThreadItemDoneEvent(item=item)
            return
        count = int(text.split()[1]) if text.startswith("say ") else None
        yield ThreadItemAddedEvent(item=item)
        n = 0
        while count is None or n < count:
            await anyio.sleep(self.pace)
            yield ThreadItemUpdatedEvent(
                item_id=item.id,
                update=AssistantMessageContentPartTextDelta(content_index=0, delta=f"w{n} "),
            )
            n += 1
        item.content = [AssistantMessageContent(text=words(n))]
        yield ThreadItemDoneEvent(item=item)


def _store() -> Store[Any]:
    spec = os.environ["CHATKIT_TEST_STORE"]
    kind, _, where = spec.partition(":")
    lease_ttl = float(os.environ.get("CHATKIT_TEST_LEASE_TTL", "30"))
    if kind == "sqlite":
        from chatkit_asgi.stores import SQLiteStore

        return SQLiteStore(where, tenant=by_user, lease_ttl=lease_ttl)
    if kind == "mongodb":
        from chatkit_asgi.stores.mongodb import MongoStore

        uri, _, database = where.partition("#")
        return MongoStore.from_uri(uri, database, tenant=by_user, lease_ttl=lease_ttl)
    if kind == "sqlalchemy":
        from chatkit_asgi.stores.sqlalchemy import SQLAlchemyStore

        url, _, schema = where.partition("#")
        options = {"connect_args": {"server_settings": {"search_path": schema}}} if schema else {}
        return SQLAlchemyStore(url, tenant=by_user, lease_ttl=lease_ttl, engine_options=options)
    raise ValueError(f"unknown store {spec!r}")


def _checkpoint() -> float | None:
    value = os.environ.get("CHATKIT_TEST_CHECKPOINT", "1.0")
    return None if value == "off" else float(value)


def make_app() -> ChatKitApp:
    """The app, as the environment says (`uvicorn --factory tests.reliability._apps:make_app`)."""
    return ChatKitApp(
        Talker(float(os.environ.get("CHATKIT_TEST_PACE", "0.02"))),
        store=_store(),
        context=user_context,
        turn_wait=float(os.environ.get("CHATKIT_TEST_TURN_WAIT", "15")),
        checkpoint_interval=_checkpoint(),
        disconnect=os.environ.get("CHATKIT_TEST_DISCONNECT", "auto"),  # type: ignore[arg-type]
    )
