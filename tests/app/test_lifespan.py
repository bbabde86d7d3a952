"""Lifespan of a ChatKit app inside a host, under a real uvicorn with lifespan on.

A mounted app gets no lifespan events of its own (Starlette does not forward them),
so the host must pass `lifespan=chatkit.lifespan`; forgetting it still serves
requests and is reported once. `ChatKitMiddleware` forwards the lifespan to the
app it wraps and closes the ChatKit stores after the wrapped app's shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from chatkit_asgi import ChatKitApp, ChatKitMiddleware
from chatkit_asgi.stores import SQLiteStore
from tests.streaming.conftest import LiveServer

from .conftest import bare_respond

CREATE_THREAD = (
    b'{"type": "threads.create", "params": {"input": {"content": '
    b'[{"type": "input_text", "text": "hello"}]}}}'
)
FIX = "lifespan=chatkit.lifespan"


class SpiedStore(SQLiteStore[Any]):
    """A real SQLite store that notes, in a shared journal, when it is closed."""

    def __init__(self, path: Path, journal: list[str]) -> None:
        super().__init__(path)
        self.journal = journal

    async def aclose(self) -> None:
        await super().aclose()
        self.journal.append("store closed")


async def home(request: Request) -> Response:
    return PlainTextResponse("home")


def serve(app: Any) -> LiveServer:
    return LiveServer(app, lifespan="on").start()


async def create_thread(url: str, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url) as http:
        return await http.post(
            path, content=CREATE_THREAD, headers={"content-type": "application/json"}
        )


def lifespan_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "chatkit_asgi" and r.levelno == logging.WARNING and FIX in r.getMessage()
    ]


async def test_a_host_that_forgets_lifespan_still_serves_and_is_warned_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal: list[str] = []
    chatkit = ChatKitApp(bare_respond, store=SpiedStore(tmp_path / "c.db", journal))
    host = Starlette(routes=[Mount("/chatkit", app=chatkit)])  # no lifespan=
    server = serve(host)
    try:
        for _ in range(3):
            response = await create_thread(server.url, "/chatkit/")
            assert response.status_code == 200
            assert b'"thread.created"' in response.content
    finally:
        server.stop()
    [warning] = lifespan_warnings(caplog)
    assert "/chatkit" in warning.getMessage()
    # The warning says it: without a lifespan, nothing closes the store.
    assert journal == []
    await chatkit.aclose()


async def test_a_host_that_passes_lifespan_closes_the_store_and_is_not_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal: list[str] = []
    chatkit = ChatKitApp(bare_respond, store=SpiedStore(tmp_path / "c.db", journal))
    host = Starlette(routes=[Mount("/chatkit", app=chatkit)], lifespan=chatkit.lifespan)
    server = serve(host)
    try:
        assert (await create_thread(server.url, "/chatkit/")).status_code == 200
    finally:
        server.stop()
    assert lifespan_warnings(caplog) == []
    assert journal == ["store closed"]


async def test_the_documented_composed_lifespan_runs_both(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal: list[str] = []
    chatkit = ChatKitApp(bare_respond, store=SpiedStore(tmp_path / "c.db", journal))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with chatkit.lifespan(app):
            journal.append("host up")
            yield
            journal.append("host down")

    host = Starlette(routes=[Mount("/chatkit", app=chatkit)], lifespan=lifespan)
    server = serve(host)
    try:
        assert (await create_thread(server.url, "/chatkit/")).status_code == 200
    finally:
        server.stop()
    assert lifespan_warnings(caplog) == []
    assert journal == ["host up", "host down", "store closed"]


async def test_middleware_runs_both_lifespans_and_closes_the_store_last(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal: list[str] = []

    @asynccontextmanager
    async def site_lifespan(app: Starlette) -> AsyncIterator[None]:
        journal.append("site up")
        yield
        journal.append("site down")

    chatkit = ChatKitApp(bare_respond, store=SpiedStore(tmp_path / "c.db", journal))
    site = Starlette(
        routes=[Route("/", home)],
        lifespan=site_lifespan,
        middleware=[Middleware(ChatKitMiddleware, path="/chatkit", chatkit=chatkit)],
    )
    server = serve(site)
    try:
        assert journal == ["site up"]
        assert (await create_thread(server.url, "/chatkit")).status_code == 200
        async with httpx.AsyncClient(base_url=server.url) as http:
            assert (await http.get("/")).text == "home"
    finally:
        server.stop()
    assert lifespan_warnings(caplog) == []
    assert journal == ["site up", "site down", "store closed"]
