"""The reference side: openai-chatkit 1.6.5's `ChatKitServer`, driven by a `Script`.

Only tests import this module. The reference is used as a black box through
`server.process(body, context)`, exactly as an integrator would call it; the
store and attachment store below are ours, written against its `Store` ABC.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter

with warnings.catch_warnings():
    # Importing the reference's widget module warns about its own deprecated classes.
    warnings.simplefilter("ignore", DeprecationWarning)
    from chatkit.actions import Action
    from chatkit.errors import CustomStreamError, ErrorCode, StreamError
    from chatkit.server import ChatKitServer, NonStreamingResult, StreamingResult
    from chatkit.store import AttachmentStore, NotFoundError, Store
    from chatkit.types import (
        Attachment,
        AttachmentCreateParams,
        AudioInput,
        FeedbackKind,
        Page,
        StreamOptions,
        SyncCustomActionResponse,
        ThreadItem,
        ThreadMetadata,
        ThreadStreamEvent,
        TranscriptionResult,
        UserMessageItem,
        WidgetItem,
    )

from ._script import Outcome, Script, Side, attachment_json, dump, split_sse

__all__ = [
    "ChatKitServer",
    "NotFoundError",
    "RefAttachmentStore",
    "RefMemoryStore",
    "RefServer",
    "RefSide",
    "StreamingResult",
]

_EVENTS: TypeAdapter[ThreadStreamEvent] = TypeAdapter(ThreadStreamEvent)
_ITEMS: TypeAdapter[ThreadItem] = TypeAdapter(ThreadItem)
_ATTACHMENTS: TypeAdapter[Attachment] = TypeAdapter(Attachment)


class RefMemoryStore(Store[dict[str, Any]]):
    """A simple, correct in-memory store for the reference.

    Items keep insertion order; adding an existing id updates it in place. Every
    model is kept as JSON so nothing is shared with the caller. Pages carry
    `after` only when `has_more`, like the reference's own test store.
    """

    def __init__(self) -> None:
        self.threads: dict[str, str] = {}
        self.items: dict[str, dict[str, str]] = {}
        self.attachments: dict[str, str] = {}

    async def load_thread(self, thread_id: str, context: dict[str, Any]) -> ThreadMetadata:
        if thread_id not in self.threads:
            raise NotFoundError(f"thread {thread_id} not found")
        return ThreadMetadata.model_validate_json(self.threads[thread_id])

    async def save_thread(self, thread: ThreadMetadata, context: dict[str, Any]) -> None:
        fields = set(ThreadMetadata.model_fields)
        self.threads[thread.id] = thread.model_dump_json(include=fields)
        self.items.setdefault(thread.id, {})

    async def load_threads(
        self, limit: int, after: str | None, order: str, context: dict[str, Any]
    ) -> Page[ThreadMetadata]:
        ids = list(self.threads)
        if order == "desc":
            ids.reverse()
        start = _start(ids, after)
        window = ids[start : start + limit + 1]
        kept = window[:limit]
        has_more = len(window) > limit
        return Page(
            data=[ThreadMetadata.model_validate_json(self.threads[i]) for i in kept],
            has_more=has_more,
            after=kept[-1] if kept and has_more else None,
        )

    async def delete_thread(self, thread_id: str, context: dict[str, Any]) -> None:
        if self.threads.pop(thread_id, None) is None:
            raise NotFoundError(f"thread {thread_id} not found")
        self.items.pop(thread_id, None)

    def _items(self, thread_id: str) -> dict[str, str]:
        if thread_id not in self.items:
            raise NotFoundError(f"thread {thread_id} not found")
        return self.items[thread_id]

    async def load_thread_items(
        self, thread_id: str, after: str | None, limit: int, order: str, context: dict[str, Any]
    ) -> Page[ThreadItem]:
        items = self._items(thread_id)
        ids = list(items)
        if order == "desc":
            ids.reverse()
        start = _start(ids, after)
        window = ids[start : start + limit + 1]
        kept = window[:limit]
        has_more = len(window) > limit
        return Page(
            data=[_ITEMS.validate_json(items[i]) for i in kept],
            has_more=has_more,
            after=kept[-1] if kept and has_more else None,
        )

    async def add_thread_item(
        self, thread_id: str, item: ThreadItem, context: dict[str, Any]
    ) -> None:
        self._items(thread_id)[item.id] = item.model_dump_json()

    async def save_item(self, thread_id: str, item: ThreadItem, context: dict[str, Any]) -> None:
        self._items(thread_id)[item.id] = item.model_dump_json()

    async def load_item(self, thread_id: str, item_id: str, context: dict[str, Any]) -> ThreadItem:
        items = self._items(thread_id)
        if item_id not in items:
            raise NotFoundError(f"item {item_id} not found")
        return _ITEMS.validate_json(items[item_id])

    async def delete_thread_item(
        self, thread_id: str, item_id: str, context: dict[str, Any]
    ) -> None:
        self.items.get(thread_id, {}).pop(item_id, None)

    async def save_attachment(self, attachment: Attachment, context: dict[str, Any]) -> None:
        self.attachments[attachment.id] = attachment.model_dump_json()

    async def load_attachment(self, attachment_id: str, context: dict[str, Any]) -> Attachment:
        if attachment_id not in self.attachments:
            raise NotFoundError(f"attachment {attachment_id} not found")
        return _ATTACHMENTS.validate_json(self.attachments[attachment_id])

    async def delete_attachment(self, attachment_id: str, context: dict[str, Any]) -> None:
        self.attachments.pop(attachment_id, None)


def _start(ids: list[str], after: str | None) -> int:
    if after is None:
        return 0
    if after not in ids:
        raise NotFoundError(f"{after} not found")
    return ids.index(after) + 1


class RefAttachmentStore(AttachmentStore[dict[str, Any]]):
    """Two-phase uploads: attachments come back with an upload descriptor and metadata."""

    def __init__(self, script: Script) -> None:
        self.script = script

    async def create_attachment(
        self, input: AttachmentCreateParams, context: dict[str, Any]
    ) -> Attachment:
        attachment_id = self.generate_attachment_id(input.mime_type, context)
        data = attachment_json(attachment_id, input.name, input.mime_type, input.size)
        return _ATTACHMENTS.validate_python(data)

    async def delete_attachment(self, attachment_id: str, context: dict[str, Any]) -> None:
        self.script.record("delete_attachment_bytes", attachment_id)


class _RefTurn:
    """What the script needs from one reference reply."""

    def __init__(self, server: RefServer, thread: ThreadMetadata) -> None:
        self.server = server
        self.thread = thread

    @property
    def thread_id(self) -> str:
        return self.thread.id

    def new_id(self, kind: Any) -> str:
        return self.server.store.generate_item_id(kind, self.thread, {})

    def now(self) -> datetime:
        return datetime.now()

    def set_title(self, title: str | None) -> None:
        self.thread.title = title

    def change_thread(self, fields: dict[str, Any]) -> None:
        changed = type(self.thread).model_validate({**self.thread.model_dump(), **fields})
        for name in fields:
            setattr(self.thread, name, getattr(changed, name))

    def event(self, data: dict[str, Any]) -> Any:
        return _EVENTS.validate_python(data)

    def error(self, spec: dict[str, Any]) -> Exception:
        kind = spec["$raise"]
        if kind == "stream":
            return StreamError(ErrorCode.STREAM_ERROR, allow_retry=spec.get("allow_retry"))
        if kind == "custom":
            return CustomStreamError(spec["message"], allow_retry=spec.get("allow_retry", False))
        return RuntimeError(spec.get("message", "boom"))


class RefServer(ChatKitServer[dict[str, Any]]):
    """A reference server whose every hook follows the script."""

    def __init__(self, script: Script) -> None:
        super().__init__(RefMemoryStore(), RefAttachmentStore(script))
        self.script = script

    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: dict[str, Any],
    ) -> AsyncIterator[ThreadStreamEvent]:
        self.script.record("respond", thread.id, thread.title, dump(input_user_message))
        async for event in self.script.run(_RefTurn(self, thread)):
            yield event

    async def action(
        self,
        thread: ThreadMetadata,
        action: Action[str, Any],
        sender: WidgetItem | None,
        context: dict[str, Any],
    ) -> AsyncIterator[ThreadStreamEvent]:
        self.script.record("action", thread.id, dump(action), dump(sender))
        async for event in self.script.run(_RefTurn(self, thread)):
            yield event

    async def sync_action(
        self,
        thread: ThreadMetadata,
        action: Action[str, Any],
        sender: WidgetItem | None,
        context: dict[str, Any],
    ) -> SyncCustomActionResponse:
        self.script.record("sync_action", thread.id, dump(action), dump(sender))
        data = self.script.sync_answer(_RefTurn(self, thread))
        return SyncCustomActionResponse.model_validate(data)

    async def add_feedback(
        self, thread_id: str, item_ids: list[str], feedback: FeedbackKind, context: dict[str, Any]
    ) -> None:
        self.script.record("feedback", thread_id, list(item_ids), feedback)

    async def transcribe(
        self, audio_input: AudioInput, context: dict[str, Any]
    ) -> TranscriptionResult:
        self.script.record("transcribe", audio_input.data, audio_input.mime_type)
        return TranscriptionResult(text=self.script.transcription(audio_input.data))

    def get_stream_options(self, thread: ThreadMetadata, context: dict[str, Any]) -> StreamOptions:
        self.script.record("stream_options", thread.id)
        return StreamOptions(allow_cancel=self.script.allow_cancel)


class RefSide(Side):
    """Requests go through `ChatKitServer.process`, as an integrator's endpoint would."""

    name = "reference"

    def __init__(self) -> None:
        super().__init__()
        self.server = RefServer(self.script)
        self.context: dict[str, Any] = {}

    async def _send(self, body: bytes) -> Outcome:
        try:
            result = await self.server.process(body, self.context)
        except Exception as exc:
            # An integrator's web framework answers an escaped exception with a 500.
            return Outcome(status=500, kind="raised", error=exc)
        if isinstance(result, NonStreamingResult):
            return Outcome(status=200, kind="json", raw=result.json, body=json.loads(result.json))
        assert isinstance(result, StreamingResult)
        chunks: list[bytes] = []
        error: Exception | None = None
        try:
            async for chunk in result:
                chunks.append(chunk)
        except Exception as exc:
            # Headers and earlier frames are already out: the client sees a cut stream.
            error = exc
        raw = b"".join(chunks)
        return Outcome(
            status=200,
            kind="stream",
            raw=raw,
            chunks=chunks,
            frames=split_sse(raw),
            error=error,
        )

    async def stored_items(self, thread_id: str) -> list[dict[str, Any]]:
        page = await self.server.store.load_thread_items(thread_id, None, 1000, "asc", {})
        return [dump(item, wire=False) for item in page.data]

    async def stored_attachment(self, attachment_id: str) -> dict[str, Any] | None:
        try:
            attachment = await self.server.store.load_attachment(attachment_id, {})
        except NotFoundError:
            return None
        stored: dict[str, Any] = dump(attachment, wire=False)
        return stored
