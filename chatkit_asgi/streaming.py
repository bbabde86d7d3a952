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

from collections.abc import Callable
from dataclasses import dataclass

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream

from ._asgi import Receive, Send
from ._reply import ReplyStats, StreamPlan
from .types import ThreadStreamEvent
from .types._base import to_wire_json

__all__ = [
    "JSON_ARRAY",
    "NDJSON",
    "SSE",
    "ClientWatch",
    "Framing",
    "negotiate_framing",
    "stream_reply",
]


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


def _accepted_ranges(accept: str) -> list[tuple[str, float]]:
    ranges = []
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        quality = 1.0
        for param in fields[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranges.append((fields[0].lower(), quality))
    return ranges


def _quality(ranges: list[tuple[str, float]], media: str) -> float:
    """RFC 9110 style: the most specific matching range decides."""
    family = media.split("/", 1)[0] + "/*"
    best = (-1, 0.0)
    for media_range, quality in ranges:
        specificity = {media: 2, family: 1, "*/*": 0}.get(media_range, -1)
        if specificity > best[0]:
            best = (specificity, quality)
    return best[1]


_STREAM_OFFERS = (  # in order of preference when the client likes several equally
    ("text/event-stream", SSE),
    ("application/x-ndjson", NDJSON),
    ("application/json", JSON_ARRAY),
)


def negotiate_framing(accept: str | None) -> Framing | None:
    """The streaming framing the client accepts best; SSE when it does not say."""
    if accept is None or not accept.strip():
        return SSE
    ranges = _accepted_ranges(accept)
    scored = [
        (_quality(ranges, media), -rank, framing)
        for rank, (media, framing) in enumerate(_STREAM_OFFERS)
    ]
    quality, _, framing = max(scored, key=lambda entry: entry[:2])
    return framing if quality > 0 else None


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

    Three parts, as in Starlette's `StreamingResponse`: the client watch listens for
    a disconnect, the `_Producer` runs the plan into a bounded buffer of frames, and
    this task writes the buffer out (`_write_frames`) through a `_Writer`.

    With `stats`, the reply's events and bytes are counted there, and whether the
    client left and the reply was cancelled (the plan reports the rest). `client` is a
    watch already reading `receive` (the app starts one per request); without it
    the reply starts its own.
    """
    watch = client if client is not None else ClientWatch()
    producer = _Producer(plan, framing, buffer_size, stats)
    async with anyio.create_task_group() as tasks:
        if client is None:
            tasks.start_soon(watch.run, receive)
        watch.on_gone(producer.scope.cancel if cancel_on_disconnect else None)
        # Let the watcher see a client that already left: a cancellable reply for
        # nobody must not even start (its user message would be stored unanswered).
        await anyio.lowlevel.checkpoint()
        if watch.gone.is_set() and cancel_on_disconnect:
            await plan.release()
            tasks.cancel_scope.cancel()
            producer.settle(watch)
            return
        if stats is not None:
            stats.ran = True
        tasks.start_soon(producer.run)
        writer = _Writer(send, watch, stats)
        await writer.start(_headers(framing, extra_headers or []))
        first = await _write_frames(producer.frames, framing, heartbeat_interval, writer, stats)
        producer.settle(
            watch
        )  # before the last write: a client leaving after it did not leave early
        await writer.body((framing.opening if first else b"") + framing.closing, more=False)
        watch.on_gone(None)
        tasks.cancel_scope.cancel()


class _Producer:
    """Runs the plan in its own task, encoding each event into a bounded buffer."""

    __slots__ = ("_in", "_plan", "_stats", "frame", "frames", "scope")

    def __init__(
        self, plan: StreamPlan, framing: Framing, buffer_size: int, stats: ReplyStats | None
    ) -> None:
        self._in, self.frames = anyio.create_memory_object_stream[bytes](max(buffer_size, 0))
        self._plan = plan
        self._stats = stats
        self.frame = framing.frame
        # Cancelled when the client leaves and the policy says so.
        self.scope = anyio.CancelScope()

    async def run(self) -> None:
        async with self._in:
            with self.scope:
                await self._plan.run(self.emit, self._stats)  # ends with an error event if it fails

    async def emit(self, event: ThreadStreamEvent) -> None:
        frame = self.frame(event)
        if self.scope.cancel_called:
            # The client left and the reply is cancelled: stop at this event. (A full
            # check_if_cancelled per event costs a backend lookup; this is the scope
            # that matters here, and outer cancellations land at the next real wait.)
            await anyio.lowlevel.checkpoint()
        try:
            # No scheduling round trip per event while the buffer has room: the
            # consumer then takes whole batches, one socket write each.
            self._in.send_nowait(frame)
        except anyio.WouldBlock:
            await self._in.send(frame)

    def settle(self, watch: ClientWatch) -> None:
        """Note in the stats whether the client left and the reply was cancelled."""
        if self._stats is not None:
            self._stats.client_gone = watch.gone.is_set()
            self._stats.cancelled = self.scope.cancelled_caught


class _Writer:
    """Writes the response to the client, until the client is gone."""

    __slots__ = ("_send", "_stats", "_watch")

    def __init__(self, send: Send, watch: ClientWatch, stats: ReplyStats | None) -> None:
        self._send = send
        self._watch = watch
        self._stats = stats

    async def start(self, headers: list[tuple[bytes, bytes]]) -> None:
        try:
            await self._send({"type": "http.response.start", "status": 200, "headers": headers})
        except OSError:
            self._watch.left()

    async def body(self, body: bytes, *, more: bool) -> None:
        if self._watch.gone.is_set():
            return
        if self._stats is not None:
            self._stats.bytes += len(body)
        try:
            await self._send({"type": "http.response.body", "body": body, "more_body": more})
        except OSError:
            # Some servers report a vanished client by failing the write rather than
            # through http.disconnect; both mean the same.
            self._watch.left()


async def _write_frames(
    frames: MemoryObjectReceiveStream[bytes],
    framing: Framing,
    heartbeat_interval: float | None,
    writer: _Writer,
    stats: ReplyStats | None,
) -> bool:
    """Write the frames out in batches until the reply ends, with heartbeats in the
    silences; whether nothing was written (so the opening is still due)."""
    first = True
    async with frames:
        while True:
            batch = await _next_batch(frames, framing, heartbeat_interval)
            if batch is None:
                return first
            if stats is not None:
                stats.events += len(batch)
            if not batch:
                if framing.heartbeat is not None:
                    await writer.body(framing.heartbeat, more=True)
                continue
            body = framing.separator.join(batch)
            if first:
                body = framing.opening + body
                first = False
            elif framing.separator:
                body = framing.separator + body
            await writer.body(body, more=True)


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
