"""The openai-chatkit compatibility layer: code written for `chatkit.server` runs on
chatkit-asgi by changing its imports.

::

    from chatkit_asgi.server import ChatKitServer, StreamingResult

    class MyServer(ChatKitServer[MyContext]):
        async def respond(self, thread, input_user_message, context):
            yield ...

A `ChatKitServer` subclass keeps the reference's methods and signatures (`respond`,
`action`, `sync_action`, `add_feedback`, `transcribe`, `get_stream_options`,
`handle_stream_cancelled`, `self.store`, `self.attachment_store`) and runs on our
engine. Serve it either way:

- mounted: `ChatKitApp(server)` is the endpoint (content negotiation, heartbeats,
  client disconnects, errors as JSON), with the server's store and attachment store;
- in an endpoint of your own: `await server.process(body, context)` returns a
  `StreamingResult` (SSE bytes) or a `NonStreamingResult` (`.json`), as the reference's.

What the engine brings either way: a request is checked against the store before its
reply starts (a bad one raises a `ChatKitError` from `process`; each is also an instance
of what the reference raised there: `ValueError`, `NotFoundError`, `NotImplementedError`),
items are saved as they stream (checkpoints included), hidden items never reach the
client, two replies on one thread never interleave, and a reply whose reader leaves
early is never lost: cancelled with its partial text and a hidden note saved when its
stream options allow cancelling, run to its end otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sys
import weakref
from abc import ABC, abstractmethod
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
)
from contextlib import aclosing, contextmanager
from typing import TYPE_CHECKING, Any, Generic

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream
from typing_extensions import TypeVar

from . import __version__
from ._pipeline import _PendingItems, as_async_generator, emit_error
from .engine import Engine, JSONResult, StreamPlan
from .errors import (
    ChatKitError,
    ConflictError,
    ErrorCode,
    InvalidRequestError,
    NotSupportedError,
    ResourceNotFoundError,
)
from .store import AttachmentStore, NotFoundError, Store
from .streaming import SSE
from .types import (
    Action,
    AudioInput,
    ErrorEvent,
    FeedbackKind,
    StreamOptions,
    SyncCustomActionResponse,
    ThreadItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemRemovedEvent,
    ThreadItemReplacedEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    TranscriptionResult,
    UserMessageItem,
    WidgetItem,
)
from .widgets.diff import diff_widget
from .widgets.streaming import stream_widget

if TYPE_CHECKING:
    from .responder import ResponderLike
    from .turn import Turn

__all__ = [
    "DEFAULT_ERROR_MESSAGE",
    "DEFAULT_PAGE_SIZE",
    "ChatKitServer",
    "NonStreamingResult",
    "StreamingResult",
    "TContext",
    "agents_sdk_user_agent_override",
    "diff_widget",
    "stream_widget",
]

logger = logging.getLogger("chatkit_asgi")

TContext = TypeVar("TContext", default=Any)

DEFAULT_PAGE_SIZE = 20
"""Items per page of `threads.get_by_id`, and of listings whose request sets no limit."""

DEFAULT_ERROR_MESSAGE = "Something went wrong while generating the response."
"""A generic message for a `CustomStreamError` (the engine's own error events carry a
code the UI localizes instead)."""

_BUFFER_SIZE = 64  # frames a reply may run ahead of its reader, as ChatKitApp's default
_CLEANUP_TIMEOUT = 5.0  # seconds `handle_stream_cancelled` may take, as the engine's saves
_HEARTBEAT = SSE.heartbeat or b": ping\n"

# Tasks nobody awaits (a reply whose reader left, a lease given back late): referenced
# here so the event loop does not drop them half-way.
_BACKGROUND: set[asyncio.Task[Any]] = set()


# -- the reference's helpers ------------------------------------------------------------


@contextmanager
def agents_sdk_user_agent_override() -> Iterator[None]:
    """Within the block, requests of the OpenAI Agents SDK's Responses and Chat
    Completions models carry a `User-Agent` naming the SDK and chatkit-asgi.

    `ChatKitServer` applies it around `respond` and `action` when the app has imported
    the Agents SDK, as the reference does. Without the SDK it does nothing.
    """
    try:
        import agents
        from agents.models.chatcmpl_helpers import HEADERS_OVERRIDE
        from agents.models.openai_responses import _HEADERS_OVERRIDE
    except ImportError:  # no Agents SDK (or one without header overrides): nothing to name
        yield
        return
    headers = {"User-Agent": f"Agents/Python {agents.__version__} chatkit-asgi/{__version__}"}
    tokens = [(var, var.set(headers)) for var in (HEADERS_OVERRIDE, _HEADERS_OVERRIDE)]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            # A generator finalized in another task resets from another context: the
            # value then dies with the context it was set in.
            with contextlib.suppress(ValueError):
                var.reset(token)


@contextmanager
def _agents_user_agent() -> Iterator[None]:
    """`agents_sdk_user_agent_override`, only when the app uses the Agents SDK: importing
    it for an app that does not would cost a second or so at the first reply."""
    if "agents" not in sys.modules:
        yield
        return
    with agents_sdk_user_agent_override():
        yield


# -- results of `process` -------------------------------------------------------------------


class StreamingResult(AsyncIterable[bytes]):
    """The answer of `ChatKitServer.process` to a streaming request: Server-Sent Events.

    `json_events` yields one frame per event (`data: {...}` and a blank line). Iterating
    the result itself yields the same frames, plus a `: ping` comment line whenever the
    reply is silent for `ChatKitServer.heartbeat_interval` seconds, so proxies keep the
    connection open: hand it to `StreamingResponse(result, media_type="text/event-stream")`.

    Read it to the end, or close it: a reader that stops early (closes, is cancelled, or
    drops it) ends the reply as a client disconnect does under `ChatKitApp`: cancelled,
    with its partial text and a hidden note saved, when its stream options allow
    cancelling; otherwise run to its end with nobody reading, every item saved.
    """

    def __init__(self, stream: AsyncIterator[bytes]) -> None:
        self.json_events = stream
        self._reply: _Reply | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._reply is not None:
            self._reply.heartbeats = True
        events = self.json_events
        try:
            async for frame in events:
                yield frame
        finally:
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()


class NonStreamingResult:
    """The answer of `ChatKitServer.process` to a JSON request: its body in `json`."""

    def __init__(self, result: bytes) -> None:
        self.json = result


# -- errors `process` raises, typed as the reference's ----------------------------------


class _InvalidRequest(InvalidRequestError, ValueError):
    """An invalid request (400); the reference raised `ValueError` (or pydantic's)."""


class _Conflict(ConflictError, ValueError):
    """A request that does not fit the thread's state (409); the reference: `ValueError`."""


class _NotFound(ResourceNotFoundError, NotFoundError):
    """An unknown thread, item or attachment (404); the reference let the store's
    `NotFoundError` through."""


class _NotSupported(NotSupportedError, NotImplementedError):
    """A request the server is not set up for (400); the reference raised
    `NotImplementedError` or `RuntimeError` (of which `NotImplementedError` is one)."""


_REFERENCE_TYPES: tuple[tuple[type[ChatKitError], type[ChatKitError]], ...] = (
    (InvalidRequestError, _InvalidRequest),
    (ConflictError, _Conflict),
    (ResourceNotFoundError, _NotFound),
    (NotSupportedError, _NotSupported),
)


def _as_reference_error(exc: ChatKitError) -> ChatKitError:
    """The same refusal, also an instance of the type the reference raised for it, so
    `except ValueError` / `except NotFoundError` in a ported endpoint still catch it."""
    for ours, compatible in _REFERENCE_TYPES:
        if isinstance(exc, ours) and not isinstance(exc, compatible):
            return compatible(
                exc.message,
                code=exc.code,
                status_code=exc.status_code,
                details=exc.details,
                headers=exc.headers,
            )
    return exc


# -- the server ---------------------------------------------------------------------------


class ChatKitServer(ABC, Generic[TContext]):
    """A ChatKit backend written as for openai-chatkit, run by chatkit-asgi's engine.

    Subclass it and implement `respond`; override the other methods for the requests
    they serve. Then mount it (`ChatKitApp(server)`) or call `process` from an
    endpoint of your own. `store` and `attachment_store` are read at every `process`
    call, so they may be replaced after construction; `ChatKitApp(server)` takes
    them when the app is built.

    Differences from the reference that a subclass may notice: `handle_stream_cancelled`
    saves nothing by default (the engine does, see there); `action`, `sync_action` and
    `transcribe` that are not overridden refuse their requests up front (400
    `not_supported`); feedback on unknown items is refused (404) instead of handed over.
    """

    heartbeat_interval: float | None = 15.0
    """Seconds of silence after which iterating a `StreamingResult` yields a `: ping`
    comment (None: never)."""

    _engine_cache: Engine | None = None

    def __init__(
        self,
        store: Store[TContext],
        attachment_store: AttachmentStore[TContext] | None = None,
    ) -> None:
        self.store = store
        self.attachment_store = attachment_store

    def _get_attachment_store(self) -> AttachmentStore[TContext]:
        """The attachment store, or a refusal (400 `not_supported`) without one."""
        if self.attachment_store is None:
            raise _NotSupported(
                "This server has no attachment store; give one to ChatKitServer for files",
                details=[{"missing": "attachment_store"}],
            )
        return self.attachment_store

    # -- what a subclass implements ------------------------------------------------------

    @abstractmethod
    def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: TContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        """Yield the events of the reply to `input_user_message` (None after a client
        tool's output or a structured input) on `thread`.

        Changes made to `thread` (its title, metadata, status) are saved and announced
        with `thread.updated`.
        """

    async def add_feedback(
        self,
        thread_id: str,
        item_ids: list[str],
        feedback: FeedbackKind,
        context: TContext,
    ) -> None:
        """Record the user's thumbs up or down on items of the thread; accepted and
        dropped unless overridden (the UI sends it whatever the server does)."""

    async def transcribe(self, audio_input: AudioInput, context: TContext) -> TranscriptionResult:
        """Turn dictated audio (`audio_input.data`, `audio_input.media_type`) into the
        composer's text; `input.transcribe` is refused unless overridden."""
        raise _NotSupported(
            "input.transcribe needs ChatKitServer.transcribe(); this server does not override it",
            details=[{"missing_method": "transcribe"}],
        )

    def action(
        self,
        thread: ThreadMetadata,
        action: Action[str, Any],
        sender: WidgetItem | None,
        context: TContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        """Yield the events answering a widget's action (`threads.custom_action`);
        refused unless overridden."""
        raise _NotSupported(
            "threads.custom_action needs ChatKitServer.action(); this server does not override it",
            details=[{"missing_method": "action"}],
        )

    async def sync_action(
        self,
        thread: ThreadMetadata,
        action: Action[str, Any],
        sender: WidgetItem | None,
        context: TContext,
    ) -> SyncCustomActionResponse:
        """Answer a widget's action without a stream (`threads.sync_custom_action`); the
        `updated_item` returned is saved. Refused unless overridden."""
        raise _NotSupported(
            "threads.sync_custom_action needs ChatKitServer.sync_action(); this server "
            "does not override it",
            details=[{"missing_method": "sync_action"}],
        )

    def get_stream_options(self, thread: ThreadMetadata, context: TContext) -> StreamOptions:
        """The reply's stream options; cancellable by default.

        `allow_cancel=False` also means a reader that leaves early does not stop the
        reply: it runs to its end and everything it yields is saved.
        """
        return StreamOptions(allow_cancel=True)

    async def handle_stream_cancelled(
        self,
        thread: ThreadMetadata,
        pending_items: list[ThreadItem],
        context: TContext,
    ) -> None:
        """Called when a reply is cancelled, with the items it had started but not
        finished (text streamed so far included): stop work of your own here.

        Nothing to save: after this returns, the engine saves the assistant messages
        that have text and a hidden note telling the model the user cancelled, as the
        reference's default does. Runs shielded from the cancellation, for at most
        5 seconds.
        """

    # -- serving ---------------------------------------------------------------------------

    async def process(
        self, request: str | bytes | bytearray, context: TContext
    ) -> StreamingResult | NonStreamingResult:
        """Answer one ChatKit request body, for an endpoint of your own.

        Streaming requests give a `StreamingResult`, the others a `NonStreamingResult`.
        Everything that can refuse a request happens before this returns: a bad one
        raises a `ChatKitError` (its `status_code` and `to_json()` make the HTTP
        answer), which is also an instance of what the reference raised (`ValueError`
        for invalid requests, `NotFoundError` for unknown ids, `NotImplementedError`
        for requests the server is not set up for). Other exceptions of your code or
        store propagate as they are, as there.
        """
        engine = self._engine()
        body = request.encode() if isinstance(request, str) else bytes(request)
        try:
            result = await engine.prepare(engine.parse(body), context)
        except ChatKitError as exc:
            compatible = _as_reference_error(exc)
            if compatible is exc:
                raise
            raise compatible from exc
        if isinstance(result, JSONResult):
            return NonStreamingResult(result.body)
        reply = _Reply(result, self.heartbeat_interval)
        frames = reply.frames()
        # A result that is dropped unread never starts its generator, whose cleanup
        # would give the thread's turn back: give it back when the generator goes.
        weakref.finalize(frames, _release_unread, reply, asyncio.get_running_loop()).atexit = False
        streaming = StreamingResult(frames)
        streaming._reply = reply
        return streaming

    def _engine(self) -> Engine:
        """The engine over the current stores: built again when either was replaced."""
        engine = self._engine_cache
        if (
            engine is None
            or engine.store is not self.store
            or engine.attachment_store is not self.attachment_store
        ):
            engine = Engine(
                _ServerResponder(self),
                self.store,
                self.attachment_store,
                page_size=DEFAULT_PAGE_SIZE,
            )
            self._engine_cache = engine
        return engine

    def _chatkit_mount(
        self, store: Store[Any] | None, attachment_store: AttachmentStore[Any] | None
    ) -> tuple[ResponderLike, Store[Any], AttachmentStore[Any] | None]:
        """What `ChatKitApp(server)` serves: this server as a responder, over its stores.

        A `store=` or `attachment_store=` given to the app must be the server's own:
        the server's methods use `self.store`, so another store would split the
        threads between two places.
        """
        for name, given, own in (
            ("store", store, self.store),
            ("attachment_store", attachment_store, self.attachment_store),
        ):
            if given is not None and given is not own:
                raise TypeError(
                    f"ChatKitApp(server, {name}=...): the app serves the server's own "
                    f"{name}; set server.{name} instead"
                )
        return _ServerResponder(self), self.store, self.attachment_store


class _ServerResponder:
    """A `ChatKitServer` as the engine's object responder: each method calls the
    server's method of the same purpose with the reference's arguments."""

    def __init__(self, server: ChatKitServer[Any]) -> None:
        self._server = server
        kind = type(server)
        for name in ("action", "sync_action", "transcribe"):
            if getattr(kind, name) is getattr(ChatKitServer, name):
                # Not overridden: absent here, so the engine refuses the request before
                # a reply starts (400 not_supported) instead of failing in the stream.
                setattr(self, name, None)
        self._cancel_hook = (
            kind.handle_stream_cancelled is not ChatKitServer.handle_stream_cancelled
        )

    def respond(self, turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        """`server.respond(thread, input_user_message, context)`."""
        server = self._server
        return self._events(turn, lambda: server.respond(turn.thread, turn.input, turn.context))

    def action(
        self, turn: Turn[Any], action: Action[str, Any], sender: WidgetItem | None
    ) -> AsyncIterator[ThreadStreamEvent]:
        """`server.action(thread, action, sender, context)`."""
        server = self._server
        return self._events(turn, lambda: server.action(turn.thread, action, sender, turn.context))

    def sync_action(
        self, turn: Turn[Any], action: Action[str, Any], sender: WidgetItem | None
    ) -> Awaitable[SyncCustomActionResponse]:
        """`server.sync_action(thread, action, sender, context)`."""
        return self._server.sync_action(turn.thread, action, sender, turn.context)

    def add_feedback(
        self, turn: Turn[Any], item_ids: list[str], kind: FeedbackKind
    ) -> Awaitable[None]:
        """`server.add_feedback(thread_id, item_ids, feedback, context)`."""
        return self._server.add_feedback(turn.thread.id, item_ids, kind, turn.context)

    def transcribe(self, audio: AudioInput, context: Any) -> Awaitable[TranscriptionResult]:
        """`server.transcribe(audio_input, context)`."""
        return self._server.transcribe(audio, context)

    def stream_options(self, turn: Turn[Any]) -> StreamOptions:
        """`server.get_stream_options(thread, context)`."""
        return self._server.get_stream_options(turn.thread, turn.context)

    async def _events(
        self, turn: Turn[Any], start: Callable[[], AsyncIterator[ThreadStreamEvent]]
    ) -> AsyncIterator[ThreadStreamEvent]:
        # `start` is called at the first event, inside the engine's reply pipeline: a
        # method that raises at once gives an error event, as in the reference.
        pending = _PendingItems() if self._cancel_hook else None
        with _agents_user_agent():
            try:
                async with aclosing(as_async_generator(start())) as events:
                    async for event in events:
                        if pending is not None:
                            _track(pending, event)
                        yield event
            except anyio.get_cancelled_exc_class():
                if pending is not None:
                    await self._cancelled(turn, pending)
                raise
            except GeneratorExit:
                # Closed at a `yield`: by a cancellation of the reply (the enclosing
                # scope is cancelled), or because the reply failed outside the responder.
                if pending is not None and anyio.current_effective_deadline() == -math.inf:
                    await self._cancelled(turn, pending)
                raise

    async def _cancelled(self, turn: Turn[Any], pending: _PendingItems) -> None:
        with anyio.move_on_after(_CLEANUP_TIMEOUT, shield=True):
            try:
                await self._server.handle_stream_cancelled(
                    turn.thread, pending.finished(), turn.context
                )
            except Exception:
                logger.exception("handle_stream_cancelled failed on thread %s", turn.thread.id)


def _track(pending: _PendingItems, event: ThreadStreamEvent) -> None:
    """Keep the items a reply started and has not finished, for `handle_stream_cancelled`."""
    if isinstance(event, ThreadItemAddedEvent):
        pending.add(event.item)
    elif isinstance(event, ThreadItemUpdatedEvent):
        pending.update(event)
    elif isinstance(event, ThreadItemDoneEvent | ThreadItemReplacedEvent):
        pending.discard(event.item.id)
    elif isinstance(event, ThreadItemRemovedEvent):
        pending.discard(event.item_id)


# -- from the engine's push to the reader's pull ---------------------------------------------


class _Reply:
    """One streaming answer of `process`: the engine's plan pushes events to `emit`,
    the reader of the `StreamingResult` pulls frames.

    The plan runs in a task of its own from the first read, a bounded buffer ahead of
    the reader, as under `ChatKitApp`. A reader that stops early counts as a client
    that left: the reply is cancelled (the engine saves what was streamed) if its stream
    options allow it, or runs to its end unread; either way the reader's cleanup waits
    for it, so the thread's turn is free again when the stream is closed.
    """

    def __init__(self, plan: StreamPlan, heartbeat_interval: float | None) -> None:
        self.plan = plan
        self.heartbeat_interval = heartbeat_interval
        self.heartbeats = False  # set when the result is iterated as an HTTP body
        self.started = False

    async def frames(self) -> AsyncGenerator[bytes, None]:
        """The reply's SSE frames, as the reader takes them."""
        self.started = True
        plan = self.plan
        frames_in, frames_out = anyio.create_memory_object_stream[bytes](_BUFFER_SIZE)
        reply_scope = anyio.CancelScope()

        async def emit(event: ThreadStreamEvent) -> None:
            frame = SSE.frame(event)
            try:
                try:
                    frames_in.send_nowait(frame)
                except anyio.WouldBlock:
                    await frames_in.send(frame)
            except anyio.BrokenResourceError:
                pass  # the reader left: the reply goes on (or is being cancelled) unread

        async def produce() -> None:
            async with frames_in:
                with reply_scope:
                    try:
                        await plan.run(emit)
                    except Exception:
                        # The engine turns responder failures into error events itself;
                        # this failed around it (e.g. a store write before the reply).
                        logger.exception("reply failed outside the responder")
                        event = ErrorEvent(code=ErrorCode.STREAM_ERROR.value, allow_retry=True)
                        await emit_error(emit, event, None)

        producer = asyncio.get_running_loop().create_task(produce())
        _BACKGROUND.add(producer)
        producer.add_done_callback(_BACKGROUND.discard)
        read_to_end = False
        try:
            async with frames_out:
                while (frame := await self._next(frames_out)) is not None:
                    yield frame
            read_to_end = True
        finally:
            if not read_to_end:
                frames_out.close()  # what the reply sends from now on is dropped
                if plan.allow_cancel:
                    reply_scope.cancel()
                # Shielded: a reader stopped by a cancellation still waits for the save.
                with anyio.CancelScope(shield=True):
                    await asyncio.wait({producer})
        await asyncio.wait({producer})
        if producer.cancelled():
            # Not by us (our cancellation ends inside `reply_scope`): the responder
            # raised CancelledError itself. The reference lets it reach the reader.
            raise asyncio.CancelledError
        failure = producer.exception()
        if failure is not None:
            raise failure

    async def _next(self, frames: MemoryObjectReceiveStream[bytes]) -> bytes | None:
        """The next frame; a heartbeat when one is due; None at the end of the reply."""
        try:
            try:
                return frames.receive_nowait()
            except anyio.WouldBlock:
                pass
            interval = self.heartbeat_interval if self.heartbeats else None
            if interval is None:
                return await frames.receive()
            with anyio.move_on_after(interval):
                return await frames.receive()
            return _HEARTBEAT
        except anyio.EndOfStream:
            return None


def _release_unread(reply: _Reply, loop: asyncio.AbstractEventLoop) -> None:
    """Give back the turn of a reply whose result was dropped before anyone read it."""
    if reply.started or loop.is_closed():
        return

    def release() -> None:
        task = loop.create_task(reply.plan.release())
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)

    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing to free
        loop.call_soon_threadsafe(release)
