"""A real S3 endpoint for the tests: moto's server, or any service you point at.

By default a `moto_server` process is started on a free loopback port for the
whole session (moto[server] is a test dependency: when it is missing the tests
fail, they are never skipped). Set `CHATKIT_TEST_S3_ENDPOINT` (plus the usual
`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_REGION`) to run the same
tests against MinIO, LocalStack, R2 or AWS instead. Either way the session gets
one fresh bucket, emptied and deleted afterwards.

Use it from a conftest::

    from tests._s3_server import s3_bucket, s3_endpoint  # noqa: F401  (fixtures)

A separate process rather than moto's in-process server: it keeps moto's own
warnings out of this process (where warnings are errors) and its work off our
GIL when a test pushes hundreds of megabytes through it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

_STARTUP_TIMEOUT = 30.0


@dataclass(frozen=True)
class S3Endpoint:
    """Where the S3 service listens and how to sign in."""

    url: str
    region: str
    access_key: str
    secret_key: str

    def client_args(self) -> dict[str, Any]:
        """Keyword arguments for `S3AttachmentStore` (path-style addressing)."""
        return {
            "endpoint_url": self.url,
            "region_name": self.region,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "addressing_style": "path",
        }

    def env(self) -> dict[str, str]:
        """The same settings as AWS environment variables (for subprocesses)."""
        return {
            "AWS_ENDPOINT_URL_S3": self.url,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }

    def boto3_client(self) -> Any:
        """A synchronous boto3 client, for fixtures and assertions."""
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"moto_server exited at startup:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"moto_server did not listen on port {port} within {_STARTUP_TIMEOUT}s")


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """The S3 endpoint of the session: `CHATKIT_TEST_S3_ENDPOINT` or a moto server."""
    configured = os.environ.get("CHATKIT_TEST_S3_ENDPOINT")
    if configured:
        yield S3Endpoint(
            url=configured.rstrip("/"),
            region=os.environ.get("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1")),
            access_key=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
            secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        )
        return
    executable = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if executable is None:
        pytest.fail(
            "moto_server not found next to this Python: install the test dependency "
            "`moto[server]>=5` (make test does), or set CHATKIT_TEST_S3_ENDPOINT"
        )
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [executable, "-H", "127.0.0.1", "-p", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_listening(port, process, log)
        yield S3Endpoint(f"http://127.0.0.1:{port}", "us-east-1", "testing", "testing")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def s3_bucket(s3_endpoint: S3Endpoint) -> Iterator[str]:
    """A bucket of this test run, emptied and deleted at the end."""
    client = s3_endpoint.boto3_client()
    bucket = f"chatkit-asgi-test-{secrets.token_hex(6)}"
    if s3_endpoint.region == "us-east-1":
        client.create_bucket(Bucket=bucket)
    else:
        client.create_bucket(
            Bucket=bucket,
            CreateBucketConfiguration={"LocationConstraint": s3_endpoint.region},
        )
    try:
        yield bucket
    finally:
        uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        for upload in uploads:
            client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": entry["Key"]} for entry in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        client.delete_bucket(Bucket=bucket)
