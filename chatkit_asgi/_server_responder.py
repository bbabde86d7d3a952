"""A `ChatKitServer` as the engine's object responder: the reference's methods and
arguments on one side, our `Turn` on the other.

Typed against the `ReferenceServer` shape rather than the class, so that `server.py`
imports this module and not the other way round.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator
from contextlib import aclosing, contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from ._version import __version__
from .protocol.pending import PendingItems
from .protocol.pipeline import as_async_generator
from .types import (
    Action,
    AudioInput,
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

if TYPE_CHECKING:
    from .turn import Turn

__all__ = [
    "OPTIONAL_METHODS",
    "ReferenceServer",
    "ServerResponder",
    "agents_sdk_user_agent_override",
]

logger = logging.getLogger("chatkit_asgi")

_CLEANUP_TIMEOUT = 5.0  # seconds `handle_stream_cancelled` may take, as the engine's saves

OPTIONAL_METHODS = ("action", "sync_action", "transcribe", "handle_stream_cancelled")
"""The server's methods whose default the responder treats differently from an override."""


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


class ReferenceServer(Protocol):
    """What the responder calls: `ChatKitServer`'s methods, with the reference's
    signatures (the context is whatever the server is generic over)."""

    def respond(
        self, thread: ThreadMetadata, input_user_message: UserMessageItem | None, context: Any
    ) -> AsyncIterator[ThreadStreamEvent]: ...

    def action(
        self,
        thread: ThreadMetadata,
        action: Action[str, Any],
        sender: WidgetItem | None,
        context: Any,
    ) -> AsyncIterator[ThreadStreamEvent]: ...

    def sync_action(
        self,
        thread: ThreadMetadata,
        action: Action[str, Any],
        sender: WidgetItem | None,
        context: Any,
    ) -> Awaitable[SyncCustomActionResponse]: ...

    def add_feedback(
        self, thread_id: str, item_ids: list[str], feedback: FeedbackKind, context: Any
    ) -> Awaitable[None]: ...

    def transcribe(
        self, audio_input: AudioInput, context: Any
    ) -> Awaitable[TranscriptionResult]: ...

    def get_stream_options(self, thread: ThreadMetadata, context: Any) -> StreamOptions: ...

    def handle_stream_cancelled(
        self, thread: ThreadMetadata, pending_items: list[ThreadItem], context: Any
    ) -> Awaitable[None]: ...


class ServerResponder:
    """A `ChatKitServer` as the engine's object responder: each method calls the
    server's method of the same purpose with the reference's arguments.

    `overridden` names the `OPTIONAL_METHODS` the server's class overrides.
    """

    def __init__(self, server: ReferenceServer, overridden: Collection[str]) -> None:
        self._server = server
        for name in ("action", "sync_action", "transcribe"):
            if name not in overridden:
                # Not overridden: absent here, so the engine refuses the request before
                # a reply starts (400 not_supported) instead of failing in the stream.
                setattr(self, name, None)
        self._cancel_hook = "handle_stream_cancelled" in overridden

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
        pending = PendingItems() if self._cancel_hook else None
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

    async def _cancelled(self, turn: Turn[Any], pending: PendingItems) -> None:
        with anyio.move_on_after(_CLEANUP_TIMEOUT, shield=True):
            try:
                await self._server.handle_stream_cancelled(
                    turn.thread, pending.finished(), turn.context
                )
            except Exception:
                logger.exception("handle_stream_cancelled failed on thread %s", turn.thread.id)


def _track(pending: PendingItems, event: ThreadStreamEvent) -> None:
    """Keep the items a reply started and has not finished, for `handle_stream_cancelled`."""
    if isinstance(event, ThreadItemAddedEvent):
        pending.add(event.item)
    elif isinstance(event, ThreadItemUpdatedEvent):
        pending.update(event)
    elif isinstance(event, ThreadItemDoneEvent | ThreadItemReplacedEvent):
        pending.discard(event.item.id)
    elif isinstance(event, ThreadItemRemovedEvent):
        pending.discard(event.item_id)
