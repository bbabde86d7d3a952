"""Every JSON error body has the same shape, with the message where the ChatKit UI reads it.

The `<openai-chatkit>` web component shows `body.message` for a failed request (the
HTTP status text otherwise: "Bad Request"). Our body keeps `{"error": {code, message,
details}}` for code that matches on `error.code`, and repeats the message at the top.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request

from chatkit_asgi import ChatKitApp, Refusal, StoreUnavailableError, Turn
from chatkit_asgi.shutdown import RequestTracker
from chatkit_asgi.stores import MemoryStore
from chatkit_asgi.testing import ChatKitTestClient, user_input
from chatkit_asgi.types import ThreadMetadata, ThreadStreamEvent


def assert_error_body(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "message"}, body
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert body["message"] == body["error"]["message"]


async def respond(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
    return
    yield


class DownStore(MemoryStore[Any]):
    """A store whose backend is unreachable on every thread read."""

    async def load_thread(self, thread_id: str, context: Any) -> ThreadMetadata:
        raise StoreUnavailableError("connection refused")


async def refuse_lists(context: Any, request_type: str, thread: ThreadMetadata | None) -> Refusal:
    return Refusal("Too many lists today", retry_after=5)


def by_header(request: Request) -> dict[str, str]:
    if request.headers.get("x-auth") == "none":
        raise HTTPException(401, "Sign in first")
    if request.headers.get("x-auth") == "broken":
        raise RuntimeError("the session service failed")
    return {}


@pytest.fixture
async def client() -> AsyncIterator[ChatKitTestClient]:
    app = ChatKitApp(respond, store=MemoryStore(), context=by_header, max_body_size=1024)
    async with ChatKitTestClient(app) as client:
        yield client


LIST = {"type": "threads.list", "params": {}}
ADD = {
    "type": "threads.add_user_message",
    "params": {"thread_id": "thr_missing", "input": user_input("hi")},
}


async def test_refusals_before_parsing(client: ChatKitTestClient) -> None:
    http = client.http
    assert_error_body(await http.get("/"), 405, "method_not_allowed")
    assert_error_body(await http.post("/nowhere", json=LIST), 404, "not_found")
    assert_error_body(
        await http.post("/", content=b"x" * 2048, headers={"content-type": "application/json"}),
        413,
        "body_too_large",
    )
    assert_error_body(
        await http.post("/", content=b"{}", headers={"content-type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    assert_error_body(await client.post(b"{not json"), 400, "invalid_json")
    assert_error_body(
        await client.post({"type": "nope", "params": {}}), 400, "unknown_request_type"
    )


async def test_refusals_of_a_parsed_request(client: ChatKitTestClient) -> None:
    assert_error_body(await client.post(ADD), 404, "thread_not_found")
    assert_error_body(
        await client.post(ADD, headers={"accept": "text/plain"}), 406, "not_acceptable"
    )
    assert_error_body(await client.post(LIST, headers={"x-auth": "none"}), 401, "unauthorized")
    broken = await client.post(LIST, headers={"x-auth": "broken"})
    assert_error_body(broken, 500, "internal_error")
    assert "session service" not in broken.text


async def test_store_outages_and_admission_refusals() -> None:
    app = ChatKitApp(respond, store=DownStore())
    async with ChatKitTestClient(app) as client:
        assert_error_body(await client.post(ADD), 503, "store_unavailable")
    app = ChatKitApp(respond, store=MemoryStore(), admission=refuse_lists)
    async with ChatKitTestClient(app) as client:
        refused = await client.post(LIST)
    assert_error_body(refused, 429, "rate_limited")
    assert refused.json()["message"] == "Too many lists today"


async def test_a_request_cut_by_shutdown_before_its_response() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    with anyio.CancelScope() as scope:
        async with RequestTracker().track(send):
            scope.cancel()  # the server's graceful-shutdown deadline
            await anyio.sleep(5)

    start, body = sent
    headers = dict(start["headers"])
    response = httpx.Response(start["status"], headers=headers, content=body["body"])
    assert_error_body(response, 503, "shutting_down")
    assert json.loads(body["body"])["message"].startswith("The server is shutting down")
