"""The reply pipeline: a responder's events, persisted and filtered on their way out.

For each event: its side effect on the store first (`done` stores, `replaced`
upserts, `removed` deletes, `added`/`updated` are tracked as pending), then the
client sees it unless it is hidden context. A change the responder made to the
thread is saved and announced with `thread.updated`.

Streaming assistant text is checkpointed to the store at most once per
`checkpoint_interval`, so a worker killed mid-reply loses at most that much of
the answer; the final `done` overwrites the checkpoint in place.

An item goes through `add_thread_item` once per reply and through `save_item`
after that (see `_StoredItems`): stores written to the reference's contract may
make `add_thread_item` a plain INSERT that fails on an id already stored.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import anyio
import anyio.abc
from pydantic import BaseModel, TypeAdapter
from starlette.exceptions import HTTPException

from .._reply import Emit, ReplyStats, emit_error
from ..errors import (
    BaseStreamError,
    CustomStreamError,
    ErrorCode,
    StreamError,
    error_from_http_exception,
)
from ..store import NotFoundError, Store, StoreUnavailableError
from ..turn import Turn
from ..types import (
    AssistantMessageItem,
    ErrorEvent,
    HiddenContextItem,
    SDKHiddenContextItem,
    StreamOptions,
    StreamOptionsEvent,
    Thread,
    ThreadItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemRemovedEvent,
    ThreadItemReplacedEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    ThreadUpdatedEvent,
    WorkflowItem,
)
from ..types._base import copy_model
from ..types.items import ThreadItemBase
from .pending import PendingItems

__all__ = ["ReplyPipeline", "as_async_generator", "is_hidden"]

logger = logging.getLogger("chatkit_asgi")

"""Where a running reply sends each event that is meant for the client."""

_EVENT_ADAPTER: TypeAdapter[ThreadStreamEvent] = TypeAdapter(ThreadStreamEvent)
_HIDDEN = (HiddenContextItem, SDKHiddenContextItem)
_CANCELLED_NOTE = "The user cancelled the stream. Stop responding to the prior request."


def is_hidden(item: ThreadItem) -> bool:
    """Whether an item exists for the model only and never reaches the client."""
    return isinstance(item, _HIDDEN)


class ReplyPipeline:
    """One reply: runs a responder's events through persistence to `emit`."""

    def __init__(
        self,
        store: Store[Any],
        turn: Turn[Any],
        emit: Emit,
        thread_response: Callable[[ThreadMetadata], Thread],
        *,
        checkpoint_interval: float | None,
        cleanup_timeout: float,
        stats: ReplyStats | None = None,
    ) -> None:
        self.store = store
        self.turn = turn
        self.emit = emit
        self.thread_response = thread_response
        self.cleanup_timeout = cleanup_timeout
        self.pending = PendingItems()
        self.items = _StoredItems(store, turn.thread.id, turn.context)
        self.checkpoints = (
            _Checkpoints(self.items, self.pending, checkpoint_interval)
            if checkpoint_interval
            else None
        )
        self._saved_thread = copy_model(turn.thread)
        self.stats = stats

    async def run(self, source: AsyncIterator[ThreadStreamEvent], options: StreamOptions) -> None:
        """The reply: `stream_options`, the responder's events, errors as `error` events."""
        await self.emit(StreamOptionsEvent(stream_options=options))
        if self.checkpoints is None:
            await self._run(source)
            return
        async with anyio.create_task_group() as background:
            # The saver starts with the first streamed text: most replies have none.
            self.checkpoints.background = background
            try:
                # A checkpoint that finds the thread deleted cancels this scope.
                with anyio.CancelScope() as self.checkpoints.reply:
                    await self._run(source)
            finally:
                background.cancel_scope.cancel()
        if self.checkpoints.thread_gone:
            # Expected (another tab deleted the thread mid-reply), not a failure.
            logger.info(
                "thread %s was deleted during its reply; the reply ends", self.turn.thread.id
            )

    async def _run(self, source: AsyncIterator[ThreadStreamEvent]) -> None:
        # Called once, at the responder's first event: one local check per event.
        first: Callable[[], None] | None = None if self.stats is None else self.stats.responded
        try:
            async with aclosing(as_async_generator(source)) as events:
                async for raw in events:
                    if first is not None:
                        first()
                        first = None
                    event = _coerce_event(raw)
                    try:
                        shown = await self._persist(event)
                        if shown:
                            await self.emit(event)
                        await self._sync_thread()
                    except NotFoundError:
                        # Our writes upsert: only a deleted thread makes them not found.
                        raise _ThreadGone from None
        except _ThreadGone:
            # Expected (another tab deleted the thread mid-reply), not a failure.
            logger.info(
                "thread %s was deleted during its reply; the reply ends", self.turn.thread.id
            )
            return
        except anyio.get_cancelled_exc_class():
            with anyio.move_on_after(self.cleanup_timeout, shield=True):
                await self._save_cancelled()
            raise
        except BaseStreamError as exc:
            # Like the reference, an unfinished item is dropped on error: the UI offers
            # a retry of the whole reply, and a reload shows no half answer.
            await self._drop_unfinished()
            await self._fail(_error_event(exc))
        except HTTPException as exc:
            # App code written for an HTTP endpoint refuses this way; the status can no
            # longer be sent, so its detail is shown as a custom error (4xx: no retry).
            logger.info(
                "HTTPException %s during a reply on thread %s",
                exc.status_code,
                self.turn.thread.id,
            )
            await self._drop_unfinished()
            message = error_from_http_exception(exc).message
            await self._fail(
                ErrorEvent(code="custom", message=message, allow_retry=exc.status_code >= 500)
            )
        except StoreUnavailableError:
            logger.warning("store unavailable during a reply on thread %s", self.turn.thread.id)
            await self._fail(ErrorEvent(code=ErrorCode.STREAM_ERROR.value, allow_retry=True))
        except Exception:
            logger.exception("responder failed on thread %s", self.turn.thread.id)
            await self._drop_unfinished()
            await self._fail(ErrorEvent(code=ErrorCode.STREAM_ERROR.value, allow_retry=True))
        else:
            await self._drop_unfinished()
        await self._sync_thread()

    async def _fail(self, event: ErrorEvent) -> None:
        await emit_error(self.emit, event, self.stats)

    async def _sync_thread(self) -> None:
        thread = self.turn.thread
        if _changed(thread, self._saved_thread):
            self._saved_thread = copy_model(thread)
            await self.store.save_thread(thread, self.turn.context)
            await self.emit(ThreadUpdatedEvent(thread=self.thread_response(thread)))

    async def _persist(self, event: ThreadStreamEvent) -> bool:
        """Apply an event's side effects; return whether the client may see it."""
        thread_id, context = self.turn.thread.id, self.turn.context
        match event:
            case ThreadItemUpdatedEvent():
                if self.pending.update(event) and self.checkpoints is not None:
                    self.checkpoints.due()
            case ThreadItemDoneEvent():
                item = event.item
                async with self._writing(item.id) as announced:
                    if not announced and isinstance(item, WorkflowItem) and item not in self.items:
                        # A workflow left open by an earlier reply (for a client tool
                        # call) is continued and ended without a new `added`: it may
                        # be stored already. Only workflows carry over between replies.
                        await self.items.adopt(item.id)
                    await self.items.put(item)
                if self.stats is not None:
                    self.stats.done(event.item)
                return not is_hidden(event.item)
            case ThreadItemAddedEvent():
                if is_hidden(event.item):
                    return False
                self.pending.add(event.item)
            case ThreadItemReplacedEvent():
                item = event.item
                async with self._writing(item.id) as announced:
                    if announced or item in self.items:
                        # An item of this reply: added now if nothing stored it yet.
                        await self.items.put(item)
                    else:
                        # An item of an earlier reply, updated in place (the reference
                        # calls `save_item` here too).
                        await self.store.save_item(thread_id, item, context)
                return not is_hidden(item)
            case ThreadItemRemovedEvent():
                async with self._writing(event.item_id):
                    await self.items.delete(event.item_id)
            case ErrorEvent():
                if self.stats is not None:
                    self.stats.error(event.code)
        return True

    def _writing(self, item_id: str) -> _Finishing:
        return _Finishing(self, item_id)

    async def _save_cancelled(self) -> None:
        """Keep what the user already saw of a cancelled reply, and say it was cancelled."""
        thread, context = self.turn.thread, self.turn.context
        if self.checkpoints is not None and self.checkpoints.thread_gone:
            return  # nowhere to save it
        try:
            if self.checkpoints is not None:
                # A checkpoint still being written must not land after the final text.
                await self.checkpoints.lock.acquire()
            for item in self.pending.finished():
                if isinstance(item, AssistantMessageItem) and any(
                    part.text.strip() for part in item.content
                ):
                    await self.items.put(item)  # over its checkpoint, if there is one
                elif self.checkpoints is not None and item.id in self.checkpoints.written:
                    await self.items.delete(item.id)
            # Without this note the next reply may continue the interrupted answer.
            note = SDKHiddenContextItem(
                id=self.store.generate_item_id("sdk_hidden_context", thread, context),
                thread_id=thread.id,
                created_at=Turn.now(),
                content=_CANCELLED_NOTE,
            )
            await self.items.put(note)
            if _changed(thread, self._saved_thread):  # e.g. a title set just before the cancel
                await self.store.save_thread(thread, context)
        except Exception:
            logger.exception("could not save the cancelled reply on thread %s", thread.id)
        finally:
            if self.checkpoints is not None and self.checkpoints.lock.locked():
                self.checkpoints.lock.release()

    async def _drop_unfinished(self) -> None:
        """Remove checkpoints of items the reply never finished (error or forgotten `done`)."""
        if self.checkpoints is None or not self.checkpoints.written:
            return
        async with self.checkpoints.lock:
            for item_id in list(self.checkpoints.written):
                if self.pending.has(item_id):
                    await self.items.delete(item_id)
            self.checkpoints.written.clear()


class _Finishing:
    """Around the write that finishes an item: no checkpoint of it may land after it.

    Entering it says whether the item was announced (`added`) in this reply.
    """

    def __init__(self, pipeline: ReplyPipeline, item_id: str) -> None:
        self._pipeline = pipeline
        self._item_id = item_id

    async def __aenter__(self) -> bool:
        announced = self._pipeline.pending.has(self._item_id)
        self._pipeline.pending.discard(self._item_id)
        checkpoints = self._pipeline.checkpoints
        if checkpoints is not None:
            await checkpoints.lock.acquire()
            checkpoints.written.discard(self._item_id)
        return announced

    async def __aexit__(self, *exc: object) -> None:
        checkpoints = self._pipeline.checkpoints
        if checkpoints is not None:
            checkpoints.lock.release()


class _ThreadGone(Exception):
    """A write of the reply found its thread deleted."""


class _StoredItems:
    """Writes a reply's items: `add_thread_item` the first time, `save_item` after.

    A store written to the reference's contract may make `add_thread_item` a plain
    INSERT that fails on an id already stored, so an item this reply has stored
    (a checkpoint, an earlier `done`) is only ever updated. Our own stores make both
    an upsert that keeps the item's place, so for them either call does the same.
    """

    def __init__(self, store: Store[Any], thread_id: str, context: Any) -> None:
        self.store = store
        self.thread_id = thread_id
        self.context = context
        self._ids: set[str] = set()

    def __contains__(self, item: ThreadItem) -> bool:
        """Whether this reply stored the item (and did not delete it since)."""
        return item.id in self._ids

    async def put(self, item: ThreadItem) -> None:
        """Store the item: added if this reply has not stored it yet, else updated."""
        if item.id in self._ids:
            await self.store.save_item(self.thread_id, item, self.context)
        else:
            await self.store.add_thread_item(self.thread_id, item, self.context)
            self._ids.add(item.id)

    async def delete(self, item_id: str) -> None:
        await self.store.delete_thread_item(self.thread_id, item_id, self.context)
        self._ids.discard(item_id)

    async def adopt(self, item_id: str) -> None:
        """Take over an item an earlier reply may have stored: updated if it was."""
        try:
            await self.store.load_item(self.thread_id, item_id, self.context)
        except NotFoundError:
            return
        self._ids.add(item_id)


class _Checkpoints:
    """Saves streaming assistant messages at most once per `interval` while text flows."""

    def __init__(self, items: _StoredItems, pending: PendingItems, interval: float) -> None:
        self.items = items
        self.pending = pending
        self.interval = interval
        self.lock = anyio.Lock()
        self.written: set[str] = set()
        self.saves = 0
        self.background: anyio.abc.TaskGroup | None = None
        self.reply: anyio.CancelScope | None = None
        """The reply's scope, cancelled when a checkpoint finds its thread deleted."""
        self.thread_gone = False
        self._wake: anyio.Event | None = None

    def due(self) -> None:
        """New text arrived; a checkpoint is wanted within `interval`."""
        if self._wake is None:
            self._wake = anyio.Event()
            if self.background is not None:
                self.background.start_soon(self._keep_saving)
        if not self._wake.is_set():
            self._wake.set()

    async def _keep_saving(self) -> None:
        while True:
            assert self._wake is not None
            await self._wake.wait()
            await anyio.sleep(self.interval)
            self._wake = anyio.Event()
            async with self.lock:
                for item in self.pending.finished():
                    if isinstance(item, AssistantMessageItem):
                        # Added by the first checkpoint, updated by the next ones.
                        try:
                            await self.items.put(item)
                        except NotFoundError:
                            # The thread was deleted mid-reply: end the reply quietly.
                            self.thread_gone = True
                            if self.reply is not None:
                                self.reply.cancel()
                            return
                        self.written.add(item.id)
                        self.saves += 1


def _changed(thread: ThreadMetadata, saved: ThreadMetadata) -> bool:
    """Whether the responder changed the thread; runs after every event.

    The fields compared directly: pydantic's `==` does the same and more, at about
    twice the cost.
    """
    if thread.__dict__ != saved.__dict__:
        return True
    return thread.__pydantic_extra__ != saved.__pydantic_extra__


def as_async_generator(source: Any) -> Any:
    """An async generator over any async iterable, so it can be closed deterministically."""

    async def gen() -> AsyncIterator[Any]:
        async for value in source:
            yield value

    if hasattr(source, "aclose"):
        return source
    return gen()


def _coerce_event(raw: Any) -> ThreadStreamEvent:
    if isinstance(raw, ThreadItemBase):
        # An item has a `type` too, so it would pass for an event and reach the client
        # as nonsense: name the wrapping the responder forgot.
        raise TypeError(
            f"the responder yielded a {type(raw).__name__}, an item, not an event: "
            "yield ThreadItemDoneEvent(item=...) to add it to the thread"
        )
    if isinstance(raw, BaseModel) and hasattr(raw, "type"):
        return raw  # type: ignore[return-value]
    return _EVENT_ADAPTER.validate_python(raw)


def _error_event(exc: BaseStreamError) -> ErrorEvent:
    if isinstance(exc, CustomStreamError):
        return ErrorEvent(code="custom", message=exc.message, allow_retry=exc.allow_retry)
    if isinstance(exc, StreamError):
        code = exc.code.value if isinstance(exc.code, ErrorCode) else str(exc.code)
        return ErrorEvent(code=code, allow_retry=exc.allow_retry)
    return ErrorEvent(code=ErrorCode.STREAM_ERROR.value, allow_retry=exc.allow_retry)
