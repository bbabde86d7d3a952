"""The ChatKit web component's own SSE client reads our streams: one message per event.

The `<openai-chatkit>` loader reads replies with `@microsoft/fetch-event-source` 2.x,
whose parser dispatches a message at every blank line, even one with no `data:`
(the HTML spec's parser drops those). Heartbeats must therefore be comment lines
without a blank line, written between whole frames. These tests run the npm package
itself under node against the app under real uvicorn (see `_fetch_event_source.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import TypeAdapter

from chatkit_asgi import ChatKitApp, Turn
from chatkit_asgi.stores import SQLiteStore
from chatkit_asgi.testing import user_input
from chatkit_asgi.types import ThreadStreamEvent

from ._fetch_event_source import Message, read_stream
from ._support import PING, MessageStream, sse_frames, sse_payloads
from .conftest import LiveServer

pytestmark = pytest.mark.uvicorn

EVENTS: TypeAdapter[ThreadStreamEvent] = TypeAdapter(ThreadStreamEvent)
HEARTBEAT = 0.05
PAUSE = 0.25  # about five heartbeats in each silence
CREATE = {"type": "threads.create", "params": {"input": user_input("hello")}}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore[Any]]:
    store: SQLiteStore[Any] = SQLiteStore(tmp_path / "db.sqlite")
    yield store
    await store.aclose()


async def slow_reply(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
    """Thinks before its first event, then streams four words with silences between."""
    await anyio.sleep(PAUSE)
    message = MessageStream(turn)
    yield message.added()
    yield message.part_added()
    for word in ("one ", "two ", "three ", "four"):
        await anyio.sleep(PAUSE)
        yield message.delta(word)
    yield message.done()


async def test_every_message_is_an_event_and_heartbeats_dispatch_nothing(
    serve_app: Any, store: SQLiteStore[Any]
) -> None:
    server: LiveServer = serve_app(
        ChatKitApp(slow_reply, store=store, heartbeat_interval=HEARTBEAT)
    )

    reading = await read_stream(server.url + "/", CREATE)

    assert reading.error is None and reading.closed
    [attempt] = reading.attempts
    assert attempt.status == 200
    assert attempt.content_type is not None
    assert attempt.content_type.startswith("text/event-stream")
    # Every message the library dispatched is one ThreadStreamEvent, in order.
    events = [EVENTS.validate_json(message.data) for message in reading.messages]
    assert all((message.event, message.id) == ("", "") for message in reading.messages)
    assert [event.type for event in events] == [
        "thread.created",
        "thread.item.done",
        "stream_options",
        "thread.item.added",
        "thread.item.updated",
        *["thread.item.updated"] * 4,
        "thread.item.done",
    ]
    # Heartbeats were on the wire, between whole frames, while the reply was running...
    pieces = sse_frames(attempt.body)
    assert pieces.count(PING) >= 5, attempt.body
    first_ping, last_ping = pieces.index(PING), len(pieces) - 1 - pieces[::-1].index(PING)
    assert first_ping > 0 and last_ping < len(pieces) - 1, "no heartbeat between two events"
    assert any(chunk.startswith(PING) for chunk in attempt.chunks)
    # ...and dispatched nothing: one message per event on the wire, the same event.
    wire_events = sse_payloads(attempt.body)
    assert len(reading.messages) == len(wire_events)
    for event, wire_event in zip(events, wire_events, strict=True):
        assert event.model_dump(mode="json", by_alias=True, exclude_none=True) == wire_event
    await server.wait_idle()


async def test_a_comment_block_would_reach_the_ui_as_an_empty_message(serve_app: Any) -> None:
    """The control: the library really does dispatch `: ping\\n\\n` (the old heartbeat)
    as a message whose data is not JSON, so the test above can tell the difference."""
    frame = b'data: {"type":"progress_update","text":"a"}\n\n'

    async def old_framing(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for body in (frame, b": ping\n\n", PING, frame):
            await send({"type": "http.response.body", "body": body, "more_body": True})
            await anyio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})

    server: LiveServer = serve_app(old_framing)

    reading = await read_stream(server.url + "/", CREATE)

    data = frame[len(b"data: ") : -2].decode()
    assert reading.messages == [Message(data, "", ""), Message("", "", ""), Message(data, "", "")]
