"""Framing, headers, content negotiation and heartbeats, at raw-ASGI level.

`stream_reply` and `ChatKitApp` are driven with a scripted `receive`/`send` pair:
every `http.response.body` message is visible on its own, so these tests see how
the body is cut into writes, which an HTTP client would hide.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from chatkit_asgi import ChatKitApp, Turn
from chatkit_asgi._reply import Emit, StreamPlan
from chatkit_asgi.stores import MemoryStore
from chatkit_asgi.streaming import JSON_ARRAY, NDJSON, SSE, Framing, stream_reply
from chatkit_asgi.testing import user_input
from chatkit_asgi.types import NoticeEvent, ProgressUpdateEvent, ThreadStreamEvent
from chatkit_asgi.types._base import to_wire_json

from ._support import (
    PING,
    SSE_HEADERS,
    ScriptedClient,
    assistant_message,
    http_scope,
    request_body,
    sse_frames,
    sse_payloads,
)

TIMEOUT = 5.0


def plan_of(body: Callable[[Emit], Any]) -> StreamPlan:
    return StreamPlan(body, allow_cancel=True)


def emitting(*events: ThreadStreamEvent) -> StreamPlan:
    async def body(emit: Emit) -> None:
        for event in events:
            await emit(event)

    return plan_of(body)


def progress(text: str) -> ProgressUpdateEvent:
    return ProgressUpdateEvent(text=text)


async def run(
    plan: StreamPlan,
    client: ScriptedClient,
    framing: Framing = SSE,
    *,
    heartbeat: float | None = None,
    **options: Any,
) -> None:
    with anyio.fail_after(TIMEOUT):
        await stream_reply(
            plan,
            client.receive,
            client.send,
            framing=framing,
            cancel_on_disconnect=options.pop("cancel_on_disconnect", True),
            heartbeat_interval=heartbeat,
            **options,
        )


def assert_whole_json_elements(chunk: bytes) -> None:
    """A chunk of a JSON-array body holds whole elements (or is whitespace)."""
    if not chunk.strip():
        return
    inner = chunk.strip()
    inner = inner.removeprefix(b"[").removeprefix(b",").removesuffix(b"]")
    if inner:
        json.loads(b"[" + inner + b"]")


# -- SSE frames and headers ------------------------------------------------------------


async def test_sse_frames_are_data_lines_of_compact_json() -> None:
    events: list[ThreadStreamEvent] = [
        progress("Searching…"),
        NoticeEvent(level="info", message="two\n\nlines"),
    ]
    client = ScriptedClient()
    await run(emitting(*events), client)

    expected = b"".join(b"data: " + to_wire_json(event) + b"\n\n" for event in events)
    assert client.body == expected
    # Newlines inside values are escaped, so each event stays one `data:` line.
    assert sse_payloads(client.body) == [
        {"type": "progress_update", "text": "Searching…"},
        {"type": "notice", "level": "info", "message": "two\n\nlines"},
    ]
    assert b": " not in client.body.replace(b"data: ", b"")  # compact JSON, no spaces
    assert client.complete


async def test_streaming_headers() -> None:
    client = ScriptedClient()
    await run(emitting(progress("x")), client)

    assert client.status == 200
    assert client.headers == SSE_HEADERS
    assert "connection" not in client.headers  # HTTP/2 forbids it
    assert "content-length" not in client.headers


@pytest.mark.parametrize(
    ("framing", "media_type"),
    [
        (SSE, "text/event-stream; charset=utf-8"),
        (NDJSON, "application/x-ndjson"),
        (JSON_ARRAY, "application/json"),
    ],
)
async def test_each_framing_declares_its_media_type(framing: Framing, media_type: str) -> None:
    client = ScriptedClient()
    await run(emitting(progress("x")), client, framing)

    assert client.headers == {**SSE_HEADERS, "content-type": media_type}


async def test_ndjson_is_one_event_per_line() -> None:
    events = [progress("a"), progress("b\nc"), progress("d")]
    client = ScriptedClient()
    await run(emitting(*events), client, NDJSON)

    assert client.body == b"".join(to_wire_json(event) + b"\n" for event in events)
    lines = client.body.splitlines()
    assert [json.loads(line)["text"] for line in lines] == ["a", "b\nc", "d"]


@pytest.mark.parametrize("count", [0, 1, 3])
async def test_json_array_is_one_valid_document(count: int) -> None:
    events = [progress(str(i)) for i in range(count)]
    client = ScriptedClient()
    await run(emitting(*events), client, JSON_ARRAY)

    assert json.loads(client.body) == [
        {"type": "progress_update", "text": str(i)} for i in range(count)
    ]
    assert client.complete


# -- heartbeats ---------------------------------------------------------------------


def ping_counter(*gates: tuple[int, anyio.Event], ping: bytes = PING) -> Callable[[bytes], None]:
    """An `on_body` hook that opens each gate once its number of heartbeats went out."""
    seen = 0

    def on_body(chunk: bytes) -> None:
        nonlocal seen
        if chunk == ping:
            seen += 1
            for wanted, gate in gates:
                if seen == wanted:
                    gate.set()

    return on_body


async def test_sse_heartbeats_while_the_responder_is_silent() -> None:
    resume = anyio.Event()

    async def body(emit: Emit) -> None:
        await emit(progress("before"))
        await resume.wait()  # a slow tool call: nothing to send
        await emit(progress("after"))

    client = ScriptedClient(on_body=ping_counter((3, resume)))
    await run(plan_of(body), client, heartbeat=0.05)

    assert client.chunks.count(PING) >= 3
    first_ping = client.chunks.index(PING)
    assert sse_payloads(b"".join(client.chunks[:first_ping])) == [
        {"type": "progress_update", "text": "before"}
    ]
    assert [p["text"] for p in sse_payloads(client.body)] == ["before", "after"]


async def test_heartbeat_at_the_start_before_any_event() -> None:
    resume = anyio.Event()

    async def body(emit: Emit) -> None:
        await resume.wait()
        await emit(progress("late"))

    client = ScriptedClient(on_body=ping_counter((2, resume)))
    await run(plan_of(body), client, heartbeat=0.05)

    assert client.chunks[:2] == [PING, PING]
    assert sse_payloads(client.body) == [{"type": "progress_update", "text": "late"}]


async def test_heartbeats_never_split_a_frame() -> None:
    """Events at irregular intervals around the heartbeat period, and a client whose
    writes take time (so frames pile up and go out in batches): every write is whole
    frames, pings only between them."""
    rng = random.Random(1234)
    texts = [f"event {i} " + "x" * rng.randrange(0, 40_000) for i in range(40)]

    async def body(emit: Emit) -> None:
        for text in texts:
            await anyio.sleep(rng.choice([0, 0, 0.001, 0.015]))
            await emit(progress(text))

    async def slow_write(chunk: bytes) -> None:
        await anyio.sleep(rng.choice([0, 0.002, 0.02]))

    client = ScriptedClient(on_body=slow_write)
    await run(plan_of(body), client, heartbeat=0.01, buffer_size=4)

    assert PING in client.chunks
    assert any(len(sse_frames(chunk)) > 1 for chunk in client.chunks), "no batching happened"
    for chunk in client.chunks:
        sse_payloads(chunk)  # each write on its own parses as whole frames
    assert [p["text"] for p in sse_payloads(client.body)] == texts


async def test_json_array_heartbeats_are_whitespace_and_keep_it_valid() -> None:
    resume_first = anyio.Event()
    resume_second = anyio.Event()

    async def body(emit: Emit) -> None:
        await resume_first.wait()  # silent before the first element
        await emit(progress("a"))
        await emit(progress("b"))
        await resume_second.wait()  # and between elements
        await emit(progress("c"))

    on_body = ping_counter((2, resume_first), (4, resume_second), ping=b" ")
    client = ScriptedClient(on_body=on_body)
    await run(plan_of(body), client, JSON_ARRAY, heartbeat=0.05)

    assert client.chunks.count(b" ") >= 4
    assert client.chunks[:2] == [b" ", b" "]
    for chunk in client.chunks:
        assert_whole_json_elements(chunk)
    assert [e["text"] for e in json.loads(client.body)] == ["a", "b", "c"]


async def test_ndjson_sends_no_heartbeats() -> None:
    """Blank lines are not valid NDJSON for every parser: a silent reply stays silent."""

    async def body(emit: Emit) -> None:
        await emit(progress("a"))
        await anyio.sleep(0.2)  # four heartbeat periods
        await emit(progress("b"))

    client = ScriptedClient()
    await run(plan_of(body), client, NDJSON, heartbeat=0.05)

    assert b"\n\n" not in client.body
    assert all(chunk.strip() or chunk == b"" for chunk in client.chunks)
    assert [json.loads(line)["text"] for line in client.body.splitlines()] == ["a", "b"]


# -- ChatKitApp: negotiation, headers and heartbeats end to end ----------------------------


async def echo(turn: Turn[Any]) -> Any:
    yield assistant_message(turn, f"Echo: {turn.input_text()}")


async def call_app(app: ChatKitApp, body: bytes, accept: str | None) -> ScriptedClient:
    client = ScriptedClient(body)
    with anyio.fail_after(TIMEOUT):
        await app(http_scope(accept=accept), client.receive, client.send)
    return client


CREATE = request_body("threads.create", input=user_input("hi"))
REPLY_TYPES = [
    "thread.created",
    "thread.item.done",
    "stream_options",
    "thread.item.done",
]


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        (None, "text/event-stream"),
        ("", "text/event-stream"),
        ("*/*", "text/event-stream"),
        ("text/event-stream", "text/event-stream"),
        ("text/*", "text/event-stream"),
        ("text/html, */*;q=0.8", "text/event-stream"),
        ("application/x-ndjson", "application/x-ndjson"),
        ("application/json", "application/json"),
        ("Application/JSON", "application/json"),
        ("application/json; charset=utf-8", "application/json"),
        # q-values: the best accepted one wins, whatever the order
        ("text/event-stream;q=0.5, application/x-ndjson", "application/x-ndjson"),
        ("application/json;q=0.9, application/x-ndjson;q=0.1", "application/json"),
        ("*/*;q=0.1, application/json", "application/json"),
        # q=0 refuses a type even when a wildcard would allow it
        ("text/event-stream;q=0, */*", "application/x-ndjson"),
        ("text/event-stream;q=0, application/x-ndjson;q=0, */*", "application/json"),
        # the parameter name `q` is case-insensitive (RFC 9110, 12.4.2)
        ("text/event-stream;Q=0, application/json", "application/json"),
        # equally good: SSE before NDJSON before JSON
        ("application/json, text/event-stream", "text/event-stream"),
        ("application/json, application/x-ndjson", "application/x-ndjson"),
    ],
)
async def test_content_negotiation(accept: str | None, media_type: str) -> None:
    app = ChatKitApp(echo, store=MemoryStore())
    client = await call_app(app, CREATE, accept)

    assert client.status == 200
    assert client.headers["content-type"].split(";")[0] == media_type
    if media_type == "text/event-stream":
        events = sse_payloads(client.body)
    elif media_type == "application/x-ndjson":
        events = [json.loads(line) for line in client.body.splitlines()]
    else:
        events = json.loads(client.body)
    assert [e["type"] for e in events] == REPLY_TYPES
    assert events[-1]["item"]["content"][0]["text"] == "Echo: hi"


async def test_repeated_accept_headers_count_as_one_list() -> None:
    """A client may split Accept over several header lines (RFC 9110, 5.3)."""
    app = ChatKitApp(echo, store=MemoryStore())
    scope = http_scope(accept="text/html")
    scope["headers"].append((b"accept", b"application/x-ndjson"))
    client = ScriptedClient(CREATE)
    with anyio.fail_after(TIMEOUT):
        await app(scope, client.receive, client.send)

    assert client.status == 200
    assert client.headers["content-type"] == "application/x-ndjson"


@pytest.mark.parametrize(
    "accept",
    [
        "text/html",
        "text/html, application/xhtml+xml",
        "text/event-stream;q=0",
        "text/html, */*;q=0",
        "application/json;q=0, text/event-stream;q=0, application/x-ndjson;q=0",
    ],
)
async def test_nothing_acceptable_is_406_before_anything_happens(accept: str) -> None:
    called = False

    async def respond(turn: Turn[Any]) -> Any:
        nonlocal called
        called = True
        yield assistant_message(turn, "never")

    store: MemoryStore[Any] = MemoryStore()
    app = ChatKitApp(respond, store=store)
    client = await call_app(app, CREATE, accept)

    assert client.status == 406
    assert client.headers["content-type"] == "application/json"
    assert json.loads(client.body)["error"]["code"] == "not_acceptable"
    assert not called
    assert (await store.load_threads(10, None, "desc", {})).data == []


async def test_app_streams_with_the_streaming_headers() -> None:
    app = ChatKitApp(echo, store=MemoryStore())
    client = await call_app(app, CREATE, "text/event-stream")

    # Every reply carries its run id, the key to its logs and traces.
    headers = dict(client.headers)
    assert headers.pop("x-chatkit-run-id").startswith("run_")
    assert headers == SSE_HEADERS
    assert client.complete
    for chunk in client.chunks:
        sse_payloads(chunk)


async def test_app_heartbeats_while_the_responder_waits() -> None:
    resume = anyio.Event()

    async def respond(turn: Turn[Any]) -> Any:
        await resume.wait()
        yield assistant_message(turn, "done waiting")

    client = ScriptedClient(CREATE, on_body=ping_counter((2, resume)))
    app = ChatKitApp(respond, store=MemoryStore(), heartbeat_interval=0.05)
    with anyio.fail_after(TIMEOUT):
        await app(http_scope(), client.receive, client.send)

    assert client.chunks.count(PING) >= 2
    for chunk in client.chunks:
        sse_payloads(chunk)
    assert [e["type"] for e in sse_payloads(client.body)] == REPLY_TYPES


async def test_app_json_array_with_heartbeats_is_valid_json() -> None:
    resume = anyio.Event()

    async def respond(turn: Turn[Any]) -> Any:
        await resume.wait()
        yield assistant_message(turn, "done waiting")

    def on_body(chunk: bytes) -> None:
        if chunk == b" ":
            resume.set()

    client = ScriptedClient(CREATE, on_body=on_body)
    app = ChatKitApp(respond, store=MemoryStore(), heartbeat_interval=0.05)
    with anyio.fail_after(TIMEOUT):
        await app(http_scope(accept="application/json"), client.receive, client.send)

    assert b" " in client.chunks
    assert re.fullmatch(rb"\[.*\]", client.body.strip(), re.DOTALL)
    assert [e["type"] for e in json.loads(client.body)] == REPLY_TYPES
