"""The reference: openai-chatkit 1.6.5's `ChatKitServer` behind the endpoint its docs show.

The store keeps every model as JSON and decodes on load, like chatkit-asgi's
`MemoryStore`, so both sides pay for the same isolation of stored objects.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from chatkit.server import ChatKitServer, StreamingResult
    from chatkit.store import NotFoundError, Store
    from chatkit.types import (
        AssistantMessageContent,
        AssistantMessageContentPartAdded,
        AssistantMessageContentPartDone,
        AssistantMessageContentPartTextDelta,
        AssistantMessageItem,
        Attachment,
        Page,
        ThreadItem,
        ThreadItemAddedEvent,
        ThreadItemDoneEvent,
        ThreadItemUpdatedEvent,
        ThreadMetadata,
        ThreadStreamEvent,
        UserMessageItem,
    )

from ..workload import DELTA_TEXTS, FULL_TEXT, WAIT_SECONDS, mode_of

Context = dict[str, Any]
_ITEMS: TypeAdapter[ThreadItem] = TypeAdapter(ThreadItem)
_ATTACHMENTS: TypeAdapter[Attachment] = TypeAdapter(Attachment)
_THREAD_FIELDS = set(ThreadMetadata.model_fields)


class JSONMemoryStore(Store[Context]):
    """In memory, every model stored as JSON: the reference's equivalent of `MemoryStore`."""

    def __init__(self) -> None:
        self.threads: dict[str, str] = {}
        self.items: dict[str, dict[str, str]] = {}
        self.attachments: dict[str, str] = {}

    async def load_thread(self, thread_id: str, context: Context) -> ThreadMetadata:
        if thread_id not in self.threads:
            raise NotFoundError(f"thread {thread_id} not found")
        return ThreadMetadata.model_validate_json(self.threads[thread_id])

    async def save_thread(self, thread: ThreadMetadata, context: Context) -> None:
        self.threads[thread.id] = thread.model_dump_json(include=_THREAD_FIELDS)
        self.items.setdefault(thread.id, {})

    async def load_threads(
        self, limit: int, after: str | None, order: str, context: Context
    ) -> Page[ThreadMetadata]:
        ids = list(self.threads)
        if order == "desc":
            ids.reverse()
        start = _start(ids, after)
        window = ids[start : start + limit + 1]
        kept = window[:limit]
        return Page(
            data=[ThreadMetadata.model_validate_json(self.threads[i]) for i in kept],
            has_more=len(window) > limit,
            after=kept[-1] if kept and len(window) > limit else None,
        )

    async def delete_thread(self, thread_id: str, context: Context) -> None:
        if self.threads.pop(thread_id, None) is None:
            raise NotFoundError(f"thread {thread_id} not found")
        self.items.pop(thread_id, None)

    def _items(self, thread_id: str) -> dict[str, str]:
        if thread_id not in self.items:
            raise NotFoundError(f"thread {thread_id} not found")
        return self.items[thread_id]

    async def load_thread_items(
        self, thread_id: str, after: str | None, limit: int, order: str, context: Context
    ) -> Page[ThreadItem]:
        items = self._items(thread_id)
        ids = list(items)
        if order == "desc":
            ids.reverse()
        start = _start(ids, after)
        window = ids[start : start + limit + 1]
        kept = window[:limit]
        return Page(
            data=[_ITEMS.validate_json(items[i]) for i in kept],
            has_more=len(window) > limit,
            after=kept[-1] if kept and len(window) > limit else None,
        )

    async def add_thread_item(self, thread_id: str, item: ThreadItem, context: Context) -> None:
        self._items(thread_id)[item.id] = item.model_dump_json()

    async def save_item(self, thread_id: str, item: ThreadItem, context: Context) -> None:
        self._items(thread_id)[item.id] = item.model_dump_json()

    async def load_item(self, thread_id: str, item_id: str, context: Context) -> ThreadItem:
        items = self._items(thread_id)
        if item_id not in items:
            raise NotFoundError(f"item {item_id} not found")
        return _ITEMS.validate_json(items[item_id])

    async def delete_thread_item(self, thread_id: str, item_id: str, context: Context) -> None:
        self.items.get(thread_id, {}).pop(item_id, None)

    async def save_attachment(self, attachment: Attachment, context: Context) -> None:
        self.attachments[attachment.id] = attachment.model_dump_json()

    async def load_attachment(self, attachment_id: str, context: Context) -> Attachment:
        if attachment_id not in self.attachments:
            raise NotFoundError(f"attachment {attachment_id} not found")
        return _ATTACHMENTS.validate_json(self.attachments[attachment_id])

    async def delete_attachment(self, attachment_id: str, context: Context) -> None:
        self.attachments.pop(attachment_id, None)


def _start(ids: list[str], after: str | None) -> int:
    if after is None:
        return 0
    if after not in ids:
        raise NotFoundError(f"{after} not found")
    return ids.index(after) + 1


class BenchServer(ChatKitServer[Context]):
    """The bench responder (see `bench.workload`), written against the reference's API."""

    async def respond(
        self, thread: ThreadMetadata, input_user_message: UserMessageItem | None, context: Context
    ) -> AsyncIterator[ThreadStreamEvent]:
        text = ""
        if input_user_message is not None:
            text = "".join(
                part.text for part in input_user_message.content if part.type == "input_text"
            )
        mode = mode_of(text)
        message = AssistantMessageItem(
            id=self.store.generate_item_id("message", thread, context),
            thread_id=thread.id,
            created_at=datetime.now(),
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
            await asyncio.sleep(WAIT_SECONDS)
        else:
            message.content = [AssistantMessageContent(text=f"Echo: {text}")]
            yield ThreadItemDoneEvent(item=message)


server = BenchServer(JSONMemoryStore())


async def chatkit_endpoint(request: Request) -> Response:
    # As in openai-chatkit's documentation.
    result = await server.process(await request.body(), {})
    if isinstance(result, StreamingResult):
        return StreamingResponse(result, media_type="text/event-stream")
    return Response(content=result.json, media_type="application/json")


app = Starlette(routes=[Route("/chatkit", chatkit_endpoint, methods=["POST"])])
