"""`HTTPException`s raised by app code: that status before the response, an event after.

Code written for an HTTP endpoint (openai-chatkit apps behind FastAPI) refuses with
Starlette's or FastAPI's `HTTPException` from anywhere: the context factory, the
admission hook, any responder method. Before the response starts it becomes that status
with its `detail` as the message and its headers; once the SSE headers are out it
becomes a `custom` error event with the detail, the stream ends normally and what the
reply stored stays stored. A 5xx before the first byte leaves nothing written, since
the ChatKit client sends the request again.

Non-streaming requests and refusals before a stream go through the in-process client;
replies that fail mid-stream run under a real uvicorn server.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import HTTPException as FastAPIHTTPException
from starlette.exceptions import HTTPException
from starlette.requests import Request

from chatkit_asgi import ChatKitApp, Turn
from chatkit_asgi.admission import Refusal
from chatkit_asgi.stores import SQLiteStore
from chatkit_asgi.testing import ChatKitTestClient, user_input
from chatkit_asgi.types import (
    Action,
    AssistantMessageItem,
    AudioInput,
    Card,
    InferenceOptions,
    StreamOptions,
    SyncCustomActionResponse,
    Text,
    ThreadItem,
    ThreadMetadata,
    ThreadStreamEvent,
    TranscriptionResult,
    UserMessageItem,
    UserMessageTextContent,
    WidgetItem,
)
from tests.streaming._support import Gate, MessageStream, assistant_message, sse_payloads
from tests.streaming.conftest import LiveServer, serve_app

__all__ = ["serve_app"]  # the uvicorn fixture, used by the streaming tests below

JSON = "application/json"
ServeApp = Callable[..., LiveServer]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore[Any]]:
    store: SQLiteStore[Any] = SQLiteStore(tmp_path / "chatkit.db")
    yield store
    await store.aclose()


class Refusing:
    """A responder with every optional method; the one named `method` raises `error`."""

    def __init__(self, method: str = "", error: Exception | None = None) -> None:
        self.method = method
        self.error = error
        self.calls: list[str] = []

    def _maybe_raise(self, name: str) -> None:
        self.calls.append(name)
        if name == self.method and self.error is not None:
            raise self.error

    async def respond(self, turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        self._maybe_raise("respond")
        yield assistant_message(turn, "answer")

    async def action(
        self, turn: Turn[Any], action: Action[str, Any], sender: WidgetItem | None
    ) -> AsyncIterator[ThreadStreamEvent]:
        self._maybe_raise("action")
        yield assistant_message(turn, "acted")

    async def sync_action(
        self, turn: Turn[Any], action: Action[str, Any], sender: WidgetItem | None
    ) -> SyncCustomActionResponse:
        self._maybe_raise("sync_action")
        assert sender is not None
        return SyncCustomActionResponse(
            updated_item=sender.model_copy(update={"widget": Card(children=[Text(value="v2")])})
        )

    async def add_feedback(self, turn: Turn[Any], item_ids: list[str], kind: str) -> None:
        self._maybe_raise("add_feedback")

    async def transcribe(self, audio: AudioInput, context: Any) -> TranscriptionResult:
        self._maybe_raise("transcribe")
        return TranscriptionResult(text="heard")

    def stream_options(self, turn: Turn[Any]) -> StreamOptions:
        self._maybe_raise("stream_options")
        return StreamOptions(allow_cancel=True)


async def seeded_thread(store: SQLiteStore[Any]) -> tuple[str, str, str]:
    """A thread with a user message and a widget: (thread id, message id, widget id)."""
    thread = ThreadMetadata(id="thr_seeded", created_at=Turn.now(), title="Seeded")
    await store.save_thread(thread, {})
    message = UserMessageItem(
        id="msg_user",
        thread_id=thread.id,
        created_at=Turn.now(),
        content=[UserMessageTextContent(text="hello")],
        inference_options=InferenceOptions(),
    )
    widget = WidgetItem(
        id="msg_widget",
        thread_id=thread.id,
        created_at=Turn.now(),
        widget=Card(children=[Text(value="v1")]),
    )
    await store.add_thread_item(thread.id, message, {})
    await store.add_thread_item(thread.id, widget, {})
    return thread.id, message.id, widget.id


async def everything(store: SQLiteStore[Any]) -> list[str]:
    """Every thread and item the store holds, as JSON."""
    out: list[str] = []
    threads = await store.load_threads(100, None, "asc", {})
    for thread in threads.data:
        out.append(thread.model_dump_json())
        items = await store.load_thread_items(thread.id, None, 100, "asc", {})
        out.extend(item.model_dump_json() for item in items.data)
    return out


def request_for(method: str, thread_id: str, message_id: str, widget_id: str) -> dict[str, Any]:
    """A request that makes the app call `method` before any response byte."""
    action = {"type": "vote", "payload": {}}
    params: dict[str, dict[str, Any]] = {
        "sync_action": {"thread_id": thread_id, "item_id": widget_id, "action": action},
        "add_feedback": {"thread_id": thread_id, "item_ids": [message_id], "kind": "positive"},
        "transcribe": {
            "audio_base64": base64.b64encode(b"audio").decode(),
            "mime_type": "audio/webm",
        },
        "stream_options": {"input": user_input("hi")},
    }
    request_type = {
        "sync_action": "threads.sync_custom_action",
        "add_feedback": "items.feedback",
        "transcribe": "input.transcribe",
        "stream_options": "threads.create",
    }[method]
    return {"type": request_type, "params": params[method]}


def assert_error(
    response: httpx.Response,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    details: list[Any] | None = None,
) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == JSON
    assert response.json() == {
        "error": {"code": code, "message": message, "details": details or []},
        "message": message,
    }
    for name, value in (headers or {}).items():
        assert response.headers[name] == value


# -- before the response starts: that status ----------------------------------------------


@pytest.mark.parametrize(
    ("method", "error", "status", "code", "message", "headers"),
    [
        (
            "sync_action",
            HTTPException(403, "You may not vote"),
            403,
            "forbidden",
            "You may not vote",
            {},
        ),
        (
            "add_feedback",
            FastAPIHTTPException(404, "No such survey", headers={"X-Survey": "closed"}),
            404,
            "not_found",
            "No such survey",
            {"X-Survey": "closed"},
        ),
        (
            "transcribe",
            HTTPException(402, "Transcription is a paid feature"),
            402,
            "http_error",
            "Transcription is a paid feature",
            {},
        ),
        (
            "stream_options",
            FastAPIHTTPException(429, "Slow down", headers={"Retry-After": "7"}),
            429,
            "rate_limited",
            "Slow down",
            {"Retry-After": "7"},
        ),
    ],
)
async def test_a_responder_method_refuses_with_its_status(
    store: SQLiteStore[Any],
    method: str,
    error: Exception,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str],
) -> None:
    ids = await seeded_thread(store)
    before = await everything(store)
    responder = Refusing(method, error)
    async with ChatKitTestClient(ChatKitApp(responder, store=store)) as client:
        response = await client.post(request_for(method, *ids))

    assert_error(response, status, code, message, headers)
    assert responder.calls == [method]
    assert await everything(store) == before  # e.g. sync_action's widget was not saved


async def test_fastapi_detail_that_is_not_text_goes_in_details(store: SQLiteStore[Any]) -> None:
    """FastAPI allows any JSON as `detail`: the message is then the status' phrase."""
    detail = {"reason": "account_suspended", "until": "2031-01-01"}

    def context(request: Request) -> dict[str, Any]:
        raise FastAPIHTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})

    app = ChatKitApp(Refusing(), store=store, context=context)
    async with ChatKitTestClient(app) as client:
        response = await client.post({"type": "threads.list", "params": {}})

    assert_error(
        response, 401, "unauthorized", "Unauthorized", {"WWW-Authenticate": "Bearer"}, [detail]
    )


@pytest.mark.parametrize("exception", [HTTPException, FastAPIHTTPException])
async def test_the_context_factory_refuses_a_stream_with_401(
    store: SQLiteStore[Any], exception: type[HTTPException]
) -> None:
    responder = Refusing()

    def context(request: Request) -> dict[str, Any]:
        raise exception(401, "Sign in first", headers={"WWW-Authenticate": 'Bearer realm="x"'})

    app = ChatKitApp(responder, store=store, context=context)
    async with ChatKitTestClient(app) as client:
        response = await client.post(request_for("stream_options", "", "", ""))

    assert_error(
        response, 401, "unauthorized", "Sign in first", {"WWW-Authenticate": 'Bearer realm="x"'}
    )
    assert responder.calls == []
    assert await everything(store) == []


@pytest.mark.parametrize("request_type", ["threads.add_user_message", "items.list"])
async def test_the_admission_hook_refuses_with_its_status(
    store: SQLiteStore[Any], request_type: str
) -> None:
    thread_id, _, _ = await seeded_thread(store)
    before = await everything(store)
    responder = Refusing()

    async def admit(context: Any, kind: str, thread: ThreadMetadata | None) -> Refusal | None:
        assert thread is not None and thread.id == thread_id
        raise FastAPIHTTPException(403, "This thread is archived", headers={"X-Archived": "1"})

    params: dict[str, Any] = {"thread_id": thread_id}
    if request_type == "threads.add_user_message":
        params["input"] = user_input("more")
    app = ChatKitApp(responder, store=store, admission=admit)
    async with ChatKitTestClient(app) as client:
        response = await client.post({"type": request_type, "params": params})

    assert_error(response, 403, "forbidden", "This thread is archived", {"X-Archived": "1"})
    assert responder.calls == []
    assert await everything(store) == before


@pytest.mark.parametrize("source", ["admission", "stream_options"])
async def test_a_5xx_before_the_first_byte_leaves_nothing_written(
    store: SQLiteStore[Any], source: str
) -> None:
    """The ChatKit client sends a streaming POST again after a 5xx: each attempt that
    failed must have stored nothing, so the one that succeeds stores the thread once."""
    failures_left = 2
    unavailable = HTTPException(503, "The model is overloaded", headers={"Retry-After": "1"})

    def fail_twice() -> None:
        nonlocal failures_left
        if failures_left:
            failures_left -= 1
            raise unavailable

    class Flaky(Refusing):
        def stream_options(self, turn: Turn[Any]) -> StreamOptions:
            if source == "stream_options":
                fail_twice()
            return StreamOptions(allow_cancel=True)

    async def admit(context: Any, kind: str, thread: ThreadMetadata | None) -> Refusal | None:
        if source == "admission":
            fail_twice()
        return None

    app = ChatKitApp(Flaky(), store=store, admission=admit)
    create = {"type": "threads.create", "params": {"input": user_input("hello")}}
    async with ChatKitTestClient(app) as client:
        for _ in range(2):
            response = await client.post(create)
            assert_error(
                response,
                503,
                "http_error",
                "The model is overloaded",
                {"Retry-After": "1"},
            )
            assert await everything(store) == []
        events = await client.stream("threads.create", input=user_input("hello"))

    assert [event.type for event in events] == [
        "thread.created",
        "thread.item.done",
        "stream_options",
        "thread.item.done",
    ]
    threads = await store.load_threads(10, None, "asc", {})
    assert len(threads.data) == 1
    items = await store.load_thread_items(threads.data[0].id, None, 10, "asc", {})
    assert [item.type for item in items.data] == ["user_message", "assistant_message"]


# -- after the SSE headers went out: an error event, under uvicorn --------------------------


def stored_texts(items: list[ThreadItem]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for item in items:
        assert isinstance(item, UserMessageItem | AssistantMessageItem), item
        out.append((item.type, "".join(getattr(part, "text", "") for part in item.content)))
    return out


async def post_stream(server: LiveServer, body: dict[str, Any]) -> tuple[int, list[Any]]:
    """POST a streaming request; its status and the JSON of every SSE frame.

    Reading to the end of the body asserts the stream ended normally (a cut stream
    raises in httpx), and `sse_payloads` that every frame is whole.
    """
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        response = await http.post("/", json=body)
    return response.status_code, sse_payloads(response.content)


@pytest.mark.uvicorn
@pytest.mark.parametrize("exception", [HTTPException, FastAPIHTTPException])
async def test_respond_refusing_before_its_first_event_is_an_error_event(
    serve_app: ServeApp,
    store: SQLiteStore[Any],
    exception: type[HTTPException],
    caplog: pytest.LogCaptureFixture,
) -> None:
    responder = Refusing("respond", exception(403, "You are out of credits"))
    server = serve_app(ChatKitApp(responder, store=store))

    with caplog.at_level(logging.INFO, logger="chatkit_asgi"):
        status, events = await post_stream(
            server, {"type": "threads.create", "params": {"input": user_input("hello")}}
        )

    assert status == 200
    assert [e["type"] for e in events] == [
        "thread.created",
        "thread.item.done",
        "stream_options",
        "error",
    ]
    assert events[-1] == {
        "type": "error",
        "code": "custom",
        "message": "You are out of credits",
        "allow_retry": False,
    }
    thread_id = events[0]["thread"]["id"]
    items = await store.load_thread_items(thread_id, None, 10, "asc", {})
    assert stored_texts(items.data) == [("user_message", "hello")]  # the message stays
    # A refusal, not a bug: no traceback at ERROR level.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    await server.wait_idle()


@pytest.mark.uvicorn
async def test_respond_refusing_mid_stream_keeps_what_the_reply_stored(
    serve_app: ServeApp, store: SQLiteStore[Any]
) -> None:
    streamed = Gate()

    async def respond(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        yield assistant_message(turn, "first answer")
        turn.thread.title = "Renamed by the reply"
        second = MessageStream(turn)
        yield second.added()
        yield second.part_added()
        yield second.delta("half an ans")
        streamed.set()
        raise FastAPIHTTPException(503, "The model went away", headers={"Retry-After": "2"})

    server = serve_app(ChatKitApp(respond, store=store, checkpoint_interval=None))
    status, events = await post_stream(
        server, {"type": "threads.create", "params": {"input": user_input("hello")}}
    )

    assert status == 200
    assert streamed.is_set()
    assert [e["type"] for e in events] == [
        "thread.created",
        "thread.item.done",
        "stream_options",
        "thread.item.done",
        "thread.item.added",
        "thread.updated",  # the title set before `added`, saved once that event is out
        "thread.item.updated",
        "thread.item.updated",
        "error",
    ]
    # A 5xx: the UI may offer to retry the reply.
    assert events[-1] == {
        "type": "error",
        "code": "custom",
        "message": "The model went away",
        "allow_retry": True,
    }
    thread_id = events[0]["thread"]["id"]
    items = await store.load_thread_items(thread_id, None, 10, "asc", {})
    # What the reply finished is stored, the half-streamed message is not (as with a
    # CustomStreamError), and the title it set is saved.
    assert stored_texts(items.data) == [
        ("user_message", "hello"),
        ("assistant_message", "first answer"),
    ]
    assert (await store.load_thread(thread_id, {})).title == "Renamed by the reply"
    await server.wait_idle()


@pytest.mark.uvicorn
async def test_an_action_refusing_mid_stream_is_an_error_event(
    serve_app: ServeApp, store: SQLiteStore[Any]
) -> None:
    thread_id, _, widget_id = await seeded_thread(store)

    class Voting(Refusing):
        async def action(
            self, turn: Turn[Any], action: Action[str, Any], sender: WidgetItem | None
        ) -> AsyncIterator[ThreadStreamEvent]:
            yield assistant_message(turn, "counting your vote")
            raise HTTPException(409, "Voting has closed")

    server = serve_app(ChatKitApp(Voting(), store=store))
    status, events = await post_stream(
        server,
        {
            "type": "threads.custom_action",
            "params": {"thread_id": thread_id, "item_id": widget_id, "action": {"type": "vote"}},
        },
    )

    assert status == 200
    assert [e["type"] for e in events] == ["stream_options", "thread.item.done", "error"]
    assert events[-1] == {
        "type": "error",
        "code": "custom",
        "message": "Voting has closed",
        "allow_retry": False,
    }
    items = await store.load_thread_items(thread_id, None, 10, "asc", {})
    assert [item.type for item in items.data] == ["user_message", "widget", "assistant_message"]
    await server.wait_idle()
