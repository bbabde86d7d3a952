"""A typed client for ChatKit endpoints, over httpx."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
from pydantic import BaseModel, TypeAdapter

from ..types import (
    Page,
    Thread,
    ThreadItem,
    ThreadStreamEvent,
    UserMessageInput,
    UserMessageTextContent,
)

__all__ = ["ChatKitTestClient", "ProtocolHTTPError", "parse_sse", "user_input"]

_EVENTS: TypeAdapter[ThreadStreamEvent] = TypeAdapter(ThreadStreamEvent)
_THREAD_PAGE: TypeAdapter[Page[Thread]] = TypeAdapter(Page[Thread])
_ITEM_PAGE: TypeAdapter[Page[ThreadItem]] = TypeAdapter(Page[ThreadItem])


class ProtocolHTTPError(Exception):
    """The endpoint refused a request; `status`, `code` and `body` say how."""

    def __init__(self, status: int, body: Any) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        self.status = status
        self.code: str | None = error.get("code")
        self.body = body
        super().__init__(f"HTTP {status} {self.code}: {error.get('message', body)}")


def parse_sse(data: bytes) -> list[dict[str, Any]]:
    """The JSON payloads of an SSE body (comments and heartbeats skipped)."""
    events = []
    for frame in data.split(b"\n\n"):
        lines = [line[6:] for line in frame.split(b"\n") if line.startswith(b"data: ")]
        if lines:
            events.append(json.loads(b"\n".join(lines)))
    return events


def user_input(text: str, **fields: Any) -> dict[str, Any]:
    """A `UserMessageInput` payload with one text part."""
    message = UserMessageInput(content=[UserMessageTextContent(text=text)], **fields)
    return message.model_dump(mode="json", exclude_none=True)


class ChatKitTestClient:
    """Posts ChatKit requests and returns typed events and responses.

    In process (no server)::

        client = ChatKitTestClient(app)

    or against a running server::

        client = ChatKitTestClient(base_url="http://127.0.0.1:8000/chatkit")
    """

    def __init__(
        self,
        app: Any = None,
        *,
        base_url: str = "http://testserver",
        path: str = "",
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        transport = httpx.ASGITransport(app=app) if app is not None else None
        self.http = httpx.AsyncClient(
            transport=transport, base_url=base_url, headers=headers, timeout=timeout
        )
        self.path = path

    async def __aenter__(self) -> ChatKitTestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the underlying HTTP client."""
        await self.http.aclose()

    # -- raw ---------------------------------------------------------------------

    async def post(
        self,
        body: Mapping[str, Any] | BaseModel | bytes,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """POST one request body (dict, model or raw bytes) and return the raw response."""
        if isinstance(body, BaseModel):
            content = body.model_dump_json(exclude_none=True).encode()
        elif isinstance(body, bytes):
            content = body
        else:
            content = json.dumps(body).encode()
        all_headers = {"content-type": "application/json", **(headers or {})}
        return await self.http.post(self.path, content=content, headers=all_headers)

    @asynccontextmanager
    async def open_stream(
        self, request_type: str, params: Mapping[str, Any], **kwargs: Any
    ) -> AsyncIterator[AsyncIterator[ThreadStreamEvent]]:
        """Stream events as they arrive (use against a real server to see them live)."""
        body = json.dumps({"type": request_type, "params": dict(params), **kwargs}).encode()
        async with self.http.stream(
            "POST", self.path, content=body, headers={"content-type": "application/json"}
        ) as response:
            if response.status_code != 200:
                await response.aread()
                raise ProtocolHTTPError(response.status_code, response.json())

            async def events() -> AsyncIterator[ThreadStreamEvent]:
                buffer = b""
                async for chunk in response.aiter_bytes():
                    buffer += chunk
                    while b"\n\n" in buffer:
                        frame, buffer = buffer.split(b"\n\n", 1)
                        for payload in parse_sse(frame + b"\n\n"):
                            yield _EVENTS.validate_python(payload)

            yield events()

    # -- typed -------------------------------------------------------------------

    async def stream(self, request_type: str, **params: Any) -> list[ThreadStreamEvent]:
        """Send a streaming request; return its events, typed."""
        response = await self.post({"type": request_type, "params": params})
        if response.status_code != 200:
            raise ProtocolHTTPError(response.status_code, _json_or_text(response))
        return [_EVENTS.validate_python(e) for e in parse_sse(response.content)]

    async def call(self, request_type: str, **params: Any) -> Any:
        """Send a non-streaming request; return its JSON."""
        response = await self.post({"type": request_type, "params": params})
        if response.status_code != 200:
            raise ProtocolHTTPError(response.status_code, _json_or_text(response))
        return response.json()

    async def create_thread(self, text: str, **fields: Any) -> list[ThreadStreamEvent]:
        """`threads.create` with a text message."""
        return await self.stream("threads.create", input=user_input(text, **fields))

    async def add_message(
        self, thread_id: str, text: str, **fields: Any
    ) -> list[ThreadStreamEvent]:
        """`threads.add_user_message` with a text message."""
        return await self.stream(
            "threads.add_user_message", thread_id=thread_id, input=user_input(text, **fields)
        )

    async def get_thread(self, thread_id: str) -> Thread:
        """`threads.get_by_id`, typed."""
        return Thread.model_validate(await self.call("threads.get_by_id", thread_id=thread_id))

    async def list_threads(self, **params: Any) -> Page[Thread]:
        """`threads.list`, typed."""
        return _THREAD_PAGE.validate_python(await self.call("threads.list", **params))

    async def list_items(self, thread_id: str, **params: Any) -> Page[ThreadItem]:
        """`items.list`, typed."""
        return _ITEM_PAGE.validate_python(
            await self.call("items.list", thread_id=thread_id, **params)
        )


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text
