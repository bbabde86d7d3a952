"""Fixtures of the differential tests: the reference and ours, side by side."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("tests.compat._pair", "tests.compat._script")

from pymongo import AsyncMongoClient  # noqa: E402

from chatkit_asgi.stores import MemoryStore, SQLiteStore  # noqa: E402
from chatkit_asgi.stores.mongodb import MongoStore  # noqa: E402
from tests._postgres_server import schema_store  # noqa: E402

from ._ours import OurSide  # noqa: E402
from ._pair import Pair  # noqa: E402
from ._reference import RefSide  # noqa: E402


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    """The reference beside ours over a `MemoryStore`."""
    ours = OurSide(MemoryStore())
    yield Pair(RefSide(), ours)
    await ours.aclose()


@pytest.fixture(params=["memory", "sqlite", "mongodb", "postgres"])
async def any_pair(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Pair]:
    """The reference beside ours, over each of our stores in turn."""
    if request.param == "postgres":
        async with schema_store(request.getfixturevalue("postgres_url")) as store:
            ours = OurSide(store)
            yield Pair(RefSide(), ours)
            await ours.aclose()
        return
    if request.param != "mongodb":
        store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "compat.db")
        ours = OurSide(store)
        yield Pair(RefSide(), ours)
        await ours.aclose()
        return
    client: AsyncMongoClient[Any] = AsyncMongoClient(request.getfixturevalue("mongo_uri"))
    name = f"chatkit_compat_{uuid.uuid4().hex[:12]}"
    ours = OurSide(MongoStore(client[name]))
    try:
        yield Pair(RefSide(), ours)
        await ours.aclose()
    finally:
        await client.drop_database(name)
        await client.close()
