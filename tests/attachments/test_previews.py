"""Image previews: absolute URLs the UI can render, renewed when a thread is loaded again.

Preview URLs expire (`url_ttl`); a thread loaded after that gets fresh ones, so
an old conversation still shows its pictures. Within their lifetime the same
URL comes back, so the browser's cache keeps working.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

import botocore.auth  # type: ignore[import-untyped]
import pytest

from chatkit_asgi.stores.filesystem import FileSystemAttachmentStore
from chatkit_asgi.testing import ChatKitTestClient
from chatkit_asgi.types import ImageAttachment, ThreadCreatedEvent, UserMessageItem

from ._helpers import request_url, upload_two_phase

PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(1000)


def travel(monkeypatch: pytest.MonkeyPatch, *, hours: float) -> None:
    """Move the clocks the stores sign with forward (ours and botocore's)."""
    later = time.time() + hours * 3600
    monkeypatch.setattr(time, "time", lambda: later)
    moment = datetime.fromtimestamp(later, timezone.utc).replace(tzinfo=None)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda **_: moment)


async def send_picture(alice: ChatKitTestClient) -> tuple[str, str]:
    created = await upload_two_phase(alice, "photo.png", PNG, "image/png")
    events = await alice.create_thread("Look", attachments=[created["id"]])
    thread_id = next(e.thread.id for e in events if isinstance(e, ThreadCreatedEvent))
    return thread_id, created["preview_url"]


async def preview_urls(alice: ChatKitTestClient, thread_id: str) -> list[str]:
    """The preview URLs of the thread, as `threads.get_by_id` and `items.list` give them."""
    urls = []
    for items in ((await alice.get_thread(thread_id)).items, await alice.list_items(thread_id)):
        [message] = [item for item in items.data if isinstance(item, UserMessageItem)]
        [attachment] = message.attachments
        assert isinstance(attachment, ImageAttachment)
        urls.append(str(attachment.preview_url))
    return urls


async def test_preview_urls_are_absolute_and_stable_while_valid(alice: ChatKitTestClient) -> None:
    thread_id, original = await send_picture(alice)
    assert original.startswith(("http://", "https://"))
    assert await preview_urls(alice, thread_id) == [original, original]
    assert (await request_url(alice, "GET", original)).content == PNG


async def test_expired_preview_urls_are_renewed_when_the_thread_is_loaded_again(
    alice: ChatKitTestClient, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread_id, original = await send_picture(alice)
    travel(monkeypatch, hours=2)

    renewed = await preview_urls(alice, thread_id)

    assert original not in renewed
    for url in renewed:
        assert (await request_url(alice, "GET", url)).content == PNG
    if backend == "filesystem":  # S3 itself refuses the old one (not checked by moto)
        assert (await request_url(alice, "GET", original)).status_code == 403


async def test_urls_signed_with_a_previous_key_are_renewed(tmp_path: Path) -> None:
    from chatkit_asgi._attachments import base_url_scope

    before = FileSystemAttachmentStore(tmp_path, secret="an old key of enough length")
    after = FileSystemAttachmentStore(tmp_path, secret="a new key of enough length!")
    with base_url_scope("https://example.com/chatkit"):
        attachment = await before.upload("a.png", "image/png", _chunks(PNG), {})
        assert await before.refresh_urls(attachment, {}) == attachment
        renewed = await after.refresh_urls(attachment, {})
    assert isinstance(renewed, ImageAttachment) and isinstance(attachment, ImageAttachment)
    assert renewed.preview_url != attachment.preview_url
    token = str(renewed.preview_url).rsplit("/", 1)[1]
    assert after.verify(token, "download").attachment_id == attachment.id


async def _chunks(data: bytes):  # type: ignore[no-untyped-def]
    yield data
