"""What the attachment tests share: users, a responder that reads files, upload helpers.

The upload helpers do what the ChatKit UI does: `upload_two_phase` creates the
attachment and sends the bytes where its upload descriptor says, `upload_direct`
posts a multipart form to the app's upload route. URLs of the app itself are
reached in process; any other URL (S3) over real HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.requests import Request

from chatkit_asgi import Turn
from chatkit_asgi.testing import ChatKitTestClient
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    ThreadItemDoneEvent,
    ThreadStreamEvent,
)

APP_URL = "http://testserver"


def user_context(request: Request) -> dict[str, str]:
    """The request context: who the `x-user` header names."""
    return {"user": request.headers.get("x-user", "anonymous")}


def tenant(context: dict[str, str]) -> str:
    """Stores are partitioned by user."""
    return context["user"]


class ReadingResponder:
    """Reads every attachment of the user's message through the turn and says what it got."""

    def __init__(self) -> None:
        self.read: dict[str, bytes] = {}

    async def respond(self, turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        """Answer `<name>: <size> bytes` for each attachment."""
        lines = []
        for attachment in turn.input.attachments if turn.input else []:
            data = await turn.read_attachment(attachment)
            self.read[attachment.id] = data
            lines.append(f"{attachment.name}: {len(data)} bytes")
        yield ThreadItemDoneEvent(
            item=AssistantMessageItem(
                id=turn.new_id("message"),
                thread_id=turn.thread.id,
                created_at=turn.now(),
                content=[AssistantMessageContent(text="\n".join(lines) or "no attachments")],
            )
        )


def answer_text(events: list[ThreadStreamEvent]) -> str:
    """The text of the assistant message a reply ended with."""
    done = [
        event.item
        for event in events
        if isinstance(event, ThreadItemDoneEvent) and isinstance(event.item, AssistantMessageItem)
    ]
    assert done, f"no assistant message in {events}"
    return "".join(part.text for part in done[-1].content)


async def request_url(
    client: ChatKitTestClient, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    """A request to `url`: in process when it is the app's own, over the network otherwise."""
    if url.startswith(APP_URL + "/"):
        return await client.http.request(method, url, **kwargs)
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.request(method, url, **kwargs)


async def send_to_descriptor(
    client: ChatKitTestClient, attachment: dict[str, Any], data: bytes, *, mime_type: str = ""
) -> httpx.Response:
    """Send `data` as the attachment's upload descriptor asks.

    PUT sends the raw bytes with the descriptor's headers. POST sends a
    multipart form whose `file` part carries the bytes; with an S3 presigned
    POST the descriptor's headers are the policy's form fields, sent first.
    """
    descriptor = attachment["upload_descriptor"]
    mime = mime_type or attachment["mime_type"]
    if descriptor["method"] == "PUT":
        return await request_url(
            client, "PUT", descriptor["url"], content=data, headers=descriptor["headers"]
        )
    return await request_url(
        client,
        "POST",
        descriptor["url"],
        data=descriptor["headers"],
        files={"file": (attachment["name"], data, mime)},
    )


async def upload_two_phase(
    client: ChatKitTestClient, name: str, data: bytes, mime_type: str
) -> dict[str, Any]:
    """`attachments.create`, then the upload to the descriptor; the created attachment."""
    attachment: dict[str, Any] = await client.call(
        "attachments.create", name=name, size=len(data), mime_type=mime_type
    )
    response = await send_to_descriptor(client, attachment, data)
    assert response.is_success, (response.status_code, response.text)
    return attachment


async def upload_direct(
    client: ChatKitTestClient, name: str, data: bytes, mime_type: str
) -> httpx.Response:
    """A direct upload: the multipart form the ChatKit UI posts to the upload URL."""
    return await client.http.post("/upload", files={"file": (name, data, mime_type)})


def stored_objects(store: Any, endpoint: Any = None) -> list[str]:
    """Everything the store holds: file paths (temporary ones included), or S3 keys
    and unfinished multipart uploads under its prefix."""
    from chatkit_asgi.stores.filesystem import FileSystemAttachmentStore

    if isinstance(store, FileSystemAttachmentStore):
        return sorted(
            str(path.relative_to(store.directory))
            for path in store.directory.rglob("*")
            if path.is_file() and path.name != ".signing-key"
        )
    client = endpoint.boto3_client()
    listing = client.list_objects_v2(Bucket=store.bucket, Prefix=store.prefix)
    uploads = client.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)
    return sorted(
        [entry["Key"] for entry in listing.get("Contents", [])]
        + [f"unfinished upload of {u['Key']}" for u in uploads.get("Uploads", [])]
    )
