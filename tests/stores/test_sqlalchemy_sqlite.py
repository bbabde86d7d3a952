"""SQLAlchemyStore over SQLite (aiosqlite): the store contract, schema and exports."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from chatkit_asgi.stores.sqlalchemy import SCHEMA_VERSION, SQLAlchemyStore
from chatkit_asgi.testing.store_contract import StoreContract


def _by_user(ctx: Any) -> str:
    user: str = ctx["user"]
    return user


class TestSQLAlchemyStoreOnSQLite(StoreContract):
    """The contract on a database file, through a plain `sqlite:///` URL."""

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SQLAlchemyStore[Any]]:
        store: SQLAlchemyStore[Any] = SQLAlchemyStore(
            f"sqlite:///{tmp_path / 'chatkit.db'}", tenant=_by_user
        )
        yield store
        await store.aclose()


def test_exported_beside_the_other_stores_and_imported_lazily() -> None:
    import chatkit_asgi.stores as stores
    from chatkit_asgi.stores.sqlalchemy import SQLAlchemyStore as direct

    assert stores.SQLAlchemyStore is direct
    assert "SQLAlchemyStore" in dir(stores)
    # Importing the stores package alone does not need SQLAlchemy (an optional extra).
    probe = (
        "import sys, chatkit_asgi.stores; "
        "assert 'sqlalchemy' not in sys.modules and 'pymongo' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)
    with pytest.raises(AttributeError):
        stores.NoSuchStore  # noqa: B018


async def test_schema_version_row_and_refusals(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'chatkit.db'}"
    store: SQLAlchemyStore[Any] = SQLAlchemyStore(url)
    await store.load_threads(1, None, "asc", None)
    async with store.engine.begin() as conn:
        rows = (await conn.execute(text("SELECT id, version FROM chatkit_schema"))).all()
        assert [tuple(row) for row in rows] == [(1, SCHEMA_VERSION)]
        await conn.execute(text("UPDATE chatkit_schema SET version = version + 1"))
    await store.aclose()
    newer: SQLAlchemyStore[Any] = SQLAlchemyStore(url)
    with pytest.raises(RuntimeError, match="newer"):
        await newer.load_threads(1, None, "asc", None)
    await newer.aclose()


async def test_without_create_tables_a_missing_schema_is_named(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'chatkit.db'}"
    store: SQLAlchemyStore[Any] = SQLAlchemyStore(url, create_tables=False)
    with pytest.raises(RuntimeError, match="create_tables"):
        await store.load_threads(1, None, "asc", None)
    await store.create_tables()  # what a deploy step runs
    assert (await store.load_threads(1, None, "asc", None)).data == []
    await store.aclose()
