"""A streaming reply of `ChatKitServer.process`: the engine's plan pushes events, the
reader of the `StreamingResult` pulls SSE frames.

`streaming.stream_reply` does the same job for an ASGI `send`; here there is no
`send` to push to, only a reader who pulls one frame at a time (the reference's
`json_events` yields one frame per event, so frames are not batched) and who may
stop early, or never start.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncGenerator
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from ._reply import StreamPlan
from .streaming import SSE
from .types import ThreadStreamEvent

__all__ = ["PullReply", "pull_reply"]


_BUFFER_SIZE = 64  # frames a reply may run ahead of its reader, as ChatKitApp's default
_HEARTBEAT = SSE.heartbeat or b": ping\n"

# Tasks nobody awaits (a reply whose reader left, a lease given back late): referenced
# here so the event loop does not drop them half-way.
_BACKGROUND: set[asyncio.Task[Any]] = set()


def pull_reply(
    plan: StreamPlan, heartbeat_interval: float | None
) -> tuple[PullReply, AsyncGenerator[bytes, None]]:
    """The reply of `plan`, and the generator of its frames for the reader."""
    reply = PullReply(plan, heartbeat_interval)
    frames = reply.frames()
    # A result that is dropped unread never starts its generator, whose cleanup
    # would give the thread's turn back: give it back when the generator goes.
    weakref.finalize(frames, _release_unread, reply, asyncio.get_running_loop()).atexit = False
    return reply, frames


class PullReply:
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
                    await plan.run(emit)  # ends with an error event if it fails

        producer = asyncio.get_running_loop().create_task(produce())
        _keep(producer)
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


def _keep(task: asyncio.Task[Any]) -> None:
    """Reference `task` until it is done (see `_BACKGROUND`)."""
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


def _release_unread(reply: PullReply, loop: asyncio.AbstractEventLoop) -> None:
    """Give back the turn of a reply whose result was dropped before anyone read it."""
    if reply.started or loop.is_closed():
        return

    def release() -> None:
        _keep(loop.create_task(reply.plan.release()))

    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing to free
        loop.call_soon_threadsafe(release)
