"""A slow client blocks the reply instead of growing a buffer (raw ASGI).

The scripted client's `send` does not return while the "socket" is full, as an
ASGI server's `send` blocks on flow control; the reply must then stop after
`buffer_size` frames. The same under a real socket is in test_uvicorn.py.
"""

from __future__ import annotations

import anyio
import pytest

from chatkit_asgi._reply import Emit, StreamPlan
from chatkit_asgi.streaming import stream_reply
from chatkit_asgi.types import ProgressUpdateEvent

from ._support import ScriptedClient, sse_payloads

# Larger than the writer's batch limit, so every write carries exactly one frame.
BIG = 70 * 1024


class CountingReply:
    """A reply of `total` big events that counts how many it has started to emit."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.started = 0
        self.finished = False

    async def body(self, emit: Emit) -> None:
        for i in range(self.total):
            self.started += 1
            await emit(ProgressUpdateEvent(text=f"{i:06d}" + "x" * BIG))
        self.finished = True


@pytest.mark.parametrize("buffer_size", [0, 1, 4, 16])
async def test_a_stalled_client_stops_the_reply_after_buffer_size_frames(
    buffer_size: int,
) -> None:
    reply = CountingReply(total=200)
    socket_drained = anyio.Event()

    async def stalled(chunk: bytes) -> None:
        await socket_drained.wait()

    client = ScriptedClient(on_body=stalled)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(
                lambda: stream_reply(
                    StreamPlan(reply.body, allow_cancel=True),
                    client.receive,
                    client.send,
                    cancel_on_disconnect=True,
                    heartbeat_interval=None,
                    buffer_size=buffer_size,
                )
            )
            await anyio.wait_all_tasks_blocked()

            # One frame in the blocked write, `buffer_size` queued, one waiting to be.
            assert buffer_size <= reply.started <= buffer_size + 2
            assert len(client.chunks) == 1

            socket_drained.set()  # the client catches up: everything arrives, in order

    assert reply.finished
    texts = [payload["text"] for payload in sse_payloads(client.body)]
    assert [int(text[:6]) for text in texts] == list(range(200))


async def test_the_reply_resumes_as_the_client_reads() -> None:
    """Each write the client completes lets the reply produce about one more frame."""
    reply = CountingReply(total=50)
    reads = anyio.Semaphore(0)
    progress: list[int] = []

    async def one_write_at_a_time(chunk: bytes) -> None:
        await reads.acquire()

    client = ScriptedClient(on_body=one_write_at_a_time)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(
                lambda: stream_reply(
                    StreamPlan(reply.body, allow_cancel=True),
                    client.receive,
                    client.send,
                    cancel_on_disconnect=True,
                    heartbeat_interval=None,
                    buffer_size=2,
                )
            )
            for _ in range(10):
                await anyio.wait_all_tasks_blocked()
                progress.append(reply.started - len(client.chunks))
                reads.release()
            for _ in range(100):
                reads.release()

    # The distance between what was produced and what was written stays bounded.
    assert max(progress) <= 2 + 2
    assert reply.finished
