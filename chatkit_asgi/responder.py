"""The responder contract: what user code provides, and how the engine calls it.

A responder is either an async-generator function taking a `Turn`::

    async def respond(turn: Turn) -> AsyncIterator[ThreadStreamEvent]: ...

or an object with a `respond(turn)` method and any of these optional methods:

- `action(turn, action, sender)`: async iterator of events, for `threads.custom_action`;
- `sync_action(turn, action, sender)`: returns `SyncCustomActionResponse`;
- `add_feedback(turn, item_ids, kind)`: for `items.feedback` (without it, feedback on the
  thread's items is accepted and dropped, as the reference does);
- `transcribe(audio, context)`: returns `TranscriptionResult` (or a `str`);
- `stream_options(turn)`: returns `StreamOptions` (sync or async).

Any other request that needs a method the responder lacks is refused with `not_supported`.
A Starlette or FastAPI `HTTPException` raised by any of these methods becomes that HTTP
status before a response starts, and an `error` event with its detail after.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, runtime_checkable

from .errors import NotSupportedError
from .turn import Turn
from .types import (
    Action,
    AudioInput,
    FeedbackKind,
    StreamOptions,
    SyncCustomActionResponse,
    ThreadStreamEvent,
    TranscriptionResult,
    WidgetItem,
)

__all__ = ["Responder", "ResponderFunction", "ResponderLike"]

ResponderFunction = Callable[[Turn[Any]], AsyncIterator[ThreadStreamEvent]]
"""A plain responder: an async-generator function of a `Turn`."""


@runtime_checkable
class Responder(Protocol):
    """An object responder; only `respond` is required (see the module docs)."""

    def respond(self, turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        """Yield the events of the reply to `turn`."""
        ...


ResponderLike = ResponderFunction | Responder
"""What `ChatKitApp` accepts as its responder."""


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def _describe(value: object) -> str:
    name = getattr(value, "__qualname__", None) or type(value).__name__
    return f"responder {name}"


def _is_asgi_app(value: Callable[..., Any]) -> bool:
    """True for a callable taking (scope, receive, send), which a responder never does."""
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):  # some builtins and C callables have none
        return False
    try:
        signature.bind(None)
    except TypeError:
        try:
            signature.bind(None, None, None)
        except TypeError:
            return False
        return True
    return False


class BoundResponder:
    """The engine's view of a responder: every optional method, or a clear refusal."""

    def __init__(self, responder: ResponderLike) -> None:
        if inspect.isclass(responder):
            # A class is callable, so it would be taken for a function and "called"
            # with the Turn at the first message.
            name = responder.__name__
            raise TypeError(
                f"responder {name} is a class: pass an instance, ChatKitApp({name}(), ...)"
                if callable(getattr(responder, "respond", None))
                else f"responder {name} is a class without a respond(turn) method"
            )
        respond = getattr(responder, "respond", None)
        if not callable(respond) and callable(responder) and _is_asgi_app(responder):
            raise TypeError(
                f"{_describe(responder)} is an ASGI app (it takes scope, receive, send), "
                "not a responder: give ChatKitApp an async-generator function of a Turn "
                "(async def respond(turn): ... yield event), or mount the app beside it"
            )
        if callable(respond):
            self._respond: ResponderFunction = respond
            self._target: object = responder
        elif callable(responder):
            self._respond = responder
            self._target = None
        else:
            raise TypeError(
                "responder must be an async-generator function of a Turn, "
                f"or an object with a respond(turn) method, not {type(responder).__name__}"
            )
        for name in ("respond", "action"):
            method = self._respond if name == "respond" else getattr(self._target, name, None)
            if inspect.isgeneratorfunction(method):
                raise TypeError(
                    f"{name}() is a plain generator (`def` with `yield`): make it "
                    f"`async def {name}(...)`; the engine reads its events with `async for`"
                )
            if inspect.iscoroutinefunction(method):
                # `async def` without `yield` returns a coroutine, not events: say so now
                # rather than with an obscure TypeError in the middle of a stream.
                raise TypeError(
                    f"{name}() must be an async generator: it yields events, so it needs "
                    "at least one `yield` (an `async def` without one returns a coroutine)"
                )

    def _method(self, name: str, request_type: str) -> Callable[..., Any]:
        method: Callable[..., Any] | None = getattr(self._target, name, None)
        if not callable(method):
            raise NotSupportedError(
                f"{request_type} needs the responder to define {name}(); this one does not",
                details=[{"missing_method": name}],
            )
        return method

    def respond(self, turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        """The events of a normal reply."""
        return self._respond(turn)

    def check_action(self) -> None:
        """Refuse `threads.custom_action` up front when there is no `action`."""
        self._method("action", "threads.custom_action")

    def action(
        self, turn: Turn[Any], action: Action[str, Any], sender: WidgetItem | None
    ) -> AsyncIterator[ThreadStreamEvent]:
        """The events of a reply to a widget action."""
        method = self._method("action", "threads.custom_action")
        events: AsyncIterator[ThreadStreamEvent] = method(turn, action, sender)
        return events

    async def sync_action(
        self, turn: Turn[Any], action: Action[str, Any], sender: WidgetItem | None
    ) -> SyncCustomActionResponse:
        """The answer to a synchronous widget action."""
        method = self._method("sync_action", "threads.sync_custom_action")
        result = await _maybe_await(method(turn, action, sender))
        if result is None:
            return SyncCustomActionResponse()
        if not isinstance(result, SyncCustomActionResponse):
            raise TypeError("sync_action() must return a SyncCustomActionResponse or None")
        return result

    async def add_feedback(self, turn: Turn[Any], item_ids: list[str], kind: FeedbackKind) -> None:
        """Record thumbs up/down on items; accepted and dropped without `add_feedback`.

        Not refused like the other optional methods: the UI's thumbs buttons send
        `items.feedback` whatever the server does with it (the reference accepts it too).
        """
        method = getattr(self._target, "add_feedback", None)
        if callable(method):
            await _maybe_await(method(turn, item_ids, kind))

    def check_transcribe(self) -> None:
        """Refuse `input.transcribe` up front when there is no `transcribe`."""
        self._method("transcribe", "input.transcribe")

    async def transcribe(self, audio: AudioInput, context: Any) -> TranscriptionResult:
        """Speech to composer text."""
        method = self._method("transcribe", "input.transcribe")
        result = await _maybe_await(method(audio, context))
        if isinstance(result, str):
            return TranscriptionResult(text=result)
        if not isinstance(result, TranscriptionResult):
            raise TypeError("transcribe() must return a TranscriptionResult or a str")
        return result

    async def stream_options(self, turn: Turn[Any]) -> StreamOptions:
        """The reply's stream options; cancellable unless the responder says otherwise."""
        method = getattr(self._target, "stream_options", None)
        if not callable(method):
            return StreamOptions(allow_cancel=True)
        result = await _maybe_await(method(turn))
        if isinstance(result, dict):
            return StreamOptions.model_validate(result)
        if not isinstance(result, StreamOptions):
            raise TypeError("stream_options() must return StreamOptions")
        return result
