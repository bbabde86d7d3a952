"""Requests that answer something the assistant put in the thread: a widget's action
(streamed or synchronous), a client tool call's output, a structured input's answers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from functools import partial
from typing import Any

from .._reply import Emit, JSONResult, ReplyStats, StreamPlan, emit_error
from ..errors import ConflictError, ErrorCode, InvalidRequestError
from ..types import (
    ClientToolCallItem,
    ErrorEvent,
    StreamOptions,
    StructuredInputAnswer,
    StructuredInputItem,
    StructuredInputMultipleChoice,
    StructuredInputSubmission,
    ThreadItemReplacedEvent,
    ThreadMetadata,
    ThreadsAddClientToolOutputReq,
    ThreadsAddStructuredInputReq,
    ThreadsCustomActionReq,
    ThreadsSyncCustomActionReq,
    ThreadStreamEvent,
    WidgetItem,
)
from ..types._base import to_wire_json
from .pipeline import as_async_generator
from .registry import Handlers
from .services import Call, Services

__all__ = ["handlers"]

logger = logging.getLogger("chatkit_asgi")

handlers = Handlers()


@handlers.on(ThreadsCustomActionReq)
async def custom_action(svc: Services, request: ThreadsCustomActionReq, call: Call) -> StreamPlan:
    """A widget's action, answered by the responder's `action` as a reply."""
    params = request.params
    svc.responder.check_action()
    thread = await svc.load_thread(params.thread_id, call.context)
    sender = await svc.load_sender(thread.id, params.item_id, call.context)
    turn = svc.turn(thread, None, call, request.type)
    if sender is not None and not isinstance(sender, WidgetItem):
        # The protocol answers this with an error event rather than an HTTP error.
        async def refuse(emit: Emit, stats: ReplyStats | None) -> None:
            event = ErrorEvent(code=ErrorCode.STREAM_ERROR.value, allow_retry=False)
            await emit_error(emit, event, stats)

        return StreamPlan.counted(refuse, allow_cancel=True)
    turn.action, turn.sender = params.action, sender

    async def body(emit: Emit, options: StreamOptions, stats: ReplyStats | None) -> None:
        events = svc.responder.action(turn, params.action, sender)
        await svc.reply(turn, events, emit, options, stats)

    async with svc.take_turn(request.type, thread, call.context) as taken:
        return await taken.plan(turn, body)


@handlers.on(ThreadsSyncCustomActionReq)
async def sync_custom_action(
    svc: Services, request: ThreadsSyncCustomActionReq, call: Call
) -> JSONResult:
    """A widget's action, answered at once by the responder's `sync_action`."""
    params = request.params
    thread = await svc.known_thread(params.thread_id, call)
    sender = await svc.load_sender(thread.id, params.item_id, call.context)
    if sender is not None and not isinstance(sender, WidgetItem):
        raise InvalidRequestError(
            f"item {params.item_id!r} is not a widget; only widgets send actions",
            code="invalid_sender",
        )
    turn = svc.turn(thread, None, call, request.type)
    turn.action, turn.sender = params.action, sender
    response = await svc.responder.sync_action(turn, params.action, sender)
    if response.updated_item is not None:
        # The reference only returns the new widget; saving it too means a
        # reload shows what the user saw.
        await svc.store.save_item(thread.id, response.updated_item, call.context)
    return JSONResult(to_wire_json(response))


@handlers.on(ThreadsAddClientToolOutputReq)
async def add_client_tool_output(
    svc: Services, request: ThreadsAddClientToolOutputReq, call: Call
) -> StreamPlan:
    """The output of the pending client tool call, and the reply that goes on from it."""
    context = call.context
    thread = await svc.load_thread(request.params.thread_id, context)
    turn = svc.turn(thread, None, call, request.type)
    async with svc.take_turn(request.type, thread, context) as taken:
        recent = await svc.visible_items(thread.id, None, 1, "desc", context)
        tool_call = next(
            (
                item
                for item in recent.data
                if isinstance(item, ClientToolCallItem) and item.status == "pending"
            ),
            None,
        )
        if tool_call is None:
            raise ConflictError(
                f"thread {thread.id!r} has no pending client tool call to complete",
                code="no_pending_tool_call",
            )

        async def body(emit: Emit, options: StreamOptions, stats: ReplyStats | None) -> None:
            # The other pending calls go first and the output is saved last: a failure
            # part-way leaves this call pending, so sending the request again completes
            # it (dropping the others again changes nothing).
            await _drop_dangling_tool_calls(svc, thread, context, keep=tool_call.id)
            completed = tool_call.model_copy(
                update={"output": request.params.result, "status": "completed"}
            )
            async with svc.whole_or_nothing("tool output on thread", thread.id) as undo:
                undo.add(partial(svc.store.save_item, thread.id, tool_call, context))
                await svc.store.save_item(thread.id, completed, context)
            await svc.reply(turn, svc.responder.respond(turn), emit, options, stats)

        return await taken.plan(turn, body)


@handlers.on(ThreadsAddStructuredInputReq)
async def add_structured_input(
    svc: Services, request: ThreadsAddStructuredInputReq, call: Call
) -> StreamPlan:
    """The user's answers to a structured input item, and the reply to them."""
    params = request.params
    thread = await svc.load_thread(params.thread_id, call.context)
    turn = svc.turn(thread, None, call, request.type)
    async with svc.take_turn(request.type, thread, call.context) as taken:
        item = await svc.load_item(thread.id, params.item_id, call.context)
        if not isinstance(item, StructuredInputItem):
            raise InvalidRequestError(
                f"item {params.item_id!r} is not a structured input item",
                code="invalid_item_type",
            )
        if item.status != "pending":
            raise ConflictError(
                f"structured input {item.id!r} was already {item.status}",
                code="not_pending",
            )
        answered = _apply_answers(item, params.input)

        async def events() -> AsyncIterator[ThreadStreamEvent]:
            # Through the reply pipeline so the replacement is persisted like any other.
            yield ThreadItemReplacedEvent(item=answered)
            async with aclosing(as_async_generator(svc.responder.respond(turn))) as reply:
                async for event in reply:
                    yield event

        async def body(emit: Emit, options: StreamOptions, stats: ReplyStats | None) -> None:
            await svc.reply(turn, events(), emit, options, stats)

        return await taken.plan(turn, body)


async def _drop_dangling_tool_calls(
    svc: Services, thread: ThreadMetadata, context: Any, *, keep: str
) -> None:
    recent = await svc.store.load_thread_items(thread.id, None, svc.page_size, "desc", context)
    for item in recent.data:
        if isinstance(item, ClientToolCallItem) and item.status == "pending" and item.id != keep:
            logger.warning("dropping client tool call %s that was never completed", item.call_id)
            await svc.store.delete_thread_item(thread.id, item.id, context)


def _apply_answers(
    item: StructuredInputItem, submission: StructuredInputSubmission
) -> StructuredInputItem:
    """The item with the user's answers applied, by the protocol's rules."""
    answered = item.model_copy(deep=True)
    known = {question.id for question in answered.inputs}
    unknown = sorted(set(submission.answers) - known)
    if unknown:
        logger.warning("structured input %s: ignoring unknown question ids %s", item.id, unknown)
    for question in answered.inputs:
        answer = submission.answers.get(question.id)
        if submission.status == "skipped" or answer is None or answer.skipped or not answer.values:
            question.answer = StructuredInputAnswer(skipped=True)
            continue
        values = answer.values
        if isinstance(question, StructuredInputMultipleChoice) and not question.multiple:
            values = values[:1]
        question.answer = StructuredInputAnswer(values=list(values))
    answered.status = submission.status
    return answered
