"""What only the S3 store does: presigned descriptors, tenant-scoped keys, AWS configuration.

moto does not check signatures, expiry or POST policies, so these tests check
that the descriptors *ask* S3 to enforce the declared type and size; the tests
that S3 really refuses violating uploads need a stricter service (see the README:
`CHATKIT_TEST_S3_ENDPOINT` pointed at LocalStack, MinIO or AWS).
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from chatkit_asgi.stores.s3 import S3AttachmentStore
from chatkit_asgi.testing import ChatKitTestClient
from chatkit_asgi.types import AttachmentCreateParams
from tests._s3_server import S3Endpoint

from ._helpers import upload_two_phase

ALICE = {"user": "alice"}


def s3_store(endpoint: S3Endpoint, bucket: str, **options: Any) -> S3AttachmentStore[Any]:
    return S3AttachmentStore(
        bucket, prefix="unit/", tenant=lambda ctx: ctx["user"], **endpoint.client_args(), **options
    )


async def test_a_put_descriptor_signs_the_declared_type_and_size(
    s3_endpoint: S3Endpoint, s3_bucket: str
) -> None:
    store = s3_store(s3_endpoint, s3_bucket, upload_ttl=600)
    try:
        attachment = await store.create_attachment(
            AttachmentCreateParams(name="a.png", size=1234, mime_type="image/png"), ALICE
        )
    finally:
        await store.aclose()
    descriptor = attachment.upload_descriptor
    assert descriptor is not None
    assert descriptor.method == "PUT"
    assert descriptor.headers == {"Content-Type": "image/png"}
    query = parse_qs(urlsplit(str(descriptor.url)).query)
    assert query["X-Amz-SignedHeaders"] == ["content-length;content-type;host"]
    assert query["X-Amz-Expires"] == ["600"]
    assert urlsplit(str(descriptor.url)).path == f"/{s3_bucket}/unit/alice/{attachment.id}"


async def test_a_post_descriptor_carries_a_policy_pinning_key_type_and_size(
    s3_endpoint: S3Endpoint, s3_bucket: str
) -> None:
    store = s3_store(s3_endpoint, s3_bucket, upload_method="POST")
    try:
        attachment = await store.create_attachment(
            AttachmentCreateParams(name="a.pdf", size=4321, mime_type="application/pdf"), ALICE
        )
    finally:
        await store.aclose()
    descriptor = attachment.upload_descriptor
    assert descriptor is not None and descriptor.method == "POST"
    fields = descriptor.headers
    policy = json.loads(base64.b64decode(fields["policy"]))
    conditions = policy["conditions"]
    assert ["content-length-range", 0, 4321] in conditions
    assert {"Content-Type": "application/pdf"} in conditions
    assert {"key": f"unit/alice/{attachment.id}"} in conditions
    assert {"bucket": s3_bucket} in conditions
    assert fields["key"] == f"unit/alice/{attachment.id}"


async def test_objects_live_under_their_tenants_prefix(
    s3_endpoint: S3Endpoint, s3_bucket: str
) -> None:
    store = s3_store(s3_endpoint, s3_bucket)
    try:

        async def chunks() -> Any:
            yield b"hello"

        attachment = await store.upload("notes.txt", "text/plain", chunks(), ALICE)
        head = s3_endpoint.boto3_client().head_object(
            Bucket=s3_bucket, Key=f"unit/alice/{attachment.id}"
        )
        assert head["ContentType"] == "text/plain"
        assert head["ContentLength"] == 5
        url = await store.download_url(attachment, ALICE)
        async with httpx.AsyncClient() as http:
            response = await http.get(url)
        assert response.content == b"hello"
        assert response.headers["content-disposition"].startswith("attachment;")
    finally:
        await store.aclose()


async def test_the_standard_aws_configuration_is_enough(
    s3_endpoint: S3Endpoint, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_endpoint.env().items():
        monkeypatch.setenv(name, value)
    store: S3AttachmentStore[Any] = S3AttachmentStore(s3_bucket, addressing_style="path")
    try:

        async def chunks() -> Any:
            yield b"configured from the environment"

        attachment = await store.upload("a.txt", "text/plain", chunks(), {})
        data = b"".join([chunk async for chunk in store.open(attachment.id, {})])
        assert data == b"configured from the environment"
    finally:
        await store.aclose()


@pytest.mark.parametrize("backend", ["s3-put", "s3-post"], indirect=True)
async def test_the_descriptor_upload_lands_with_the_declared_type(
    alice: ChatKitTestClient, s3_endpoint: S3Endpoint, s3_bucket: str
) -> None:
    data = os.urandom(500)
    created = await upload_two_phase(alice, "a.png", data, "image/png")
    key = urlsplit(created["preview_url"]).path.split("/", 2)[2]
    head = s3_endpoint.boto3_client().head_object(Bucket=s3_bucket, Key=key)
    assert head["ContentType"] == "image/png"
    assert head["ContentLength"] == len(data)
