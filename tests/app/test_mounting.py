"""Putting ChatKit into an existing site.

Three ways: Starlette's `Mount`, FastAPI's `app.mount`, and `ChatKitMiddleware`
around a whole site.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from chatkit_asgi import ChatKitApp, ChatKitMiddleware, Turn
from chatkit_asgi.stores import MemoryStore
from chatkit_asgi.testing import ChatKitTestClient, parse_sse
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    ThreadCreatedEvent,
    ThreadItemDoneEvent,
    ThreadStreamEvent,
)

JSON = "application/json"
LIST_THREADS = b'{"type": "threads.list", "params": {}}'
CREATE_THREAD = (
    b'{"type": "threads.create", "params": {"input": {"content": '
    b'[{"type": "input_text", "text": "hello"}]}}}'
)


async def echo(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
    yield ThreadItemDoneEvent(
        item=AssistantMessageItem(
            id=turn.new_id("message"),
            thread_id=turn.thread.id,
            created_at=turn.now(),
            content=[AssistantMessageContent(text=f"{turn.context}: {turn.input_text()}")],
        )
    )


def http_client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://site")


async def post_json(http: httpx.AsyncClient, path: str, body: bytes, **kwargs: Any) -> Any:
    return await http.post(path, content=body, headers={"content-type": JSON}, **kwargs)


# -- a site of our own to mount into ---------------------------------------------------


async def home(request: Request) -> Response:
    return PlainTextResponse("home")


async def echo_body(request: Request) -> Response:
    return JSONResponse({"method": request.method, "body": (await request.body()).decode()})


async def ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(await websocket.receive_text())
    await websocket.close()


def site_routes() -> list[Any]:
    return [
        Route("/", home),
        Route("/echo", echo_body, methods=["POST", "PUT"]),
        WebSocketRoute("/ws", ws_echo),
    ]


# -- Starlette Mount --------------------------------------------------------------------


@pytest.fixture
def starlette_site() -> Starlette:
    chatkit = ChatKitApp(echo, store=MemoryStore())
    return Starlette(routes=[*site_routes(), Mount("/chatkit", app=chatkit)])


async def test_mounted_in_starlette_the_protocol_is_served_below_the_mount(
    starlette_site: Starlette,
) -> None:
    async with ChatKitTestClient(starlette_site, path="/chatkit/") as client:
        events = await client.create_thread("hello")
        thread_id = next(e.thread.id for e in events if isinstance(e, ThreadCreatedEvent))
        thread = await client.get_thread(thread_id)
        threads = await client.list_threads()

    assert [item.type for item in thread.items.data] == ["user_message", "assistant_message"]
    assert [t.id for t in threads.data] == [thread_id]


@pytest.mark.parametrize("path", ["/chatkit", "/chatkit/"])
async def test_mounted_in_starlette_both_spellings_of_the_path_work(
    starlette_site: Starlette, path: str
) -> None:
    async with http_client(starlette_site) as http:
        listing = await post_json(http, path, LIST_THREADS, follow_redirects=True)
        stream = await post_json(http, path, CREATE_THREAD, follow_redirects=True)

    for response in (listing, stream):
        # Starlette may redirect "/chatkit" to "/chatkit/"; only a redirect that keeps
        # the method and the body is acceptable for a POST.
        assert all(hop.status_code in (307, 308) for hop in response.history)
    assert listing.status_code == 200
    assert listing.json() == {"data": [], "has_more": False}
    assert stream.status_code == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert [event["type"] for event in parse_sse(stream.content)][-1] == "thread.item.done"


async def test_mounted_in_starlette_errors_and_the_rest_of_the_site(
    starlette_site: Starlette,
) -> None:
    async with http_client(starlette_site) as http:
        sub_path = await post_json(http, "/chatkit/threads", LIST_THREADS)
        wrong_method = await http.get("/chatkit/")
        homepage = await http.get("/")

    assert sub_path.status_code == 404
    assert sub_path.json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert homepage.text == "home"


# -- FastAPI mount ----------------------------------------------------------------------


@pytest.fixture
def fastapi_site() -> FastAPI:
    api = FastAPI()

    @api.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    api.mount("/chatkit", ChatKitApp(echo, store=MemoryStore()))
    return api


@pytest.mark.parametrize("path", ["/chatkit", "/chatkit/"])
async def test_mounted_in_fastapi_the_protocol_is_served(fastapi_site: FastAPI, path: str) -> None:
    async with http_client(fastapi_site) as http:
        stream = await post_json(http, path, CREATE_THREAD, follow_redirects=True)
        listing = await post_json(http, path, LIST_THREADS, follow_redirects=True)
        health = await http.get("/health")

    assert stream.status_code == 200
    assert all(hop.status_code in (307, 308) for hop in stream.history)
    events = parse_sse(stream.content)
    assert "thread.created" in [event["type"] for event in events]
    assert [event["type"] for event in events][-1] == "thread.item.done"
    assert listing.status_code == 200
    assert len(listing.json()["data"]) == 1
    assert health.json() == {"status": "ok"}


async def test_mounted_in_fastapi_refusals_are_chatkit_json(fastapi_site: FastAPI) -> None:
    async with http_client(fastapi_site) as http:
        bad = await post_json(http, "/chatkit/", b'{"type": "threads.get_by_id", "params": {}}')
        missing = await post_json(
            http, "/chatkit/", b'{"type": "threads.get_by_id", "params": {"thread_id": "thr_x"}}'
        )

    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_request"
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "thread_not_found"


# -- FastAPI with dependency-based auth ---------------------------------------------------


async def current_user(request: Request) -> dict[str, str]:
    """One auth function for FastAPI routes (`Depends`) and the ChatKit context factory."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme != "Bearer" or not token:
        raise HTTPException(401, "Not signed in", headers={"WWW-Authenticate": "Bearer"})
    return {"user": token}


@pytest.fixture
def fastapi_with_auth() -> FastAPI:
    api = FastAPI()

    @api.get("/me")
    async def me(user: Annotated[dict[str, str], Depends(current_user)]) -> dict[str, str]:
        return user

    store: MemoryStore[dict[str, str]] = MemoryStore(tenant=lambda ctx: ctx["user"])
    api.mount("/chatkit", ChatKitApp(echo, store=store, context=current_user))
    return api


async def test_fastapi_auth_dependency_doubles_as_the_context_factory(
    fastapi_with_auth: FastAPI,
) -> None:
    alice = {"authorization": "Bearer alice"}
    bob = {"authorization": "Bearer bob"}
    async with (
        ChatKitTestClient(fastapi_with_auth, path="/chatkit/", headers=alice) as as_alice,
        ChatKitTestClient(fastapi_with_auth, path="/chatkit/", headers=bob) as as_bob,
    ):
        events = await as_alice.create_thread("hello")
        me = await as_alice.http.get("/me")
        alices = await as_alice.list_threads()
        bobs = await as_bob.list_threads()

    reply = [e for e in events if isinstance(e, ThreadItemDoneEvent)][-1].item
    assert isinstance(reply, AssistantMessageItem)
    assert reply.content[0].text == "{'user': 'alice'}: hello"
    assert me.json() == {"user": "alice"}
    assert len(alices.data) == 1
    assert bobs.data == []


async def test_fastapi_auth_refusal_reaches_both_fastapi_and_chatkit(
    fastapi_with_auth: FastAPI,
) -> None:
    async with http_client(fastapi_with_auth) as http:
        me = await http.get("/me")
        chat = await post_json(http, "/chatkit/", LIST_THREADS)

    assert me.status_code == chat.status_code == 401
    assert me.headers["www-authenticate"] == chat.headers["www-authenticate"] == "Bearer"
    assert me.json() == {"detail": "Not signed in"}  # FastAPI's own shape on its routes
    assert chat.json() == {
        "error": {"code": "unauthorized", "message": "Not signed in", "details": []},
        "message": "Not signed in",
    }


# -- ChatKitMiddleware ----------------------------------------------------------------------


def wrapped_site(**chatkit: Any) -> Starlette:
    """Our site with ChatKit served at /chatkit by middleware."""
    options = chatkit or {"responder": echo, "store": MemoryStore()}
    return Starlette(
        routes=site_routes(),
        middleware=[Middleware(ChatKitMiddleware, path="/chatkit", **options)],
    )


def plain_site() -> Starlette:
    return Starlette(routes=site_routes())


@pytest.mark.parametrize("path", ["/chatkit", "/chatkit/"])
async def test_middleware_serves_the_protocol_at_its_path(path: str) -> None:
    async with ChatKitTestClient(wrapped_site(), path=path) as client:
        events = await client.create_thread("hello")
        threads = await client.list_threads()

    assert isinstance(events[-1], ThreadItemDoneEvent)
    assert len(threads.data) == 1


async def test_middleware_refusals_at_its_path_are_chatkit_json() -> None:
    async with http_client(wrapped_site()) as http:
        wrong_method = await http.get("/chatkit")
        bad_body = await post_json(http, "/chatkit", b"{")

    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert bad_body.status_code == 400
    assert bad_body.json()["error"]["code"] == "invalid_json"


PASS_THROUGH = [
    ("GET", "/", b""),
    ("HEAD", "/", b""),
    ("POST", "/", LIST_THREADS),  # the site's 405
    ("POST", "/echo", LIST_THREADS),
    ("PUT", "/echo", b"raw bytes"),
    ("GET", "/missing", b""),  # the site's 404
    ("POST", "/missing", LIST_THREADS),
    ("POST", "/chatkitx", LIST_THREADS),  # nor is a longer name
    ("POST", "/api/chatkit", LIST_THREADS),
    ("OPTIONS", "/echo", b""),
]


@pytest.mark.parametrize(("method", "path", "body"), PASS_THROUGH)
async def test_middleware_passes_every_other_path_through_untouched(
    method: str, path: str, body: bytes
) -> None:
    headers = {"content-type": JSON}
    async with http_client(plain_site()) as plain, http_client(wrapped_site()) as wrapped:
        expected = await plain.request(method, path, content=body, headers=headers)
        actual = await wrapped.request(method, path, content=body, headers=headers)

    assert actual.status_code == expected.status_code
    assert actual.headers == expected.headers
    assert actual.content == expected.content


async def test_middleware_owns_the_paths_below_its_path_like_a_mount() -> None:
    async with http_client(wrapped_site()) as http:
        below = await post_json(http, "/chatkit/threads", LIST_THREADS)

    assert below.status_code == 404
    assert below.headers["content-type"] == JSON
    assert below.json()["error"]["code"] == "not_found"


async def test_middleware_accepts_a_ready_chatkit_app() -> None:
    store = MemoryStore()
    chatkit = ChatKitApp(echo, store=store)
    site = ChatKitMiddleware(plain_site(), path="/chat/", chatkit=chatkit)

    async with http_client(site) as http:
        listing = await post_json(http, "/chat", LIST_THREADS)
        homepage = await http.get("/")

    assert listing.json() == {"data": [], "has_more": False}
    assert homepage.text == "home"


def test_middleware_needs_a_responder_or_an_app() -> None:
    with pytest.raises(TypeError):
        ChatKitMiddleware(plain_site(), path="/chatkit")


def test_middleware_leaves_lifespan_and_websockets_to_the_site() -> None:
    started: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started.append("up")
        yield
        started.append("down")

    site = Starlette(
        routes=site_routes(),
        lifespan=lifespan,
        middleware=[
            Middleware(ChatKitMiddleware, path="/chatkit", responder=echo, store=MemoryStore())
        ],
    )

    with TestClient(site) as client:
        assert started == ["up"]
        with client.websocket_connect("/ws") as websocket:
            websocket.send_text("ping")
            assert websocket.receive_text() == "ping"
        response = client.post("/chatkit", content=LIST_THREADS, headers={"content-type": JSON})
        assert response.json() == {"data": [], "has_more": False}

    assert started == ["up", "down"]


async def test_middleware_inside_a_mount_uses_the_path_below_the_mount() -> None:
    inner = ChatKitMiddleware(plain_site(), path="/chatkit", responder=echo, store=MemoryStore())
    outer = Starlette(routes=[Mount("/app", app=inner)])

    async with http_client(outer) as http:
        listing = await post_json(http, "/app/chatkit", LIST_THREADS)
        homepage = await http.get("/app/")

    assert listing.status_code == 200
    assert listing.json() == {"data": [], "has_more": False}
    assert homepage.text == "home"
