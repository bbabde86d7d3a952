"""Helpers of the streaming tests: a cross-loop gate, scripted ASGI peers, events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

from chatkit_asgi.turn import Turn
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageContentPartAdded,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
)

Message = MutableMapping[str, Any]

SSE_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache, no-transform",
    "x-accel-buffering": "no",
}
PING = b": ping\n"
"""The SSE heartbeat: a comment line, no blank line (a blank line would end a message)."""


class Gate:
    """A one-shot event that any thread sets and any event loop awaits.

    The uvicorn tests run the app on the server's loop (another thread) and the
    client on the test's loop; a responder waits on a gate the test opens, or the
    other way round, without sleeping.
    """

    def __init__(self) -> None:
        self._flag = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def set(self) -> None:
        with self._lock:
            self._flag.set()
            waiters, self._waiters = self._waiters, []
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(event.set)

    def is_set(self) -> bool:
        return self._flag.is_set()

    async def wait(self) -> None:
        event = asyncio.Event()
        with self._lock:
            if self._flag.is_set():
                return
            self._waiters.append((asyncio.get_running_loop(), event))
        await event.wait()


# -- scripted ASGI peers ----------------------------------------------------------


class ScriptedClient:
    """The client side of one ASGI HTTP call: a request body, then a disconnect on cue.

    `receive` hands out the body, then blocks until `disconnect()` is called (as a
    server does while the client keeps the connection open). `send` records every
    message; `on_body` lets a test react to each body chunk as it is sent.
    """

    def __init__(
        self,
        body: bytes = b"",
        *,
        on_body: Callable[[bytes], Awaitable[None] | None] | None = None,
    ) -> None:
        self._body = body
        self._body_sent = False
        self._gone = anyio.Event()
        self.messages: list[Message] = []
        self.on_body = on_body

    def disconnect(self) -> None:
        self._gone.set()

    async def receive(self) -> Message:
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": self._body, "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.messages.append(message)
        if message["type"] == "http.response.body" and self.on_body is not None:
            result = self.on_body(message.get("body", b""))
            if result is not None:
                await result

    # -- what was sent --------------------------------------------------------------

    @property
    def start(self) -> Message:
        starts = [m for m in self.messages if m["type"] == "http.response.start"]
        assert len(starts) == 1, self.messages
        return starts[0]

    @property
    def status(self) -> int:
        status: int = self.start["status"]
        return status

    @property
    def headers(self) -> dict[str, str]:
        pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.start["headers"]]
        names = [name for name, _ in pairs]
        assert len(names) == len(set(names)), f"repeated headers: {pairs}"
        return dict(pairs)

    @property
    def chunks(self) -> list[bytes]:
        """The body of each `http.response.body` message, in order."""
        return [m.get("body", b"") for m in self.messages if m["type"] == "http.response.body"]

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def complete(self) -> bool:
        """Whether the response was ended with `more_body: False`."""
        bodies = [m for m in self.messages if m["type"] == "http.response.body"]
        return bool(bodies) and not bodies[-1].get("more_body", False)


def http_scope(path: str = "/", *, accept: str | None = None, **headers: str) -> dict[str, Any]:
    """An ASGI scope of a JSON POST, as a server would build it."""
    raw = [(b"content-type", b"application/json")]
    if accept is not None:
        raw.append((b"accept", accept.encode()))
    raw.extend((k.replace("_", "-").encode(), v.encode()) for k, v in headers.items())
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": raw,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


def request_body(request_type: str, **params: Any) -> bytes:
    return json.dumps({"type": request_type, "params": params}).encode()


def sse_frames(body: bytes) -> list[bytes]:
    """An SSE body cut into its heartbeat lines and data frames, in order.

    Asserts the body is nothing else: each piece is a whole heartbeat line or a
    whole frame `data: <one line>\\n\\n` (so a heartbeat never lands inside a frame).
    """
    pieces = []
    start = 0  # positions, not slices: bodies of tens of MiB would be copied per frame
    while start < len(body):
        if body.startswith(PING, start):
            pieces.append(PING)
            start += len(PING)
            continue
        end = body.find(b"\n\n", start)
        assert end >= 0, f"an unfinished frame: {body[start : start + 200]!r}"
        frame = body[start:end]
        assert frame.startswith(b"data: ") and b"\n" not in frame, frame[:200]
        pieces.append(frame + b"\n\n")
        start = end + 2
    return pieces


def sse_payloads(body: bytes) -> list[dict[str, Any]]:
    """The JSON of every data frame; asserts the body is only heartbeats and whole
    one-line data frames."""
    return [json.loads(frame[len(b"data: ") : -2]) for frame in sse_frames(body) if frame != PING]


# -- assistant messages streamed as deltas ----------------------------------------------


class MessageStream:
    """Builds the events of one assistant message streamed as text deltas."""

    def __init__(self, turn: Turn[Any]) -> None:
        self.turn = turn
        self.item = AssistantMessageItem(
            id=turn.new_id("message"),
            thread_id=turn.thread.id,
            created_at=turn.now(),
            content=[],
        )
        self._parts: list[str] = []

    @property
    def text(self) -> str:
        """The text streamed so far."""
        return "".join(self._parts)

    def added(self) -> ThreadItemAddedEvent:
        return ThreadItemAddedEvent(item=self.item)

    def part_added(self) -> ThreadItemUpdatedEvent:
        return ThreadItemUpdatedEvent(
            item_id=self.item.id,
            update=AssistantMessageContentPartAdded(
                content_index=0, content=AssistantMessageContent(text="")
            ),
        )

    def delta(self, text: str) -> ThreadItemUpdatedEvent:
        self._parts.append(text)
        return ThreadItemUpdatedEvent(
            item_id=self.item.id,
            update=AssistantMessageContentPartTextDelta(content_index=0, delta=text),
        )

    def done(self) -> ThreadItemDoneEvent:
        item = self.item.model_copy(update={"content": [AssistantMessageContent(text=self.text)]})
        return ThreadItemDoneEvent(item=item)


def assistant_message(turn: Turn[Any], text: str) -> ThreadItemDoneEvent:
    """A complete assistant message in one event."""
    return ThreadItemDoneEvent(
        item=AssistantMessageItem(
            id=turn.new_id("message"),
            thread_id=turn.thread.id,
            created_at=turn.now(),
            content=[AssistantMessageContent(text=text)],
        )
    )
