"""Turn leases kept in the database file: SQLiteStore and SQLAlchemyStore on SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from chatkit_asgi.store import Store
from chatkit_asgi.stores import SQLiteStore
from chatkit_asgi.stores.sqlalchemy import SQLAlchemyStore
from chatkit_asgi.stores.sqlite import TurnLeaseLostError

from ._lease_contract import LeaseContract


def _by_user(ctx: Any) -> str:
    user: str = ctx["user"]
    return user


class TestSQLiteStoreLeases(LeaseContract):
    """Each store has its own connection to the file, like a separate process."""

    lost_error = TurnLeaseLostError

    @pytest.fixture
    async def make_store(self, tmp_path: Path) -> AsyncIterator[Callable[..., Store[Any]]]:
        made: list[Store[Any]] = []

        def make(**options: Any) -> Store[Any]:
            store: SQLiteStore[Any] = SQLiteStore(
                tmp_path / "chatkit.db", tenant=_by_user, **options
            )
            made.append(store)
            return store

        yield make
        for store in made:
            await store.aclose()


class TestSQLAlchemySQLiteLeases(LeaseContract):
    """SQLAlchemyStore over aiosqlite, one engine per store."""

    lost_error = TurnLeaseLostError

    @pytest.fixture
    async def make_store(self, tmp_path: Path) -> AsyncIterator[Callable[..., Store[Any]]]:
        made: list[Store[Any]] = []

        def make(**options: Any) -> Store[Any]:
            url = f"sqlite:///{tmp_path / 'chatkit.db'}"
            store: SQLAlchemyStore[Any] = SQLAlchemyStore(url, tenant=_by_user, **options)
            made.append(store)
            return store

        yield make
        for store in made:
            await store.aclose()
