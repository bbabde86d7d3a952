"""Two-phase uploads end to end: create, upload to the descriptor, send, read, reload, delete.

This is what the ChatKit UI does with `uploadStrategy: {type: "two_phase"}`; every
upload and preview URL is exercised with a real HTTP request (S3 over the network,
the app's own routes in process).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from chatkit_asgi import AttachmentStore, NotFoundError
from chatkit_asgi.testing import ChatKitTestClient, ProtocolHTTPError
from chatkit_asgi.types import ImageAttachment, ThreadCreatedEvent, UserMessageItem

from ._helpers import ReadingResponder, answer_text, request_url, upload_two_phase

ALICE = {"user": "alice"}
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(3000)


async def read_all(store: AttachmentStore[Any], attachment_id: str) -> bytes:
    return b"".join([chunk async for chunk in store.open(attachment_id, ALICE)])


async def test_an_image_goes_from_upload_to_the_responder_and_away_again(
    alice: ChatKitTestClient,
    responder: ReadingResponder,
    attachment_store: AttachmentStore[Any],
) -> None:
    created = await upload_two_phase(alice, "photo.png", PNG, "image/png")
    assert created["type"] == "image"
    assert created["upload_descriptor"]["method"] in ("POST", "PUT")
    assert "metadata" not in created  # integration-only, never on the wire

    events = await alice.create_thread("What is in this picture?", attachments=[created["id"]])
    assert answer_text(events) == f"photo.png: {len(PNG)} bytes"
    assert responder.read[created["id"]] == PNG

    thread_id = next(e.thread.id for e in events if isinstance(e, ThreadCreatedEvent))
    thread = await alice.get_thread(thread_id)
    message = thread.items.data[0]
    assert isinstance(message, UserMessageItem)
    [attachment] = message.attachments
    assert isinstance(attachment, ImageAttachment)
    assert attachment.thread_id == thread_id
    assert attachment.upload_descriptor is None  # the upload is over
    preview = await request_url(alice, "GET", str(attachment.preview_url))
    assert preview.status_code == 200
    assert preview.content == PNG

    assert await alice.call("attachments.delete", attachment_id=created["id"]) == {}
    with pytest.raises(NotFoundError):
        await read_all(attachment_store, created["id"])
    with pytest.raises(ProtocolHTTPError) as gone:
        await alice.call("attachments.delete", attachment_id=created["id"])
    assert gone.value.status == 404


async def test_a_file_attachment_has_no_preview_and_its_bytes_reach_the_responder(
    alice: ChatKitTestClient, responder: ReadingResponder
) -> None:
    report = b"%PDF-1.7\n" + os.urandom(5000)
    created = await upload_two_phase(alice, "report.pdf", report, "application/pdf")
    assert created["type"] == "file"
    assert "preview_url" not in created

    events = await alice.create_thread("Summarize this", attachments=[created["id"]])
    assert answer_text(events) == f"report.pdf: {len(report)} bytes"
    assert responder.read[created["id"]] == report


async def test_attachments_can_be_added_to_an_existing_thread(
    alice: ChatKitTestClient, responder: ReadingResponder
) -> None:
    events = await alice.create_thread("Hello")
    thread_id = next(e.thread.id for e in events if isinstance(e, ThreadCreatedEvent))
    notes = b"first line\nsecond line\n"
    created = await upload_two_phase(alice, "notes.txt", notes, "text/plain")

    events = await alice.add_message(thread_id, "And this?", attachments=[created["id"]])
    assert answer_text(events) == f"notes.txt: {len(notes)} bytes"
    assert responder.read[created["id"]] == notes


async def test_deleting_a_thread_deletes_the_bytes_of_its_attachments(
    alice: ChatKitTestClient, attachment_store: AttachmentStore[Any]
) -> None:
    created = await upload_two_phase(alice, "photo.png", PNG, "image/png")
    events = await alice.create_thread("Look", attachments=[created["id"]])
    thread_id = next(e.thread.id for e in events if isinstance(e, ThreadCreatedEvent))
    assert await read_all(attachment_store, created["id"]) == PNG

    await alice.call("threads.delete", thread_id=thread_id)

    with pytest.raises(NotFoundError):
        await read_all(attachment_store, created["id"])
