"""S3 that cannot be reached is an outage: 503 `store_unavailable` with `Retry-After`,
answered in seconds, and a failing health check (not 500 `internal_error`)."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from chatkit_asgi import ChatKitApp
from chatkit_asgi.store import StoreUnavailableError
from chatkit_asgi.stores import MemoryStore
from chatkit_asgi.stores.s3 import S3AttachmentStore

from ._helpers import ReadingResponder, tenant, user_context


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def unreachable_store(**options: Any) -> S3AttachmentStore[Any]:
    return S3AttachmentStore(
        "bucket",
        tenant=tenant,
        endpoint_url=f"http://127.0.0.1:{closed_port()}",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        addressing_style="path",
        **options,
    )


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    store = unreachable_store()
    app = ChatKitApp(
        ReadingResponder(),
        store=MemoryStore(),
        attachment_store=store,
        context=user_context,
        health=True,
    )
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://app", headers={"x-user": "alice"}
        ) as client:
            yield client
    finally:
        await store.aclose()


def assert_outage(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "store_unavailable"
    assert response.headers["retry-after"]


async def test_a_direct_upload_answers_503(http: httpx.AsyncClient) -> None:
    started = time.monotonic()
    response = await http.post("/upload", files={"file": ("a.png", b"\x89PNG....", "image/png")})
    assert_outage(response)
    assert time.monotonic() - started < 10


async def test_deleting_an_attachment_answers_503(http: httpx.AsyncClient) -> None:
    # Creating one only presigns an upload URL: that needs no S3.
    created = await http.post(
        "/",
        json={
            "type": "attachments.create",
            "params": {"name": "a.png", "size": 8, "mime_type": "image/png"},
        },
    )
    assert created.status_code == 200, created.text
    response = await http.post(
        "/",
        json={"type": "attachments.delete", "params": {"attachment_id": created.json()["id"]}},
    )
    assert_outage(response)


async def test_the_health_check_says_the_attachment_store_is_unavailable(
    http: httpx.AsyncClient,
) -> None:
    started = time.monotonic()
    response = await http.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"store": "ok", "attachment_store": "unavailable"}
    assert time.monotonic() - started < 5


async def test_reading_an_attachment_raises_store_unavailable() -> None:
    store = unreachable_store(max_attempts=1)
    try:
        with pytest.raises(StoreUnavailableError):
            async for _ in store.open("att_1", {"user": "alice"}):
                pass
    finally:
        await store.aclose()
