"""Graceful shutdown: open streams finish or end cleanly within the server's deadline.

A deploy stops the server (SIGTERM) while replies stream. Uvicorn stops accepting
connections, lets running requests go on for `--timeout-graceful-shutdown`
seconds, then cancels what is still running. What the app guarantees:

- a reply that ends within the deadline is delivered and stored in full;
- a reply still running at the deadline is stopped like a cancelled one (its text
  so far stored, with the hidden "cancelled" note), and its stream still ends as a
  well-formed response whose last event is a retryable `error`, never a cut body;
- a request still waiting for its thread's turn gets a JSON 503 it can retry;
- the stores are closed only after that cleanup, and the process exits: no
  request task outlives the server.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from chatkit_asgi import ChatKitApp, DisconnectPolicy, Store
from chatkit_asgi.stores import SQLiteStore
from chatkit_asgi.testing import parse_sse, user_input
from chatkit_asgi.types import (
    AssistantMessageItem,
    SDKHiddenContextItem,
    ThreadItem,
    UserMessageItem,
)

from ._apps import Talker, by_user, user_context, words
from .conftest import ALICE, PATIENCE, LiveServer, UvicornProcess, all_items

pytestmark = pytest.mark.uvicorn

GRACE = 2  # seconds: --timeout-graceful-shutdown
CANCELLED_NOTE = "The user cancelled the stream. Stop responding to the prior request."


@dataclass
class Stream:
    """One streaming request as the client saw it."""

    text: str
    status: int = 0
    body: bytes = b""
    complete: bool = False
    """The response ended properly (a cut connection leaves this False)."""
    error: str = ""
    ended_at: float = 0.0
    first_delta: anyio.Event = field(default_factory=anyio.Event)

    @property
    def events(self) -> list[dict[str, Any]]:
        return parse_sse(self.body)

    @property
    def received_text(self) -> str:
        return "".join(
            e["update"]["delta"]
            for e in self.events
            if e["type"] == "thread.item.updated" and "delta" in e["update"]
        )

    @property
    def thread_id(self) -> str:
        return str(next(e["thread"]["id"] for e in self.events if e["type"] == "thread.created"))


async def read_stream(http: httpx.AsyncClient, stream: Stream, user: str = "alice") -> None:
    """`threads.create` with `stream.text`; records what arrives until the response ends."""
    body = {"type": "threads.create", "params": {"input": user_input(stream.text)}}
    try:
        async with http.stream("POST", "/", json=body, headers={"x-user": user}) as response:
            stream.status = response.status_code
            async for chunk in response.aiter_raw():
                stream.body += chunk
                if b"text_delta" in chunk:
                    stream.first_delta.set()
        stream.complete = True
    except httpx.HTTPError as exc:
        stream.error = f"{type(exc).__name__}: {exc}"
    finally:
        stream.ended_at = time.monotonic()
        stream.first_delta.set()  # never leave the test waiting


def assert_ended_with_retryable_error(stream: Stream) -> None:
    assert stream.status == 200
    assert stream.complete, f"the stream was cut: {stream.error}; ends {stream.body[-200:]!r}"
    last = stream.events[-1]
    assert last["type"] == "error", last
    assert last["allow_retry"] is True


def kinds_and_texts(items: list[ThreadItem]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, UserMessageItem | AssistantMessageItem):
            out.append((item.type, "".join(getattr(p, "text", "") for p in item.content)))
        elif isinstance(item, SDKHiddenContextItem):
            out.append((item.type, item.content))
        else:
            out.append((item.type, ""))
    return out


def assert_stopped_reply_was_kept(items: list[ThreadItem], stream: Stream) -> None:
    """The user message, the answer as far as it got, and the cancelled note."""
    stored = kinds_and_texts(items)
    assert [kind for kind, _ in stored] == [
        "user_message",
        "assistant_message",
        "sdk_hidden_context",
    ], stored
    assert stored[0][1] == stream.text
    saved = stored[1][1]
    # Everything the client saw was saved (the reply may have got a little further
    # than the last frame that left the buffer), and it is the answer as streamed.
    assert stream.received_text and saved.startswith(stream.received_text)
    assert saved == words(saved.count(" "))
    assert stored[2][1] == CANCELLED_NOTE


# -- SIGTERM to a uvicorn process ----------------------------------------------------------


async def test_sigterm_finishes_short_replies_and_ends_long_ones_cleanly(
    uvicorn_process: Callable[..., UvicornProcess], tmp_path: Path
) -> None:
    db = tmp_path / "chatkit.db"
    worker = uvicorn_process(
        "tests.reliability._apps:make_app",
        env={
            "CHATKIT_TEST_STORE": f"sqlite:{db}",
            "CHATKIT_TEST_PACE": "0.05",
            "CHATKIT_TEST_CHECKPOINT": "0.2",
        },
        graceful_timeout=GRACE,
        factory=True,
    )
    short = Stream("say 12")  # about 0.6 s: ends within the deadline
    long_ones = [Stream("forever"), Stream("forever")]
    async with httpx.AsyncClient(base_url=worker.url, timeout=PATIENCE) as http:
        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as tasks:
                for stream in [short, *long_ones]:
                    tasks.start_soon(read_stream, http, stream)
                for stream in [short, *long_ones]:
                    await stream.first_delta.wait()
                signalled = time.monotonic()
                worker.terminate()
        exit_code = await anyio.to_thread.run_sync(worker.wait)
    exited = time.monotonic()

    # The short reply was not disturbed.
    assert short.complete, short.error
    assert short.events[-1]["type"] == "thread.item.done"
    assert short.events[-1]["item"]["content"][0]["text"] == words(12)
    # The long ones ended at the deadline, as complete responses.
    for stream in long_ones:
        assert_ended_with_retryable_error(stream)
        assert stream.ended_at - signalled < GRACE + 5  # + the cleanup bound
    # The process exited (uvicorn re-raises the signal it caught once it is done).
    assert exit_code in (0, -signal.SIGTERM)
    assert exited - signalled < GRACE + 5 + 2

    log = worker.log()
    assert "could not save" not in log
    store: SQLiteStore[Any] = SQLiteStore(db, tenant=by_user)
    try:
        assert kinds_and_texts(await all_items(store, short.thread_id, ALICE)) == [
            ("user_message", "say 12"),
            ("assistant_message", words(12)),
        ]
        for stream in long_ones:
            assert_stopped_reply_was_kept(await all_items(store, stream.thread_id, ALICE), stream)
    finally:
        await store.aclose()


# -- should_exit on an in-thread server: nothing outlives it ---------------------------


class CloseWatchingStore(SQLiteStore[Any]):
    """A SQLiteStore that records calls made after `aclose` (they would be lost on a
    store whose connections are gone)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, tenant=by_user)
        self.closed = False
        self.calls_after_close: list[str] = []

    async def aclose(self) -> None:
        self.closed = True
        await super().aclose()

    async def add_thread_item(self, thread_id: str, item: ThreadItem, context: Any) -> None:
        if self.closed:
            self.calls_after_close.append(f"add_thread_item {item.type}")
        await super().add_thread_item(thread_id, item, context)

    async def delete_thread_item(self, thread_id: str, item_id: str, context: Any) -> None:
        if self.closed:
            self.calls_after_close.append("delete_thread_item")
        await super().delete_thread_item(thread_id, item_id, context)


@pytest.fixture
async def watched_store(tmp_path: Path) -> AsyncIterator[CloseWatchingStore]:
    store = CloseWatchingStore(tmp_path / "chatkit.db")
    yield store
    await store.aclose()


@pytest.mark.parametrize("policy", ["auto", "continue"])
async def test_should_exit_closes_streams_and_the_store_after_them(
    serve_app: Callable[..., LiveServer],
    watched_store: CloseWatchingStore,
    policy: DisconnectPolicy,
) -> None:
    app = ChatKitApp(
        Talker(pace=0.02),
        store=watched_store,
        context=user_context,
        disconnect=policy,
        checkpoint_interval=0.2,
    )
    server = serve_app(app, lifespan="on", timeout_graceful_shutdown=1)
    streams = [Stream("forever"), Stream("forever")]
    async with httpx.AsyncClient(base_url=server.url, timeout=PATIENCE) as http:
        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as tasks:
                for stream in streams:
                    tasks.start_soon(read_stream, http, stream)
                for stream in streams:
                    await stream.first_delta.wait()
                await anyio.to_thread.run_sync(server.stop)

    assert server.in_flight == 0  # every request returned before the server's loop ended
    assert watched_store.closed  # by the lifespan shutdown...
    assert watched_store.calls_after_close == []  # ...after the replies were saved
    for stream in streams:
        assert_ended_with_retryable_error(stream)
        assert_stopped_reply_was_kept(
            await all_items(watched_store, stream.thread_id, ALICE), stream
        )


async def test_a_turn_still_waiting_at_shutdown_gets_a_json_503(
    serve_app: Callable[..., LiveServer], watched_store: Store[Any]
) -> None:
    app = ChatKitApp(Talker(pace=0.02), store=watched_store, context=user_context, turn_wait=60)
    server = serve_app(app, lifespan="on", timeout_graceful_shutdown=1)
    running = Stream("forever")
    waiting: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=server.url, timeout=PATIENCE) as http:

        async def second_turn() -> None:
            body = {
                "type": "threads.add_user_message",
                "params": {"thread_id": running.thread_id, "input": user_input("me next")},
            }
            response = await http.post("/", json=body, headers={"x-user": "alice"})
            waiting.update(status=response.status_code, headers=response.headers)
            waiting["body"] = response.content

        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(read_stream, http, running)
                await running.first_delta.wait()
                tasks.start_soon(second_turn)
                await server.wait_for(lambda: server.in_flight == 2)
                await anyio.sleep(0.1)  # the second request now waits for the turn
                await anyio.to_thread.run_sync(server.stop)

    assert_ended_with_retryable_error(running)
    assert waiting["status"] == 503
    assert waiting["headers"]["content-type"] == "application/json"
    assert "retry-after" in waiting["headers"]
    assert json.loads(waiting["body"])["error"]["code"] == "shutting_down"
    stored = kinds_and_texts(await all_items(watched_store, running.thread_id, ALICE))
    assert ("user_message", "me next") not in stored
