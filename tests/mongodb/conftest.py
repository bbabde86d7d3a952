"""Fixtures of the MongoDB store tests: a fresh database per test, through either driver.

The server is the session's `mongo_uri` (see `tests/_mongo_server.py`): SecantusDB
started locally, or `CHATKIT_TEST_MONGODB_URI`. Each test gets a database of its
own, dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

import pytest
from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import AsyncMongoClient

from chatkit_asgi.stores.mongodb import MongoStore
from tests._mongo_server import mongo_uri  # noqa: F401 - the session's server

Driver = Literal["pymongo", "motor"]
DRIVERS: list[Driver] = ["pymongo", "motor"]


def by_user(context: Any) -> str:
    """The tenant key of these tests: `ctx["user"]`, as the store contract expects."""
    user: str = context["user"]
    return user


def unique_name(prefix: str = "chatkit_test") -> str:
    """A database name no other test uses."""
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


@asynccontextmanager
async def open_client(uri: str, driver: Driver, **options: Any) -> AsyncIterator[Any]:
    """An async client of the given driver, closed on exit."""
    if driver == "pymongo":
        client: Any = AsyncMongoClient(uri, **options)
        try:
            yield client
        finally:
            await client.close()
    else:
        client = AsyncIOMotorClient(uri, **options)
        try:
            yield client
        finally:
            client.close()


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> Driver:
    """Each test that uses a database runs once with PyMongo async and once with motor."""
    value: Driver = request.param
    return value


@pytest.fixture
async def client(mongo_uri: str, driver: Driver) -> AsyncIterator[Any]:  # noqa: F811
    """A client of the test's driver."""
    async with open_client(mongo_uri, driver) as client:
        yield client


@pytest.fixture
async def database(client: Any) -> AsyncIterator[Any]:
    """A database of the test's own, dropped afterwards."""
    name = unique_name()
    try:
        yield client[name]
    finally:
        await client.drop_database(name)


@pytest.fixture
def make_store(database: Any) -> Callable[..., MongoStore[Any]]:
    """Builds stores over the test's database, tenants keyed by `ctx["user"]`."""

    def make(**options: Any) -> MongoStore[Any]:
        options.setdefault("tenant", by_user)
        return MongoStore(database, **options)

    return make


@pytest.fixture
def store(make_store: Callable[..., MongoStore[Any]]) -> MongoStore[Any]:
    """A store over the test's database."""
    return make_store()
