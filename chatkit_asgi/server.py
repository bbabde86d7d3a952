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

from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING, Any, Generic

from typing_extensions import TypeVar

from ._reply import JSONResult
from ._server_reply import PullReply, pull_reply
from ._server_responder import (
    OPTIONAL_METHODS,
    ServerResponder,
    agents_sdk_user_agent_override,
)
from .errors import (
    ChatKitError,
    ConflictError,
    InvalidRequestError,
    NotSupportedError,
    ResourceNotFoundError,
)
from .protocol import Engine
from .store import AttachmentStore, NotFoundError, Store
from .types import (
    Action,
    AudioInput,
    FeedbackKind,
    StreamOptions,
    SyncCustomActionResponse,
    ThreadItem,
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

TContext = TypeVar("TContext", default=Any)

DEFAULT_PAGE_SIZE = 20
"""Items per page of `threads.get_by_id`, and of listings whose request sets no limit."""

DEFAULT_ERROR_MESSAGE = "Something went wrong while generating the response."
"""A generic message for a `CustomStreamError` (the engine's own error events carry a
code the UI localizes instead)."""

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
        self._reply: PullReply | None = None

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
        reply, frames = pull_reply(result, self.heartbeat_interval)
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
                self._responder(),
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
        return self._responder(), self.store, self.attachment_store

    def _responder(self) -> ServerResponder:
        """This server as the engine's responder, told which optional methods the
        subclass overrides."""
        kind = type(self)
        overridden = [
            name
            for name in OPTIONAL_METHODS
            if getattr(kind, name) is not getattr(ChatKitServer, name)
        ]
        return ServerResponder(self, overridden)
