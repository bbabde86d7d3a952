"""Thread requests: start a thread, add a message, retry, and read/rename/delete threads."""

from __future__ import annotations

from functools import partial
from typing import Any

from .._reply import Emit, JSONResult, ReplyStats, StreamPlan
from ..errors import InvalidRequestError
from ..store import NotFoundError
from ..turn import Turn
from ..types import (
    Attachment,
    Page,
    StreamOptions,
    Thread,
    ThreadCreatedEvent,
    ThreadItemDoneEvent,
    ThreadMetadata,
    ThreadsAddUserMessageReq,
    ThreadsCreateReq,
    ThreadsDeleteReq,
    ThreadsGetByIdReq,
    ThreadsListReq,
    ThreadsRetryAfterItemReq,
    ThreadsUpdateReq,
    UserMessageInput,
    UserMessageItem,
)
from ..types._base import to_wire_json
from .attachments import delete_attachment_bytes, thread_attachment_ids
from .registry import Handlers
from .services import Call, Services, not_found, thread_response
from .turns import Orphan, Undo

__all__ = ["handlers"]

handlers = Handlers()
EMPTY_OBJECT = JSONResult(b"{}")


# -- streaming ----------------------------------------------------------------------


@handlers.on(ThreadsCreateReq)
async def create(svc: Services, request: ThreadsCreateReq, call: Call) -> StreamPlan:
    """A new thread with the user's first message, and the reply to it."""
    context = call.context
    thread = ThreadMetadata(id=svc.store.generate_thread_id(context), created_at=Turn.now())
    attachments = await svc.load_attachments(request.params.input, context)
    turn = svc.turn(thread, None, call, request.type)

    async def body(emit: Emit, options: StreamOptions, stats: ReplyStats | None) -> None:
        # The thread and its first message, stored whole or not at all (the thread is
        # deleted again if the message fails), before the client hears of either.
        orphan = Orphan(thread.id, context, attachments)
        async with svc.whole_or_nothing("the new thread", thread.id, orphan) as undo:
            undo.add(partial(svc.store.delete_thread, thread.id, context))
            await svc.store.save_thread(thread, context)
            item = await store_user_message(svc, turn, request.params.input, attachments, undo)
        await emit(ThreadCreatedEvent(thread=thread_response(thread)))
        await emit(ThreadItemDoneEvent(item=item))
        await svc.reply(turn, svc.responder.respond(turn), emit, options, stats)

    async with svc.take_turn(request.type, thread, context, new=True) as taken:
        return await taken.plan(turn, body)


@handlers.on(ThreadsAddUserMessageReq)
async def add_user_message(
    svc: Services, request: ThreadsAddUserMessageReq, call: Call
) -> StreamPlan:
    """The user's next message on a thread, and the reply to it."""
    thread = await svc.load_thread(request.params.thread_id, call.context)
    attachments = await svc.load_attachments(request.params.input, call.context)
    turn = svc.turn(thread, None, call, request.type)

    async def body(emit: Emit, options: StreamOptions, stats: ReplyStats | None) -> None:
        async with svc.whole_or_nothing("a message on thread", thread.id) as undo:
            item = await store_user_message(svc, turn, request.params.input, attachments, undo)
        await emit(ThreadItemDoneEvent(item=item))
        await svc.reply(turn, svc.responder.respond(turn), emit, options, stats)

    async with svc.take_turn(request.type, thread, call.context) as taken:
        return await taken.plan(turn, body)


@handlers.on(ThreadsRetryAfterItemReq)
async def retry_after_item(
    svc: Services, request: ThreadsRetryAfterItemReq, call: Call
) -> StreamPlan:
    """Forget what came after a user message and answer it again."""
    params = request.params
    thread = await svc.load_thread(params.thread_id, call.context)
    async with svc.take_turn(request.type, thread, call.context) as taken:
        item = await svc.load_item(thread.id, params.item_id, call.context)
        if not isinstance(item, UserMessageItem):
            raise InvalidRequestError(
                f"item {params.item_id!r} is not a user message; only those can be retried",
                code="invalid_item_type",
            )
        turn = svc.turn(thread, item, call, request.type)

        async def body(emit: Emit, options: StreamOptions, stats: ReplyStats | None) -> None:
            await svc.store.delete_thread_items_after(thread.id, item.id, call.context)
            await svc.reply(turn, svc.responder.respond(turn), emit, options, stats)

        return await taken.plan(turn, body)


async def store_user_message(
    svc: Services,
    turn: Turn[Any],
    message: UserMessageInput,
    attachments: list[Attachment],
    undo: Undo,
) -> UserMessageItem:
    """Store the user's message and bind its attachments to the thread; `undo`
    learns how to take each write back."""
    thread = turn.thread
    store = svc.store
    # URLs renewed by the attachment store if they expired meanwhile.
    bound = [
        (await svc.fresh_attachment(a, turn.context)).model_copy(update={"thread_id": thread.id})
        for a in attachments
    ]
    item = UserMessageItem(
        id=store.generate_item_id("message", thread, turn.context),
        thread_id=thread.id,
        created_at=Turn.now(),
        content=message.content,
        attachments=bound,
        quoted_text=message.quoted_text,
        inference_options=message.inference_options,
    )
    # Each undo step is noted before its write: a write that failed may have landed.
    for original, attachment in zip(attachments, bound, strict=True):
        undo.add(partial(store.save_attachment, original, turn.context))
        await store.save_attachment(attachment, turn.context)
    undo.add(partial(store.delete_thread_item, thread.id, item.id, turn.context))
    await store.add_thread_item(thread.id, item, turn.context)
    turn.input = item
    return item


# -- JSON ---------------------------------------------------------------------------


@handlers.on(ThreadsGetByIdReq)
async def get_by_id(svc: Services, request: ThreadsGetByIdReq, call: Call) -> JSONResult:
    """A thread with its first page of visible items."""
    thread = await svc.known_thread(request.params.thread_id, call)
    page = await svc.visible_items(thread.id, None, svc.page_size, "asc", call.context)
    await svc.refresh_attachment_urls(page, call.context)
    return JSONResult(to_wire_json(thread_response(thread, page)))


@handlers.on(ThreadsListReq)
async def list_threads(svc: Services, request: ThreadsListReq, call: Call) -> JSONResult:
    """A page of the user's threads."""
    listing = request.params
    try:
        threads = await svc.store.load_threads(
            svc.limit(listing.limit), listing.after, listing.order, call.context
        )
    except NotFoundError:
        not_found("thread", listing.after or "")
    return JSONResult(
        to_wire_json(
            Page[Thread](
                data=[thread_response(t) for t in threads.data],
                has_more=threads.has_more,
                # As the reference's stores do: a cursor only when there is more.
                after=threads.after if threads.has_more else None,
            )
        )
    )


@handlers.on(ThreadsUpdateReq)
async def update(svc: Services, request: ThreadsUpdateReq, call: Call) -> JSONResult:
    """Rename a thread."""
    thread = await svc.known_thread(request.params.thread_id, call)
    thread.title = request.params.title
    await svc.store.save_thread(thread, call.context)
    return JSONResult(to_wire_json(thread_response(thread)))


@handlers.on(ThreadsDeleteReq)
async def delete(svc: Services, request: ThreadsDeleteReq, call: Call) -> JSONResult:
    """Delete a thread, its items, and the bytes of the attachments bound to it."""
    doomed = await thread_attachment_ids(svc, request.params.thread_id, call.context)
    try:
        await svc.store.delete_thread(request.params.thread_id, call.context)
    except NotFoundError:
        not_found("thread", request.params.thread_id)
    await delete_attachment_bytes(svc, doomed, call.context)
    return EMPTY_OBJECT
