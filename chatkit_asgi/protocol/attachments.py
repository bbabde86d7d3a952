"""Attachment requests (create, delete), transcription, and the attachment lifecycle:
the bytes of a thread's attachments go when the thread goes."""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
from typing import Any

from .._reply import JSONResult
from ..errors import InvalidRequestError
from ..store import NotFoundError
from ..types import (
    AttachmentsCreateReq,
    AttachmentsDeleteReq,
    AudioInput,
    InputTranscribeReq,
    UserMessageItem,
)
from ..types._base import to_wire_json
from .registry import Handlers
from .services import Call, Services

__all__ = ["delete_attachment_bytes", "handlers", "thread_attachment_ids"]

logger = logging.getLogger("chatkit_asgi")

handlers = Handlers()


@handlers.on(AttachmentsCreateReq)
async def create(svc: Services, request: AttachmentsCreateReq, call: Call) -> JSONResult:
    """A new attachment: the attachment store says where its bytes go."""
    attachment_store = svc.attachment_store_for(request.type)
    attachment = await attachment_store.create_attachment(request.params, call.context)
    await svc.store.save_attachment(attachment, call.context)
    return JSONResult(to_wire_json(attachment))


@handlers.on(AttachmentsDeleteReq)
async def delete(svc: Services, request: AttachmentsDeleteReq, call: Call) -> JSONResult:
    """An attachment and its bytes."""
    attachment_id = request.params.attachment_id
    await svc.load_attachment(attachment_id, call.context)
    if svc.attachment_store is not None:
        await svc.attachment_store.delete_attachment(attachment_id, call.context)
    await svc.store.delete_attachment(attachment_id, call.context)
    return JSONResult(b"{}")


@handlers.on(InputTranscribeReq)
async def transcribe(svc: Services, request: InputTranscribeReq, call: Call) -> JSONResult:
    """Speech to text, by the responder's `transcribe`."""
    svc.responder.check_transcribe()
    try:
        audio = base64.b64decode(request.params.audio_base64, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(
            "audio_base64 is not valid base64", code="invalid_audio"
        ) from None
    result = await svc.responder.transcribe(
        AudioInput(data=audio, mime_type=request.params.mime_type), call.context
    )
    return JSONResult(to_wire_json(result))


async def thread_attachment_ids(svc: Services, thread_id: str, context: Any) -> list[str]:
    """Ids of the attachments bound to the thread, whose bytes go with it."""
    if svc.attachment_store is None:
        return []
    ids: dict[str, None] = {}
    after: str | None = None
    try:
        while True:
            page = await svc.store.load_thread_items(thread_id, after, 100, "asc", context)
            for item in page.data:
                if isinstance(item, UserMessageItem):
                    ids.update(dict.fromkeys(a.id for a in item.attachments))
            if not page.has_more or page.after is None:
                break
            after = page.after
        bound = []
        for attachment_id in ids:
            with contextlib.suppress(NotFoundError):
                attachment = await svc.store.load_attachment(attachment_id, context)
                # Sent again in another thread since? Then it is that thread's now.
                if attachment.thread_id == thread_id:
                    bound.append(attachment_id)
    except NotFoundError:
        return []  # no such thread: `delete_thread` says so
    return bound


async def delete_attachment_bytes(svc: Services, attachment_ids: list[str], context: Any) -> None:
    """Delete the bytes of these attachments; a failure is logged, not raised."""
    if svc.attachment_store is None:
        return
    for attachment_id in attachment_ids:
        try:
            await svc.attachment_store.delete_attachment(attachment_id, context)
        except Exception:
            logger.warning(
                "could not delete the bytes of attachment %s", attachment_id, exc_info=True
            )
