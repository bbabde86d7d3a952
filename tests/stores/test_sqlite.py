"""SQLiteStore: the shared store contract plus persistence, schema and threading."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest

from chatkit_asgi.store import NotFoundError
from chatkit_asgi.stores import SQLiteStore
from chatkit_asgi.stores.sqlite import SCHEMA_VERSION, SQL
from chatkit_asgi.testing.store_contract import StoreContract
from chatkit_asgi.types import AssistantMessageContent, AssistantMessageItem, ThreadMetadata

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def _by_user(ctx: Any) -> str:
    user: str = ctx["user"]
    return user


class TestSQLiteStoreOnFile(StoreContract):
    """The contract against a database file."""

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SQLiteStore[Any]]:
        async with SQLiteStore(tmp_path / "chatkit.db", tenant=_by_user) as store:
            yield store


class TestSQLiteStoreInMemory(StoreContract):
    """The contract against ":memory:"."""

    @pytest.fixture
    async def store(self) -> AsyncIterator[SQLiteStore[Any]]:
        async with SQLiteStore(":memory:", tenant=_by_user) as store:
            yield store


def _message(item_id: str, thread_id: str = "thr_1") -> AssistantMessageItem:
    return AssistantMessageItem(
        id=item_id,
        thread_id=thread_id,
        created_at=T0,
        content=[AssistantMessageContent(text=item_id)],
    )


async def test_data_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "chatkit.db"
    async with SQLiteStore(path) as store:
        await store.save_thread(ThreadMetadata(id="thr_1", created_at=T0, title="t"), None)
        await store.add_thread_item("thr_1", _message("a"), None)
    async with SQLiteStore(str(path)) as store:
        assert await store.load_thread("thr_1", None) == ThreadMetadata(
            id="thr_1", created_at=T0, title="t"
        )
        assert await store.load_item("thr_1", "a", None) == _message("a")


async def test_closed_store_reopens_on_next_call(tmp_path: Path) -> None:
    store: SQLiteStore[Any] = SQLiteStore(tmp_path / "chatkit.db")
    await store.save_thread(ThreadMetadata(id="thr_1", created_at=T0), None)
    await store.aclose()
    await store.aclose()  # closing twice is harmless
    assert (await store.load_thread("thr_1", None)).id == "thr_1"
    await store.aclose()


async def test_nothing_is_opened_before_first_use(tmp_path: Path) -> None:
    path = tmp_path / "chatkit.db"
    store: SQLiteStore[Any] = SQLiteStore(path)
    assert store.path == str(path)
    assert not path.exists()
    await store.aclose()
    assert not path.exists()


async def test_schema_pragmas_and_version(tmp_path: Path) -> None:
    path = tmp_path / "chatkit.db"
    async with SQLiteStore(path) as store:
        await store.load_threads(1, None, "asc", None)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT version FROM chatkit_schema").fetchall() == [(SCHEMA_VERSION,)]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"chatkit_threads", "chatkit_items", "chatkit_attachments"} <= tables
    finally:
        conn.close()
    # Opening an up-to-date database again changes nothing.
    async with SQLiteStore(path) as store:
        assert (await store.load_threads(1, None, "asc", None)).data == []
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT count(*) FROM chatkit_schema").fetchone() == (1,)
    finally:
        conn.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "chatkit.db"
    async with SQLiteStore(path) as store:
        await store.load_threads(1, None, "asc", None)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE chatkit_schema SET version = ?", (SCHEMA_VERSION + 1,))
    conn.close()
    async with SQLiteStore(path) as store:
        with pytest.raises(RuntimeError, match="newer"):
            await store.load_threads(1, None, "asc", None)


async def test_shares_a_file_with_other_tables(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE threads (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("PRAGMA user_version = 7")
    conn.close()
    async with SQLiteStore(path) as store:
        await store.save_thread(ThreadMetadata(id="thr_1", created_at=T0), None)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (7,)
        assert conn.execute("SELECT count(*) FROM threads").fetchone() == (0,)
    finally:
        conn.close()


@pytest.mark.parametrize("name", sorted(SQL))
def test_every_statement_uses_an_index(name: str) -> None:
    from chatkit_asgi.stores.sqlite import _migrate

    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        _migrate(conn)
        statement = SQL[name]
        plan = conn.execute(
            f"EXPLAIN QUERY PLAN {statement}", [None] * statement.count("?")
        ).fetchall()
    finally:
        conn.close()
    details = [row[-1] for row in plan]
    assert not [detail for detail in details if detail.startswith("SCAN")], details
    assert not [detail for detail in details if "TEMP B-TREE" in detail], details


async def test_sqlite_never_runs_on_the_event_loop_thread(tmp_path: Path) -> None:
    store: SQLiteStore[Any] = SQLiteStore(tmp_path / "chatkit.db")
    loop_thread = threading.get_ident()
    statement_threads: set[int] = set()
    async with store:
        await store.load_threads(1, None, "asc", None)
        conn = store._conn
        assert conn is not None
        conn.set_trace_callback(lambda _: statement_threads.add(threading.get_ident()))
        await store.save_thread(ThreadMetadata(id="thr_1", created_at=T0), None)
        await store.add_thread_item("thr_1", _message("a"), None)
        await store.load_thread_items("thr_1", None, 10, "desc", None)
        await store.delete_thread("thr_1", None)
    assert statement_threads
    assert loop_thread not in statement_threads


async def test_multi_statement_writes_are_one_transaction(tmp_path: Path) -> None:
    store: SQLiteStore[Any] = SQLiteStore(tmp_path / "chatkit.db")
    statements: list[str] = []
    async with store:
        await store.save_thread(ThreadMetadata(id="thr_1", created_at=T0), None)
        for item_id in "abc":
            await store.add_thread_item("thr_1", _message(item_id), None)
        conn = store._conn
        assert conn is not None
        conn.set_trace_callback(statements.append)
        await store.delete_thread_items_after("thr_1", "a", None)
        after_statements, statements[:] = statements[:], []
        await store.delete_thread("thr_1", None)
        delete_statements = statements[:]
    for trace in (after_statements, delete_statements):
        assert trace[0] == "BEGIN IMMEDIATE"
        assert trace[-1] == "COMMIT"
        assert sum(statement.startswith("DELETE") for statement in trace) >= 1


async def test_failed_write_rolls_back(tmp_path: Path) -> None:
    store: SQLiteStore[Any] = SQLiteStore(tmp_path / "chatkit.db")
    async with store:
        await store.save_thread(ThreadMetadata(id="thr_1", created_at=T0), None)
        for item_id in "abc":
            await store.add_thread_item("thr_1", _message(item_id), None)
        conn = store._conn
        assert conn is not None
        conn.execute(
            "CREATE TRIGGER no_thread_delete BEFORE DELETE ON chatkit_threads "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
        with pytest.raises(sqlite3.DatabaseError, match="refused"):
            await store.delete_thread("thr_1", None)
        # The items deleted before the failing statement are back, and the
        # connection is usable: no transaction was left open.
        page = await store.load_thread_items("thr_1", None, 10, "asc", None)
        assert [item.id for item in page.data] == ["a", "b", "c"]
        assert not conn.in_transaction


async def test_without_tenant_everything_is_shared(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "chatkit.db") as store:
        await store.save_thread(ThreadMetadata(id="thr_1", created_at=T0), {"user": "alice"})
        assert (await store.load_thread("thr_1", {"user": "bob"})).id == "thr_1"


async def test_errors_reach_the_caller_and_the_store_keeps_working(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "chatkit.db") as store:
        with pytest.raises(NotFoundError):
            await store.load_thread("thr_missing", None)
        with pytest.raises(ValueError, match="order"):
            await store.load_threads(1, None, "up", None)
        await store.save_thread(ThreadMetadata(id="thr_1", created_at=T0), None)
        assert (await store.load_thread("thr_1", None)).id == "thr_1"


async def test_cancelled_caller_does_not_break_the_store(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "chatkit.db") as store:
        await store.save_thread(ThreadMetadata(id="thr_1", created_at=T0), None)
        with anyio.CancelScope() as scope:
            scope.cancel()
            await store.add_thread_item("thr_1", _message("a"), None)
        # A call that was submitted runs to completion, like anyio.to_thread's.
        page = await store.load_thread_items("thr_1", None, 10, "asc", None)
        assert [item.id for item in page.data] == ["a"]


async def test_runs_on_anyio_threads_without_asyncio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under trio there is no asyncio loop to hand results back to; the store then
    # uses anyio's worker threads. Hide the loop to take that path here.
    import chatkit_asgi.stores.sqlite as module

    async with SQLiteStore(tmp_path / "chatkit.db") as store:
        await store.save_thread(ThreadMetadata(id="thr_1", created_at=T0), None)
        monkeypatch.setattr(module, "_asyncio_loop", lambda: None)
        loop_thread = threading.get_ident()
        conn = store._conn
        assert conn is not None
        statement_threads: set[int] = set()
        conn.set_trace_callback(lambda _: statement_threads.add(threading.get_ident()))
        async with anyio.create_task_group() as tg:
            for item_id in "abcdef":
                tg.start_soon(store.add_thread_item, "thr_1", _message(item_id), None)
        page = await store.load_thread_items("thr_1", None, 10, "asc", None)
        assert sorted(item.id for item in page.data) == list("abcdef")
        assert statement_threads and loop_thread not in statement_threads
        monkeypatch.undo()
