"""Fixtures of the attachment tests: apps over each attachment store, and two users.

Every test that takes `backend` runs once per attachment store: the filesystem
store, and the S3 store against a real S3 endpoint (a moto server by default,
see `tests/_s3_server.py`) with each of its two-phase upload methods. The user
is whoever the `x-user` header names; stores are partitioned by it.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from chatkit_asgi import AttachmentStore, ChatKitApp
from chatkit_asgi.stores import MemoryStore
from chatkit_asgi.stores.filesystem import FileSystemAttachmentStore
from chatkit_asgi.stores.s3 import S3AttachmentStore
from chatkit_asgi.testing import ChatKitTestClient
from tests._s3_server import S3Endpoint, s3_bucket, s3_endpoint  # noqa: F401  (fixtures)

from ._helpers import ReadingResponder, stored_objects, tenant, user_context

MAX_SIZE = 1024 * 1024
"""The size limit of the test stores (1 MiB)."""

BACKENDS = ["filesystem", "s3-put", "s3-post"]


def make_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest, **options: Any) -> Any:
    """An attachment store of the given kind, partitioned by user."""
    options = {"tenant": tenant, "max_size": MAX_SIZE, **options}
    if backend == "filesystem":
        return FileSystemAttachmentStore(tmp_path / "attachments", **options)
    endpoint: S3Endpoint = request.getfixturevalue("s3_endpoint")
    bucket: str = request.getfixturevalue("s3_bucket")
    return S3AttachmentStore(
        bucket,
        prefix=f"test-{secrets.token_hex(4)}/",  # each test its own corner of the bucket
        upload_method="POST" if backend == "s3-post" else "PUT",
        **endpoint.client_args(),
        **options,
    )


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Which attachment store the test runs against."""
    return str(request.param)


@pytest.fixture
async def attachment_store(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[AttachmentStore[Any]]:
    """The attachment store of the test, closed afterwards."""
    store = make_store(backend, tmp_path, request)
    yield store
    close = getattr(store, "aclose", None)
    if close is not None:
        await close()


@pytest.fixture
def responder() -> ReadingResponder:
    """A responder that reads every attachment it is sent."""
    return ReadingResponder()


@pytest.fixture
def app(attachment_store: AttachmentStore[Any], responder: ReadingResponder) -> ChatKitApp:
    """A ChatKit app with the test's attachment store and a per-user memory store."""
    return ChatKitApp(
        responder,
        store=MemoryStore(tenant=tenant),
        attachment_store=attachment_store,
        context=user_context,
    )


@pytest.fixture
async def alice(app: ChatKitApp) -> AsyncIterator[ChatKitTestClient]:
    """A client speaking for Alice."""
    async with ChatKitTestClient(app, headers={"x-user": "alice"}) as client:
        yield client


@pytest.fixture
async def bob(app: ChatKitApp) -> AsyncIterator[ChatKitTestClient]:
    """A client speaking for Bob."""
    async with ChatKitTestClient(app, headers={"x-user": "bob"}) as client:
        yield client


@pytest.fixture
def stored(
    attachment_store: AttachmentStore[Any], backend: str, request: pytest.FixtureRequest
) -> Callable[[], list[str]]:
    """Lists everything the test's attachment store holds (files, objects, unfinished uploads)."""
    endpoint = None if backend == "filesystem" else request.getfixturevalue("s3_endpoint")
    return lambda: stored_objects(attachment_store, endpoint)
