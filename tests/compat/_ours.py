"""Our side: `ChatKitApp` with a scripted object responder, over the test client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter

from chatkit_asgi import (
    AttachmentStore,
    ChatKitApp,
    CustomStreamError,
    ErrorCode,
    NotFoundError,
    Store,
    StreamError,
    Turn,
)
from chatkit_asgi.testing import ChatKitTestClient
from chatkit_asgi.types import (
    Action,
    Attachment,
    AttachmentCreateParams,
    AudioInput,
    FeedbackKind,
    StreamOptions,
    SyncCustomActionResponse,
    ThreadStreamEvent,
    TranscriptionResult,
    WidgetItem,
)

from ._script import Outcome, Script, Side, attachment_json, dump, split_sse

__all__ = ["OurAttachmentStore", "OurResponder", "OurSide"]

_EVENTS: TypeAdapter[ThreadStreamEvent] = TypeAdapter(ThreadStreamEvent)
_ATTACHMENTS: TypeAdapter[Attachment] = TypeAdapter(Attachment)


class OurAttachmentStore(AttachmentStore[Any]):
    """Two-phase uploads: attachments come back with an upload descriptor and metadata."""

    def __init__(self, script: Script) -> None:
        self.script = script

    async def create_attachment(self, input: AttachmentCreateParams, context: Any) -> Attachment:
        attachment_id = self.generate_attachment_id(input.mime_type, context)
        data = attachment_json(attachment_id, input.name, input.mime_type, input.size)
        return _ATTACHMENTS.validate_python(data)

    async def delete_attachment(self, attachment_id: str, context: Any) -> None:
        self.script.record("delete_attachment_bytes", attachment_id)


class _OurTurn:
    def __init__(self, turn: Turn[Any]) -> None:
        self.turn = turn

    @property
    def thread_id(self) -> str:
        return self.turn.thread.id

    def new_id(self, kind: Any) -> str:
        return self.turn.new_id(kind)

    def now(self) -> datetime:
        return self.turn.now()

    def set_title(self, title: str | None) -> None:
        self.turn.thread.title = title

    def change_thread(self, fields: dict[str, Any]) -> None:
        changed = type(self.turn.thread).model_validate({**self.turn.thread.model_dump(), **fields})
        for name in fields:
            setattr(self.turn.thread, name, getattr(changed, name))

    def event(self, data: dict[str, Any]) -> Any:
        return _EVENTS.validate_python(data)

    def error(self, spec: dict[str, Any]) -> Exception:
        kind = spec["$raise"]
        if kind == "stream":
            return StreamError(ErrorCode.STREAM_ERROR, allow_retry=spec.get("allow_retry"))
        if kind == "custom":
            return CustomStreamError(spec["message"], allow_retry=spec.get("allow_retry", False))
        return RuntimeError(spec.get("message", "boom"))


class OurResponder:
    """An object responder with every optional hook, each following the script."""

    def __init__(self, script: Script) -> None:
        self.script = script

    async def respond(self, turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        self.script.record("respond", turn.thread.id, turn.thread.title, dump(turn.input))
        async for event in self.script.run(_OurTurn(turn)):
            yield event

    async def action(
        self, turn: Turn[Any], action: Action[str, Any], sender: WidgetItem | None
    ) -> AsyncIterator[ThreadStreamEvent]:
        self.script.record("action", turn.thread.id, dump(action), dump(sender))
        async for event in self.script.run(_OurTurn(turn)):
            yield event

    async def sync_action(
        self, turn: Turn[Any], action: Action[str, Any], sender: WidgetItem | None
    ) -> SyncCustomActionResponse:
        self.script.record("sync_action", turn.thread.id, dump(action), dump(sender))
        data = self.script.sync_answer(_OurTurn(turn))
        return SyncCustomActionResponse.model_validate(data)

    async def add_feedback(self, turn: Turn[Any], item_ids: list[str], kind: FeedbackKind) -> None:
        self.script.record("feedback", turn.thread.id, list(item_ids), kind)

    async def transcribe(self, audio: AudioInput, context: Any) -> TranscriptionResult:
        self.script.record("transcribe", audio.data, audio.mime_type)
        return TranscriptionResult(text=self.script.transcription(audio.data))

    def stream_options(self, turn: Turn[Any]) -> StreamOptions:
        self.script.record("stream_options", turn.thread.id)
        return StreamOptions(allow_cancel=self.script.allow_cancel)


class OurSide(Side):
    """Requests go through the ASGI app in process, via `ChatKitTestClient`."""

    name = "ours"

    def __init__(self, store: Store[Any]) -> None:
        super().__init__()
        self.store = store
        self.app = ChatKitApp(
            OurResponder(self.script),
            store=store,
            attachment_store=OurAttachmentStore(self.script),
            heartbeat_interval=None,
        )
        self.client = ChatKitTestClient(self.app)

    async def aclose(self) -> None:
        await self.client.aclose()
        close = getattr(self.store, "aclose", None)
        if close is not None:
            await close()

    async def _send(self, body: bytes) -> Outcome:
        response = await self.client.post(body)
        content_type = response.headers.get("content-type", "")
        raw = response.content
        if response.status_code != 200:
            return Outcome(
                status=response.status_code,
                kind="error",
                raw=raw,
                body=response.json(),
                content_type=content_type,
            )
        if content_type.startswith("text/event-stream"):
            return Outcome(
                status=200,
                kind="stream",
                raw=raw,
                frames=split_sse(raw),
                content_type=content_type,
            )
        return Outcome(
            status=200, kind="json", raw=raw, body=response.json(), content_type=content_type
        )

    async def stored_items(self, thread_id: str) -> list[dict[str, Any]]:
        page = await self.store.load_thread_items(thread_id, None, 1000, "asc", {})
        return [dump(item, wire=False) for item in page.data]

    async def stored_attachment(self, attachment_id: str) -> dict[str, Any] | None:
        try:
            attachment = await self.store.load_attachment(attachment_id, {})
        except NotFoundError:
            return None
        stored: dict[str, Any] = dump(attachment, wire=False)
        return stored
