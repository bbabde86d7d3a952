"""`SQLiteStore`: the embedded default store, one database file and the stdlib only.

Several worker processes may share the file: replies on one thread take turns
through lease rows in `chatkit_turns` (see `SQLiteStore.acquire_turn`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from typing_extensions import Self

from ..store import NotFoundError, Store, StoreUnavailableError
from ..types import Attachment, Page, ThreadItem, ThreadMetadata
from ._common import (
    TContext,
    decode_attachment,
    decode_item,
    decode_thread,
    encode_attachment,
    encode_item,
    encode_thread,
    is_descending,
    make_page,
    owner_key,
    timestamp_key,
    window_size,
)
from ._leases import ExpiringTurnLease, TurnLeaseLostError, free_quietly, wait_for_lease

__all__ = ["SCHEMA_VERSION", "SQLiteStore", "SQLiteTurnLease", "TurnLeaseLostError"]

R = TypeVar("R")

SCHEMA_VERSION = 2
"""The version of the table layout this module reads and writes."""

# Each entry upgrades the schema from the previous version. Tables are prefixed so
# the store can share a database file with the application's own tables.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """
        CREATE TABLE IF NOT EXISTS chatkit_threads (
            seq INTEGER PRIMARY KEY,
            owner TEXT NOT NULL,
            id TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            data TEXT NOT NULL,
            UNIQUE (owner, id)
        )
        """,
        """
        CREATE INDEX IF NOT EXISTS chatkit_threads_by_created
        ON chatkit_threads (owner, created_at, seq)
        """,
        """
        CREATE TABLE IF NOT EXISTS chatkit_items (
            seq INTEGER PRIMARY KEY,
            thread_seq INTEGER NOT NULL REFERENCES chatkit_threads (seq) ON DELETE CASCADE,
            id TEXT NOT NULL,
            data TEXT NOT NULL,
            UNIQUE (thread_seq, id)
        )
        """,
        """
        CREATE INDEX IF NOT EXISTS chatkit_items_by_thread
        ON chatkit_items (thread_seq, seq)
        """,
        """
        CREATE TABLE IF NOT EXISTS chatkit_attachments (
            owner TEXT NOT NULL,
            id TEXT NOT NULL,
            thread_id TEXT,
            data TEXT NOT NULL,
            PRIMARY KEY (owner, id)
        ) WITHOUT ROWID
        """,
        """
        CREATE INDEX IF NOT EXISTS chatkit_attachments_by_thread
        ON chatkit_attachments (owner, thread_id)
        """,
        """
        CREATE TABLE IF NOT EXISTS chatkit_schema (
            version INTEGER NOT NULL
        )
        """,
    ),
    # Turn leases shared by every process using the file: one row per thread,
    # `expires_at` in milliseconds since the epoch.
    2: (
        """
        CREATE TABLE IF NOT EXISTS chatkit_turns (
            owner TEXT NOT NULL,
            thread_id TEXT NOT NULL,
            holder TEXT NOT NULL,
            expires_at INTEGER NOT NULL,
            PRIMARY KEY (owner, thread_id)
        ) WITHOUT ROWID
        """,
    ),
}

# Kept in one table so a test can check each statement's query plan. Rows
# are ordered by `seq`, the rowid: SQLite hands out a rowid larger than any live
# one, which makes it the monotonic insertion sequence.
SQL: dict[str, str] = {
    "thread_seq": "SELECT seq FROM chatkit_threads WHERE owner = ? AND id = ?",
    "load_thread": "SELECT data FROM chatkit_threads WHERE owner = ? AND id = ?",
    # An upsert, never INSERT OR REPLACE: replacing would give the thread a new seq
    # and cascade-delete its items.
    "save_thread": (
        "INSERT INTO chatkit_threads (owner, id, created_at, data) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (owner, id) DO UPDATE "
        "SET created_at = excluded.created_at, data = excluded.data"
    ),
    "thread_cursor": "SELECT created_at, seq FROM chatkit_threads WHERE owner = ? AND id = ?",
    "threads_asc": (
        "SELECT id, data FROM chatkit_threads WHERE owner = ? ORDER BY created_at, seq LIMIT ?"
    ),
    "threads_desc": (
        "SELECT id, data FROM chatkit_threads WHERE owner = ? "
        "ORDER BY created_at DESC, seq DESC LIMIT ?"
    ),
    "threads_asc_after": (
        "SELECT id, data FROM chatkit_threads WHERE owner = ? AND (created_at, seq) > (?, ?) "
        "ORDER BY created_at, seq LIMIT ?"
    ),
    "threads_desc_after": (
        "SELECT id, data FROM chatkit_threads WHERE owner = ? AND (created_at, seq) < (?, ?) "
        "ORDER BY created_at DESC, seq DESC LIMIT ?"
    ),
    "delete_thread_items": "DELETE FROM chatkit_items WHERE thread_seq = ?",
    "delete_thread": "DELETE FROM chatkit_threads WHERE seq = ?",
    "delete_thread_attachments": (
        "DELETE FROM chatkit_attachments WHERE owner = ? AND thread_id = ?"
    ),
    "item_seq": "SELECT seq FROM chatkit_items WHERE thread_seq = ? AND id = ?",
    "items_asc": "SELECT id, data FROM chatkit_items WHERE thread_seq = ? ORDER BY seq LIMIT ?",
    "items_desc": (
        "SELECT id, data FROM chatkit_items WHERE thread_seq = ? ORDER BY seq DESC LIMIT ?"
    ),
    "items_asc_after": (
        "SELECT id, data FROM chatkit_items WHERE thread_seq = ? AND seq > ? ORDER BY seq LIMIT ?"
    ),
    "items_desc_after": (
        "SELECT id, data FROM chatkit_items WHERE thread_seq = ? AND seq < ? "
        "ORDER BY seq DESC LIMIT ?"
    ),
    # One statement finds the (owned) thread and upserts the item, so it is atomic
    # and a missing thread shows up as zero changed rows. The WHERE clause also
    # keeps SQLite from parsing ON CONFLICT as a join constraint.
    "upsert_item": (
        "INSERT INTO chatkit_items (thread_seq, id, data) "
        "SELECT seq, ?, ? FROM chatkit_threads WHERE owner = ? AND id = ? "
        "ON CONFLICT (thread_seq, id) DO UPDATE SET data = excluded.data"
    ),
    "load_item": (
        "SELECT i.data FROM chatkit_threads AS t "
        "JOIN chatkit_items AS i ON i.thread_seq = t.seq "
        "WHERE t.owner = ? AND t.id = ? AND i.id = ?"
    ),
    "delete_item": (
        "DELETE FROM chatkit_items WHERE id = ? AND thread_seq = "
        "(SELECT seq FROM chatkit_threads WHERE owner = ? AND id = ?)"
    ),
    "delete_items_after": "DELETE FROM chatkit_items WHERE thread_seq = ? AND seq > ?",
    "save_attachment": (
        "INSERT INTO chatkit_attachments (owner, id, thread_id, data) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (owner, id) DO UPDATE "
        "SET thread_id = excluded.thread_id, data = excluded.data"
    ),
    "load_attachment": "SELECT data FROM chatkit_attachments WHERE owner = ? AND id = ?",
    "delete_attachment": "DELETE FROM chatkit_attachments WHERE owner = ? AND id = ?",
    # Taken when nobody holds it, its holder let it expire (a crashed worker) or
    # it is already ours; otherwise the upsert changes no row.
    "try_lease": (
        "INSERT INTO chatkit_turns (owner, thread_id, holder, expires_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (owner, thread_id) DO UPDATE "
        "SET holder = excluded.holder, expires_at = excluded.expires_at "
        "WHERE chatkit_turns.expires_at <= ? OR chatkit_turns.holder = excluded.holder"
    ),
    "renew_lease": (
        "UPDATE chatkit_turns SET expires_at = ? WHERE owner = ? AND thread_id = ? AND holder = ?"
    ),
    "release_lease": ("DELETE FROM chatkit_turns WHERE owner = ? AND thread_id = ? AND holder = ?"),
}
"""Every statement the store runs, by name (all parameterized)."""

_IDLE_SECONDS = 10.0
# Polling for a busy turn: quick at first (a local write costs little), then calmer.
_FIRST_POLL = 0.01
_LAST_POLL = 0.1


# The lease object is the shared one; the name stays importable from here.
SQLiteTurnLease = ExpiringTurnLease


class _Worker:
    """A thread that runs jobs one at a time, in submission order.

    It exits after a while without work and is restarted by the next job, so an
    idle or forgotten store holds no thread. It references only queued jobs,
    never the store, so a store that is dropped without `aclose` is collected.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running = False

    def submit(self, job: Callable[[], None]) -> None:
        """Queue `job` (which must not raise) and make sure a thread will run it."""
        with self._lock:
            self._jobs.put(job)
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name=self._name, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                # Under the lock a concurrent submit either lands before the check
                # (we keep going) or sees `_running` false and starts a new thread.
                with self._lock:
                    if self._jobs.empty():
                        self._running = False
                        return
                continue
            job()


def _asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop, or None under another event loop (trio)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the waiter was cancelled by plain asyncio
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


@contextmanager
def _transaction(conn: sqlite3.Connection, *, write: bool) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front: a deferred transaction that reads and
    # then writes can fail with SQLITE_BUSY when another process wrote in between.
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        # Also after a failed COMMIT (SQLITE_BUSY...): a transaction left open would
        # make the next call's BEGIN fail.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class SQLiteStore(Store[TContext]):
    """A `Store` in one SQLite database file, using only the standard library.

    `path` is the database file (created when missing) or ":memory:". The schema is
    created on first use; the file is in WAL mode with `synchronous=NORMAL`, so
    readers in other processes do not block writers.

    `tenant` maps the request context to an owner key (for example
    `lambda ctx: ctx["user_id"]`); each owner then sees only its own threads and
    attachments, and another owner's ids behave as if they did not exist. Without
    it (or when it returns None) everything lives in one shared space.

    SQLite calls never run on the event loop: one connection is used by a
    dedicated worker thread, one call at a time and in call order, and each store
    method is a single job (writes of several statements are one transaction).
    Under an event loop other than asyncio, calls go through
    `anyio.to_thread.run_sync` instead, serialized by the same lock.

    `acquire_turn` hands out turn leases kept in the file, so every process that
    shares it (`uvicorn --workers 4`) runs one reply per thread at a time. A lease
    expires `lease_ttl` seconds after its last renewal (the app renews it while
    the reply runs), which is how long a crashed worker can hold a thread up.

    `await store.aclose()` (or `async with store:`) closes the connection; a later
    call opens it again, which for ":memory:" means an empty database.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "chatkit.db",
        *,
        tenant: Callable[[TContext], str | None] | None = None,
        lease_ttl: float = 30.0,
    ) -> None:
        if lease_ttl <= 0:
            raise ValueError(f"lease_ttl must be positive, not {lease_ttl!r}")
        self.lease_ttl = lease_ttl
        self._path = os.fspath(path)
        self._tenant = tenant
        self._conn: sqlite3.Connection | None = None
        # Guards `_conn`: the worker holds it for every job, and so does the
        # fallback path when it runs jobs on anyio's threads.
        self._lock = threading.Lock()
        self._worker = _Worker(f"chatkit-sqlite:{os.path.basename(self._path)}")

    @property
    def path(self) -> str:
        """The database file (or ":memory:")."""
        return self._path

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection after the calls already queued have run."""
        await self._call(self._close)

    async def ping(self) -> None:
        """One trivial query (the health check); opens the database if it is closed."""
        await self._db(lambda conn: conn.execute("SELECT 1").fetchone())

    def _close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    # -- running calls off the event loop ------------------------------------------

    def _locked(self, fn: Callable[[], R]) -> R:
        with self._lock:
            return fn()

    async def _call(self, fn: Callable[[], R]) -> R:
        """Run `fn` on the worker thread, holding the connection lock."""
        loop = _asyncio_loop()
        if loop is None:
            return await anyio.to_thread.run_sync(self._locked, fn)

        future: asyncio.Future[R] = loop.create_future()

        def job() -> None:
            try:
                result = self._locked(fn)
            except BaseException as exc:
                outcome: tuple[Any, BaseException | None] = (None, exc)
            else:
                outcome = (result, None)
            # A closed loop raises RuntimeError: nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future, *outcome)

        self._worker.submit(job)
        # Like `anyio.to_thread.run_sync`, a cancelled caller still waits for the
        # call it started: its effects are then in place before the cancellation lands.
        with anyio.CancelScope(shield=True):
            result = await future
        return result

    async def _db(self, op: Callable[[sqlite3.Connection], R]) -> R:
        """Run `op` with the open connection on the worker thread."""
        try:
            return await self._call(lambda: op(self._connection()))
        except sqlite3.OperationalError as exc:
            if _is_outage(exc):
                raise StoreUnavailableError(f"SQLite database unavailable: {exc}") from exc
            raise

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        # Autocommit mode (isolation_level=None): transactions are explicit, so one
        # store call is one transaction and nothing is left open between calls.
        conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            _migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _owner(self, context: TContext) -> str:
        return owner_key(self._tenant, context)

    # -- threads -------------------------------------------------------------------

    async def load_thread(self, thread_id: str, context: TContext) -> ThreadMetadata:
        """The thread's metadata, or `NotFoundError`."""
        owner = self._owner(context)

        def op(conn: sqlite3.Connection) -> ThreadMetadata:
            row = conn.execute(SQL["load_thread"], (owner, thread_id)).fetchone()
            if row is None:
                raise NotFoundError(f"thread {thread_id} not found")
            return decode_thread(row[0])

        return await self._db(op)

    async def save_thread(self, thread: ThreadMetadata, context: TContext) -> None:
        """Insert or update a thread's metadata; an update keeps the thread's items."""
        params = (self._owner(context), thread.id, timestamp_key(thread.created_at))
        data = encode_thread(thread)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(SQL["save_thread"], (*params, data))

        await self._db(op)

    async def load_threads(
        self,
        limit: int,
        after: str | None,
        order: str,
        context: TContext,
    ) -> Page[ThreadMetadata]:
        """A page of threads by creation time, then by insertion for equal times."""
        direction = "desc" if is_descending(order) else "asc"
        owner = self._owner(context)
        size = window_size(limit)

        def op(conn: sqlite3.Connection) -> Page[ThreadMetadata]:
            with _transaction(conn, write=False):
                if after is None:
                    rows = conn.execute(SQL[f"threads_{direction}"], (owner, size)).fetchall()
                else:
                    cursor = conn.execute(SQL["thread_cursor"], (owner, after)).fetchone()
                    if cursor is None:
                        raise NotFoundError(f"thread {after} not found")
                    rows = conn.execute(
                        SQL[f"threads_{direction}_after"], (owner, *cursor, size)
                    ).fetchall()
            return make_page(rows, limit, decode_thread)

        return await self._db(op)

    async def delete_thread(self, thread_id: str, context: TContext) -> None:
        """Delete the thread, its items and the attachment metadata that points at it."""
        owner = self._owner(context)

        def op(conn: sqlite3.Connection) -> None:
            with _transaction(conn, write=True):
                seq = _thread_seq(conn, owner, thread_id)
                conn.execute(SQL["delete_thread_items"], (seq,))
                conn.execute(SQL["delete_thread"], (seq,))
                conn.execute(SQL["delete_thread_attachments"], (owner, thread_id))

        await self._db(op)

    # -- items ---------------------------------------------------------------------

    async def load_thread_items(
        self,
        thread_id: str,
        after: str | None,
        limit: int,
        order: str,
        context: TContext,
    ) -> Page[ThreadItem]:
        """A page of the thread's items in insertion order (`asc`) or reverse (`desc`)."""
        direction = "desc" if is_descending(order) else "asc"
        owner = self._owner(context)
        size = window_size(limit)

        def op(conn: sqlite3.Connection) -> Page[ThreadItem]:
            with _transaction(conn, write=False):
                seq = _thread_seq(conn, owner, thread_id)
                if after is None:
                    rows = conn.execute(SQL[f"items_{direction}"], (seq, size)).fetchall()
                else:
                    cursor = _item_seq(conn, seq, thread_id, after)
                    rows = conn.execute(
                        SQL[f"items_{direction}_after"], (seq, cursor, size)
                    ).fetchall()
            return make_page(rows, limit, decode_item)

        return await self._db(op)

    async def add_thread_item(self, thread_id: str, item: ThreadItem, context: TContext) -> None:
        """Append an item; an existing id is updated in place, keeping its position."""
        await self._upsert_item(thread_id, item, context)

    async def save_item(self, thread_id: str, item: ThreadItem, context: TContext) -> None:
        """Insert or update an item by id, keeping its position when it exists."""
        await self._upsert_item(thread_id, item, context)

    async def _upsert_item(self, thread_id: str, item: ThreadItem, context: TContext) -> None:
        params = (item.id, encode_item(item), self._owner(context), thread_id)

        def op(conn: sqlite3.Connection) -> None:
            if conn.execute(SQL["upsert_item"], params).rowcount == 0:
                raise NotFoundError(f"thread {thread_id} not found")

        await self._db(op)

    async def load_item(self, thread_id: str, item_id: str, context: TContext) -> ThreadItem:
        """One item of the thread, or `NotFoundError`."""
        owner = self._owner(context)

        def op(conn: sqlite3.Connection) -> ThreadItem:
            row = conn.execute(SQL["load_item"], (owner, thread_id, item_id)).fetchone()
            if row is None:
                raise NotFoundError(f"item {item_id} not found in thread {thread_id}")
            return decode_item(row[0])

        return await self._db(op)

    async def delete_thread_item(self, thread_id: str, item_id: str, context: TContext) -> None:
        """Delete one item (no error if it or its thread is already gone)."""
        params = (item_id, self._owner(context), thread_id)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(SQL["delete_item"], params)

        await self._db(op)

    async def delete_thread_items_after(
        self, thread_id: str, item_id: str, context: TContext
    ) -> None:
        """Delete every item added after `item_id`, in one transaction."""
        owner = self._owner(context)

        def op(conn: sqlite3.Connection) -> None:
            with _transaction(conn, write=True):
                seq = _thread_seq(conn, owner, thread_id)
                cursor = _item_seq(conn, seq, thread_id, item_id)
                conn.execute(SQL["delete_items_after"], (seq, cursor))

        await self._db(op)

    # -- attachments ---------------------------------------------------------------

    async def save_attachment(self, attachment: Attachment, context: TContext) -> None:
        """Insert or update attachment metadata."""
        params = (
            self._owner(context),
            attachment.id,
            attachment.thread_id,
            encode_attachment(attachment),
        )

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(SQL["save_attachment"], params)

        await self._db(op)

    async def load_attachment(self, attachment_id: str, context: TContext) -> Attachment:
        """Attachment metadata, or `NotFoundError`."""
        owner = self._owner(context)

        def op(conn: sqlite3.Connection) -> Attachment:
            row = conn.execute(SQL["load_attachment"], (owner, attachment_id)).fetchone()
            if row is None:
                raise NotFoundError(f"attachment {attachment_id} not found")
            return decode_attachment(row[0])

        return await self._db(op)

    async def delete_attachment(self, attachment_id: str, context: TContext) -> None:
        """Delete attachment metadata (no error if it is already gone)."""
        params = (self._owner(context), attachment_id)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(SQL["delete_attachment"], params)

        await self._db(op)

    # -- turn leases ---------------------------------------------------------------

    async def acquire_turn(
        self, thread_id: str, context: TContext, wait: float
    ) -> ExpiringTurnLease:
        """The lease on the thread's turn, shared by every process using this file.

        Waits up to `wait` seconds, polling, then raises `TurnBusyError`.
        """
        return await wait_for_lease(
            self,
            self._owner(context),
            thread_id,
            wait,
            first_poll=_FIRST_POLL,
            last_poll=_LAST_POLL,
        )

    async def _try_lease(self, owner: str, thread_id: str, holder: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            now = _now_ms()
            params = (owner, thread_id, holder, now + round(self.lease_ttl * 1000), now)
            return conn.execute(SQL["try_lease"], params).rowcount > 0

        # A started call runs to completion even when its caller is cancelled
        # (`_call`), and its outcome is then lost: free what it may have taken.
        try:
            return await self._db(op)
        except BaseException:
            await free_quietly(self, owner, thread_id, holder)
            raise

    async def _renew_lease(self, owner: str, thread_id: str, holder: str) -> bool:
        params = (self._expiry(), owner, thread_id, holder)
        renewed: int = await self._db(
            lambda conn: conn.execute(SQL["renew_lease"], params).rowcount
        )
        return renewed > 0

    async def _release_lease(self, owner: str, thread_id: str, holder: str) -> None:
        params = (owner, thread_id, holder)
        await self._db(lambda conn: conn.execute(SQL["release_lease"], params))

    def _expiry(self) -> int:
        return _now_ms() + round(self.lease_ttl * 1000)


def _now_ms() -> int:
    # Wall-clock time: every process sharing the file runs on this machine's clock.
    return time.time_ns() // 1_000_000


def _thread_seq(conn: sqlite3.Connection, owner: str, thread_id: str) -> int:
    row = conn.execute(SQL["thread_seq"], (owner, thread_id)).fetchone()
    if row is None:
        raise NotFoundError(f"thread {thread_id} not found")
    return int(row[0])


def _item_seq(conn: sqlite3.Connection, thread_seq: int, thread_id: str, item_id: str) -> int:
    row = conn.execute(SQL["item_seq"], (thread_seq, item_id)).fetchone()
    if row is None:
        raise NotFoundError(f"item {item_id} not found in thread {thread_id}")
    return int(row[0])


def _schema_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'chatkit_schema'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT max(version) FROM chatkit_schema").fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema up to `SCHEMA_VERSION`; a no-op when it already is."""
    if _schema_version(conn) == SCHEMA_VERSION:
        return
    with _transaction(conn, write=True):
        # Read again under the write lock: another process may have migrated meanwhile.
        version = _schema_version(conn)
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"the chatkit tables are at schema version {version}, newer than the "
                f"{SCHEMA_VERSION} this chatkit-asgi understands; upgrade chatkit-asgi"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[target]:
                conn.execute(statement)
        if version < SCHEMA_VERSION:
            conn.execute("DELETE FROM chatkit_schema")
            conn.execute("INSERT INTO chatkit_schema (version) VALUES (?)", (SCHEMA_VERSION,))


# Conditions that pass when the database frees up, the disk gets space or the file
# becomes writable again; anything else (a malformed statement) is a bug, not an outage.
_OUTAGES = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_FULL",
    "SQLITE_IOERR",
    "SQLITE_READONLY",
    "SQLITE_CANTOPEN",
)
_OUTAGE_MESSAGES = ("locked", "disk is full", "disk i/o error", "readonly", "unable to open")


def _is_outage(exc: sqlite3.OperationalError) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name:
        return name.startswith(_OUTAGES)
    message = str(exc).lower()
    return any(part in message for part in _OUTAGE_MESSAGES)
