"""`SQLAlchemyStore`: threads, items, attachment metadata and turn leases in SQL.

Built on SQLAlchemy 2's async Core, for PostgreSQL (through asyncpg) first and
SQLite (through aiosqlite). Needs the extra `chatkit-asgi[postgres]` (SQLAlchemy
and asyncpg) or `chatkit-asgi[sqlalchemy]` plus a driver of your choice::

    store = SQLAlchemyStore(os.environ["DATABASE_URL"], tenant=lambda ctx: ctx["user_id"])

The tables, prefixed `chatkit_` by default (see `_sqlalchemy_schema.py`):

- `threads`: `seq` (insertion order), `owner`, `id`, `created_at` (microseconds since
  the epoch, UTC), `item_seq` (the thread's item counter) and `data`, the metadata
  as JSON (JSONB on PostgreSQL); unique on (owner, id), indexed by
  (owner, created_at, seq) for listing.
- `items`: keyed by (thread_seq, position), unique on (thread_seq, id). An append
  takes the thread's next `item_seq` in the same transaction that inserts the
  item, under the thread row's lock, so concurrent appends get distinct,
  increasing positions. Positions are never reused.
- `attachments`: keyed by (owner, id), indexed by (owner, thread_id).
- `turns`: one lease row per (owner, thread_id): `holder` and `expires_at`
  (milliseconds, on the database's clock).
- `schema`: one row with the layout's version.

`owner` is `tenant(context)` (or "" without a tenant) and is part of every lookup,
so another tenant's ids behave exactly like missing ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Final

import anyio
from pydantic import TypeAdapter

try:
    from sqlalchemy import Row, delete, select, text, tuple_, update
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "SQLAlchemyStore needs SQLAlchemy 2: pip install 'chatkit-asgi[postgres]' "
        "(or 'chatkit-asgi[sqlalchemy]' and a driver such as aiosqlite)"
    ) from exc

from ..store import NotFoundError, Store
from ..types import Attachment, Page, ThreadItem, ThreadMetadata
from ._common import TContext, is_descending, make_page, owner_key, timestamp_key, window_size
from ._leases import ExpiringTurnLease, TurnLeaseLostError, free_quietly, wait_for_lease
from ._sqlalchemy_leases import release_lease, renew_lease, try_lease
from ._sqlalchemy_schema import SCHEMA_VERSION, Tables, now_ms
from ._sqlalchemy_support import UnstorableValueError, bounded, is_outage, make_engine, outages

# The lease object is the stores' shared one; the name stays importable from here.
SQLTurnLease = ExpiringTurnLease

__all__ = [
    "SCHEMA_VERSION",
    "SQLAlchemyStore",
    "SQLTurnLease",
    "TurnLeaseLostError",
    "UnstorableValueError",
]

_ITEMS: TypeAdapter[ThreadItem] = TypeAdapter(ThreadItem)
_ATTACHMENTS: TypeAdapter[Attachment] = TypeAdapter(Attachment)
_THREAD_FIELDS: Final = frozenset(ThreadMetadata.model_fields)
_DIALECTS: Final = ("postgresql", "sqlite")
# How often a busy turn is polled: first, and at the slowest.
_FIRST_POLL: Final = 0.02
_LAST_POLL: Final = 0.25


class SQLAlchemyStore(Store[TContext]):
    """A `Store` in a SQL database through SQLAlchemy's async engine.

    `engine_or_url` is an `AsyncEngine` the application already has (the store
    uses it and leaves it open) or a URL (the store makes an engine, and
    `aclose` disposes of it). Plain `postgresql://` and `sqlite://` URLs get the
    asyncpg and aiosqlite drivers. PostgreSQL is the production target; SQLite
    works for one machine (use a file: a `:memory:` database is one connection).
    MySQL is not supported (the store relies on `UPDATE ... RETURNING`).

    `tenant` maps the request context to an owner key (for example
    `lambda ctx: ctx["user_id"]`); each owner then sees only its own threads and
    attachments. Without it (or when it returns None) everything is shared.

    `create_tables` (default True) creates the tables and indexes on first use and
    upgrades an older layout; pass False when the application's database user may
    not run DDL, and run `await store.create_tables()` at deploy time instead.
    A database whose schema version is newer than this code is refused.

    `acquire_turn` hands out leases (a row per thread with an expiry, renewed by
    the app while a reply runs) that every worker sharing the database respects.

    `timeout` (seconds, 5 by default) bounds every call, waiting for a pooled
    connection included: an unreachable database raises `StoreUnavailableError`
    (503 `store_unavailable`) within it. For engines made from a URL it is also
    the driver's connect and statement timeout. None leaves timeouts to the engine.
    """

    def __init__(
        self,
        engine_or_url: AsyncEngine | str,
        *,
        tenant: Callable[[TContext], str | None] | None = None,
        table_prefix: str = "chatkit_",
        create_tables: bool = True,
        timeout: float | None = 5.0,
        lease_ttl: float = 30.0,
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive seconds or None, not {timeout!r}")
        if lease_ttl <= 0:
            raise ValueError(f"lease_ttl must be positive, not {lease_ttl!r}")
        if not table_prefix.replace("_", "").isalnum():
            raise ValueError(f"table_prefix must be letters, digits and '_', not {table_prefix!r}")
        self.timeout = timeout
        self.lease_ttl = lease_ttl
        self._tenant = tenant
        self._create_tables = create_tables
        self._owns_engine = not isinstance(engine_or_url, AsyncEngine)
        if isinstance(engine_or_url, AsyncEngine):
            self.engine = engine_or_url
        else:
            self.engine = make_engine(engine_or_url, timeout, engine_options or {})
        self.dialect = self.engine.dialect.name
        if self.dialect not in _DIALECTS:
            raise ValueError(
                f"SQLAlchemyStore supports PostgreSQL and SQLite, not {self.dialect!r}"
            )
        self.tables = Tables(table_prefix)
        self._insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        self._now = now_ms(self.dialect)
        self._ready_done = False
        self._ready_lock = anyio.Lock()

    async def aclose(self) -> None:
        """Dispose of the engine made from a URL; an engine passed in is left open."""
        if self._owns_engine:
            await self.engine.dispose()

    # -- plumbing ------------------------------------------------------------------

    def _bounded(self) -> AbstractAsyncContextManager[None]:
        """The call's time bound, and outages reported as `StoreUnavailableError`."""
        return bounded(self.timeout, self.dialect)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction, committed on exit (writes of several statements)."""
        await self._ready()
        async with self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def _autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A connection whose statements each commit on their own.

        For single-statement writes and for reads: it saves the BEGIN and COMMIT
        round trips a transaction costs, a third of a simple call's time.
        """
        await self._ready()
        async with self.engine.connect() as conn:
            yield await conn.execution_options(isolation_level="AUTOCOMMIT")

    async def _ready(self) -> None:
        if self._ready_done:
            return
        async with self._ready_lock:
            if not self._ready_done:
                await self._prepare(create=self._create_tables)
                self._ready_done = True

    async def create_tables(self) -> None:
        """Create (or upgrade) the tables and indexes; a no-op when they are current."""
        async with self._bounded():
            await self._prepare(create=True)
        self._ready_done = True

    async def _prepare(self, *, create: bool) -> None:
        attempt = 1
        while True:
            try:
                await self._prepare_once(create=create)
                return
            except (sa_exc.OperationalError, sa_exc.IntegrityError) as exc:
                # SQLite runs DDL outside transactions: a process creating the tables
                # at the same moment makes a CREATE (or the version row) collide.
                # Checking again once it is done finds everything in place.
                if self.dialect != "sqlite" or attempt == 20 or is_outage(exc, self.dialect):
                    raise
            attempt += 1
            await anyio.sleep(0.05)

    async def _prepare_once(self, *, create: bool) -> None:
        schema = self.tables.schema
        async with self.engine.begin() as conn:
            if create:
                if self.dialect == "postgresql":
                    # Workers starting together would race to CREATE the same tables.
                    await conn.execute(
                        text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                        {"key": f"chatkit-schema:{self.tables.prefix}"},
                    )
                await conn.run_sync(self.tables.metadata.create_all, checkfirst=True)
                row = await conn.execute(select(schema.c.version).where(schema.c.id == 1))
                version = row.scalar_one_or_none()
                if version is None:
                    await conn.execute(schema.insert().values(id=1, version=SCHEMA_VERSION))
                    version = SCHEMA_VERSION
                # Later layouts upgrade here, one version at a time, in this transaction.
            else:
                try:
                    row = await conn.execute(select(schema.c.version).where(schema.c.id == 1))
                except sa_exc.ProgrammingError as exc:
                    raise RuntimeError(
                        f"the table {schema.name} is missing: run `await store.create_tables()` "
                        "or construct the store with create_tables=True"
                    ) from exc
                except sa_exc.OperationalError as exc:
                    if is_outage(exc, self.dialect):
                        raise
                    raise RuntimeError(
                        f"the table {schema.name} is missing: run `await store.create_tables()`"
                    ) from exc
                version = row.scalar_one_or_none() or 0
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"the chatkit tables are at schema version {version}, newer than the "
                f"{SCHEMA_VERSION} this chatkit-asgi understands; upgrade chatkit-asgi"
            )
        if version < SCHEMA_VERSION:
            raise RuntimeError(
                f"the chatkit tables are at schema version {version}, older than "
                f"{SCHEMA_VERSION}: run `await store.create_tables()` to upgrade them"
            )

    def _owner(self, context: TContext) -> str:
        return owner_key(self._tenant, context)

    async def _lock_thread(self, conn: AsyncConnection, owner: str, thread_id: str) -> Row[Any]:
        """Lock the thread's row for this transaction, taking its next item position.

        Every write that touches a thread's items starts here, so writers of one
        thread queue on its row in one order (no deadlocks), and on SQLite the
        transaction takes the write lock before reading anything.
        """
        threads = self.tables.threads
        row = (
            await conn.execute(
                update(threads)
                .where(threads.c.owner == owner, threads.c.id == thread_id)
                .values(item_seq=threads.c.item_seq + 1)
                .returning(threads.c.seq, threads.c.item_seq)
            )
        ).one_or_none()
        if row is None:
            raise NotFoundError(f"thread {thread_id} not found")
        return row

    @staticmethod
    async def _one(conn: AsyncConnection, query: Any, missing: str) -> Any:
        """The one value `query` selects, or `NotFoundError(missing)`."""
        value = (await conn.execute(query)).scalar_one_or_none()
        if value is None:
            raise NotFoundError(missing)
        return value

    async def _thread_seq(self, conn: AsyncConnection, owner: str, thread_id: str) -> int:
        threads = self.tables.threads
        query = select(threads.c.seq).where(threads.c.owner == owner, threads.c.id == thread_id)
        return int(await self._one(conn, query, f"thread {thread_id} not found"))

    async def _position(
        self, conn: AsyncConnection, thread_seq: int, thread_id: str, item_id: str
    ) -> int:
        items = self.tables.items
        query = select(items.c.position).where(
            items.c.thread_seq == thread_seq, items.c.id == item_id
        )
        return int(await self._one(conn, query, f"item {item_id} not found in thread {thread_id}"))

    # -- health --------------------------------------------------------------------

    @outages
    async def ping(self) -> None:
        """One round trip to the database (the app's `GET {mount}/healthz`)."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    # -- threads -------------------------------------------------------------------

    @outages
    async def load_thread(self, thread_id: str, context: TContext) -> ThreadMetadata:
        """The thread's metadata, or `NotFoundError`."""
        threads = self.tables.threads
        query = select(threads.c.data).where(
            threads.c.owner == self._owner(context), threads.c.id == thread_id
        )
        async with self._autocommit() as conn:
            data = await self._one(conn, query, f"thread {thread_id} not found")
        return ThreadMetadata.model_validate(data)

    @outages
    async def save_thread(self, thread: ThreadMetadata, context: TContext) -> None:
        """Insert or update a thread's metadata; an update keeps its items and position."""
        threads = self.tables.threads
        data = thread.model_dump(mode="json", include=set(_THREAD_FIELDS))
        created = timestamp_key(thread.created_at)
        statement = self._insert(threads).values(
            owner=self._owner(context), id=thread.id, created_at=created, data=data
        )
        statement = statement.on_conflict_do_update(
            index_elements=[threads.c.owner, threads.c.id],
            set_={"created_at": statement.excluded.created_at, "data": statement.excluded.data},
        )
        async with self._autocommit() as conn:
            await conn.execute(statement)

    @outages
    async def load_threads(
        self, limit: int, after: str | None, order: str, context: TContext
    ) -> Page[ThreadMetadata]:
        """A page of threads by creation time, then by insertion for equal times."""
        descending = is_descending(order)
        threads = self.tables.threads
        owner = self._owner(context)
        key = tuple_(threads.c.created_at, threads.c.seq)
        query = select(threads.c.id, threads.c.data).where(threads.c.owner == owner)
        if descending:
            query = query.order_by(threads.c.created_at.desc(), threads.c.seq.desc())
        else:
            query = query.order_by(threads.c.created_at, threads.c.seq)
        async with self._autocommit() as conn:
            if after is not None:
                cursor = (
                    await conn.execute(
                        select(threads.c.created_at, threads.c.seq).where(
                            threads.c.owner == owner, threads.c.id == after
                        )
                    )
                ).one_or_none()
                if cursor is None:
                    raise NotFoundError(f"thread {after} not found")
                past = tuple_(cursor.created_at, cursor.seq)
                query = query.where(key < past if descending else key > past)
            rows = (await conn.execute(query.limit(window_size(limit)))).all()
        return make_page([(row.id, row.data) for row in rows], limit, ThreadMetadata.model_validate)

    @outages
    async def delete_thread(self, thread_id: str, context: TContext) -> None:
        """Delete the thread, its items and the attachment metadata that points at it,
        in one transaction."""
        owner = self._owner(context)
        tables = self.tables
        threads, items, attachments = tables.threads, tables.items, tables.attachments
        async with self._transaction() as conn:
            seq = (await self._lock_thread(conn, owner, thread_id)).seq
            await conn.execute(delete(items).where(items.c.thread_seq == seq))
            await conn.execute(
                delete(attachments).where(
                    attachments.c.owner == owner, attachments.c.thread_id == thread_id
                )
            )
            await conn.execute(delete(threads).where(threads.c.seq == seq))

    # -- items ---------------------------------------------------------------------

    @outages
    async def load_thread_items(
        self, thread_id: str, after: str | None, limit: int, order: str, context: TContext
    ) -> Page[ThreadItem]:
        """A page of the thread's items in insertion order (`asc`) or reverse (`desc`)."""
        descending = is_descending(order)
        items = self.tables.items
        async with self._autocommit() as conn:
            seq = await self._thread_seq(conn, self._owner(context), thread_id)
            query = select(items.c.id, items.c.data).where(items.c.thread_seq == seq)
            if after is not None:
                position = await self._position(conn, seq, thread_id, after)
                query = query.where(
                    items.c.position < position if descending else items.c.position > position
                )
            query = query.order_by(items.c.position.desc() if descending else items.c.position)
            rows = (await conn.execute(query.limit(window_size(limit)))).all()
        return make_page([(row.id, row.data) for row in rows], limit, _ITEMS.validate_python)

    @outages
    async def add_thread_item(self, thread_id: str, item: ThreadItem, context: TContext) -> None:
        """Append an item; an existing id is updated in place, keeping its position."""
        await self._upsert_item(thread_id, item, context)

    @outages
    async def save_item(self, thread_id: str, item: ThreadItem, context: TContext) -> None:
        """Insert or update an item by id, keeping its position when it exists."""
        await self._upsert_item(thread_id, item, context)

    async def _upsert_item(self, thread_id: str, item: ThreadItem, context: TContext) -> None:
        items = self.tables.items
        data = item.model_dump(mode="json")
        async with self._transaction() as conn:
            thread = await self._lock_thread(conn, self._owner(context), thread_id)
            statement = self._insert(items).values(
                thread_seq=thread.seq, position=thread.item_seq, id=item.id, data=data
            )
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[items.c.thread_seq, items.c.id],
                    set_={"data": statement.excluded.data},
                )
            )

    @outages
    async def load_item(self, thread_id: str, item_id: str, context: TContext) -> ThreadItem:
        """One item of the thread, or `NotFoundError`."""
        threads, items = self.tables.threads, self.tables.items
        query = (
            select(items.c.data)
            .join_from(threads, items, items.c.thread_seq == threads.c.seq)
            .where(
                threads.c.owner == self._owner(context),
                threads.c.id == thread_id,
                items.c.id == item_id,
            )
        )
        async with self._autocommit() as conn:
            data = await self._one(conn, query, f"item {item_id} not found in thread {thread_id}")
        return _ITEMS.validate_python(data)

    @outages
    async def delete_thread_item(self, thread_id: str, item_id: str, context: TContext) -> None:
        """Delete one item (no error if it or its thread is already gone)."""
        threads, items = self.tables.threads, self.tables.items
        thread_seq = (
            select(threads.c.seq)
            .where(threads.c.owner == self._owner(context), threads.c.id == thread_id)
            .scalar_subquery()
        )
        async with self._autocommit() as conn:
            await conn.execute(
                delete(items).where(items.c.thread_seq == thread_seq, items.c.id == item_id)
            )

    @outages
    async def delete_thread_items_after(
        self, thread_id: str, item_id: str, context: TContext
    ) -> None:
        """Delete every item added after `item_id`, in one transaction."""
        items = self.tables.items
        async with self._transaction() as conn:
            seq = (await self._lock_thread(conn, self._owner(context), thread_id)).seq
            position = await self._position(conn, seq, thread_id, item_id)
            await conn.execute(
                delete(items).where(items.c.thread_seq == seq, items.c.position > position)
            )

    # -- attachments ---------------------------------------------------------------

    @outages
    async def save_attachment(self, attachment: Attachment, context: TContext) -> None:
        """Insert or update attachment metadata."""
        attachments = self.tables.attachments
        statement = self._insert(attachments).values(
            owner=self._owner(context),
            id=attachment.id,
            thread_id=attachment.thread_id,
            data=attachment.model_dump(mode="json"),
        )
        statement = statement.on_conflict_do_update(
            index_elements=[attachments.c.owner, attachments.c.id],
            set_={"thread_id": statement.excluded.thread_id, "data": statement.excluded.data},
        )
        async with self._autocommit() as conn:
            await conn.execute(statement)

    @outages
    async def load_attachment(self, attachment_id: str, context: TContext) -> Attachment:
        """Attachment metadata, or `NotFoundError`."""
        attachments = self.tables.attachments
        query = select(attachments.c.data).where(
            attachments.c.owner == self._owner(context), attachments.c.id == attachment_id
        )
        async with self._autocommit() as conn:
            data = await self._one(conn, query, f"attachment {attachment_id} not found")
        return _ATTACHMENTS.validate_python(data)

    @outages
    async def delete_attachment(self, attachment_id: str, context: TContext) -> None:
        """Delete attachment metadata (no error if it is already gone)."""
        attachments = self.tables.attachments
        async with self._autocommit() as conn:
            await conn.execute(
                delete(attachments).where(
                    attachments.c.owner == self._owner(context), attachments.c.id == attachment_id
                )
            )

    # -- turn leases ---------------------------------------------------------------

    async def acquire_turn(
        self, thread_id: str, context: TContext, wait: float
    ) -> ExpiringTurnLease:
        """The lease on the thread's turn, shared by every worker using this database.

        A lease is free when nobody holds it or its holder let it expire (a crashed
        worker); expiry is judged by the database's clock. Waits up to `wait`
        seconds, polling, then raises `TurnBusyError`. `timeout` bounds each
        attempt, so `wait` may be longer than it.
        """
        return await wait_for_lease(
            self,
            self._owner(context),
            thread_id,
            wait,
            first_poll=_FIRST_POLL,
            last_poll=_LAST_POLL,
        )

    @outages
    async def _try_lease(self, owner: str, thread_id: str, holder: str) -> bool:
        try:
            return await try_lease(self, owner, thread_id, holder)
        except BaseException:
            # Cancelled (or failed) mid-flight: the database may have granted it anyway.
            await free_quietly(self, owner, thread_id, holder)
            raise

    @outages
    async def _renew_lease(self, owner: str, thread_id: str, holder: str) -> bool:
        return await renew_lease(self, owner, thread_id, holder)

    @outages
    async def _release_lease(self, owner: str, thread_id: str, holder: str) -> None:
        await release_lease(self, owner, thread_id, holder)
