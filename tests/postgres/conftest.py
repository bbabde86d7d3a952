"""Fixtures of the SQLAlchemyStore tests: a fresh schema per test on the session's server.

The server is the session's `postgres_url` (see `tests/_postgres_server.py`): a
throwaway cluster started locally, or `CHATKIT_TEST_POSTGRES_URL`. Each test gets a
PostgreSQL schema of its own (the store's tables keep their default names in it),
dropped afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from chatkit_asgi.stores.sqlalchemy import SQLAlchemyStore
from tests._postgres_server import new_schema, schema_options


def by_user(context: Any) -> str:
    """The tenant key of these tests: `ctx["user"]`, as the store contract expects."""
    user: str = context["user"]
    return user


@pytest.fixture
async def pg_schema(postgres_url: str) -> AsyncIterator[str]:
    """A schema of the test's own, dropped (with everything in it) afterwards."""
    async with new_schema(postgres_url) as schema:
        yield schema


@pytest.fixture
async def pg_engine(postgres_url: str, pg_schema: str) -> AsyncIterator[AsyncEngine]:
    """An engine over the test's schema, disposed afterwards."""
    engine = create_async_engine(postgres_url, **schema_options(pg_schema))
    yield engine
    await engine.dispose()


@pytest.fixture
async def make_store(
    postgres_url: str, pg_schema: str
) -> AsyncIterator[Callable[..., SQLAlchemyStore[Any]]]:
    """Builds stores over the test's schema (each with its own engine, like separate
    workers), tenants keyed by `ctx["user"]`; all are closed afterwards."""
    made: list[SQLAlchemyStore[Any]] = []

    def make(**options: Any) -> SQLAlchemyStore[Any]:
        options.setdefault("tenant", by_user)
        options.setdefault("engine_options", schema_options(pg_schema))
        store: SQLAlchemyStore[Any] = SQLAlchemyStore(postgres_url, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.aclose()


@pytest.fixture
def store(make_store: Callable[..., SQLAlchemyStore[Any]]) -> SQLAlchemyStore[Any]:
    """A store over the test's schema."""
    return make_store()
