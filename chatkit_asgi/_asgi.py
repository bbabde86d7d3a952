"""What the transport modules share about ASGI: the types, headers, the route, JSON replies.

The types are Starlette's (`starlette.types`): one definition for the whole package.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ChatKitError

logger = logging.getLogger("chatkit_asgi")

__all__ = [
    "ASGIApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "header",
    "is_json_media_type",
    "joined_header",
    "lifespan_of",
    "read_body",
    "route_path",
    "send_error",
    "send_json",
]


def route_path(scope: Scope) -> str:
    """The path below the mount point (Starlette keeps the full path in `path`)."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header; `name` in lower case."""
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def joined_header(scope: Scope, name: bytes) -> str | None:
    """A list-valued header sent on several lines, as one comma-separated value."""
    values = [bytes(v).decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == name]
    return ", ".join(values) if values else None


def is_json_media_type(content_type: str | None) -> bool:
    """Whether a Content-Type is JSON (`application/json` or `application/*+json`)."""
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def read_body(scope: Scope, receive: Receive, max_body_size: int) -> bytes:
    """The whole request body, refused with 413 past `max_body_size` bytes (checked
    against Content-Length first, then while reading)."""
    too_large = ChatKitError(
        f"The request body exceeds the limit of {max_body_size} bytes",
        code="body_too_large",
        status_code=413,
    )
    declared = header(scope, b"content-length")
    if declared is not None:
        # ASCII digits only: str.isdigit() and int() also take "²" or "٣".
        if not (declared.isascii() and declared.isdigit()):
            raise ChatKitError("The Content-Length header is not a number")
        if int(declared) > max_body_size:
            raise too_large
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ChatKitError("The client went away", code="client_disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_body_size:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_json(
    send: Send, status: int, body: bytes, headers: dict[str, str] | None = None
) -> None:
    """A complete JSON response."""
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, exc: ChatKitError) -> None:
    """A `ChatKitError` as its JSON error body and status."""
    await send_json(send, exc.status_code, exc.to_json(), exc.headers)


@asynccontextmanager
async def lifespan_of(app: ASGIApp) -> AsyncIterator[None]:
    """Run `app`'s ASGI lifespan (startup, then shutdown on exit) for a host app.

    Starlette's `Mount` does not forward lifespan events to the apps it mounts, so a
    host that mounts apps it did not write enters this in its own lifespan. An app
    that does not speak lifespan is run without it, as uvicorn's "auto" mode does.
    """
    to_app, app_inbox = anyio.create_memory_object_stream[Message](1)
    app_outbox, from_app = anyio.create_memory_object_stream[Message](1)
    scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}

    async def run() -> None:
        async with app_inbox, app_outbox:
            try:
                await app(scope, app_inbox.receive, app_outbox.send)
            except Exception:
                logger.debug("%r does not support lifespan", app, exc_info=True)

    async with anyio.create_task_group() as tasks, to_app, from_app:
        tasks.start_soon(run)
        with contextlib.suppress(anyio.BrokenResourceError):  # it returned at once
            await to_app.send({"type": "lifespan.startup"})
        started = await _next_message(from_app)
        if started is not None and started["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"{app!r} failed to start: {started.get('message', '')}")
        try:
            yield
        finally:
            if started is not None:
                with anyio.CancelScope(shield=True):
                    await to_app.send({"type": "lifespan.shutdown"})
                    await _next_message(from_app)


async def _next_message(stream: Any) -> Message | None:
    """The app's next lifespan message, or None when it returned without one."""
    try:
        message: Message = await stream.receive()
    except anyio.EndOfStream:
        return None
    return message
