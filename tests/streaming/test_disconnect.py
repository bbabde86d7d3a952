"""What a client disconnect does to a running reply (raw ASGI).

A disconnect reaches the app either as `http.disconnect` from `receive` or as an
`OSError` from `send`; both are handled alike. With `cancel_on_disconnect` the
reply is cancelled; without it the reply runs to its end with nothing more sent.
Either way `stream_reply` returns only once the reply is over.
"""

from __future__ import annotations

from typing import Literal

import anyio
import pytest

from chatkit_asgi._reply import Emit, StreamPlan
from chatkit_asgi.streaming import stream_reply
from chatkit_asgi.types import ProgressUpdateEvent

from ._support import Message, ScriptedClient, sse_payloads

How = Literal["http.disconnect", "OSError"]


class Reply:
    """Emits one event, waits for `resume` (forever if None), then emits `rest` more."""

    def __init__(self, resume: anyio.Event | None = None, rest: int = 3) -> None:
        self.resume = resume
        self.rest = rest
        self.emitted: list[str] = []
        self.cancelled = False
        self.finished = False
        self.cleaned_up = False

    async def body(self, emit: Emit) -> None:
        try:
            await self._emit(emit, "first")
            if self.resume is None:
                await anyio.sleep_forever()
            else:
                await self.resume.wait()
            for i in range(self.rest):
                await self._emit(emit, f"after {i}")
            self.finished = True
        except anyio.get_cancelled_exc_class():
            self.cancelled = True
            raise
        finally:
            self.cleaned_up = True

    async def _emit(self, emit: Emit, text: str) -> None:
        await emit(ProgressUpdateEvent(text=text))
        self.emitted.append(text)


class LeavingClient(ScriptedClient):
    """Reads the first data frame, then goes away in the chosen manner.

    `noticed` is set once the app has been told: `receive` returned `http.disconnect`,
    or a `send` failed with `OSError` (the next write, e.g. a heartbeat).
    """

    def __init__(self, how: How) -> None:
        super().__init__()
        self.how = how
        self.left = False
        self.noticed = anyio.Event()
        self.sent_after_notice = 0

    async def receive(self) -> Message:
        message = await super().receive()
        if message["type"] == "http.disconnect":
            self.noticed.set()
        return message

    async def send(self, message: Message) -> None:
        if self.noticed.is_set():
            self.sent_after_notice += 1
        if self.left and self.how == "OSError":
            self.noticed.set()
            raise OSError("connection reset")
        await super().send(message)
        if message["type"] == "http.response.body" and b"data: " in message.get("body", b""):
            self.left = True
            if self.how == "http.disconnect":
                self.disconnect()


async def serve(reply: Reply, client: LeavingClient, *, cancel: bool) -> bool:
    """Run the reply; return whether it was over when `stream_reply` returned."""
    with anyio.fail_after(5):
        await stream_reply(
            StreamPlan(reply.body, allow_cancel=cancel),
            client.receive,
            client.send,
            cancel_on_disconnect=cancel,
            heartbeat_interval=0.01,  # with OSError, a heartbeat is the write that fails
        )
    return reply.cleaned_up


@pytest.mark.parametrize("how", ["http.disconnect", "OSError"])
async def test_disconnect_cancels_the_reply_when_cancelling(how: How) -> None:
    client = LeavingClient(how)
    reply = Reply()

    over = await serve(reply, client, cancel=True)

    assert over
    assert reply.cancelled
    assert not reply.finished
    assert sse_payloads(client.body) == [{"type": "progress_update", "text": "first"}]
    assert not client.complete


@pytest.mark.parametrize("how", ["http.disconnect", "OSError"])
async def test_disconnect_lets_the_reply_finish_when_not_cancelling(how: How) -> None:
    client = LeavingClient(how)
    reply = Reply(client.noticed, rest=50)  # more than the buffer holds

    over = await serve(reply, client, cancel=False)

    assert over
    assert reply.finished
    assert not reply.cancelled
    assert reply.emitted == ["first", *(f"after {i}" for i in range(50))]
    assert sse_payloads(client.body) == [{"type": "progress_update", "text": "first"}]


async def test_nothing_is_written_after_an_http_disconnect() -> None:
    client = LeavingClient("http.disconnect")
    reply = Reply(client.noticed, rest=50)

    await serve(reply, client, cancel=False)

    assert reply.finished
    assert client.sent_after_notice == 0


async def test_a_stalled_client_that_leaves_does_not_hang_the_reply() -> None:
    """The writer is blocked in `send` (full socket) when the client goes away; the
    server then fails or ends that write and the reply still finishes."""
    gone = anyio.Event()
    emitted = 0

    async def body(emit: Emit) -> None:
        nonlocal emitted
        for i in range(200):
            await emit(ProgressUpdateEvent(text=f"{i} " + "x" * 70_000))
            emitted += 1

    class StalledThenGone(ScriptedClient):
        async def send(self, message: Message) -> None:
            await super().send(message)
            if message["type"] == "http.response.body":
                # uvicorn resumes a paused writer when the connection is lost
                await gone.wait()

    client = StalledThenGone()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(
                lambda: stream_reply(
                    StreamPlan(body, allow_cancel=False),
                    client.receive,
                    client.send,
                    cancel_on_disconnect=False,
                    heartbeat_interval=None,
                    buffer_size=4,
                )
            )
            await anyio.wait_all_tasks_blocked()
            stalled_at = emitted
            client.disconnect()
            await anyio.wait_all_tasks_blocked()  # the app has seen http.disconnect
            gone.set()

    assert stalled_at <= 4 + 2
    assert emitted == 200
    assert len(client.chunks) == 1
