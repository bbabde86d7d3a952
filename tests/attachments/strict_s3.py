"""S3 itself refuses what a presigned descriptor does not allow (`make test-strict`).

moto accepts any request, so these run against a service that checks presigned
signatures, expiry and POST policies: LocalStack's S3 by default (started here
from `CHATKIT_LOCALSTACK_PYTHON`, a Python with `localstack-core[runtime]`
installed), or any endpoint named by `CHATKIT_TEST_S3_STRICT_ENDPOINT` (MinIO,
AWS, or a LocalStack started with `S3_SKIP_SIGNATURE_VALIDATION=0`). Not
collected by `make test` (the file name does not start with `test_`); run it as
`pytest tests/attachments/strict_s3.py`.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import botocore.auth  # type: ignore[import-untyped]
import httpx
import pytest

from chatkit_asgi.stores.s3 import S3AttachmentStore
from chatkit_asgi.types import AttachmentCreateParams
from tests._s3_server import S3Endpoint

ROOT = Path(__file__).resolve().parents[2]
ALICE = {"user": "alice"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def strict_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """An S3 endpoint that enforces signatures and policies."""
    configured = os.environ.get("CHATKIT_TEST_S3_STRICT_ENDPOINT")
    if configured:
        yield S3Endpoint(
            configured.rstrip("/"),
            os.environ.get("AWS_REGION", "us-east-1"),
            os.environ.get("AWS_ACCESS_KEY_ID", "test"),
            os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        )
        return
    python = Path(os.environ.get("CHATKIT_LOCALSTACK_PYTHON", ROOT / ".venv-localstack/bin/python"))
    if not python.exists():
        pytest.fail(
            f"no LocalStack Python at {python}: run `make test-strict` (it installs one) "
            "or set CHATKIT_TEST_S3_STRICT_ENDPOINT"
        )
    port = _free_port()
    workdir = tmp_path_factory.mktemp("localstack")
    env = {
        **os.environ,
        "SERVICES": "s3",
        "S3_SKIP_SIGNATURE_VALIDATION": "0",  # LocalStack skips the check by default
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "LOCALSTACK_HOST": f"127.0.0.1:{port}",
        "FILESYSTEM_ROOT": str(workdir),
        "DISABLE_EVENTS": "1",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
    }
    log = workdir / "localstack.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(python), "-m", "localstack.runtime.main"],
            env=env,
            cwd=workdir,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        url = f"http://127.0.0.1:{port}"
        while True:
            if process.poll() is not None:
                pytest.fail(f"LocalStack exited at startup:\n{log.read_text(errors='replace')}")
            try:
                health = httpx.get(f"{url}/_localstack/health", timeout=1)
                if health.json().get("services", {}).get("s3") in ("available", "running"):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"LocalStack did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.2)
        yield S3Endpoint(url, "us-east-1", "test", "test")
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def strict_bucket(strict_endpoint: S3Endpoint) -> Iterator[str]:
    client = strict_endpoint.boto3_client()
    bucket = f"chatkit-asgi-strict-{secrets.token_hex(6)}"
    client.create_bucket(Bucket=bucket)
    yield bucket
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for entry in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=entry["Key"])
    client.delete_bucket(Bucket=bucket)


async def created(
    endpoint: S3Endpoint, bucket: str, method: str, size: int, mime: str, **options: Any
) -> tuple[S3AttachmentStore[Any], Any]:
    store: S3AttachmentStore[Any] = S3AttachmentStore(
        bucket,
        tenant=lambda ctx: ctx["user"],
        upload_method="POST" if method == "POST" else "PUT",
        **endpoint.client_args(),
        **options,
    )
    attachment = await store.create_attachment(
        AttachmentCreateParams(name="a.png", size=size, mime_type=mime), ALICE
    )
    return store, attachment


async def send(attachment: Any, data: bytes, mime: str) -> httpx.Response:
    descriptor = attachment.upload_descriptor
    async with httpx.AsyncClient(timeout=30) as http:
        if descriptor.method == "PUT":
            headers = {**descriptor.headers, "Content-Type": mime}
            return await http.put(str(descriptor.url), content=data, headers=headers)
        fields = {**descriptor.headers, "Content-Type": mime}
        return await http.post(
            str(descriptor.url), data=fields, files={"file": ("a.png", data, mime)}
        )


@pytest.mark.parametrize("method", ["PUT", "POST"])
async def test_s3_accepts_exactly_what_was_declared(
    strict_endpoint: S3Endpoint, strict_bucket: str, method: str
) -> None:
    store, attachment = await created(strict_endpoint, strict_bucket, method, 100, "image/png")
    try:
        response = await send(attachment, b"x" * 100, "image/png")
        assert response.is_success, response.text
        data = b"".join([chunk async for chunk in store.open(attachment.id, ALICE)])
        assert data == b"x" * 100
    finally:
        await store.aclose()


@pytest.mark.parametrize("method", ["PUT", "POST"])
async def test_s3_refuses_more_bytes_than_declared(
    strict_endpoint: S3Endpoint, strict_bucket: str, method: str
) -> None:
    store, attachment = await created(strict_endpoint, strict_bucket, method, 100, "image/png")
    try:
        response = await send(attachment, b"x" * 101, "image/png")
        assert response.status_code in (400, 403), response.text
    finally:
        await store.aclose()


@pytest.mark.parametrize("method", ["PUT", "POST"])
async def test_s3_refuses_another_type_than_declared(
    strict_endpoint: S3Endpoint, strict_bucket: str, method: str
) -> None:
    store, attachment = await created(strict_endpoint, strict_bucket, method, 6, "image/png")
    try:
        response = await send(attachment, b"<html>", "text/html")
        assert response.status_code in (400, 403), response.text
    finally:
        await store.aclose()


async def test_s3_refuses_a_tampered_preview_url(
    strict_endpoint: S3Endpoint, strict_bucket: str
) -> None:
    store, attachment = await created(strict_endpoint, strict_bucket, "PUT", 3, "image/png")
    try:
        assert (await send(attachment, b"abc", "image/png")).is_success
        url = urlsplit(str(attachment.preview_url))
        query = parse_qs(url.query)
        signature = query["X-Amz-Signature"][0]
        query["X-Amz-Signature"] = [signature[:-1] + ("0" if signature[-1] != "0" else "1")]
        tampered = urlunsplit(url._replace(query=urlencode(query, doseq=True)))
        async with httpx.AsyncClient() as http:
            assert (await http.get(str(attachment.preview_url))).status_code == 200
            assert (await http.get(tampered)).status_code == 403
    finally:
        await store.aclose()


async def test_s3_refuses_an_expired_preview_url(
    strict_endpoint: S3Endpoint, strict_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Signed two hours ago with a one-hour lifetime.
    past = datetime.fromtimestamp(time.time() - 7200, timezone.utc).replace(tzinfo=None)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda **_: past)
    store, attachment = await created(
        strict_endpoint, strict_bucket, "PUT", 3, "image/png", url_ttl=3600, upload_ttl=3600
    )
    try:
        async with httpx.AsyncClient() as http:
            assert (await http.get(str(attachment.preview_url))).status_code in (400, 403)
            upload = await send(attachment, b"abc", "image/png")
            assert upload.status_code in (400, 403)
    finally:
        await store.aclose()
