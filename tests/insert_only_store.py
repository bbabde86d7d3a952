"""A SQLite store written only to openai-chatkit's `Store` contract: `add_thread_item` is
a plain INSERT.

openai-chatkit's own test store works this way, and so do many stores written for it:
adding an item whose id is already stored raises `sqlite3.IntegrityError`, and
`save_item` is an UPDATE that changes nothing when the id is not stored. Our bundled
stores are more forgiving (both are upserts), so this store is how the tests prove
that the engine calls `add_thread_item` once per item and `save_item` after that.

It implements the reference's abstract methods with the reference's signatures and
nothing else (no tenant option, no turn leases, no `aclose`):

- three tables, `threads`, `items` and `attachments`, each row's object as JSON in
  a `data` column;
- the owner of every row is the request context's `user_id` (`context.user_id`, or
  `context["user_id"]` for a mapping), as in the reference's tests; another user's
  rows behave as missing ones;
- threads and items are ordered by `created_at`, ties in insertion order;
- a missing thread, item or attachment, or an unknown `after` id, is `NotFoundError`;
  `load_thread_items` of a thread the user cannot see is an empty page, as the
  reference's store tests expect.

`InsertOnlyStore(db_path)` takes a file path or a SQLite URI (`file:name?mode=memory&
cache=shared`, as the reference's tests pass) and opens one connection per call, as
the reference's helper does; without a path it uses a private in-memory database.
It imports nothing from the tests, so it can be copied beside other test suites.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from chatkit_asgi.store import NotFoundError, Store
from chatkit_asgi.types import Attachment, Page, ThreadItem, ThreadMetadata

__all__ = ["InsertOnlyStore", "user_id_of"]

_THREAD = TypeAdapter(ThreadMetadata)
_ITEM: TypeAdapter[ThreadItem] = TypeAdapter(ThreadItem)
_ATTACHMENT: TypeAdapter[Attachment] = TypeAdapter(Attachment)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS threads (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        data TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS items (
        id TEXT PRIMARY KEY,
        thread_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        data TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS attachments (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        data TEXT NOT NULL
    )""",
)


def user_id_of(context: Any) -> str:
    """The owner named by a request context: its `user_id` attribute or key."""
    user_id = getattr(context, "user_id", None)
    if user_id is None and isinstance(context, Mapping):
        user_id = context.get("user_id")
    if user_id is None:
        raise TypeError(
            f"InsertOnlyStore needs a context with a user_id (attribute or key), got {context!r}"
        )
    return str(user_id)


def _sort_key(moment: datetime) -> str:
    """`created_at` as text that sorts in time order.

    Aware and naive datetimes both occur (our engine writes UTC, the reference's tests
    naive local times): both become UTC, naive ones read as local time, as Python does.
    """
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")


class InsertOnlyStore(Store[Any]):
    """A store to the reference's contract: `add_thread_item` INSERTs, `save_item` UPDATEs."""

    def __init__(self, db_path: str | Path | None = None) -> None:
        self._keeper: sqlite3.Connection | None = None
        if db_path is None:
            db_path = f"file:insert_only_{uuid.uuid4().hex}?mode=memory&cache=shared"
            # A shared in-memory database lives as long as one connection to it does.
            self._keeper = sqlite3.connect(db_path, uri=True)
        self.db_path = str(db_path)
        with self._connection() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)

    def close(self) -> None:
        """Let a private in-memory database go (a file stays where it is)."""
        if self._keeper is not None:
            self._keeper.close()
            self._keeper = None

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection for one call: committed on success, rolled back on error, closed."""
        with closing(sqlite3.connect(self.db_path, uri=True)) as conn, conn:
            yield conn

    # -- threads -------------------------------------------------------------------

    async def load_thread(self, thread_id: str, context: Any) -> ThreadMetadata:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT data FROM threads WHERE id = ? AND user_id = ?",
                (thread_id, user_id_of(context)),
            ).fetchone()
        if row is None:
            raise NotFoundError(f"thread {thread_id} not found")
        return _THREAD.validate_json(row[0])

    async def save_thread(self, thread: ThreadMetadata, context: Any) -> None:
        # Dumped as ThreadMetadata: a `Thread` also carries a page of items.
        data = _THREAD.dump_json(thread).decode()
        with self._connection() as conn:
            conn.execute(
                "INSERT INTO threads (id, user_id, created_at, data) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at,"
                " data = excluded.data WHERE threads.user_id = excluded.user_id",
                (thread.id, user_id_of(context), _sort_key(thread.created_at), data),
            )

    async def load_threads(
        self, limit: int, after: str | None, order: str, context: Any
    ) -> Page[ThreadMetadata]:
        user_id = user_id_of(context)
        with self._connection() as conn:
            rows = _page_rows(
                conn,
                "SELECT rowid, created_at, data FROM threads WHERE user_id = ?",
                (user_id,),
                cursor_query="SELECT rowid, created_at FROM threads WHERE id = ? AND user_id = ?",
                cursor_params=(after, user_id),
                after=after,
                limit=limit,
                order=order,
            )
        threads = [_THREAD.validate_json(data) for data in rows]
        return _page(threads, limit)

    async def delete_thread(self, thread_id: str, context: Any) -> None:
        user_id = user_id_of(context)
        with self._connection() as conn:
            deleted = conn.execute(
                "DELETE FROM threads WHERE id = ? AND user_id = ?", (thread_id, user_id)
            ).rowcount
            if not deleted:
                raise NotFoundError(f"thread {thread_id} not found")
            conn.execute(
                "DELETE FROM items WHERE thread_id = ? AND user_id = ?", (thread_id, user_id)
            )

    # -- items ---------------------------------------------------------------------

    async def load_thread_items(
        self, thread_id: str, after: str | None, limit: int, order: str, context: Any
    ) -> Page[ThreadItem]:
        user_id = user_id_of(context)
        with self._connection() as conn:
            rows = _page_rows(
                conn,
                "SELECT rowid, created_at, data FROM items WHERE thread_id = ? AND user_id = ?",
                (thread_id, user_id),
                cursor_query=(
                    "SELECT rowid, created_at FROM items"
                    " WHERE id = ? AND thread_id = ? AND user_id = ?"
                ),
                cursor_params=(after, thread_id, user_id),
                after=after,
                limit=limit,
                order=order,
            )
        items = [_ITEM.validate_json(data) for data in rows]
        return _page(items, limit)

    async def add_thread_item(self, thread_id: str, item: ThreadItem, context: Any) -> None:
        """INSERT the item: an id already stored raises `sqlite3.IntegrityError`."""
        with self._connection() as conn:
            conn.execute(
                "INSERT INTO items (id, thread_id, user_id, created_at, data)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    item.id,
                    thread_id,
                    user_id_of(context),
                    _sort_key(item.created_at),
                    _ITEM.dump_json(item).decode(),
                ),
            )

    async def save_item(self, thread_id: str, item: ThreadItem, context: Any) -> None:
        """UPDATE the stored item: nothing happens when the id is not stored."""
        with self._connection() as conn:
            conn.execute(
                "UPDATE items SET data = ? WHERE id = ? AND thread_id = ? AND user_id = ?",
                (_ITEM.dump_json(item).decode(), item.id, thread_id, user_id_of(context)),
            )

    async def load_item(self, thread_id: str, item_id: str, context: Any) -> ThreadItem:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT data FROM items WHERE id = ? AND thread_id = ? AND user_id = ?",
                (item_id, thread_id, user_id_of(context)),
            ).fetchone()
        if row is None:
            raise NotFoundError(f"item {item_id} not found in thread {thread_id}")
        return _ITEM.validate_json(row[0])

    async def delete_thread_item(self, thread_id: str, item_id: str, context: Any) -> None:
        with self._connection() as conn:
            conn.execute(
                "DELETE FROM items WHERE id = ? AND thread_id = ? AND user_id = ?",
                (item_id, thread_id, user_id_of(context)),
            )

    # -- attachments -----------------------------------------------------------------

    async def save_attachment(self, attachment: Attachment, context: Any) -> None:
        with self._connection() as conn:
            conn.execute(
                "INSERT INTO attachments (id, user_id, data) VALUES (?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET data = excluded.data"
                " WHERE attachments.user_id = excluded.user_id",
                (attachment.id, user_id_of(context), _ATTACHMENT.dump_json(attachment).decode()),
            )

    async def load_attachment(self, attachment_id: str, context: Any) -> Attachment:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT data FROM attachments WHERE id = ? AND user_id = ?",
                (attachment_id, user_id_of(context)),
            ).fetchone()
        if row is None:
            raise NotFoundError(f"attachment {attachment_id} not found")
        return _ATTACHMENT.validate_json(row[0])

    async def delete_attachment(self, attachment_id: str, context: Any) -> None:
        with self._connection() as conn:
            conn.execute(
                "DELETE FROM attachments WHERE id = ? AND user_id = ?",
                (attachment_id, user_id_of(context)),
            )


def _page_rows(
    conn: sqlite3.Connection,
    query: str,
    params: tuple[Any, ...],
    *,
    cursor_query: str,
    cursor_params: tuple[Any, ...],
    after: str | None,
    limit: int,
    order: str,
) -> list[str]:
    """The `data` of up to `limit + 1` rows in `(created_at, rowid)` order past `after`.

    One row more than asked tells whether there are more.
    """
    descending = order == "desc"
    if after is not None:
        cursor = conn.execute(cursor_query, cursor_params).fetchone()
        if cursor is None:
            raise NotFoundError(f"{after} not found")
        rowid, created_at = cursor
        past = "<" if descending else ">"
        query += f" AND (created_at {past} ? OR (created_at = ? AND rowid {past} ?))"
        params = (*params, created_at, created_at, rowid)
    direction = "DESC" if descending else "ASC"
    query += f" ORDER BY created_at {direction}, rowid {direction} LIMIT ?"
    rows = conn.execute(query, (*params, max(limit, 0) + 1)).fetchall()
    return [row[2] for row in rows]


def _page(rows: list[Any], limit: int) -> Page[Any]:
    """A page of the rows fetched with one extra: `has_more` and `after` from it."""
    limit = max(limit, 0)
    has_more = len(rows) > limit
    rows = rows[:limit]
    return Page(data=rows, has_more=has_more, after=rows[-1].id if has_more and rows else None)
