"""The protocol engine: what each request type means, independent of HTTP.

`Engine.parse` turns a body into a typed request; `Engine.prepare` validates it
against the store (loads the thread, checks ids and state, takes the thread's
turn lock) and returns either a `JSONResult` or a `StreamPlan`. Everything that
can refuse a request happens in `prepare`, before any response byte is sent;
`StreamPlan.run` then performs the writes and feeds events to an `emit`
callback, persisting them as they pass.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, NoReturn

import anyio
from pydantic import TypeAdapter, ValidationError

from ._pipeline import Emit, ReplyPipeline, as_async_generator, emit_error, is_hidden
from .admission import Admission, Refusal, asked_types
from .errors import (
    ConflictError,
    ErrorCode,
    InvalidRequestError,
    NotSupportedError,
    ResourceNotFoundError,
)
from .responder import BoundResponder, ResponderLike
from .store import AttachmentStore, NotFoundError, Store, TurnBusyError, TurnLease
from .turn import Turn, new_run_id
from .types import (
    Attachment,
    AttachmentsCreateReq,
    AttachmentsDeleteReq,
    AudioInput,
    ChatKitReq,
    ClientToolCallItem,
    ErrorEvent,
    InputTranscribeReq,
    ItemsFeedbackReq,
    ItemsListReq,
    Page,
    StreamOptions,
    StructuredInputAnswer,
    StructuredInputItem,
    StructuredInputMultipleChoice,
    StructuredInputSubmission,
    Thread,
    ThreadCreatedEvent,
    ThreadCustomActionParams,
    ThreadItem,
    ThreadItemDoneEvent,
    ThreadItemReplacedEvent,
    ThreadMetadata,
    ThreadsAddClientToolOutputReq,
    ThreadsAddStructuredInputReq,
    ThreadsAddUserMessageReq,
    ThreadsCreateReq,
    ThreadsCustomActionReq,
    ThreadsDeleteReq,
    ThreadsGetByIdReq,
    ThreadsListReq,
    ThreadsRetryAfterItemReq,
    ThreadsSyncCustomActionReq,
    ThreadStreamEvent,
    ThreadsUpdateReq,
    UserMessageInput,
    UserMessageItem,
    WidgetItem,
    is_streaming_req,
)
from .types._base import to_wire_json

if TYPE_CHECKING:
    from .observability import ReplyStats

__all__ = ["Emit", "Engine", "JSONResult", "StreamPlan"]

logger = logging.getLogger("chatkit_asgi")

_REQUEST_ADAPTER: TypeAdapter[ChatKitReq] = TypeAdapter(ChatKitReq)
_EMPTY_OBJECT = b"{}"
_KNOWN_TYPES = frozenset(
    tag
    for model in (
        ThreadsCreateReq,
        ThreadsAddUserMessageReq,
        ThreadsAddClientToolOutputReq,
        ThreadsAddStructuredInputReq,
        ThreadsRetryAfterItemReq,
        ThreadsCustomActionReq,
        ThreadsSyncCustomActionReq,
        ThreadsGetByIdReq,
        ThreadsListReq,
        ThreadsUpdateReq,
        ThreadsDeleteReq,
        ItemsListReq,
        ItemsFeedbackReq,
        AttachmentsCreateReq,
        AttachmentsDeleteReq,
        InputTranscribeReq,
    )
    for tag in [model.model_fields["type"].default]
)


@dataclass(frozen=True)
class JSONResult:
    """A complete JSON answer to a non-streaming request."""

    body: bytes


class StreamPlan:
    """A validated streaming request, ready to run.

    `allow_cancel` is what the reply's `stream_options` event will say; the
    transport uses it to decide what a client disconnect means. The plan holds
    the thread's turn lease until `run` finishes or `release` is called.
    `run_id` is the reply's id (`Turn.run_id`, the `X-ChatKit-Run-Id` header);
    `refusal` is set on the plan of a request the admission hook refused.
    `turn` is the reply's `Turn`, when it has one (refusals have none).
    """

    def __init__(
        self,
        body: Callable[[Emit], Awaitable[None]],
        *,
        allow_cancel: bool,
        lease: TurnLease | None = None,
        run_id: str | None = None,
        thread_id: str | None = None,
        refusal: Refusal | None = None,
        turn: Turn[Any] | None = None,
    ) -> None:
        self._body = body
        self._turn = turn
        self.allow_cancel = allow_cancel
        self._lease = lease
        # -- production hooks
        self.run_id = run_id or new_run_id()
        self.thread_id = thread_id
        self.refusal = refusal

    async def run(self, emit: Emit, stats: ReplyStats | None = None) -> None:
        """Perform the request, passing every client-visible event to `emit`.

        With `stats`, the reply pipeline reports the responder's first event, error
        events and (when collecting) answer text there: where it looks at each event
        anyway, so a listener costs nothing per streamed token.

        The pipeline turns responder failures into error events itself; a failure of
        the engine or store around it is logged and told to the client the same way,
        so every transport gets a stream that ends with an `error` event, never a cut.
        """
        if self._turn is not None:
            self._turn._stats = stats
        try:
            lease = self._lease
            if lease is not None and lease.renew_every:
                async with anyio.create_task_group() as keeper:
                    keeper.start_soon(_keep_renewed, lease, lease.renew_every)
                    await self._body(emit)
                    keeper.cancel_scope.cancel()
            else:
                await self._body(emit)
        except Exception:
            logger.exception("reply failed outside the responder")
            event = ErrorEvent(code=ErrorCode.STREAM_ERROR.value, allow_retry=True)
            await emit_error(emit, event, stats)
        finally:
            await self.release()

    async def release(self) -> None:
        """Give up the turn lease (idempotent); for plans that will never run."""
        lease, self._lease = self._lease, None
        if lease is not None:
            await _release(lease)


async def _keep_renewed(lease: TurnLease, interval: float) -> None:
    while True:
        await anyio.sleep(interval)
        try:
            await lease.renew()
        except Exception:
            logger.warning("could not renew a turn lease", exc_info=True)


class _LocalLease:
    """An in-process turn lock, for stores without leases of their own."""

    renew_every: float | None = None

    def __init__(self, locks: _TurnLocks, thread_id: str, semaphore: anyio.Semaphore) -> None:
        self._locks = locks
        self._thread_id = thread_id
        self._semaphore: anyio.Semaphore | None = semaphore

    async def renew(self) -> None:
        """Nothing to do: a local lock does not expire."""

    async def release(self) -> None:
        """Let the next reply on the thread go."""
        if self._semaphore is not None:
            self._semaphore.release()
            self._semaphore = None
            self._locks.forget(self._thread_id)


class _TurnLocks:
    """One lock per thread so two replies in this process never interleave their items.

    Semaphores rather than locks: a plan acquires in the request task and
    releases in the task that streams the reply.
    """

    def __init__(self) -> None:
        self._held: dict[str, tuple[anyio.Semaphore, int]] = {}

    async def acquire(self, thread_id: str, wait: float) -> _LocalLease:
        if thread_id not in self._held:
            # Nobody holds or waits for this thread (every new thread, most replies):
            # no timer, no cancel scope.
            semaphore = anyio.Semaphore(1)
            semaphore.acquire_nowait()
            self._held[thread_id] = (semaphore, 1)
            return _LocalLease(self, thread_id, semaphore)
        semaphore, waiters = self._held[thread_id]
        self._held[thread_id] = (semaphore, waiters + 1)
        acquired = False
        try:
            with anyio.move_on_after(wait):
                await semaphore.acquire()
                acquired = True
        finally:
            if not acquired:
                self.forget(thread_id)
        if not acquired:
            raise TurnBusyError(thread_id)
        return _LocalLease(self, thread_id, semaphore)

    def forget(self, thread_id: str) -> None:
        semaphore, waiters = self._held[thread_id]
        if waiters <= 1:
            del self._held[thread_id]
        else:
            self._held[thread_id] = (semaphore, waiters - 1)


def _not_found(kind: Literal["thread", "item", "attachment"], ident: str) -> NoReturn:
    # Worded as the reference's stores word it ("Thread thr_x not found"): ported code
    # and tests match on that text.
    raise ResourceNotFoundError(f"{kind.capitalize()} {ident} not found", code=f"{kind}_not_found")


class Engine:
    """Protocol semantics of every request type, over a `Store` and a responder."""

    def __init__(
        self,
        responder: ResponderLike,
        store: Store[Any],
        attachment_store: AttachmentStore[Any] | None = None,
        *,
        page_size: int = 20,
        max_page_size: int = 100,
        turn_wait: float = 15.0,
        cleanup_timeout: float = 5.0,
        checkpoint_interval: float | None = 1.0,
        admission: Admission | None = None,
    ) -> None:
        self.responder = BoundResponder(responder)
        self.store = store
        self.attachment_store = attachment_store
        self.page_size = page_size
        self.max_page_size = max_page_size
        self.turn_wait = turn_wait
        self.cleanup_timeout = cleanup_timeout
        self.checkpoint_interval = checkpoint_interval
        self.admission = admission
        self._locks = _TurnLocks()
        self._orphans: list[_Orphan] = []

    # -- parsing -----------------------------------------------------------------

    def parse(self, body: bytes) -> ChatKitReq:
        """Validate a request body; `InvalidRequestError` says precisely what is wrong."""
        try:
            request = _REQUEST_ADAPTER.validate_json(body)
        except ValidationError as exc:
            # A body that is not JSON is reported as such, whatever else is wrong with it.
            _reject_ambiguous_json(body, other_errors=False)
            raise self._describe(exc, body) from None
        _reject_ambiguous_json(body, other_errors=True)
        return request

    @staticmethod
    def _describe(exc: ValidationError, body: bytes) -> InvalidRequestError:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        first = errors[0] if errors else {"type": ""}
        if first["type"] == "json_invalid":
            return InvalidRequestError(
                "The request body is not valid JSON", code="invalid_json", details=errors
            )
        if first["type"] == "model_attributes_type" or first["type"] == "model_type":
            return InvalidRequestError(
                "The request body must be a JSON object", code="invalid_request", details=errors
            )
        if first["type"] in ("union_tag_invalid", "union_tag_not_found") and not first["loc"]:
            try:
                tag = json.loads(body).get("type")
            except (ValueError, AttributeError):
                tag = None
            if first["type"] == "union_tag_not_found":
                return InvalidRequestError(
                    "The request has no `type`", code="invalid_request", details=errors
                )
            return InvalidRequestError(
                f"Unknown request type {tag!r}; known types: {', '.join(sorted(_KNOWN_TYPES))}",
                code="unknown_request_type",
                details=errors,
            )
        return InvalidRequestError(
            "The request does not match the schema of its type",
            code="invalid_request",
            details=errors,
        )

    # -- dispatch -----------------------------------------------------------------

    async def prepare(
        self, request: ChatKitReq, context: Any, http_request: Any = None
    ) -> JSONResult | StreamPlan:
        """Validate `request` against the store and return what answers it."""
        if self._orphans:
            await self._delete_orphans()
        try:
            match request:
                case ThreadsCreateReq():
                    return await self._prepare_create(request, context, http_request)
                case ThreadsAddUserMessageReq():
                    return await self._prepare_add_user_message(request, context, http_request)
                case ThreadsAddClientToolOutputReq():
                    return await self._prepare_client_tool_output(request, context, http_request)
                case ThreadsAddStructuredInputReq():
                    return await self._prepare_structured_input(request, context, http_request)
                case ThreadsRetryAfterItemReq():
                    return await self._prepare_retry(request, context, http_request)
                case ThreadsCustomActionReq():
                    return await self._prepare_custom_action(request, context, http_request)
                case _:
                    thread = None
                    if request.type in self._admission_types:
                        thread = await self._admission_thread(request, context)
                        await self._admit(request.type, context, thread)
                    return JSONResult(await self._answer(request, context, http_request, thread))
        except _Refused as refused:
            # -- admission refusals: an event on streams, 429 otherwise
            if not is_streaming_req(request):
                raise refused.refusal.error() from None
            return _refusal_plan(refused.refusal, refused.thread)

    # -- admission -------------------------------------------------------------

    @property
    def admission(self) -> Admission | None:
        """The hook asked before every turn and JSON request (of the types it names)."""
        return self._admission

    @admission.setter
    def admission(self, hook: Admission | None) -> None:
        self._admission = hook
        self._admission_types = asked_types(hook)

    async def _admit(self, request_type: str, context: Any, thread: ThreadMetadata | None) -> None:
        """Ask the admission hook; a refusal stops `prepare` before the turn is taken."""
        if self._admission is None or request_type not in self._admission_types:
            return
        refusal = await self._admission(context, request_type, thread)
        if refusal is not None:
            raise _Refused(refusal, thread)

    async def _admission_thread(self, request: ChatKitReq, context: Any) -> ThreadMetadata | None:
        """The thread a non-streaming request names, loaded (404 if it does not exist)."""
        thread_id = getattr(request.params, "thread_id", None)
        return await self._load_thread(thread_id, context) if isinstance(thread_id, str) else None

    async def _known_thread(
        self, thread_id: str, context: Any, preloaded: ThreadMetadata | None
    ) -> ThreadMetadata:
        """The thread, unless admission loaded it already (one read per request)."""
        if preloaded is not None and preloaded.id == thread_id:
            return preloaded
        return await self._load_thread(thread_id, context)

    # -- non-streaming requests ---------------------------------------------------------

    async def _answer(
        self,
        request: ChatKitReq,
        context: Any,
        http_request: Any,
        preloaded: ThreadMetadata | None = None,
    ) -> bytes:
        match request:
            case ThreadsGetByIdReq():
                thread = await self._known_thread(request.params.thread_id, context, preloaded)
                page = await self._visible_items(thread.id, None, self.page_size, "asc", context)
                await self._refresh_attachment_urls(page, context)
                return to_wire_json(self._thread_response(thread, page))
            case ThreadsListReq():
                listing = request.params
                try:
                    threads = await self.store.load_threads(
                        self._limit(listing.limit), listing.after, listing.order, context
                    )
                except NotFoundError:
                    _not_found("thread", listing.after or "")
                return to_wire_json(
                    Page[Thread](
                        data=[self._thread_response(t) for t in threads.data],
                        has_more=threads.has_more,
                        # As the reference's stores do: a cursor only when there is more.
                        after=threads.after if threads.has_more else None,
                    )
                )
            case ItemsListReq():
                items = request.params
                await self._known_thread(items.thread_id, context, preloaded)
                page = await self._visible_items(
                    items.thread_id, items.after, self._limit(items.limit), items.order, context
                )
                await self._refresh_attachment_urls(page, context)
                return to_wire_json(page)
            case ThreadsUpdateReq():
                thread = await self._known_thread(request.params.thread_id, context, preloaded)
                thread.title = request.params.title
                await self.store.save_thread(thread, context)
                return to_wire_json(self._thread_response(thread))
            case ThreadsDeleteReq():
                doomed = await self._thread_attachment_ids(request.params.thread_id, context)
                try:
                    await self.store.delete_thread(request.params.thread_id, context)
                except NotFoundError:
                    _not_found("thread", request.params.thread_id)
                await self._delete_attachment_bytes(doomed, context)
                return _EMPTY_OBJECT
            case ItemsFeedbackReq():
                feedback = request.params
                thread = await self._known_thread(feedback.thread_id, context, preloaded)
                for item_id in feedback.item_ids:
                    await self._load_item(thread.id, item_id, context)
                turn = self._turn(thread, None, context, http_request, request.type)
                await self.responder.add_feedback(turn, feedback.item_ids, feedback.kind)
                return _EMPTY_OBJECT
            case AttachmentsCreateReq():
                attachment_store = self._attachment_store(request.type)
                attachment = await attachment_store.create_attachment(request.params, context)
                await self.store.save_attachment(attachment, context)
                return to_wire_json(attachment)
            case AttachmentsDeleteReq():
                attachment_id = request.params.attachment_id
                await self._load_attachment(attachment_id, context)
                if self.attachment_store is not None:
                    await self.attachment_store.delete_attachment(attachment_id, context)
                await self.store.delete_attachment(attachment_id, context)
                return _EMPTY_OBJECT
            case InputTranscribeReq():
                self.responder.check_transcribe()
                try:
                    audio = base64.b64decode(request.params.audio_base64, validate=True)
                except (binascii.Error, ValueError):
                    raise InvalidRequestError(
                        "audio_base64 is not valid base64", code="invalid_audio"
                    ) from None
                result = await self.responder.transcribe(
                    AudioInput(data=audio, mime_type=request.params.mime_type), context
                )
                return to_wire_json(result)
            case ThreadsSyncCustomActionReq():
                params: ThreadCustomActionParams = request.params
                thread = await self._known_thread(params.thread_id, context, preloaded)
                sender = await self._load_sender(thread.id, params.item_id, context)
                if sender is not None and not isinstance(sender, WidgetItem):
                    raise InvalidRequestError(
                        f"item {params.item_id!r} is not a widget; only widgets send actions",
                        code="invalid_sender",
                    )
                turn = self._turn(thread, None, context, http_request, request.type)
                turn.action, turn.sender = params.action, sender
                response = await self.responder.sync_action(turn, params.action, sender)
                if response.updated_item is not None:
                    # The reference only returns the new widget; saving it too means a
                    # reload shows what the user saw.
                    await self.store.save_item(thread.id, response.updated_item, context)
                return to_wire_json(response)
        raise InvalidRequestError(f"Unsupported request type {request.type!r}")  # pragma: no cover

    # -- streaming requests -------------------------------------------------------------

    async def _prepare_create(
        self, request: ThreadsCreateReq, context: Any, http_request: Any
    ) -> StreamPlan:
        thread = ThreadMetadata(id=self.store.generate_thread_id(context), created_at=Turn.now())
        attachments = await self._load_attachments(request.params.input, context)
        turn = self._turn(thread, None, context, http_request, request.type)
        await self._admit(request.type, context, None)
        lease = await self._acquire(thread.id, context)

        async def body(emit: Emit, options: StreamOptions) -> None:
            # The thread and its first message, stored whole or not at all (the thread is
            # deleted again if the message fails), before the client hears of either.
            orphan = _Orphan(thread.id, context, attachments)
            async with self._whole_or_nothing("the new thread", thread.id, orphan) as undo:
                undo.add(partial(self.store.delete_thread, thread.id, context))
                await self.store.save_thread(thread, context)
                item = await self._store_user_message(turn, request.params.input, attachments, undo)
            await emit(ThreadCreatedEvent(thread=self._thread_response(thread)))
            await emit(ThreadItemDoneEvent(item=item))
            await self._reply(turn, self.responder.respond(turn), emit, options)

        return await self._plan(turn, body, lease)

    async def _prepare_add_user_message(
        self, request: ThreadsAddUserMessageReq, context: Any, http_request: Any
    ) -> StreamPlan:
        thread = await self._load_thread(request.params.thread_id, context)
        attachments = await self._load_attachments(request.params.input, context)
        turn = self._turn(thread, None, context, http_request, request.type)
        await self._admit(request.type, context, thread)
        lease = await self._acquire(thread.id, context)

        async def body(emit: Emit, options: StreamOptions) -> None:
            async with self._whole_or_nothing("a message on thread", thread.id) as undo:
                item = await self._store_user_message(turn, request.params.input, attachments, undo)
            await emit(ThreadItemDoneEvent(item=item))
            await self._reply(turn, self.responder.respond(turn), emit, options)

        return await self._plan(turn, body, lease)

    async def _prepare_client_tool_output(
        self, request: ThreadsAddClientToolOutputReq, context: Any, http_request: Any
    ) -> StreamPlan:
        thread = await self._load_thread(request.params.thread_id, context)
        turn = self._turn(thread, None, context, http_request, request.type)
        await self._admit(request.type, context, thread)
        lease = await self._acquire(thread.id, context)
        async with _released_on_error(lease):
            recent = await self._visible_items(thread.id, None, 1, "desc", context)
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

        async def body(emit: Emit, options: StreamOptions) -> None:
            # The other pending calls go first and the output is saved last: a failure
            # part-way leaves this call pending, so sending the request again completes
            # it (dropping the others again changes nothing).
            await self._drop_dangling_tool_calls(thread, context, keep=tool_call.id)
            completed = tool_call.model_copy(
                update={"output": request.params.result, "status": "completed"}
            )
            async with self._whole_or_nothing("tool output on thread", thread.id) as undo:
                undo.add(partial(self.store.save_item, thread.id, tool_call, context))
                await self.store.save_item(thread.id, completed, context)
            await self._reply(turn, self.responder.respond(turn), emit, options)

        return await self._plan(turn, body, lease)

    async def _prepare_structured_input(
        self, request: ThreadsAddStructuredInputReq, context: Any, http_request: Any
    ) -> StreamPlan:
        params = request.params
        thread = await self._load_thread(params.thread_id, context)
        turn = self._turn(thread, None, context, http_request, request.type)
        await self._admit(request.type, context, thread)
        lease = await self._acquire(thread.id, context)
        async with _released_on_error(lease):
            item = await self._load_item(thread.id, params.item_id, context)
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
            async with aclosing(as_async_generator(self.responder.respond(turn))) as reply:
                async for event in reply:
                    yield event

        async def body(emit: Emit, options: StreamOptions) -> None:
            await self._reply(turn, events(), emit, options)

        return await self._plan(turn, body, lease)

    async def _prepare_retry(
        self, request: ThreadsRetryAfterItemReq, context: Any, http_request: Any
    ) -> StreamPlan:
        params = request.params
        thread = await self._load_thread(params.thread_id, context)
        await self._admit(request.type, context, thread)
        lease = await self._acquire(thread.id, context)
        async with _released_on_error(lease):
            item = await self._load_item(thread.id, params.item_id, context)
            if not isinstance(item, UserMessageItem):
                raise InvalidRequestError(
                    f"item {params.item_id!r} is not a user message; only those can be retried",
                    code="invalid_item_type",
                )
        turn = self._turn(thread, item, context, http_request, request.type)

        async def body(emit: Emit, options: StreamOptions) -> None:
            await self.store.delete_thread_items_after(thread.id, item.id, context)
            await self._reply(turn, self.responder.respond(turn), emit, options)

        return await self._plan(turn, body, lease)

    async def _prepare_custom_action(
        self, request: ThreadsCustomActionReq, context: Any, http_request: Any
    ) -> StreamPlan:
        params = request.params
        self.responder.check_action()
        thread = await self._load_thread(params.thread_id, context)
        sender = await self._load_sender(thread.id, params.item_id, context)
        turn = self._turn(thread, None, context, http_request, request.type)
        if sender is not None and not isinstance(sender, WidgetItem):
            # The protocol answers this with an error event rather than an HTTP error.
            async def refuse(emit: Emit) -> None:
                event = ErrorEvent(code=ErrorCode.STREAM_ERROR.value, allow_retry=False)
                await emit_error(emit, event, turn._stats)

            return StreamPlan(refuse, allow_cancel=True, turn=turn)
        turn.action, turn.sender = params.action, sender
        await self._admit(request.type, context, thread)
        lease = await self._acquire(thread.id, context)

        async def body(emit: Emit, options: StreamOptions) -> None:
            await self._reply(
                turn, self.responder.action(turn, params.action, sender), emit, options
            )

        return await self._plan(turn, body, lease)

    async def _plan(
        self,
        turn: Turn[Any],
        body: Callable[[Emit, StreamOptions], Awaitable[None]],
        lease: TurnLease,
    ) -> StreamPlan:
        async with _released_on_error(lease):
            options = await self.responder.stream_options(turn)

        async def run(emit: Emit) -> None:
            await body(emit, options)

        return StreamPlan(
            run,
            allow_cancel=options.allow_cancel,
            lease=lease,
            run_id=turn.run_id,
            thread_id=turn.thread.id,
            turn=turn,
        )

    # -- the reply pipeline -------------------------------------------------------------

    async def _store_user_message(
        self,
        turn: Turn[Any],
        message: UserMessageInput,
        attachments: list[Attachment],
        undo: _Undo,
    ) -> UserMessageItem:
        """Store the user's message and bind its attachments to the thread; `undo`
        learns how to take each write back."""
        thread = turn.thread
        # URLs renewed by the attachment store if they expired meanwhile.
        bound = [
            (await self._fresh_attachment(a, turn.context)).model_copy(
                update={"thread_id": thread.id}
            )
            for a in attachments
        ]
        item = UserMessageItem(
            id=self.store.generate_item_id("message", thread, turn.context),
            thread_id=thread.id,
            created_at=Turn.now(),
            content=message.content,
            attachments=bound,
            quoted_text=message.quoted_text,
            inference_options=message.inference_options,
        )
        # Each undo step is noted before its write: a write that failed may have landed.
        for original, attachment in zip(attachments, bound, strict=True):
            undo.add(partial(self.store.save_attachment, original, turn.context))
            await self.store.save_attachment(attachment, turn.context)
        undo.add(partial(self.store.delete_thread_item, thread.id, item.id, turn.context))
        await self.store.add_thread_item(thread.id, item, turn.context)
        turn.input = item
        return item

    async def _reply(
        self,
        turn: Turn[Any],
        source: AsyncIterator[ThreadStreamEvent],
        emit: Emit,
        options: StreamOptions,
    ) -> None:
        """Run a responder's events through the reply pipeline to `emit`."""
        pipeline = ReplyPipeline(
            self.store,
            turn,
            emit,
            self._thread_response,
            checkpoint_interval=self.checkpoint_interval,
            cleanup_timeout=self.cleanup_timeout,
        )
        await pipeline.run(source, options)

    # -- helpers ------------------------------------------------------------------------

    def _whole_or_nothing(self, what: str, subject: str, orphan: _Orphan | None = None) -> _Undo:
        """Around a request's writes before its reply (`async with`): if one fails (or
        the request is cancelled meanwhile), what was written is taken back, so that
        sending the request again (what the ChatKit client does) stores it once.

        Stores have no transactions across calls (none written to openai-chatkit's
        contract do), so the writes are undone with ordinary store calls instead.
        When the store is down for those too, a new thread (`orphan`) is deleted
        before this engine's next request: nobody was told of it, so nothing else
        can have used it meanwhile.
        """
        return _Undo(self, what, subject, orphan)

    def _keep_orphan(self, orphan: _Orphan) -> None:
        if len(self._orphans) >= _MAX_ORPHANS:
            logger.warning("too many new threads left to delete; forgetting one")
            del self._orphans[0]
        self._orphans.append(orphan)

    async def _delete_orphans(self) -> None:
        """Delete the new threads whose creation failed while the store was down."""
        orphans, self._orphans = self._orphans, []
        try:
            while orphans:
                with anyio.fail_after(self.cleanup_timeout):
                    await self._delete_orphan(orphans[0])
                orphans.pop(0)
        except Exception:
            logger.debug("the store is still down; new threads left to delete later")
        finally:
            self._orphans.extend(orphans)

    async def _delete_orphan(self, orphan: _Orphan) -> None:
        for original in orphan.attachments:
            with contextlib.suppress(NotFoundError):
                current = await self.store.load_attachment(original.id, orphan.context)
                # Still bound to the dead thread, not sent again in another one since.
                if current.thread_id == orphan.thread_id:
                    await self.store.save_attachment(original, orphan.context)
        with contextlib.suppress(NotFoundError):
            await self.store.delete_thread(orphan.thread_id, orphan.context)
        logger.info("deleted thread %s, whose creation had failed", orphan.thread_id)

    async def _acquire(self, thread_id: str, context: Any) -> TurnLease:
        try:
            lease = await self.store.acquire_turn(thread_id, context, self.turn_wait)
            if lease is None:
                lease = await self._locks.acquire(thread_id, self.turn_wait)
        except TurnBusyError:
            raise ConflictError(
                "Another reply is still running on this thread; try again when it has finished",
                code="thread_busy",
                headers={"Retry-After": "1"},
            ) from None
        return lease

    def _turn(
        self,
        thread: ThreadMetadata,
        user_message: UserMessageItem | None,
        context: Any,
        http_request: Any,
        request_type: str,
    ) -> Turn[Any]:
        return Turn(
            thread=thread,
            input=user_message,
            context=context,
            store=self.store,
            request=http_request,
            request_type=request_type,
            attachment_store=self.attachment_store,
        )

    def _limit(self, limit: int | None) -> int:
        return min(limit or self.page_size, self.max_page_size)

    def _attachment_store(self, request_type: str) -> AttachmentStore[Any]:
        if self.attachment_store is None:
            raise NotSupportedError(
                f"{request_type} needs an attachment store; none is configured",
                details=[{"missing": "attachment_store"}],
            )
        return self.attachment_store

    async def _load_thread(self, thread_id: str, context: Any) -> ThreadMetadata:
        try:
            return await self.store.load_thread(thread_id, context)
        except NotFoundError:
            _not_found("thread", thread_id)

    async def _load_item(self, thread_id: str, item_id: str, context: Any) -> ThreadItem:
        try:
            item = await self.store.load_item(thread_id, item_id, context)
        except NotFoundError:
            _not_found("item", item_id)
        if is_hidden(item):
            # Hidden items do not exist as far as the client is concerned.
            _not_found("item", item_id)
        return item

    async def _load_sender(
        self, thread_id: str, item_id: str | None, context: Any
    ) -> ThreadItem | None:
        if not item_id:
            return None
        return await self._load_item(thread_id, item_id, context)

    async def _load_attachment(self, attachment_id: str, context: Any) -> Attachment:
        try:
            return await self.store.load_attachment(attachment_id, context)
        except NotFoundError:
            _not_found("attachment", attachment_id)

    async def _load_attachments(self, message: UserMessageInput, context: Any) -> list[Attachment]:
        return [await self._load_attachment(a, context) for a in message.attachments]

    # -- attachment lifecycle -------------------------------------------------

    async def _refresh_attachment_urls(self, page: Page[ThreadItem], context: Any) -> None:
        """Renew expired attachment URLs (image previews) in items about to be sent.

        Only the answer changes: rewriting stored items on a read could race with a
        retry deleting them, and the store renews URLs cheaply on every load.
        """
        if self.attachment_store is None:
            return
        for item in page.data:
            if isinstance(item, UserMessageItem) and item.attachments:
                item.attachments = [
                    await self._fresh_attachment(a, context) for a in item.attachments
                ]

    async def _fresh_attachment(self, attachment: Attachment, context: Any) -> Attachment:
        if self.attachment_store is None:
            return attachment
        try:
            return await self.attachment_store.refresh_urls(attachment, context)
        except Exception:
            logger.warning(
                "could not renew the URLs of attachment %s", attachment.id, exc_info=True
            )
            return attachment

    async def _thread_attachment_ids(self, thread_id: str, context: Any) -> list[str]:
        """Ids of the attachments bound to the thread, whose bytes go with it."""
        if self.attachment_store is None:
            return []
        ids: dict[str, None] = {}
        after: str | None = None
        try:
            while True:
                page = await self.store.load_thread_items(thread_id, after, 100, "asc", context)
                for item in page.data:
                    if isinstance(item, UserMessageItem):
                        ids.update(dict.fromkeys(a.id for a in item.attachments))
                if not page.has_more or page.after is None:
                    break
                after = page.after
            bound = []
            for attachment_id in ids:
                with contextlib.suppress(NotFoundError):
                    attachment = await self.store.load_attachment(attachment_id, context)
                    # Sent again in another thread since? Then it is that thread's now.
                    if attachment.thread_id == thread_id:
                        bound.append(attachment_id)
        except NotFoundError:
            return []  # no such thread: `delete_thread` says so
        return bound

    async def _delete_attachment_bytes(self, attachment_ids: list[str], context: Any) -> None:
        if self.attachment_store is None:
            return
        for attachment_id in attachment_ids:
            try:
                await self.attachment_store.delete_attachment(attachment_id, context)
            except Exception:
                logger.warning(
                    "could not delete the bytes of attachment %s", attachment_id, exc_info=True
                )

    async def _visible_items(
        self, thread_id: str, after: str | None, limit: int, order: str, context: Any
    ) -> Page[ThreadItem]:
        """A full page of client-visible items: hidden ones are skipped, not counted.

        Reads one item past `limit` so `has_more` is exact.
        """
        visible: list[ThreadItem] = []
        cursor = after
        while len(visible) <= limit:
            try:
                page = await self.store.load_thread_items(
                    thread_id, cursor, limit + 1 - len(visible), order, context
                )
            except NotFoundError:
                _not_found("item", cursor or thread_id)
            visible.extend(item for item in page.data if not is_hidden(item))
            if not page.has_more or not page.data:
                break
            cursor = page.data[-1].id
        data = visible[:limit]
        has_more = len(visible) > limit
        return Page[ThreadItem](
            data=data, has_more=has_more, after=data[-1].id if data and has_more else None
        )

    @staticmethod
    def _thread_response(thread: ThreadMetadata, items: Page[ThreadItem] | None = None) -> Thread:
        # Thread metadata is integration-only, like attachment metadata: never sent.
        return Thread(
            id=thread.id,
            title=thread.title,
            created_at=thread.created_at,
            status=thread.status,
            allowed_image_domains=thread.allowed_image_domains,
            items=items if items is not None else Page[ThreadItem](),
        )

    async def _drop_dangling_tool_calls(
        self, thread: ThreadMetadata, context: Any, *, keep: str
    ) -> None:
        recent = await self.store.load_thread_items(
            thread.id, None, self.page_size, "desc", context
        )
        for item in recent.data:
            if (
                isinstance(item, ClientToolCallItem)
                and item.status == "pending"
                and item.id != keep
            ):
                logger.warning(
                    "dropping client tool call %s that was never completed", item.call_id
                )
                await self.store.delete_thread_item(thread.id, item.id, context)


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _AmbiguousJSON(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def _reject_constant(name: str) -> NoReturn:
    raise _AmbiguousJSON(f"{name} is not JSON")


class _AmbiguousJSON(ValueError):
    pass


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _AmbiguousJSON(f"{text} is too large for a JSON number")
    return value


def _reject_ambiguous_json(body: bytes, *, other_errors: bool) -> None:
    """Refuse what pydantic's parser tolerates but JSON does not mean one way.

    Duplicate keys are read differently by different parsers (a gateway may see
    another request than we run), and NaN/Infinity (also spelled 1e400) are not
    JSON numbers. With `other_errors`, any failure of this stdlib parse is invalid
    JSON; without (the body already failed pydantic), plain syntax errors are left
    to pydantic's more precise report.
    """
    try:
        json.loads(
            body,
            object_pairs_hook=_reject_duplicate_keys,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
        )
    except (ValueError, RecursionError) as exc:
        if not isinstance(exc, _AmbiguousJSON | RecursionError) and not other_errors:
            return
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise InvalidRequestError(
            f"The request body is not valid JSON: {reason}", code="invalid_json"
        ) from None


@asynccontextmanager
async def _released_on_error(lease: TurnLease) -> AsyncIterator[None]:
    """Give the lease back if validation refuses the request before it runs."""
    try:
        yield
    except BaseException:
        await _release(lease)
        raise


class _Undo:
    """How to take back the writes of a request so far (see `Engine._whole_or_nothing`).

    A plain class rather than an `asynccontextmanager`: it wraps every new message.
    """

    __slots__ = ("_engine", "_orphan", "_steps", "_subject", "_what")

    def __init__(self, engine: Engine, what: str, subject: str, orphan: _Orphan | None) -> None:
        self._engine = engine
        self._what = what
        self._subject = subject
        self._orphan = orphan
        self._steps: list[Callable[[], Awaitable[None]]] = []

    def add(self, step: Callable[[], Awaitable[None]]) -> None:
        """Note how to undo the write about to be made."""
        self._steps.append(step)

    async def __aenter__(self) -> _Undo:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            return
        what = f"{self._what} {self._subject}"
        if not await self.run(what, self._engine.cleanup_timeout) and self._orphan is not None:
            self._engine._keep_orphan(self._orphan)

    async def run(self, what: str, within: float) -> bool:
        """Undo, newest write first, shielded and within `within` seconds; whether
        every step was done.

        Stops at the first step the store refuses: an attachment that could not be
        given back its old binding must not go with the thread deleted after it.
        """
        with anyio.move_on_after(within, shield=True):
            for step in reversed(self._steps):
                try:
                    await step()
                except NotFoundError:
                    pass  # the write never landed: nothing to take back
                except Exception:
                    logger.warning("could not take back %s", what, exc_info=True)
                    return False
            return True
        logger.warning("could not take back %s within %s s", what, within)  # timed out
        return False


class _Orphan(NamedTuple):
    """A new thread whose creation failed, left to delete once the store answers."""

    thread_id: str
    context: Any
    attachments: list[Attachment]
    """The message's attachments as they were before the request bound them."""


# New threads left to delete at most (each is one failed threads.create in an outage).
_MAX_ORPHANS = 1000


async def _release(lease: TurnLease) -> None:
    """Give a lease back, even after a cancellation; an outage only delays the next turn.

    Runs shielded so the next reply does not wait for an expiry. A lease that cannot
    be released (its store is down) expires by itself, so that is logged, not raised:
    the reply it guarded is over either way.
    """
    with anyio.CancelScope(shield=True):
        try:
            await lease.release()
        except Exception:
            logger.warning("could not release a turn lease; it will expire", exc_info=True)


class _Refused(Exception):
    """The admission hook refused the request (caught in `Engine.prepare`)."""

    def __init__(self, refusal: Refusal, thread: ThreadMetadata | None) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal
        self.thread = thread


def _refusal_plan(refusal: Refusal, thread: ThreadMetadata | None) -> StreamPlan:
    """A reply that only says no: the refusal's event, nothing stored."""
    event = refusal.event()

    async def run(emit: Emit) -> None:
        await emit(event)

    return StreamPlan(
        run, allow_cancel=True, thread_id=thread.id if thread else None, refusal=refusal
    )


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
