"""Streaming responses: events to bytes, heartbeats, backpressure and disconnects.

The reply runs in a producer task that encodes each event and puts it in a
small bounded buffer; the request task takes frames out and writes them to the
socket. A slow reader therefore blocks the producer (and with it the responder)
after `buffer_size` frames instead of growing memory.

One task per request watches the client (`ClientWatch`), from the wait for the
thread's turn to the last event. When the client goes away, `cancel_on_disconnect`
decides: cancel the reply (the engine then saves the partial answer, shielded) or
let it run to the end with nothing sent, so every item it produces is still
persisted. Either way the request task does not return before the reply has
finished: no task outlives the request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream

from .engine import StreamPlan
from .observability import ReplyStats
from .types import ThreadStreamEvent
from .types._base import to_wire_json

__all__ = ["JSON_ARRAY", "NDJSON", "SSE", "ClientWatch", "Framing", "stream_reply"]


Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Frames waiting in the buffer are joined into one socket write, up to this size:
# fewer writes under load, and bounded latency for the frames already produced.
_MAX_BATCH_BYTES = 64 * 1024


@dataclass(frozen=True)
class Framing:
    """How events become bytes for one media type.

    `heartbeat` is written while the reply is silent, only ever between whole frames
    (never inside one), and must not read as an event to any client of the media type.
    """

    media_type: str
    prefix: bytes
    suffix: bytes
    separator: bytes
    opening: bytes
    closing: bytes
    heartbeat: bytes | None

    def frame(self, event: ThreadStreamEvent) -> bytes:
        """One event as a complete frame (the separator is added when sending)."""
        return self.prefix + to_wire_json(event) + self.suffix


SSE = Framing(
    media_type="text/event-stream; charset=utf-8",
    prefix=b"data: ",
    suffix=b"\n\n",
    separator=b"",
    opening=b"",
    closing=b"",
    # A comment line, written only between whole frames: keeps proxies from timing out,
    # and no parser dispatches a message for it. Not a comment block (": ping\n\n"):
    # the blank line ending a block makes @microsoft/fetch-event-source (bundled in the
    # ChatKit web component) dispatch a message with empty data, which is not JSON.
    heartbeat=b": ping\n",
)
"""Server-Sent Events, as the ChatKit UI reads them."""

NDJSON = Framing(
    media_type="application/x-ndjson",
    prefix=b"",
    suffix=b"\n",
    separator=b"",
    opening=b"",
    closing=b"",
    heartbeat=None,  # blank lines are not valid NDJSON for every parser
)
"""One JSON event per line."""

JSON_ARRAY = Framing(
    media_type="application/json",
    prefix=b"",
    suffix=b"",
    separator=b",",
    opening=b"[",
    closing=b"]",
    heartbeat=b" ",  # whitespace between array elements is valid JSON
)
"""A single JSON array of events, still written incrementally."""


def _headers(framing: Framing, extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", framing.media_type.encode()),
        # no-transform: compressing proxies would otherwise buffer the stream.
        (b"cache-control", b"no-cache, no-transform"),
        (b"x-accel-buffering", b"no"),
        *extra,
    ]


class ClientWatch:
    """Whether the client is still there, from one task reading `receive` for the
    whole request: the wait for the thread's turn and the reply share it.

    `run` is that task. A disconnect (`http.disconnect`, or a write that fails) sets
    `gone` and calls the action given to `on_gone`, which changes as the request
    moves on: cancel the wait for the turn, then cancel (or not) the reply.
    """

    __slots__ = ("_action", "gone")

    def __init__(self) -> None:
        self.gone = anyio.Event()
        self._action: Callable[[], None] | None = None

    async def run(self, receive: Receive) -> None:
        """Read `receive` until the client disconnects (the request body was read before)."""
        while (await receive())["type"] != "http.disconnect":
            pass
        self.left()

    def left(self) -> None:
        """The client is gone: note it, and act once."""
        if not self.gone.is_set():
            self.gone.set()
            if self._action is not None:
                self._action()

    def on_gone(self, action: Callable[[], None] | None) -> None:
        """What a disconnect does from now on (now, if the client already left)."""
        self._action = action
        if action is not None and self.gone.is_set():
            action()


async def stream_reply(
    plan: StreamPlan,
    receive: Receive,
    send: Send,
    *,
    framing: Framing = SSE,
    cancel_on_disconnect: bool,
    heartbeat_interval: float | None = 15.0,
    buffer_size: int = 64,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    stats: ReplyStats | None = None,
    client: ClientWatch | None = None,
) -> None:
    """Run `plan` and write its events to an ASGI `send` as one streaming response.

    With `stats`, the reply's events and bytes are counted there, and whether the
    client left and the reply was cancelled (the plan reports the rest). `client` is a
    watch already reading `receive` (the app starts one per request); without it
    the reply starts its own.
    """
    frames_in, frames_out = anyio.create_memory_object_stream[bytes](max(buffer_size, 0))
    producer_scope = anyio.CancelScope()
    watch = client if client is not None else ClientWatch()

    async def put(frame: bytes) -> None:
        if producer_scope.cancel_called:
            # The client left and the reply is cancelled: stop at this event. (A full
            # check_if_cancelled per event costs a backend lookup; this is the scope
            # that matters here, and outer cancellations land at the next real wait.)
            await anyio.lowlevel.checkpoint()
        try:
            # No scheduling round trip per event while the buffer has room: the
            # consumer then takes whole batches, one socket write each.
            frames_in.send_nowait(frame)
        except anyio.WouldBlock:
            await frames_in.send(frame)

    async def emit(event: ThreadStreamEvent) -> None:
        await put(framing.frame(event))

    def settle_stats() -> None:
        if stats is not None:
            stats.client_gone = watch.gone.is_set()
            stats.cancelled = producer_scope.cancelled_caught

    async def produce() -> None:
        async with frames_in:
            with producer_scope:
                await plan.run(emit, stats)  # ends with an error event if it fails

    async def write(body: bytes, more: bool) -> None:
        if watch.gone.is_set():
            return
        if stats is not None:
            stats.bytes += len(body)
        try:
            await send({"type": "http.response.body", "body": body, "more_body": more})
        except OSError:
            # Some servers report a vanished client by failing the write rather than
            # through http.disconnect; both mean the same.
            watch.left()

    async with anyio.create_task_group() as tasks:
        if client is None:
            tasks.start_soon(watch.run, receive)
        watch.on_gone(producer_scope.cancel if cancel_on_disconnect else None)
        # Let the watcher see a client that already left: a cancellable reply for
        # nobody must not even start (its user message would be stored unanswered).
        await anyio.lowlevel.checkpoint()
        if watch.gone.is_set() and cancel_on_disconnect:
            await plan.release()
            tasks.cancel_scope.cancel()
            settle_stats()
            return
        if stats is not None:
            stats.ran = True
        tasks.start_soon(produce)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": _headers(framing, extra_headers or []),
                }
            )
        except OSError:
            watch.left()
        first = True
        async with frames_out:
            while True:
                batch = await _next_batch(frames_out, framing, heartbeat_interval)
                if batch is None:
                    break
                if stats is not None:
                    stats.events += len(batch)
                if not batch:
                    if framing.heartbeat is not None:
                        await write(framing.heartbeat, True)
                    continue
                body = framing.separator.join(batch)
                if first:
                    body = framing.opening + body
                    first = False
                elif framing.separator:
                    body = framing.separator + body
                await write(body, True)
        settle_stats()  # before the last write: a client leaving after it did not leave early
        await write((framing.opening if first else b"") + framing.closing, False)
        watch.on_gone(None)
        tasks.cancel_scope.cancel()


async def _next_batch(
    frames: MemoryObjectReceiveStream[bytes], framing: Framing, heartbeat: float | None
) -> list[bytes] | None:
    """The frames ready now (waiting for at least one); [] when a heartbeat is due;
    None when the reply is over."""
    try:
        try:
            return _drain(frames, frames.receive_nowait())
        except anyio.WouldBlock:
            pass
        if heartbeat is not None and framing.heartbeat is not None:
            with anyio.move_on_after(heartbeat):
                first = await frames.receive()
                return _drain(frames, first)
            return []
        return _drain(frames, await frames.receive())
    except anyio.EndOfStream:
        return None


def _drain(frames: MemoryObjectReceiveStream[bytes], first: bytes) -> list[bytes]:
    batch = [first]
    size = len(first)
    while size < _MAX_BATCH_BYTES:
        try:
            frame = frames.receive_nowait()
        except (anyio.WouldBlock, anyio.EndOfStream):
            break
        batch.append(frame)
        size += len(frame)
    return batch
