"""The shared store contract on SQLAlchemyStore over PostgreSQL (asyncpg)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from chatkit_asgi.stores.sqlalchemy import SQLAlchemyStore
from chatkit_asgi.testing.store_contract import StoreContract

from .conftest import by_user


class TestSQLAlchemyStoreOnPostgres(StoreContract):
    """The contract through a URL: the store makes (and disposes of) its engine."""

    @pytest.fixture
    def store(self, make_store: Callable[..., SQLAlchemyStore[Any]]) -> SQLAlchemyStore[Any]:
        return make_store()


class TestSQLAlchemyStoreOnAnEngine(StoreContract):
    """The contract over the application's own engine, with another table prefix."""

    @pytest.fixture
    def store(self, pg_engine: AsyncEngine) -> SQLAlchemyStore[Any]:
        return SQLAlchemyStore(pg_engine, tenant=by_user, table_prefix="app_chat_")
