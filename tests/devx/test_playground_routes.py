"""`ChatKitApp(..., playground=True)`: the page and its assets, next to the endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount

from chatkit_asgi import ChatKitApp, ChatKitMiddleware
from chatkit_asgi._demo import DemoAssistant
from chatkit_asgi.playground import ASSETS
from chatkit_asgi.stores import MemoryStore
from chatkit_asgi.testing import ChatKitTestClient
from chatkit_asgi.types import AssistantMessageItem, ThreadItemDoneEvent

PACKAGE = Path(__file__).resolve().parents[2] / "chatkit_asgi" / "playground"


def make_app(**options: object) -> ChatKitApp:
    return ChatKitApp(DemoAssistant(word_delay=0), store=MemoryStore(), **options)  # type: ignore[arg-type]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=[Mount("/chatkit", app=make_app(playground=True))])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_the_page_is_served_at_the_mount(http: httpx.AsyncClient) -> None:
    response = await http.get("/chatkit/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>ChatKit playground</title>" in response.text
    # Self-contained: everything it loads comes from the app itself.
    assert 'src="playground/app.js"' in response.text
    assert "https://" not in response.text
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("name", ["app.js", "app.css", "chatkit.html"])
async def test_assets_are_served_below_the_mount(http: httpx.AsyncClient, name: str) -> None:
    response = await http.get(f"/chatkit/playground/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == ASSETS[name][0]
    assert response.content == (PACKAGE / name).read_bytes()


async def test_head_answers_headers_only(http: httpx.AsyncClient) -> None:
    response = await http.head("/chatkit/playground/app.js")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) == len((PACKAGE / "app.js").read_bytes())


async def test_unknown_assets_are_not_found(http: httpx.AsyncClient) -> None:
    for path in (
        "/chatkit/playground/",
        "/chatkit/playground/secret.py",
        "/chatkit/playground/../app.py",
    ):
        response = await http.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"


async def test_the_assets_take_no_post(http: httpx.AsyncClient) -> None:
    response = await http.post("/chatkit/playground/app.js", content=b"{}")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


async def test_the_endpoint_still_takes_post_at_the_same_path() -> None:
    app = Starlette(routes=[Mount("/chatkit", app=make_app(playground=True))])
    async with ChatKitTestClient(app, path="/chatkit/") as client:
        events = await client.create_thread("hello")
    done = [e for e in events if isinstance(e, ThreadItemDoneEvent)]
    assert isinstance(done[-1].item, AssistantMessageItem)
    assert done[-1].item.content[0].text == "Echo: hello"


async def test_off_by_default() -> None:
    app = Starlette(routes=[Mount("/chatkit", app=make_app())])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        page = await client.get("/chatkit/")
        asset = await client.get("/chatkit/playground/app.js")
    assert page.status_code == 405
    assert page.json()["error"]["code"] == "method_not_allowed"
    assert asset.status_code == 404


async def test_without_the_slash_it_redirects_so_relative_urls_resolve() -> None:
    # As middleware the app also answers its path without the trailing slash.
    app = Starlette(
        middleware=[Middleware(ChatKitMiddleware, path="/chat", chatkit=make_app(playground=True))]
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/chat?x=1")
        assert response.status_code == 307
        assert response.headers["location"] == "/chat/?x=1"
        page = await client.get("/chat/")
    assert page.status_code == 200


async def test_standalone_at_the_root() -> None:
    transport = httpx.ASGITransport(app=make_app(playground=True))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        page = await client.get("/")
        script = await client.get("/playground/app.js")
    assert page.status_code == 200
    assert script.status_code == 200


def test_every_asset_ships_in_the_package() -> None:
    shipped = {path.name for path in PACKAGE.iterdir() if path.suffix in (".html", ".js", ".css")}
    assert shipped == set(ASSETS)
