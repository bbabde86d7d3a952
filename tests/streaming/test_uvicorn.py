"""Streaming under a real uvicorn server, with httpx reading the socket.

What only a real socket shows: events and heartbeats arrive while the reply is still
running, a reader that stops reading stops the responder (memory stays flat), and a
client that closes the connection mid-reply cancels it (or not, by policy) with the
partial answer saved. Every scenario ends with the server idle: no request task
outlives its response.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import h11
import httpx
import pytest

from chatkit_asgi import ChatKitApp, DisconnectPolicy, Turn
from chatkit_asgi.store import TurnLease
from chatkit_asgi.stores import SQLiteStore
from chatkit_asgi.testing import ChatKitTestClient, user_input
from chatkit_asgi.types import (
    AssistantMessageItem,
    SDKHiddenContextItem,
    StreamOptions,
    ThreadItem,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadStreamEvent,
    UserMessageItem,
)

from ._support import PING, SSE_HEADERS, Gate, MessageStream, assistant_message, sse_payloads
from .conftest import LiveServer

pytestmark = pytest.mark.uvicorn

ServeApp = Callable[..., LiveServer]
CREATE = {"type": "threads.create", "params": {"input": user_input("hello")}}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore[Any]]:
    store: SQLiteStore[Any] = SQLiteStore(tmp_path / "db.sqlite")
    yield store
    await store.aclose()


class TurnCountingStore(SQLiteStore[Any]):
    """A SQLiteStore that counts the turn leases asked of it: the engine asks right
    before it waits for a thread's turn (keeping its in-process lock, as the default
    returns None)."""

    turns_requested = 0

    async def acquire_turn(self, thread_id: str, context: Any, wait: float) -> TurnLease | None:
        self.turns_requested += 1
        return await super().acquire_turn(thread_id, context, wait)


@pytest.fixture
async def counting_store(tmp_path: Path) -> AsyncIterator[TurnCountingStore]:
    store = TurnCountingStore(tmp_path / "db.sqlite")
    yield store
    await store.aclose()


async def all_items(store: SQLiteStore[Any], thread_id: str) -> list[ThreadItem]:
    """What the store holds, hidden items included."""
    return (await store.load_thread_items(thread_id, None, 100, "asc", {})).data


def texts(items: list[ThreadItem]) -> list[tuple[str, str]]:
    """(type, text) of each item, for short assertions."""
    out: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, UserMessageItem | AssistantMessageItem):
            out.append((item.type, "".join(getattr(part, "text", "") for part in item.content)))
        elif isinstance(item, SDKHiddenContextItem):
            out.append((item.type, item.content))
        else:
            out.append((item.type, ""))
    return out


def delta_text(event: ThreadStreamEvent) -> str | None:
    if isinstance(event, ThreadItemUpdatedEvent) and hasattr(event.update, "delta"):
        return str(event.update.delta)
    return None


@asynccontextmanager
async def stream_events(
    client: ChatKitTestClient, request_type: str, **params: Any
) -> AsyncIterator[AsyncIterator[ThreadStreamEvent]]:
    """Events of one streaming request as they arrive; leaving the block closes the
    connection, wherever the reply is."""
    async with (
        client.open_stream(request_type, params) as events,
        aclosing(events) as events,  # type: ignore[type-var]
    ):
        yield events


class Probe:
    """What happened to a responder run, observable from the test's thread."""

    def __init__(self) -> None:
        self.started = Gate()
        self.waiting = Gate()
        self.cancelled = Gate()
        self.finished = Gate()
        self.exited = Gate()


# -- heartbeats and incremental delivery ------------------------------------------------


async def test_heartbeats_arrive_on_the_wire_while_the_responder_waits(
    serve_app: ServeApp, store: SQLiteStore[Any]
) -> None:
    resume = Gate()

    async def respond(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        await resume.wait()  # e.g. a slow tool call
        yield assistant_message(turn, "finally")

    server = serve_app(ChatKitApp(respond, store=store, heartbeat_interval=0.05))
    received = b""
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
        http.stream("POST", "/", json=CREATE) as response,
    ):
        assert response.status_code == 200
        assert {k: response.headers[k] for k in SSE_HEADERS} == SSE_HEADERS
        assert "connection" not in response.headers
        chunks = response.aiter_bytes()
        with anyio.fail_after(5):
            async for chunk in chunks:
                received += chunk
                if received.count(PING) >= 2:
                    break
            resume.set()
            async for chunk in chunks:
                received += chunk

    events = sse_payloads(received)  # asserts every frame is whole: a ping or a data line
    assert [e["type"] for e in events] == [
        "thread.created",
        "thread.item.done",
        "stream_options",
        "thread.item.done",
    ]
    before_resume = received[: received.index(PING)]
    assert b"finally" not in before_resume
    await server.wait_idle()


async def test_events_arrive_while_the_reply_is_still_running(
    serve_app: ServeApp, store: SQLiteStore[Any]
) -> None:
    produced_last = False
    more = Gate()

    async def respond(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        nonlocal produced_last
        yield assistant_message(turn, "first")
        await more.wait()
        produced_last = True
        yield assistant_message(turn, "last")

    server = serve_app(ChatKitApp(respond, store=store))
    seen: list[str] = []
    async with ChatKitTestClient(base_url=server.url) as client:
        with anyio.fail_after(5):
            async with stream_events(client, "threads.create", input=user_input("hi")) as events:
                async for event in events:
                    if isinstance(event, ThreadItemDoneEvent) and isinstance(
                        event.item, AssistantMessageItem
                    ):
                        seen.append(event.item.content[0].text)
                        if len(seen) == 1:
                            # the first answer is here; the responder has not made the last
                            assert not produced_last
                            more.set()
    assert seen == ["first", "last"]
    await server.wait_idle()


# -- backpressure -----------------------------------------------------------------------


def _max_send_buffer() -> int:
    with open("/proc/sys/net/ipv4/tcp_wmem") as wmem:
        return int(wmem.read().split()[2])


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


class _CountingReader:
    """An HTTP/1.1 client on a plain socket that reads only when asked, and counts every
    byte it takes off the socket (`taken`).

    httpx cannot stop reading exactly: asyncio's transport under it takes up to 256 KiB
    off the socket per read and keeps what the caller did not ask for in memory, where
    the test cannot see it. How much depends on how much had arrived at that moment, so
    the server seemed to run up to 24 frames further ahead of a reader that had stopped.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._http = h11.Connection(our_role=h11.CLIENT)
        self.taken = 0

    @classmethod
    @asynccontextmanager
    async def post(cls, url: str, payload: Any, *, rcvbuf: int) -> AsyncIterator[_CountingReader]:
        """POST `payload` as JSON to `url` (http://host:port); the connection is closed after."""
        host, port = url.removeprefix("http://").rsplit(":", 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connecting
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_connect(sock, (host, int(port)))
            reader = cls(sock)
            body = json.dumps(payload).encode()
            headers = [
                ("host", f"{host}:{port}"),
                ("content-type", "application/json"),
                ("content-length", str(len(body))),
            ]
            request = reader._http.send(h11.Request(method="POST", target="/", headers=headers))
            assert request is not None
            await loop.sock_sendall(sock, request + body)
            reader._http.send(h11.Data(data=body))
            reader._http.send(h11.EndOfMessage())
            yield reader
        finally:
            sock.close()

    async def next_event(self) -> Any:
        """The next h11 event of the response, reading the socket only if it must."""
        loop = asyncio.get_running_loop()
        while (event := self._http.next_event()) is h11.NEED_DATA:
            data = await loop.sock_recv(self._sock, 64 * 1024)
            self.taken += len(data)
            self._http.receive_data(data)
        return event

    async def first_body_bytes(self) -> bytes:
        """The response's status must be 200; then the body bytes of the first read."""
        response = await self.next_event()
        assert isinstance(response, h11.Response) and response.status_code == 200, response
        data = await self.next_event()
        assert isinstance(data, h11.Data), data
        return bytes(data.data)

    async def rest(self) -> bytes:
        """The body to its end."""
        body = bytearray()
        while not isinstance(event := await self.next_event(), h11.EndOfMessage):
            assert isinstance(event, h11.Data), event
            body += event.data
        return bytes(body)


@pytest.mark.parametrize("server_sndbuf", [None, 64 * 1024], ids=["default-sndbuf", "small-sndbuf"])
async def test_a_reader_that_stops_reading_stops_the_responder(
    serve_app: ServeApp,
    store: SQLiteStore[Any],
    server_sndbuf: int | None,
    record_property: Callable[[str, Any], None],
) -> None:
    """An answer of 5 000 text deltas of 8 KiB (40 MiB) to a client that stops reading
    after the first bytes: the responder stalls after what the buffer and the socket
    buffers hold. When the client reads again, the whole answer arrives and is saved."""
    total, size, buffer_size = 5000, 8 * 1024, 16
    produced = 0

    async def respond(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        nonlocal produced
        message = MessageStream(turn)
        yield message.added()
        yield message.part_added()
        for i in range(total):
            produced += 1
            yield message.delta(f"{i:05d}" + "x" * (size - 5))
        yield message.done()

    app = ChatKitApp(respond, store=store, buffer_size=buffer_size)
    if server_sndbuf is None:
        server = serve_app(app)
        kernel_send = _max_send_buffer()  # the server's socket may autotune up to this
    else:
        server = serve_app(
            app, socket_options=[(socket.SOL_SOCKET, socket.SO_SNDBUF, server_sndbuf)]
        )
        kernel_send = 2 * server_sndbuf  # Linux doubles the value set
    rcvbuf = 128 * 1024  # fixed, so the kernel does not grow it while we do not read

    tracemalloc.start()
    rss_before = _rss()
    try:
        async with _CountingReader.post(server.url, CREATE, rcvbuf=rcvbuf) as reader:
            with anyio.fail_after(30):
                first = await reader.first_body_bytes()  # read a little, then stop reading
            assert first.startswith(b"data: ")
            assert produced < total

            # Wait until the responder stops making progress.
            # (Generous bounds: CI machines are shared and slow.)
            with anyio.fail_after(30):
                last, still_since = -1, time.monotonic()
                while time.monotonic() - still_since < 0.6:
                    if produced != last:
                        last, still_since = produced, time.monotonic()
                    await anyio.sleep(0.02)
            stalled_at = produced
            _, peak = tracemalloc.get_traced_memory()
            rss_growth = _rss() - rss_before
            tracemalloc.stop()

            record_property("stalled_at_events", stalled_at)
            record_property("stalled_at_bytes", stalled_at * size)
            record_property("traced_peak_bytes", peak)
            record_property("rss_growth_bytes", rss_growth)
            print(  # shown with -s / -rP
                f"stalled after {stalled_at}/{total} events ({stalled_at * size / 2**20:.1f} MiB),"
                f" traced peak {peak / 2**20:.1f} MiB, RSS +{rss_growth / 2**20:.1f} MiB,"
                f" {reader.taken} bytes read first"
            )
            # What may be in flight: the responder's frame and the buffer's; one batch
            # being written (up to 64 KiB plus a frame); uvicorn's transport buffer (its
            # 64 KiB high-water mark, overshot by at most one batch); the socket buffers.
            batch = 64 * 1024 + size
            in_flight_bound = (
                (buffer_size + 2) * size + 2 * batch + 64 * 1024 + 2 * rcvbuf + kernel_send
            )
            # What the client took off its socket before it stopped is no longer in flight
            # (headers and chunk sizes included: a few bytes of slack in the server's favour).
            assert stalled_at * size - reader.taken <= in_flight_bound, reader.taken
            assert stalled_at < total
            assert peak < 20 * 2**20  # of 40 MiB the reply would be

            # The reader catches up: everything arrives, whole and in order.
            with anyio.fail_after(30):
                received = first + await reader.rest()
    finally:
        if tracemalloc.is_tracing():
            tracemalloc.stop()

    events = sse_payloads(received)
    deltas = [
        e["update"]["delta"]
        for e in events
        if e["type"] == "thread.item.updated" and "delta" in e["update"]
    ]
    assert len(deltas) == total, [e["type"] for e in events if "delta" not in e.get("update", {})]
    assert [int(delta[:5]) for delta in deltas] == list(range(total))
    assert all(len(delta) == size for delta in deltas)
    await server.wait_idle()
    thread_id = events[0]["thread"]["id"]
    answer = texts(await all_items(store, thread_id))[-1]
    assert answer == ("assistant_message", "".join(deltas))


# -- disconnects ----------------------------------------------------------------------------


class DeltaAssistant:
    """Streams an assistant message as text deltas; steered by the test.

    On the first turn it streams `deltas`, then waits on `resume` (the test closes the
    connection meanwhile), then streams `more` and finishes, renaming the thread. Later
    turns echo the input and record the history they were given.
    """

    def __init__(
        self,
        deltas: list[str],
        more: list[str] | None = None,
        *,
        allow_cancel: bool = True,
    ) -> None:
        self.deltas = deltas
        self.more = more or []
        self.allow_cancel = allow_cancel
        self.resume = Gate()
        self.probe = Probe()
        self.yielded = ""
        self.history: list[ThreadItem] = []

    def stream_options(self, turn: Turn[Any]) -> StreamOptions:
        return StreamOptions(allow_cancel=self.allow_cancel)

    async def respond(self, turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        if self.probe.started.is_set():
            self.history = await turn.history()
            yield assistant_message(turn, f"Echo: {turn.input_text()}")
            return
        self.probe.started.set()
        message = MessageStream(turn)
        try:
            yield message.added()
            yield message.part_added()
            for text in self.deltas:
                self.yielded += text
                yield message.delta(text)
            self.probe.waiting.set()
            await self.resume.wait()
            for text in self.more:
                self.yielded += text
                yield message.delta(text)
            turn.thread.title = "Finished"
            yield message.done()
            yield assistant_message(turn, "A second item, after the disconnect.")
            self.probe.finished.set()
        except anyio.get_cancelled_exc_class():
            self.probe.cancelled.set()
            raise
        finally:
            self.probe.exited.set()


async def read_deltas_then_leave(client: ChatKitTestClient, count: int) -> tuple[str, str]:
    """Start a thread, read `count` text deltas, close the connection.

    Returns the thread id and the text received."""
    thread_id, seen, deltas = "", "", 0
    with anyio.fail_after(5):
        async with stream_events(client, "threads.create", input=user_input("Tell me")) as events:
            async for event in events:
                if event.type == "thread.created":
                    thread_id = event.thread.id
                text = delta_text(event)
                if text is not None:
                    seen += text
                    deltas += 1
                    if deltas == count:
                        break
    return thread_id, seen


async def test_disconnect_cancels_the_reply_and_keeps_the_partial_answer(
    serve_app: ServeApp, store: SQLiteStore[Any]
) -> None:
    assistant = DeltaAssistant(["The answer ", "is ", "forty"], more=["-two."])
    server = serve_app(ChatKitApp(assistant, store=store))

    async with ChatKitTestClient(base_url=server.url) as client:
        thread_id, seen = await read_deltas_then_leave(client, 3)

        with anyio.fail_after(5):
            await assistant.probe.cancelled.wait()
            await assistant.probe.exited.wait()
        await server.wait_idle()
        assert not assistant.probe.finished.is_set()

        # The responder was suspended after its third delta: the store holds exactly
        # the text it yielded, which is exactly what the client had received.
        assert seen == assistant.yielded == "The answer is forty"
        stored = await all_items(store, thread_id)
        assert texts(stored) == [
            ("user_message", "Tell me"),
            ("assistant_message", "The answer is forty"),
            (
                "sdk_hidden_context",
                "The user cancelled the stream. Stop responding to the prior request.",
            ),
        ]
        thread = await client.get_thread(thread_id)
        assert texts(thread.items.data) == texts(stored)[:2]  # the note stays hidden
        assert thread.title is None  # the rename came after the cancellation

        # The thread is usable: the next turn runs and sees the note in its history.
        events = await client.add_message(thread_id, "Go on")
        assert events[-1].type == "thread.item.done"
        assert texts(assistant.history) == [*texts(stored), ("user_message", "Go on")]
        thread = await client.get_thread(thread_id)
        assert texts(thread.items.data) == [
            ("user_message", "Tell me"),
            ("assistant_message", "The answer is forty"),
            ("user_message", "Go on"),
            ("assistant_message", "Echo: Go on"),
        ]
    await server.wait_idle()


async def test_disconnect_during_a_fast_stream_saves_what_was_yielded(
    serve_app: ServeApp, store: SQLiteStore[Any]
) -> None:
    """The responder streams without pause; the client reads five deltas and leaves.
    The saved text is exactly what the responder yielded before it was stopped, of
    which the client saw a prefix."""
    probe = Probe()
    yielded = ""

    async def respond(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        nonlocal yielded
        message = MessageStream(turn)
        try:
            yield message.added()
            for i in range(100_000):
                await anyio.lowlevel.checkpoint()  # a model emitting tokens, fast
                text = f"{i} "
                yielded += text
                yield message.delta(text)
        # Cancelled in its own await, or closed while suspended at a `yield` when the
        # cancellation reached the app between two events: stopped either way.
        except (anyio.get_cancelled_exc_class(), GeneratorExit):
            probe.cancelled.set()
            raise

    server = serve_app(ChatKitApp(respond, store=store))
    async with ChatKitTestClient(base_url=server.url) as client:
        thread_id, seen = await read_deltas_then_leave(client, 5)
        with anyio.fail_after(5):
            await probe.cancelled.wait()
        await server.wait_idle()

    stored = await all_items(store, thread_id)
    assert [item.type for item in stored] == [
        "user_message",
        "assistant_message",
        "sdk_hidden_context",
    ]
    saved = texts(stored)[1][1]
    assert saved == yielded
    assert saved.startswith(seen) and seen.startswith("0 1 2 3 4 ")


async def test_disconnect_does_not_cancel_a_reply_that_disallows_it(
    serve_app: ServeApp, store: SQLiteStore[Any]
) -> None:
    assistant = DeltaAssistant(["Working", " on it"], more=[", done."], allow_cancel=False)
    server = serve_app(ChatKitApp(assistant, store=store))

    async with ChatKitTestClient(base_url=server.url) as client:
        thread_id, seen = await read_deltas_then_leave(client, 2)
        assert seen == "Working on it"

        await server.wait_for(lambda: server.disconnects >= 1)  # the app saw it go
        assistant.resume.set()
        with anyio.fail_after(5):
            await assistant.probe.exited.wait()
        await server.wait_idle()

        assert assistant.probe.finished.is_set()
        assert not assistant.probe.cancelled.is_set()
        stored = await all_items(store, thread_id)
        assert texts(stored) == [
            ("user_message", "Tell me"),
            ("assistant_message", "Working on it, done."),
            ("assistant_message", "A second item, after the disconnect."),
        ]
        assert (await store.load_thread(thread_id, {})).title == "Finished"
        thread = await client.get_thread(thread_id)
        assert thread.title == "Finished"
        assert texts(thread.items.data) == texts(stored)


@pytest.mark.parametrize(
    ("policy", "allow_cancel", "cancelled"),
    [
        ("auto", True, True),
        ("auto", False, False),
        ("cancel", True, True),
        ("cancel", False, True),  # the app option overrides the stream options...
        ("continue", True, False),  # ...both ways
        ("continue", False, False),
    ],
)
async def test_disconnect_policy(
    serve_app: ServeApp,
    store: SQLiteStore[Any],
    policy: DisconnectPolicy,
    allow_cancel: bool,
    cancelled: bool,
) -> None:
    assistant = DeltaAssistant(["partial"], more=[" and the rest"], allow_cancel=allow_cancel)
    server = serve_app(ChatKitApp(assistant, store=store, disconnect=policy))

    async with ChatKitTestClient(base_url=server.url) as client:
        thread_id, _ = await read_deltas_then_leave(client, 1)
        await server.wait_for(lambda: server.disconnects >= 1)
        assistant.resume.set()
        with anyio.fail_after(5):
            await assistant.probe.exited.wait()
        await server.wait_idle()

    assert assistant.probe.cancelled.is_set() is cancelled
    assert assistant.probe.finished.is_set() is not cancelled
    stored = texts(await all_items(store, thread_id))
    if cancelled:
        assert stored[1:] == [
            ("assistant_message", "partial"),
            (
                "sdk_hidden_context",
                "The user cancelled the stream. Stop responding to the prior request.",
            ),
        ]
    else:
        assert stored[1:] == [
            ("assistant_message", "partial and the rest"),
            ("assistant_message", "A second item, after the disconnect."),
        ]


# -- one reply at a time per thread -------------------------------------------------------


class TurnTaker:
    """Replies on a thread; a reply to "hold" waits until the test releases it."""

    def __init__(self) -> None:
        self.release = Gate()
        self.holding = Gate()
        self.log: list[str] = []

    async def respond(self, turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        text = turn.input_text()
        self.log.append(f"start {text}")
        try:
            if text == "hold":
                message = MessageStream(turn)
                yield message.added()
                self.holding.set()
                await self.release.wait()
                yield message.delta("held reply")
                yield message.done()
            else:
                yield assistant_message(turn, f"reply to {text}")
        finally:
            self.log.append(f"end {text}")


async def new_thread(client: ChatKitTestClient) -> str:
    events = await client.create_thread("start")
    assert events[0].type == "thread.created"
    return events[0].thread.id


async def test_two_turns_on_one_thread_run_one_after_the_other(
    serve_app: ServeApp, counting_store: TurnCountingStore
) -> None:
    taker = TurnTaker()
    server = serve_app(ChatKitApp(taker, store=counting_store))
    async with ChatKitTestClient(base_url=server.url) as client:
        thread_id = await new_thread(client)
        second: list[ThreadStreamEvent] = []

        async def second_turn() -> None:
            second.extend(await client.add_message(thread_id, "next"))

        with anyio.fail_after(10):
            async with (
                stream_events(
                    client,
                    "threads.add_user_message",
                    thread_id=thread_id,
                    input=user_input("hold"),
                ) as first,
                anyio.create_task_group() as tasks,
            ):
                async for event in first:
                    if event.type == "thread.item.added":
                        break
                await taker.holding.wait()
                tasks.start_soon(second_turn)
                # The second request waits for the thread's turn (create, hold, next).
                await server.wait_for(lambda: counting_store.turns_requested == 3)
                assert server.in_flight == 2
                assert taker.log[-1] == "start hold"
                taker.release.set()
                rest = [event.type async for event in first]
                assert rest[-1] == "thread.item.done"
        await server.wait_idle()

        assert taker.log == [
            "start start",
            "end start",
            "start hold",
            "end hold",
            "start next",
            "end next",
        ]
        assert second[-1].type == "thread.item.done"
        thread = await client.get_thread(thread_id)
        assert texts(thread.items.data)[2:] == [
            ("user_message", "hold"),
            ("assistant_message", "held reply"),
            ("user_message", "next"),
            ("assistant_message", "reply to next"),
        ]


async def test_a_turn_that_cannot_wait_for_the_thread_gets_409(
    serve_app: ServeApp, store: SQLiteStore[Any]
) -> None:
    taker = TurnTaker()
    server = serve_app(ChatKitApp(taker, store=store, turn_wait=0.05))
    async with ChatKitTestClient(base_url=server.url) as client:
        thread_id = await new_thread(client)
        with anyio.fail_after(10):
            async with stream_events(
                client, "threads.add_user_message", thread_id=thread_id, input=user_input("hold")
            ) as first:
                async for event in first:
                    if event.type == "thread.item.added":
                        break
                await taker.holding.wait()

                busy = await client.post(
                    {
                        "type": "threads.add_user_message",
                        "params": {"thread_id": thread_id, "input": user_input("too soon")},
                    }
                )
                assert busy.status_code == 409
                assert busy.headers["content-type"] == "application/json"
                assert busy.headers["retry-after"] == "1"
                assert busy.json()["error"]["code"] == "thread_busy"

                taker.release.set()
                assert [event.type async for event in first][-1] == "thread.item.done"

        # Once the first reply is over, the thread takes turns again.
        events = await client.add_message(thread_id, "now")
        assert events[-1].type == "thread.item.done"
        thread = await client.get_thread(thread_id)
        assert ("user_message", "too soon") not in texts(thread.items.data)
        assert texts(thread.items.data)[-2:] == [
            ("user_message", "now"),
            ("assistant_message", "reply to now"),
        ]
    await server.wait_idle()
    assert "start too soon" not in taker.log


async def test_json_array_under_uvicorn_is_valid_json_with_heartbeats(
    serve_app: ServeApp, store: SQLiteStore[Any]
) -> None:
    resume = Gate()
    pings = 0

    async def respond(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        await resume.wait()
        yield assistant_message(turn, "done")

    server = serve_app(ChatKitApp(respond, store=store, heartbeat_interval=0.05))
    body = b""
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
        http.stream("POST", "/", json=CREATE, headers={"accept": "application/json"}) as response,
    ):
        assert response.headers["content-type"] == "application/json"
        with anyio.fail_after(5):
            async for chunk in response.aiter_raw():
                body += chunk
                pings += chunk.count(b" ")
                if pings >= 2 and not resume.is_set():
                    resume.set()
    assert [e["type"] for e in json.loads(body)][-1] == "thread.item.done"
    await server.wait_idle()


async def test_a_turn_whose_client_left_while_waiting_for_the_thread_is_dropped(
    serve_app: ServeApp, counting_store: TurnCountingStore
) -> None:
    """The second turn waits for the first; its client gives up meanwhile. When the
    thread frees up, nothing of the abandoned turn happens: the user never got a
    response, and the UI shows the message as failed (it will be sent again)."""
    taker = TurnTaker()
    store = counting_store
    server = serve_app(ChatKitApp(taker, store=store))
    async with ChatKitTestClient(base_url=server.url) as client:
        thread_id = await new_thread(client)
        with anyio.fail_after(10):
            async with stream_events(
                client, "threads.add_user_message", thread_id=thread_id, input=user_input("hold")
            ) as first:
                async for event in first:
                    if event.type == "thread.item.added":
                        break
                await taker.holding.wait()
                connections = len(server.server.server_state.connections)

                async with (
                    ChatKitTestClient(base_url=server.url) as impatient,
                    anyio.create_task_group() as tasks,
                ):
                    tasks.start_soon(impatient.add_message, thread_id, "abandoned")
                    await server.wait_for(lambda: store.turns_requested == 3)
                    tasks.cancel_scope.cancel()  # the impatient client closes its connection
                await server.wait_for(
                    lambda: len(server.server.server_state.connections) == connections
                )

                taker.release.set()
                assert [event.type async for event in first][-1] == "thread.item.done"
        await server.wait_idle()

        assert "start abandoned" not in taker.log
        stored = texts(await all_items(store, thread_id))
        assert ("user_message", "abandoned") not in stored
        assert stored[-2:] == [("user_message", "hold"), ("assistant_message", "held reply")]


async def test_server_shutdown_mid_reply_cancels_it_and_keeps_the_partial_answer(
    serve_app: ServeApp, store: SQLiteStore[Any]
) -> None:
    """A deploy stops the server while a reply waits: past uvicorn's graceful timeout
    the request task is cancelled, and the partial answer is saved like on a disconnect."""
    assistant = DeltaAssistant(["Half an ", "answer"])
    server = serve_app(ChatKitApp(assistant, store=store), timeout_graceful_shutdown=0.3)

    async with ChatKitTestClient(base_url=server.url) as client:
        thread_id = ""
        with anyio.fail_after(10):
            async with stream_events(
                client, "threads.create", input=user_input("Tell me")
            ) as events:
                async for event in events:
                    if event.type == "thread.created":
                        thread_id = event.thread.id
                    if delta_text(event) == "answer":
                        break
                await assistant.probe.waiting.wait()
                await anyio.to_thread.run_sync(server.stop)

    assert server.in_flight == 0
    assert assistant.probe.cancelled.is_set()
    assert not assistant.probe.finished.is_set()
    assert texts(await all_items(store, thread_id)) == [
        ("user_message", "Tell me"),
        ("assistant_message", "Half an answer"),
        (
            "sdk_hidden_context",
            "The user cancelled the stream. Stop responding to the prior request.",
        ),
    ]
