"""The sandbox the blocks run in: the built wheel, the local MongoDB and S3, no network.

`block_outcomes` runs every selected block up front, a few at a time in parallel (each
in its own interpreter and folder), so the parametrized tests only read their result.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from tests._s3_server import S3Endpoint, s3_bucket, s3_endpoint  # noqa: F401  (fixtures)

from .blocks import Block, Outcome, Sandbox, build_wheel

# Parallel runs: each block is mostly interpreter start-up and imports.
WORKERS = max(2, min(4, os.cpu_count() or 2))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there once the socket is closed: connections are refused


@pytest.fixture(scope="session")
def sandbox(
    tmp_path_factory: pytest.TempPathFactory,
    mongo_uri: str,
    s3_endpoint: S3Endpoint,  # noqa: F811
    s3_bucket: str,  # noqa: F811
) -> Iterator[Sandbox]:
    """A `Sandbox` over this checkout's wheel, with the services' settings in its environment."""
    wheel = build_wheel(tmp_path_factory.mktemp("wheel"))
    database = f"chatkit_docs_{secrets.token_hex(4)}"
    drop = ("PYTEST_", "OPENAI_", "AWS_", "CHATKIT_", "MONGODB_", "S3_", "PYTHON")
    env = {key: value for key, value in os.environ.items() if not key.startswith(drop)}
    env.update(
        MONGODB_URL=f"{mongo_uri.rstrip('/')}/{database}",
        AWS_ENDPOINT_URL=s3_endpoint.url,
        AWS_ACCESS_KEY_ID=s3_endpoint.access_key,
        AWS_SECRET_ACCESS_KEY=s3_endpoint.secret_key,
        AWS_DEFAULT_REGION=s3_endpoint.region,
        S3_BUCKET=s3_bucket,
        # Agents blocks: no key, and a model endpoint that refuses at once.
        OPENAI_BASE_URL=f"http://127.0.0.1:{_closed_port()}/v1",
        OPENAI_AGENTS_DISABLE_TRACING="1",
    )
    yield Sandbox(wheel=wheel, scratch=tmp_path_factory.mktemp("blocks"), env=env)
    from pymongo import MongoClient

    client: MongoClient[dict[str, object]] = MongoClient(mongo_uri)
    try:
        client.drop_database(database)
    finally:
        client.close()


@pytest.fixture(scope="session")
def block_outcomes(
    request: pytest.FixtureRequest, sandbox: Sandbox
) -> Iterator[dict[str, Future[Outcome]]]:
    """Block id -> the future outcome of its run, for every block this session selected."""
    selected: list[Block] = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        block = callspec.params.get("doc_block") if callspec is not None else None
        if isinstance(block, Block) and not block.partial:
            selected.append(block)
    with ThreadPoolExecutor(WORKERS) as pool:
        yield {block.id: pool.submit(sandbox.run, block) for block in selected}
