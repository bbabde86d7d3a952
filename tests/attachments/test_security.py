"""Attachments are private: another user's ids do not exist, limits hold, URLs cannot be forged.

Security rules every attachment path keeps:
- an attachment of another user is not found (404), whatever the request;
- types off the allow-list and sizes over the limit are refused, at
  `attachments.create` and while a direct upload streams in, leaving nothing behind;
- the app's own file URLs are signed and expire; a tampered one is not found;
- file names are labels only: no name reaches a path or key.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chatkit_asgi import AttachmentStore, ChatKitApp, NotFoundError, Turn
from chatkit_asgi.stores import MemoryStore
from chatkit_asgi.testing import ChatKitTestClient, ProtocolHTTPError
from chatkit_asgi.types import ThreadCreatedEvent, ThreadMetadata

from ._helpers import (
    ReadingResponder,
    request_url,
    send_to_descriptor,
    stored_objects,
    tenant,
    upload_direct,
    upload_two_phase,
    user_context,
)
from .conftest import MAX_SIZE, make_store

PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(2000)
direct_backends = pytest.mark.parametrize("backend", ["filesystem", "s3-put"], indirect=True)
filesystem_only = pytest.mark.parametrize("backend", ["filesystem"], indirect=True)


async def expect_error(status: int, code: str, call: Any) -> None:
    with pytest.raises(ProtocolHTTPError) as refused:
        await call
    assert (refused.value.status, refused.value.code) == (status, code)


# -- another user's attachments ---------------------------------------------------------


async def test_another_users_attachment_cannot_be_deleted(
    alice: ChatKitTestClient, bob: ChatKitTestClient, attachment_store: AttachmentStore[Any]
) -> None:
    created = await upload_two_phase(alice, "photo.png", PNG, "image/png")
    await expect_error(
        404,
        "attachment_not_found",
        bob.call("attachments.delete", attachment_id=created["id"]),
    )
    kept = [chunk async for chunk in attachment_store.open(created["id"], {"user": "alice"})]
    assert b"".join(kept) == PNG


async def test_another_users_attachment_cannot_be_sent_in_a_message(
    alice: ChatKitTestClient, bob: ChatKitTestClient
) -> None:
    created = await upload_two_phase(alice, "photo.png", PNG, "image/png")
    await expect_error(
        404, "attachment_not_found", bob.create_thread("mine now", attachments=[created["id"]])
    )
    events = await bob.create_thread("Hello")
    thread_id = next(e.thread.id for e in events if isinstance(e, ThreadCreatedEvent))
    await expect_error(
        404,
        "attachment_not_found",
        bob.add_message(thread_id, "mine now", attachments=[created["id"]]),
    )


async def test_another_users_attachment_cannot_be_read_by_a_responder(
    alice: ChatKitTestClient, app: ChatKitApp, attachment_store: AttachmentStore[Any]
) -> None:
    created = await upload_two_phase(alice, "photo.png", PNG, "image/png")
    bobs_turn = Turn(
        thread=ThreadMetadata(id="thr_bob", created_at=Turn.now()),
        input=None,
        context={"user": "bob"},
        store=app.store,
        attachment_store=attachment_store,
    )
    with pytest.raises(NotFoundError):
        await bobs_turn.read_attachment(created["id"])
    # Even below the metadata check, the bytes live in Alice's own space.
    with pytest.raises(NotFoundError):
        [chunk async for chunk in attachment_store.open(created["id"], {"user": "bob"})]


async def test_a_tenant_name_cannot_climb_into_another_tenants_space(
    app: ChatKitApp, bob: ChatKitTestClient, attachment_store: AttachmentStore[Any]
) -> None:
    created = await upload_two_phase(bob, "photo.png", PNG, "image/png")
    async with ChatKitTestClient(app, headers={"x-user": "../bob"}) as intruder:
        await expect_error(
            404,
            "attachment_not_found",
            intruder.call("attachments.delete", attachment_id=created["id"]),
        )
    with pytest.raises(NotFoundError):
        [chunk async for chunk in attachment_store.open(created["id"], {"user": "../bob"})]
    with pytest.raises(NotFoundError):
        [chunk async for chunk in attachment_store.open(created["id"], {"user": "bob/.."})]


# -- type and size limits ------------------------------------------------------------------


async def test_attachments_create_refuses_a_type_off_the_allow_list(
    alice: ChatKitTestClient,
) -> None:
    await expect_error(
        400,
        "attachment_type_not_allowed",
        alice.call("attachments.create", name="x.html", size=10, mime_type="text/html"),
    )


async def test_attachments_create_refuses_a_size_over_the_limit(alice: ChatKitTestClient) -> None:
    await expect_error(
        413,
        "attachment_too_large",
        alice.call("attachments.create", name="big.png", size=MAX_SIZE + 1, mime_type="image/png"),
    )


@direct_backends
async def test_a_direct_upload_of_a_type_off_the_allow_list_is_refused(
    alice: ChatKitTestClient, stored: Callable[[], list[str]]
) -> None:
    response = await upload_direct(alice, "page.html", b"<script>alert(1)</script>", "text/html")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "attachment_type_not_allowed"
    assert stored() == []


@direct_backends
async def test_an_oversize_direct_upload_is_refused_while_streaming_and_leaves_nothing(
    alice: ChatKitTestClient, stored: Callable[[], list[str]]
) -> None:
    response = await upload_direct(alice, "big.png", os.urandom(MAX_SIZE + 1), "image/png")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "attachment_too_large"
    assert stored() == []


@pytest.mark.parametrize("backend", ["s3-put"], indirect=True)
async def test_an_oversize_upload_to_s3_aborts_its_multipart_upload(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, responder: ReadingResponder
) -> None:
    store = make_store(backend, tmp_path, request, max_size=7 * 1024 * 1024)
    store.part_size = 5 * 1024 * 1024  # the first part is on S3 when the limit is hit
    app = ChatKitApp(
        responder, store=MemoryStore(tenant=tenant), attachment_store=store, context=user_context
    )
    try:
        async with ChatKitTestClient(app, headers={"x-user": "alice"}) as alice:
            response = await upload_direct(
                alice, "big.png", os.urandom(8 * 1024 * 1024), "image/png"
            )
        assert response.status_code == 413
        assert stored_objects(store, request.getfixturevalue("s3_endpoint")) == []
    finally:
        await app.aclose()


# -- two-phase uploads to the app itself (filesystem store) ----------------------------------


@filesystem_only
async def test_a_two_phase_upload_larger_than_declared_is_refused(
    alice: ChatKitTestClient, stored: Callable[[], list[str]]
) -> None:
    created = await alice.call("attachments.create", name="a.png", size=100, mime_type="image/png")
    response = await send_to_descriptor(alice, created, os.urandom(101))
    assert response.status_code == 413
    assert stored() == []


@filesystem_only
async def test_a_two_phase_upload_of_another_type_than_declared_is_refused(
    alice: ChatKitTestClient, stored: Callable[[], list[str]]
) -> None:
    created = await alice.call("attachments.create", name="a.png", size=100, mime_type="image/png")
    response = await send_to_descriptor(alice, created, b"<html>", mime_type="text/html")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "attachment_type_mismatch"
    assert stored() == []


@filesystem_only
async def test_an_upload_url_uploads_once(alice: ChatKitTestClient) -> None:
    created = await upload_two_phase(alice, "a.png", PNG, "image/png")
    again = await send_to_descriptor(alice, created, b"\x89PNG replaced")
    assert again.status_code == 409
    preview = await request_url(alice, "GET", created["preview_url"])
    assert preview.content == PNG


@filesystem_only
async def test_an_upload_url_expires(
    alice: ChatKitTestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = await alice.call(
        "attachments.create", name="a.png", size=len(PNG), mime_type="image/png"
    )
    later = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: later)
    response = await send_to_descriptor(alice, created, PNG)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "url_expired"


# -- signed download URLs (filesystem store) -------------------------------------------------


@filesystem_only
async def test_an_expired_download_url_is_refused(
    alice: ChatKitTestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = await upload_two_phase(alice, "a.png", PNG, "image/png")
    two_hours_later = time.time() + 7200
    monkeypatch.setattr(time, "time", lambda: two_hours_later)
    response = await request_url(alice, "GET", created["preview_url"])
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "url_expired"


@filesystem_only
async def test_a_tampered_download_url_is_not_found(alice: ChatKitTestClient) -> None:
    created = await upload_two_phase(alice, "a.png", PNG, "image/png")
    other = await upload_two_phase(alice, "b.png", PNG, "image/png")
    url: str = created["preview_url"]
    base, token = url.rsplit("/", 1)
    claims, signature = token.split(".")
    other_claims = other["preview_url"].rsplit("/", 1)[1].split(".")[0]
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    for forged in (
        f"{claims}.{flipped}",  # a changed signature
        f"{other_claims}.{signature}",  # another file's claims under this signature
        claims,  # no signature at all
        "../../../etc/passwd",
    ):
        response = await request_url(alice, "GET", f"{base}/{forged}")
        assert response.status_code == 404, forged
    # An upload URL is no download URL.
    upload_token = (
        await alice.call("attachments.create", name="c.png", size=3, mime_type="image/png")
    )["upload_descriptor"]["url"].rsplit("/", 1)[1]
    assert (await request_url(alice, "GET", f"{base}/{upload_token}")).status_code == 404


@filesystem_only
async def test_downloads_are_never_rendered_as_active_content(alice: ChatKitTestClient) -> None:
    created = await upload_two_phase(alice, "a.png", PNG, "image/png")
    preview = await request_url(alice, "GET", created["preview_url"])
    assert preview.headers["content-type"] == "image/png"
    assert preview.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in preview.headers["content-security-policy"]
    assert preview.headers["content-disposition"].startswith("inline;")


@filesystem_only
async def test_a_download_url_of_a_deleted_attachment_is_not_found(
    alice: ChatKitTestClient,
) -> None:
    created = await upload_two_phase(alice, "a.png", PNG, "image/png")
    await alice.call("attachments.delete", attachment_id=created["id"])
    assert (await request_url(alice, "GET", created["preview_url"])).status_code == 404


# -- names are labels only -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../../../../outside.png", "..\\..\\outside.png", "/etc/outside.png", "a/../../outside.png"],
)
@direct_backends
async def test_path_traversal_in_a_file_name_has_no_effect(
    alice: ChatKitTestClient,
    name: str,
    tmp_path: Path,
    stored: Callable[[], list[str]],
    responder: ReadingResponder,
) -> None:
    response = await upload_direct(alice, name, PNG, "image/png")
    assert response.status_code == 200
    attachment = response.json()
    assert attachment["name"] == "outside.png"
    [where] = stored()
    assert "outside" not in where and ".." not in where
    assert not any(path.name == "outside.png" for path in tmp_path.parent.rglob("outside.png"))
    events = await alice.create_thread("Look", attachments=[attachment["id"]])
    assert responder.read[attachment["id"]] == PNG
    assert events


async def test_a_two_phase_name_is_cleaned_too(alice: ChatKitTestClient) -> None:
    created = await alice.call(
        "attachments.create", name="../../secret.png", size=3, mime_type="image/png"
    )
    assert created["name"] == "secret.png"


# -- interrupted uploads ---------------------------------------------------------------------


def upload_scope(boundary: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/upload",
        "root_path": "",
        "scheme": "http",
        "server": ("testserver", 80),
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"x-user", b"alice"),
            (b"content-type", f"multipart/form-data; boundary={boundary}".encode()),
        ],
    }


async def call_with_body(app: ChatKitApp, messages: list[dict[str, Any]]) -> int:
    """Run one upload at the ASGI level with a scripted body; return the status sent."""
    script = iter(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(script)

    async def send(message: Any) -> None:
        sent.append(message)

    await app(upload_scope("b0undary"), receive, send)
    return int(sent[0]["status"])


HEAD = (
    b"--b0undary\r\n"
    b'Content-Disposition: form-data; name="file"; filename="a.png"\r\n'
    b"Content-Type: image/png\r\n\r\n"
)


@direct_backends
async def test_a_client_that_goes_away_mid_upload_leaves_nothing(
    app: ChatKitApp, stored: Callable[[], list[str]]
) -> None:
    status = await call_with_body(
        app,
        [
            {"type": "http.request", "body": HEAD + os.urandom(64 * 1024), "more_body": True},
            {"type": "http.disconnect"},
        ],
    )
    assert status == 400
    assert stored() == []


@direct_backends
async def test_a_body_cut_before_its_closing_boundary_leaves_nothing(
    app: ChatKitApp, stored: Callable[[], list[str]]
) -> None:
    status = await call_with_body(
        app, [{"type": "http.request", "body": HEAD + b"\x89PNG...", "more_body": False}]
    )
    assert status == 400
    assert stored() == []


@direct_backends
async def test_a_second_file_beyond_the_form_allowance_leaves_nothing(
    alice: ChatKitTestClient, stored: Callable[[], list[str]]
) -> None:
    response = await alice.http.post(
        "/upload",
        files=[
            ("file", ("a.png", PNG, "image/png")),
            ("extra", ("b.png", os.urandom(100 * 1024), "image/png")),
        ],
    )
    assert response.status_code == 413
    assert stored() == []
