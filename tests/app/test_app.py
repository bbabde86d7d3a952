"""`ChatKitApp` as an ASGI application: the request context, refusals, lifespan, logging."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    BaseUser,
    SimpleUser,
)
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.routing import Mount
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from chatkit_asgi import ChatKitApp, Turn
from chatkit_asgi.stores import MemoryStore
from chatkit_asgi.testing import ChatKitTestClient
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    ThreadCreatedEvent,
    ThreadItemDoneEvent,
    ThreadStreamEvent,
)

JSON = "application/json"


class ContextRecorder:
    """An object responder that answers with the context it was given."""

    def __init__(self) -> None:
        self.contexts: list[Any] = []

    async def respond(self, turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        self.contexts.append(turn.context)
        yield ThreadItemDoneEvent(
            item=AssistantMessageItem(
                id=turn.new_id("message"),
                thread_id=turn.thread.id,
                created_at=turn.now(),
                content=[AssistantMessageContent(text=f"context: {turn.context!r}")],
            )
        )


# -- the context factory -----------------------------------------------------------


async def test_a_sync_context_factory_builds_the_turn_context() -> None:
    responder = ContextRecorder()

    def context(request: Request) -> dict[str, str]:
        return {"user": request.headers["x-user"]}

    app = ChatKitApp(responder, store=MemoryStore(), context=context)
    async with ChatKitTestClient(app, headers={"x-user": "alice"}) as client:
        await client.create_thread("hi")

    assert responder.contexts == [{"user": "alice"}]


async def test_an_async_context_factory_is_awaited() -> None:
    responder = ContextRecorder()

    async def context(request: Request) -> dict[str, str]:
        await anyio.lowlevel.checkpoint()  # really async
        return {"user": request.headers["x-user"]}

    app = ChatKitApp(responder, store=MemoryStore(), context=context)
    async with ChatKitTestClient(app, headers={"x-user": "bob"}) as client:
        await client.create_thread("hi")

    assert responder.contexts == [{"user": "bob"}]


async def test_without_a_factory_the_context_is_an_empty_dict() -> None:
    responder = ContextRecorder()
    app = ChatKitApp(responder, store=MemoryStore())
    async with ChatKitTestClient(app) as client:
        await client.create_thread("hi")

    assert responder.contexts == [{}]


async def test_the_factory_receives_the_starlette_request() -> None:
    seen: dict[str, Any] = {}

    async def context(request: Request) -> dict[str, Any]:
        seen["request"] = request
        seen["header"] = request.headers["x-tenant"]
        seen["state"] = request.state.tenant
        seen["method"] = request.method
        seen["query"] = request.query_params["v"]
        seen["body"] = await request.json()  # the body was read already; reading it again works
        return {}

    async def with_state(scope: Any, receive: Any, send: Any) -> None:
        # A pure ASGI middleware in front, as an auth or tenancy layer would be.
        scope.setdefault("state", {})["tenant"] = "acme"
        await app(scope, receive, send)

    app = ChatKitApp(ContextRecorder(), store=MemoryStore(), context=context)
    async with ChatKitTestClient(with_state, headers={"x-tenant": "acme-hq"}) as client:
        client.path = "/?v=2"
        threads = await client.call("threads.list")

    assert threads == {"data": [], "has_more": False}
    assert isinstance(seen["request"], Request)
    assert seen["header"] == "acme-hq"
    assert seen["state"] == "acme"
    assert seen["method"] == "POST"
    assert seen["query"] == "2"
    assert seen["body"] == {"type": "threads.list", "params": {}}


class BearerBackend(AuthenticationBackend):
    """`Authorization: Bearer <name>` authenticates <name> with the `chat` scope."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        scheme, _, name = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not name:
            return None
        return AuthCredentials(["chat"]), SimpleUser(name)


def authenticated_user(request: Request) -> dict[str, Any]:
    """A context factory on top of Starlette's AuthenticationMiddleware."""
    if not request.user.is_authenticated:
        raise HTTPException(401, "Sign in to chat", headers={"WWW-Authenticate": "Bearer"})
    if "chat" not in request.auth.scopes:
        raise HTTPException(403, "You may not chat")
    return {"user": request.user.display_name, "scopes": list(request.auth.scopes)}


@pytest.fixture
def authenticated_site() -> tuple[Starlette, ContextRecorder]:
    responder = ContextRecorder()
    chatkit = ChatKitApp(responder, store=MemoryStore(), context=authenticated_user)
    site = Starlette(
        routes=[Mount("/chatkit", app=chatkit)],
        middleware=[Middleware(AuthenticationMiddleware, backend=BearerBackend())],
    )
    return site, responder


async def test_the_factory_sees_request_user_and_auth(
    authenticated_site: tuple[Starlette, ContextRecorder],
) -> None:
    site, responder = authenticated_site
    headers = {"authorization": "Bearer alice"}
    async with ChatKitTestClient(site, path="/chatkit/", headers=headers) as client:
        await client.create_thread("hi")

    assert responder.contexts == [{"user": "alice", "scopes": ["chat"]}]


async def test_an_anonymous_request_gets_the_factorys_401(
    authenticated_site: tuple[Starlette, ContextRecorder],
) -> None:
    site, responder = authenticated_site
    async with ChatKitTestClient(site, path="/chatkit/") as client:
        response = await client.post({"type": "threads.create", "params": _text_input()})

    assert response.status_code == 401
    assert response.headers["content-type"] == JSON
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {
        "error": {"code": "unauthorized", "message": "Sign in to chat", "details": []},
        "message": "Sign in to chat",
    }
    assert responder.contexts == []


@pytest.mark.parametrize(
    ("status", "code", "headers"),
    [
        (401, "unauthorized", {"WWW-Authenticate": 'Bearer realm="chat"'}),
        (403, "forbidden", {"X-Denied-Reason": "suspended"}),
        (429, "rate_limited", {"Retry-After": "30"}),
    ],
)
async def test_an_http_exception_from_the_factory_becomes_that_status(
    status: int, code: str, headers: dict[str, str]
) -> None:
    store = MemoryStore()
    responder = ContextRecorder()

    def context(request: Request) -> dict[str, str]:
        raise HTTPException(status, "Not you", headers=headers)

    app = ChatKitApp(responder, store=store, context=context)
    async with ChatKitTestClient(app) as client:
        create = await client.post({"type": "threads.create", "params": _text_input()})
        listing = await client.post({"type": "threads.list", "params": {}})

    for response in (create, listing):
        assert response.status_code == status
        assert response.headers["content-type"] == JSON
        for name, value in headers.items():
            assert response.headers[name] == value
        assert response.json() == {
            "error": {"code": code, "message": "Not you", "details": []},
            "message": "Not you",
        }
    assert responder.contexts == []
    assert (await store.load_threads(10, None, "desc", {})).data == []


async def test_a_failing_factory_is_a_json_500_without_internals(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def context(request: Request) -> dict[str, str]:
        raise KeyError("secret-config-key")

    app = ChatKitApp(ContextRecorder(), store=MemoryStore(), context=context)
    async with ChatKitTestClient(app) as client:
        response = await client.post({"type": "threads.list", "params": {}})

    assert response.status_code == 500
    assert response.headers["content-type"] == JSON
    assert response.json()["error"]["code"] == "internal_error"
    assert "secret-config-key" not in response.text
    assert "secret-config-key" in caplog.text  # logged for the operator instead


# -- what the responder or the app is not set up for ------------------------------------


class OnlyRespond:
    """An object responder with nothing but `respond`."""

    async def respond(self, turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        yield ThreadItemDoneEvent(
            item=AssistantMessageItem(
                id=turn.new_id("message"),
                thread_id=turn.thread.id,
                created_at=turn.now(),
                content=[AssistantMessageContent(text="ok")],
            )
        )


async def plain_respond(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
    async for event in OnlyRespond().respond(turn):
        yield event


def _text_input(text: str = "hi") -> dict[str, Any]:
    return {"input": {"content": [{"type": "input_text", "text": text}]}}


@pytest.mark.parametrize("responder", [OnlyRespond(), plain_respond], ids=["object", "function"])
@pytest.mark.parametrize(
    ("request_type", "method"),
    [
        ("threads.custom_action", "action"),
        ("threads.sync_custom_action", "sync_action"),
        ("input.transcribe", "transcribe"),  # items.feedback is accepted: test_feedback.py
    ],
)
async def test_a_request_the_responder_cannot_handle_is_not_supported(
    responder: Any, request_type: str, method: str
) -> None:
    store = MemoryStore()
    app = ChatKitApp(responder, store=store)
    async with ChatKitTestClient(app) as client:
        events = await client.create_thread("hello")
        thread_id = next(e.thread.id for e in events if isinstance(e, ThreadCreatedEvent))
        items = await client.list_items(thread_id)
        params = {
            "threads.custom_action": {"thread_id": thread_id, "action": {"type": "vote"}},
            "threads.sync_custom_action": {"thread_id": thread_id, "action": {"type": "vote"}},
            "input.transcribe": {
                "audio_base64": base64.b64encode(b"audio").decode(),
                "mime_type": "audio/webm",
            },
        }[request_type]

        response = await client.post({"type": request_type, "params": params})

        assert response.status_code == 400
        assert response.headers["content-type"] == JSON
        error = response.json()["error"]
        assert error["code"] == "not_supported"
        assert method in error["message"]
        assert {"missing_method": method} in error["details"]
        assert await client.list_items(thread_id) == items  # nothing ran, nothing stored


async def test_attachments_create_without_an_attachment_store_is_not_supported() -> None:
    store = MemoryStore()
    app = ChatKitApp(OnlyRespond(), store=store)
    async with ChatKitTestClient(app) as client:
        response = await client.post(
            {
                "type": "attachments.create",
                "params": {"name": "a.png", "size": 10, "mime_type": "image/png"},
            }
        )

    assert response.status_code == 400
    assert response.headers["content-type"] == JSON
    assert response.json()["error"]["code"] == "not_supported"
    assert {"missing": "attachment_store"} in response.json()["error"]["details"]


# -- other ASGI scopes ----------------------------------------------------------------


class ClosingStore(MemoryStore):
    """A store that notes when the app closes it."""

    closed = False

    async def aclose(self) -> None:
        self.closed = True


async def test_lifespan_is_handled_when_the_app_runs_standalone() -> None:
    store = ClosingStore()
    app = ChatKitApp(OnlyRespond(), store=store)
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(dict(message))

    with anyio.fail_after(5):
        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)

    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]
    assert store.closed


def test_starlettes_test_client_runs_the_lifespan() -> None:
    store = ClosingStore()
    app = ChatKitApp(OnlyRespond(), store=store)

    with TestClient(app) as client:
        response = client.post("/", json={"type": "threads.list", "params": {}})
        assert response.json() == {"data": [], "has_more": False}
        assert not store.closed

    assert store.closed


def test_a_websocket_is_refused_cleanly() -> None:
    app = ChatKitApp(OnlyRespond(), store=MemoryStore())

    with (
        TestClient(app) as client,
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect("/"),
    ):
        pass  # pragma: no cover - the app never accepts

    assert refused.value.code == 1003


async def test_a_websocket_scope_gets_a_close_and_nothing_else() -> None:
    app = ChatKitApp(OnlyRespond(), store=MemoryStore())
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(dict(message))

    scope = {"type": "websocket", "asgi": {"version": "3.0"}, "path": "/", "headers": []}
    with anyio.fail_after(5):
        await app(scope, receive, send)

    assert len(sent) == 1
    assert sent[0]["type"] == "websocket.close"


# -- logging ---------------------------------------------------------------------------


@pytest.fixture
def chatkit_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("chatkit_asgi")
    level = logger.level
    yield logger
    logger.setLevel(level)


@pytest.mark.parametrize(
    ("value", "level"), [("debug", logging.DEBUG), ("WARNING", logging.WARNING)]
)
def test_log_level_env_var_sets_the_package_logger_level(
    monkeypatch: pytest.MonkeyPatch, chatkit_logger: logging.Logger, value: str, level: int
) -> None:
    chatkit_logger.setLevel(logging.NOTSET)
    monkeypatch.setenv("LOG_LEVEL", value)

    ChatKitApp(OnlyRespond(), store=MemoryStore())

    assert chatkit_logger.level == level


def test_without_log_level_the_logger_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, chatkit_logger: logging.Logger
) -> None:
    chatkit_logger.setLevel(logging.ERROR)
    monkeypatch.delenv("LOG_LEVEL", raising=False)

    ChatKitApp(OnlyRespond(), store=MemoryStore())

    assert chatkit_logger.level == logging.ERROR


async def test_the_test_client_can_talk_to_the_app_over_plain_httpx() -> None:
    """The app is a plain ASGI callable: any ASGI transport works."""
    app = ChatKitApp(OnlyRespond(), store=MemoryStore())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://chat") as http:
        response = await http.post("/", json={"type": "threads.list", "params": {}})

    assert response.status_code == 200
    assert response.json() == {"data": [], "has_more": False}
