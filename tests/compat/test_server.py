"""`chatkit_asgi.server`: a `ChatKitServer` written for openai-chatkit runs on our engine.

The server below is written as the reference's docs write one (`respond` with the
reference's arguments, ids from `self.store`, naive `datetime.now()`). It is served
mounted (`ChatKitApp(server)`, under uvicorn) and through `process()` in a FastAPI
endpoint of our own (under uvicorn too), and `process()` is driven directly for what a
reader that stops early, a dropped result and replaced stores do.
"""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from chatkit_asgi import ChatKitApp, ChatKitError, NotFoundError
from chatkit_asgi.server import ChatKitServer, NonStreamingResult, StreamingResult
from chatkit_asgi.store import AttachmentStore
from chatkit_asgi.stores import SQLiteStore
from chatkit_asgi.testing import ChatKitTestClient, parse_sse, user_input
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    Attachment,
    AttachmentCreateParams,
    FileAttachment,
    SDKHiddenContextItem,
    StreamOptions,
    ThreadItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    UserMessageItem,
)
from tests.insert_only_store import InsertOnlyStore
from tests.streaming._support import Gate
from tests.streaming.conftest import LiveServer, serve_app

__all__ = ["serve_app"]  # the uvicorn fixture

ALICE = {"user_id": "alice"}
CANCELLED_NOTE = "The user cancelled the stream. Stop responding to the prior request."
ServeApp = Callable[..., LiveServer]


class EchoServer(ChatKitServer[dict[str, str]]):
    """Echoes the user's text, streamed word by word, as in the reference's docs."""

    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: dict[str, str],
    ) -> AsyncIterator[ThreadStreamEvent]:
        text = ""
        if input_user_message is not None:
            text = "".join(p.text for p in input_user_message.content if p.type == "input_text")
        item = AssistantMessageItem(
            id=self.store.generate_item_id("message", thread, context),
            thread_id=thread.id,
            created_at=datetime.now(),
            content=[AssistantMessageContent(text="")],
        )
        yield ThreadItemAddedEvent(item=item)
        for word in f"Echo: {text}".split(" "):
            yield ThreadItemUpdatedEvent(
                item_id=item.id,
                update=AssistantMessageContentPartTextDelta(content_index=0, delta=word + " "),
            )
        item.content = [AssistantMessageContent(text=f"Echo: {text} ")]
        yield ThreadItemDoneEvent(item=item)


class Stalling(ChatKitServer[dict[str, str]]):
    """Streams `words`, then waits on `resume`, then streams `more`."""

    def __init__(self, store: Any, *, allow_cancel: bool = True) -> None:
        super().__init__(store)
        self.allow_cancel = allow_cancel
        self.words = ["Hello", " there"]
        self.more: list[str] = []
        self.resume = anyio.Event()
        self.streamed = anyio.Event()

    def get_stream_options(self, thread: ThreadMetadata, context: Any) -> StreamOptions:
        return StreamOptions(allow_cancel=self.allow_cancel)

    async def respond(
        self, thread: ThreadMetadata, input_user_message: UserMessageItem | None, context: Any
    ) -> AsyncIterator[ThreadStreamEvent]:
        item = AssistantMessageItem(
            id="msg_reply", thread_id=thread.id, created_at=datetime.now(), content=[]
        )
        yield ThreadItemAddedEvent(item=item)
        for word in self.words:
            yield delta(item.id, word)
        self.streamed.set()
        await self.resume.wait()
        for word in self.more:
            yield delta(item.id, word)
        item.content = [AssistantMessageContent(text="".join(self.words + self.more))]
        yield ThreadItemDoneEvent(item=item)


def delta(item_id: str, text: str) -> ThreadItemUpdatedEvent:
    return ThreadItemUpdatedEvent(
        item_id=item_id,
        update=AssistantMessageContentPartTextDelta(content_index=0, delta=text),
    )


def create(text: str) -> bytes:
    return json.dumps({"type": "threads.create", "params": {"input": user_input(text)}}).encode()


def add_message(thread_id: str, text: str) -> bytes:
    params = {"thread_id": thread_id, "input": user_input(text)}
    return json.dumps({"type": "threads.add_user_message", "params": params}).encode()


def request(request_type: str, **params: Any) -> bytes:
    return json.dumps({"type": request_type, "params": params}).encode()


async def read_all(result: StreamingResult | NonStreamingResult) -> list[dict[str, Any]]:
    assert isinstance(result, StreamingResult)
    return parse_sse(b"".join([frame async for frame in result.json_events]))


async def read_until(result: StreamingResult, text: str) -> list[dict[str, Any]]:
    """Read `json_events` until a delta carrying `text` arrives (the stream stays open)."""
    events: list[dict[str, Any]] = []
    async for frame in result.json_events:
        events.extend(parse_sse(frame))
        if events[-1].get("update", {}).get("delta") == text:
            return events
    raise AssertionError(f"the stream ended before {text!r}: {events}")


def texts(items: list[ThreadItem]) -> list[tuple[str, str]]:
    """(type, text) of each item; a hidden note's text is its content."""
    out = []
    for item in items:
        if isinstance(item, SDKHiddenContextItem):
            out.append((item.type, str(item.content)))
        else:
            content = getattr(item, "content", [])
            out.append((item.type, "".join(getattr(part, "text", "") for part in content)))
    return out


async def stored(store: Any, thread_id: str, context: Any = ALICE) -> list[tuple[str, str]]:
    page = await store.load_thread_items(thread_id, None, 100, "asc", context)
    return texts(page.data)


@pytest.fixture
def store() -> Any:
    store = InsertOnlyStore()
    yield store
    store.close()


# -- mounted: ChatKitApp(server) under uvicorn -----------------------------------------------


@pytest.mark.uvicorn
async def test_a_mounted_server_answers_threads_create_with_sse(
    serve_app: ServeApp, tmp_path: Path
) -> None:
    sqlite: SQLiteStore[Any] = SQLiteStore(tmp_path / "chatkit.db")
    server = EchoServer(sqlite)
    live = serve_app(ChatKitApp(server, context=lambda request: ALICE))

    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        response = await http.post("/", content=create("hello world"), headers=JSON)
    events = parse_sse(response.content)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert [e["type"] for e in events[:3]] == [
        "thread.created",
        "thread.item.done",
        "stream_options",
    ]
    assert events[-1]["type"] == "thread.item.done"
    assert events[-1]["item"]["content"][0]["text"] == "Echo: hello world "
    deltas = [e["update"]["delta"] for e in events if e["type"] == "thread.item.updated"]
    assert deltas == ["Echo: ", "hello ", "world "]
    thread_id = events[0]["thread"]["id"]
    assert await stored(sqlite, thread_id) == [
        ("user_message", "hello world"),
        ("assistant_message", "Echo: hello world "),
    ]
    await live.wait_idle()
    await sqlite.aclose()


async def test_a_mounted_server_refuses_what_it_does_not_override(store: Any) -> None:
    app = ChatKitApp(EchoServer(store), context=lambda request: ALICE)
    async with ChatKitTestClient(app) as client:
        events = await client.create_thread("hi")
        thread_id = events[0].thread.id  # type: ignore[union-attr]
        for request_type in ("threads.custom_action", "threads.sync_custom_action"):
            params = {"thread_id": thread_id, "action": {"type": "go", "payload": None}}
            response = await client.post({"type": request_type, "params": params})
            assert response.status_code == 400
            assert response.json()["error"]["code"] == "not_supported"


def test_an_app_serves_the_servers_own_stores(store: Any) -> None:
    server = EchoServer(store)
    assert ChatKitApp(server).store is store
    assert ChatKitApp(server, store=store).store is store  # the same store: fine
    with pytest.raises(TypeError, match="server's own store"):
        ChatKitApp(server, store=InsertOnlyStore())


# -- process() in an endpoint of our own -------------------------------------------------------

JSON = {"content-type": "application/json"}


def fastapi_endpoint(server: ChatKitServer[Any]) -> FastAPI:
    """The endpoint an openai-chatkit app writes, plus a handler for our refusals."""
    api = FastAPI()

    @api.exception_handler(ChatKitError)
    async def refused(request: Request, exc: ChatKitError) -> Response:
        return Response(exc.to_json(), exc.status_code, exc.headers, media_type="application/json")

    @api.post("/chatkit")
    async def chatkit_endpoint(request: Request) -> Response:
        result = await server.process(await request.body(), ALICE)
        if isinstance(result, StreamingResult):
            return StreamingResponse(result, media_type="text/event-stream")
        return Response(content=result.json, media_type="application/json")

    return api


@pytest.mark.uvicorn
async def test_process_serves_a_fastapi_endpoint(serve_app: ServeApp, store: Any) -> None:
    live = serve_app(fastapi_endpoint(EchoServer(store)))

    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        created = await http.post("/chatkit", content=create("hi"), headers=JSON)
        events = parse_sse(created.content)
        thread_id = events[0]["thread"]["id"]
        fetched = await http.post(
            "/chatkit", content=request("threads.get_by_id", thread_id=thread_id), headers=JSON
        )
        bad = await http.post("/chatkit", content=b'{"type": "threads.create"', headers=JSON)
        unknown = await http.post(
            "/chatkit", content=request("threads.get_by_id", thread_id="thr_nope"), headers=JSON
        )

    assert created.status_code == 200
    assert [e["type"] for e in events] == [
        "thread.created",
        "thread.item.done",
        "stream_options",
        "thread.item.added",
        "thread.item.updated",
        "thread.item.updated",
        "thread.item.done",
    ]
    assert fetched.status_code == 200
    thread = fetched.json()
    assert [item["type"] for item in thread["items"]["data"]] == [
        "user_message",
        "assistant_message",
    ]
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_json"
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "thread_not_found"
    await live.wait_idle()


# -- process(): results and refusals ----------------------------------------------------------


async def test_process_answers_as_the_reference_does(store: Any) -> None:
    server = EchoServer(store)

    events = await read_all(await server.process(create("hi"), ALICE))
    thread_id = events[0]["thread"]["id"]
    listing = await server.process(request("items.list", thread_id=thread_id), ALICE)

    assert isinstance(listing, NonStreamingResult)
    assert [item["type"] for item in json.loads(listing.json)["data"]] == [
        "assistant_message",
        "user_message",
    ]
    # The bytes are the SSE frames a reference endpoint would pass on.
    again = await server.process(add_message(thread_id, "again").decode(), ALICE)
    assert isinstance(again, StreamingResult)
    frames = [frame async for frame in again.json_events]
    assert all(f.startswith(b"data: {") and f.endswith(b"}\n\n") for f in frames)


async def test_bad_requests_are_4xx_errors_of_the_references_types(store: Any) -> None:
    server = EchoServer(store)
    events = await read_all(await server.process(create("hi"), ALICE))
    thread_id = events[0]["thread"]["id"]

    with pytest.raises(ValueError) as invalid:
        await server.process(b"{not json", ALICE)
    assert isinstance(invalid.value, ChatKitError)
    assert (invalid.value.status_code, invalid.value.code) == (400, "invalid_json")

    with pytest.raises(NotFoundError) as missing:
        await server.process(request("threads.get_by_id", thread_id="thr_nope"), ALICE)
    assert isinstance(missing.value, ChatKitError)
    assert (missing.value.status_code, missing.value.code) == (404, "thread_not_found")
    assert str(missing.value) == "Thread thr_nope not found"

    action = {"type": "go", "payload": None}
    with pytest.raises(NotImplementedError) as unsupported:
        await server.process(
            request("threads.custom_action", thread_id=thread_id, action=action), ALICE
        )
    assert isinstance(unsupported.value, ChatKitError)
    assert (unsupported.value.status_code, unsupported.value.code) == (400, "not_supported")

    with pytest.raises(ValueError) as conflict:
        await server.process(
            request("threads.add_client_tool_output", thread_id=thread_id, result={}), ALICE
        )
    assert isinstance(conflict.value, ChatKitError)
    assert conflict.value.status_code == 409
    # None of these left the thread's turn taken.
    with anyio.fail_after(5):
        await read_all(await server.process(add_message(thread_id, "still free"), ALICE))


class Files(AttachmentStore[Any]):
    """Attachment bytes nowhere: enough to answer `attachments.create`."""

    async def create_attachment(self, input: AttachmentCreateParams, context: Any) -> Attachment:
        return FileAttachment(id="atc_1", name=input.name, mime_type=input.mime_type)

    async def delete_attachment(self, attachment_id: str, context: Any) -> None:
        pass


async def test_store_and_attachment_store_are_read_at_every_request(store: Any) -> None:
    server = EchoServer(store)
    await read_all(await server.process(create("first"), ALICE))
    other = InsertOnlyStore()
    try:
        server.store = other
        events = await read_all(await server.process(create("where?"), ALICE))
        thread_id = events[0]["thread"]["id"]

        assert await stored(other, thread_id) == [
            ("user_message", "where?"),
            ("assistant_message", "Echo: where? "),
        ]
        with pytest.raises(NotFoundError):
            await store.load_thread(thread_id, ALICE)
        # The store's id scheme, replaced on the instance, is the one used.
        other.generate_item_id = lambda kind, thread, context: f"{kind}_custom"  # type: ignore[method-assign]
        events = await read_all(await server.process(create("ids"), ALICE))
        assert events[1]["item"]["id"] == "message_custom"

        upload = request("attachments.create", name="a.txt", size=1, mime_type="text/plain")
        with pytest.raises(RuntimeError):  # no attachment store: refused, as the reference
            await server.process(upload, ALICE)
        server.attachment_store = Files()
        created = await server.process(upload, ALICE)
        assert isinstance(created, NonStreamingResult)
        assert json.loads(created.json)["id"] == "atc_1"
    finally:
        other.close()


# -- a reader that stops early -------------------------------------------------------------------


async def test_a_reader_that_closes_early_cancels_the_reply_and_keeps_its_text(
    store: Any,
) -> None:
    server = Stalling(store)
    result = await server.process(create("hi"), ALICE)
    assert isinstance(result, StreamingResult)

    events = await read_until(result, " there")
    await result.json_events.aclose()  # type: ignore[attr-defined]

    thread_id = events[0]["thread"]["id"]
    assert await stored(store, thread_id) == [
        ("user_message", "hi"),
        ("assistant_message", "Hello there"),
        ("sdk_hidden_context", CANCELLED_NOTE),
    ]
    # The thread's turn is free again at once.
    with anyio.fail_after(5):
        server.resume.set()
        await read_all(await server.process(add_message(thread_id, "next"), ALICE))


async def test_a_cancelled_reader_cancels_the_reply_and_keeps_its_text(store: Any) -> None:
    server = Stalling(store)
    result = await server.process(create("hi"), ALICE)
    assert isinstance(result, StreamingResult)
    events: list[dict[str, Any]] = []

    async def read() -> None:
        async for frame in result:  # as a StreamingResponse reads it
            events.extend(parse_sse(frame))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(read)
        await server.streamed.wait()
        tasks.cancel_scope.cancel()

    thread_id = events[0]["thread"]["id"]
    assert await stored(store, thread_id) == [
        ("user_message", "hi"),
        ("assistant_message", "Hello there"),
        ("sdk_hidden_context", CANCELLED_NOTE),
    ]


async def test_a_reply_that_may_not_be_cancelled_runs_to_its_end_unread(store: Any) -> None:
    server = Stalling(store, allow_cancel=False)
    server.more = [str(n) for n in range(200)]  # more than the buffer holds
    server.resume.set()
    result = await server.process(create("hi"), ALICE)
    assert isinstance(result, StreamingResult)

    events = await read_until(result, " there")
    await result.json_events.aclose()  # type: ignore[attr-defined]

    # Closing waited for the reply: everything it yielded is stored, no cancel note.
    thread_id = events[0]["thread"]["id"]
    assert await stored(store, thread_id) == [
        ("user_message", "hi"),
        ("assistant_message", "Hello there" + "".join(server.more)),
    ]


async def test_a_result_dropped_unread_gives_the_thread_back(store: Any) -> None:
    server = EchoServer(store)
    events = await read_all(await server.process(create("hi"), ALICE))
    thread_id = events[0]["thread"]["id"]

    result = await server.process(add_message(thread_id, "never read"), ALICE)
    del result
    gc.collect()

    # Without the release the next reply would wait 15 s for the turn, then get a 409.
    with anyio.fail_after(5):
        events = await read_all(await server.process(add_message(thread_id, "read"), ALICE))
    assert events[0]["item"]["content"][0]["text"] == "read"
    # The dropped request stored nothing.
    assert [text for _, text in await stored(store, thread_id)] == [
        "hi",
        "Echo: hi ",
        "read",
        "Echo: read ",
    ]


async def test_handle_stream_cancelled_sees_the_unfinished_items(store: Any) -> None:
    seen: list[list[tuple[str, str]]] = []

    class Cleaning(Stalling):
        async def handle_stream_cancelled(
            self, thread: ThreadMetadata, pending_items: list[ThreadItem], context: Any
        ) -> None:
            seen.append(texts(pending_items))
            await super().handle_stream_cancelled(thread, pending_items, context)

    server = Cleaning(store)
    result = await server.process(create("hi"), ALICE)
    assert isinstance(result, StreamingResult)
    events = await read_until(result, " there")
    await result.json_events.aclose()  # type: ignore[attr-defined]

    assert seen == [[("assistant_message", "Hello there")]]
    # The engine saved the text and the note whatever the hook did.
    thread_id = events[0]["thread"]["id"]
    assert [kind for kind, _ in await stored(store, thread_id)] == [
        "user_message",
        "assistant_message",
        "sdk_hidden_context",
    ]


async def test_iterating_the_result_sends_heartbeats_and_json_events_does_not(
    store: Any,
) -> None:
    server = Stalling(store)
    server.heartbeat_interval = 0.05

    result = await server.process(create("hi"), ALICE)
    assert isinstance(result, StreamingResult)
    body: list[bytes] = []
    async for chunk in result:
        body.append(chunk)
        if chunk == b": ping\n":
            server.resume.set()
    assert b": ping\n" in body
    assert parse_sse(b"".join(body))[-1]["type"] == "thread.item.done"

    server.resume = anyio.Event()
    result = await server.process(create("hi"), ALICE)
    assert isinstance(result, StreamingResult)
    frames: list[bytes] = []
    async with anyio.create_task_group() as tasks:

        async def resume_later() -> None:
            await server.streamed.wait()
            await anyio.sleep(0.2)  # four heartbeat intervals of silence
            server.resume.set()

        server.streamed = anyio.Event()
        tasks.start_soon(resume_later)
        frames = [frame async for frame in result.json_events]
    assert all(frame.startswith(b"data: ") for frame in frames)


async def test_handle_stream_cancelled_runs_when_cancelled_between_events(store: Any) -> None:
    """Cancelled while the reply waits to hand an event on (not inside `respond`)."""
    seen: list[list[tuple[str, str]]] = []
    words = [f"{n} " for n in range(500)]

    class Chatty(EchoServer):
        async def respond(
            self, thread: ThreadMetadata, input_user_message: Any, context: Any
        ) -> AsyncIterator[ThreadStreamEvent]:
            item = AssistantMessageItem(
                id="msg_chatty", thread_id=thread.id, created_at=datetime.now(), content=[]
            )
            yield ThreadItemAddedEvent(item=item)
            for word in words:  # never waits: the buffer fills and the reply waits on it
                yield delta(item.id, word)
            item.content = [AssistantMessageContent(text="".join(words))]
            yield ThreadItemDoneEvent(item=item)

        async def handle_stream_cancelled(
            self, thread: ThreadMetadata, pending_items: list[ThreadItem], context: Any
        ) -> None:
            seen.append(texts(pending_items))

    server = Chatty(store)
    result = await server.process(create("hi"), ALICE)
    assert isinstance(result, StreamingResult)
    events = await read_until(result, "2 ")
    await result.json_events.aclose()  # type: ignore[attr-defined]

    thread_id = events[0]["thread"]["id"]
    saved = await stored(store, thread_id)
    assert [kind for kind, _ in saved] == [
        "user_message",
        "assistant_message",
        "sdk_hidden_context",
    ]
    partial = saved[1][1]
    assert partial.startswith("0 1 2 ") and len(partial) < len("".join(words))
    assert seen == [[("assistant_message", partial)]]


async def test_the_agents_sdk_user_agent_names_us_while_a_reply_runs(store: Any) -> None:
    from agents.models.chatcmpl_helpers import HEADERS_OVERRIDE
    from agents.models.openai_responses import _HEADERS_OVERRIDE

    from chatkit_asgi import __version__
    from chatkit_asgi.server import agents_sdk_user_agent_override

    seen: list[Any] = []

    class Agentic(EchoServer):
        async def respond(
            self, thread: ThreadMetadata, input_user_message: Any, context: Any
        ) -> AsyncIterator[ThreadStreamEvent]:
            seen.append((HEADERS_OVERRIDE.get(), _HEADERS_OVERRIDE.get()))
            async for event in super().respond(thread, input_user_message, context):
                yield event

    await read_all(await Agentic(store).process(create("hi"), ALICE))
    with agents_sdk_user_agent_override():
        inside = HEADERS_OVERRIDE.get()

    assert inside is not None
    assert inside["User-Agent"].endswith(f" chatkit-asgi/{__version__}")
    assert seen == [(inside, inside)]
    assert HEADERS_OVERRIDE.get() is None
    assert _HEADERS_OVERRIDE.get() is None


@pytest.mark.uvicorn
async def test_a_client_leaving_a_process_endpoint_keeps_the_partial_reply(
    serve_app: ServeApp, store: Any
) -> None:
    never = Gate()  # opened by nobody: the reply waits until it is cancelled

    class Waiting(ChatKitServer[dict[str, str]]):
        async def respond(
            self, thread: ThreadMetadata, input_user_message: Any, context: Any
        ) -> AsyncIterator[ThreadStreamEvent]:
            item = AssistantMessageItem(
                id="msg_waiting", thread_id=thread.id, created_at=datetime.now(), content=[]
            )
            yield ThreadItemAddedEvent(item=item)
            yield delta(item.id, "Half an ")
            yield delta(item.id, "answer")
            await never.wait()

    live = serve_app(fastapi_endpoint(Waiting(store)))
    events: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(base_url=live.url, timeout=10) as http,
        http.stream("POST", "/chatkit", content=create("hi"), headers=JSON) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: ") :]))
            if events and events[-1].get("update", {}).get("delta") == "answer":
                break  # and leave: the connection closes

    # The request ends once the cancelled reply is saved.
    await live.wait_idle()
    thread_id = events[0]["thread"]["id"]
    assert await stored(store, thread_id) == [
        ("user_message", "hi"),
        ("assistant_message", "Half an answer"),
        ("sdk_hidden_context", CANCELLED_NOTE),
    ]
