"""Direct uploads: the multipart form the ChatKit UI posts to `{mount}/upload`.

What `uploadStrategy: {type: "direct", uploadUrl: ".../chatkit/upload"}` does: the
app streams the `file` part to the attachment store, saves the metadata and
answers the attachment JSON.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Mount

from chatkit_asgi import AttachmentStore, ChatKitApp
from chatkit_asgi.stores import MemoryStore
from chatkit_asgi.stores.filesystem import FileSystemAttachmentStore
from chatkit_asgi.testing import ChatKitTestClient
from chatkit_asgi.types import ImageAttachment, ThreadCreatedEvent, UserMessageItem

from ._helpers import (
    ReadingResponder,
    answer_text,
    request_url,
    tenant,
    upload_direct,
    user_context,
)
from .conftest import make_store

direct_backends = pytest.mark.parametrize("backend", ["filesystem", "s3-put"], indirect=True)

PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(4000)


@direct_backends
async def test_a_direct_upload_answers_the_attachment_and_reaches_the_responder(
    alice: ChatKitTestClient, responder: ReadingResponder
) -> None:
    response = await upload_direct(alice, "photo.png", PNG, "image/png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    attachment = response.json()
    assert attachment["type"] == "image"
    assert attachment["name"] == "photo.png"
    assert attachment["mime_type"] == "image/png"
    assert "upload_descriptor" not in attachment
    assert "metadata" not in attachment

    events = await alice.create_thread("What is this?", attachments=[attachment["id"]])
    assert answer_text(events) == f"photo.png: {len(PNG)} bytes"
    assert responder.read[attachment["id"]] == PNG

    thread_id = next(e.thread.id for e in events if isinstance(e, ThreadCreatedEvent))
    message = (await alice.get_thread(thread_id)).items.data[0]
    assert isinstance(message, UserMessageItem)
    [stored] = message.attachments
    assert isinstance(stored, ImageAttachment)
    assert stored.thread_id == thread_id
    preview = await request_url(alice, "GET", str(stored.preview_url))
    assert preview.status_code == 200
    assert preview.content == PNG

    assert await alice.call("attachments.delete", attachment_id=attachment["id"]) == {}
    after = await request_url(alice, "GET", str(stored.preview_url))
    assert after.status_code in (403, 404)  # S3 answers 404 NoSuchKey; the app 404


@direct_backends
async def test_an_upload_larger_than_one_part_is_streamed_through(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, responder: ReadingResponder
) -> None:
    # 11 MiB: on S3 a multipart upload of three 5 MiB parts (the last one short).
    store = make_store(backend, tmp_path, request, max_size=16 * 1024 * 1024)
    if backend.startswith("s3"):
        store.part_size = 5 * 1024 * 1024
    app = ChatKitApp(
        responder, store=MemoryStore(tenant=tenant), attachment_store=store, context=user_context
    )
    data = os.urandom(11 * 1024 * 1024)
    try:
        async with ChatKitTestClient(app, headers={"x-user": "alice"}) as alice:
            response = await upload_direct(alice, "big.bin.pdf", data, "application/pdf")
            assert response.status_code == 200, response.text
            attachment = response.json()
            events = await alice.create_thread("Read it", attachments=[attachment["id"]])
            assert answer_text(events) == f"big.bin.pdf: {len(data)} bytes"
            assert responder.read[attachment["id"]] == data
    finally:
        await app.aclose()


@direct_backends
async def test_the_upload_route_lives_below_the_mount_point(
    attachment_store: AttachmentStore[Any], responder: ReadingResponder
) -> None:
    chatkit = ChatKitApp(
        responder,
        store=MemoryStore(tenant=tenant),
        attachment_store=attachment_store,
        context=user_context,
    )
    site = Starlette(routes=[Mount("/chatkit", app=chatkit)])
    async with ChatKitTestClient(site, path="/chatkit", headers={"x-user": "alice"}) as alice:
        response = await alice.http.post(
            "/chatkit/upload", files={"file": ("photo.png", PNG, "image/png")}
        )
        assert response.status_code == 200
        preview_url = response.json()["preview_url"]
        if isinstance(attachment_store, FileSystemAttachmentStore):
            # The filesystem store serves previews itself: absolute, below the mount.
            assert preview_url.startswith("http://testserver/chatkit/files/")
        assert (await request_url(alice, "GET", preview_url)).content == PNG


async def test_a_public_base_url_is_used_for_the_urls_the_app_serves(
    tmp_path: Path, request: pytest.FixtureRequest, responder: ReadingResponder
) -> None:
    store = make_store("filesystem", tmp_path, request)
    app = ChatKitApp(
        responder,
        store=MemoryStore(tenant=tenant),
        attachment_store=store,
        context=user_context,
        public_base_url="https://chat.example.com/api/chatkit/",
    )
    async with ChatKitTestClient(app, headers={"x-user": "alice"}) as alice:
        response = await upload_direct(alice, "photo.png", PNG, "image/png")
        assert response.json()["preview_url"].startswith(
            "https://chat.example.com/api/chatkit/files/"
        )


@direct_backends
async def test_form_fields_besides_the_file_are_ignored(
    alice: ChatKitTestClient, responder: ReadingResponder
) -> None:
    response = await alice.http.post(
        "/upload",
        data={"purpose": "chat", "note": "x" * 1000},
        files={"file": ("notes.txt", b"hello", "text/plain")},
    )
    assert response.status_code == 200
    assert response.json()["name"] == "notes.txt"


@direct_backends
async def test_an_upload_without_a_file_part_is_refused(alice: ChatKitTestClient) -> None:
    response = await alice.http.post("/upload", files={"document": ("a.txt", b"hi", "text/plain")})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "missing_file"


@direct_backends
async def test_an_upload_that_is_not_a_multipart_form_is_refused(alice: ChatKitTestClient) -> None:
    response = await alice.http.post(
        "/upload", content=b"hello", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


@direct_backends
async def test_the_upload_route_takes_post_only(alice: ChatKitTestClient) -> None:
    response = await alice.http.get("/upload")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def test_an_app_without_attachment_store_has_no_upload_route(
    responder: ReadingResponder,
) -> None:
    app = ChatKitApp(responder, store=MemoryStore())
    async with ChatKitTestClient(app) as client:
        response = await client.http.post("/upload", files={"file": ("a.txt", b"hi", "text/plain")})
        assert response.status_code == 404


@direct_backends
async def test_the_context_factory_decides_who_uploads_and_sees_no_body(
    attachment_store: AttachmentStore[Any], responder: ReadingResponder
) -> None:
    seen_bodies: list[bytes] = []

    async def context(request: Request) -> dict[str, str]:
        if "x-user" not in request.headers:
            raise HTTPException(401, "sign in first")
        seen_bodies.append(await request.body())  # the upload's body is not for it
        return {"user": request.headers["x-user"]}

    app = ChatKitApp(
        responder,
        store=MemoryStore(tenant=tenant),
        attachment_store=attachment_store,
        context=context,
    )
    async with ChatKitTestClient(app) as anonymous:
        refused = await upload_direct(anonymous, "photo.png", PNG, "image/png")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
    async with ChatKitTestClient(app, headers={"x-user": "alice"}) as alice:
        response = await upload_direct(alice, "photo.png", PNG, "image/png")
        assert response.status_code == 200
        events = await alice.create_thread("Look", attachments=[response.json()["id"]])
        assert answer_text(events) == f"photo.png: {len(PNG)} bytes"
    assert seen_bodies[0] == b""


async def test_a_storage_failure_is_a_logged_500(
    tmp_path: Path, responder: ReadingResponder, caplog: pytest.LogCaptureFixture
) -> None:
    class FullDisk(FileSystemAttachmentStore[Any]):
        async def upload(self, *args: Any, **kwargs: Any) -> Any:
            raise OSError(28, "No space left on device")

    app = ChatKitApp(responder, store=MemoryStore(), attachment_store=FullDisk(tmp_path))
    async with ChatKitTestClient(app) as client:
        response = await upload_direct(client, "a.png", PNG, "image/png")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "No space left on device" in caplog.text
