"""`MongoStore`: threads, items, attachment metadata and turn leases in MongoDB.

For several app workers over one MongoDB replica set (or Atlas). Needs the extra
`chatkit-asgi[mongodb]`; works with PyMongo's native async API and with motor::

    from pymongo import AsyncMongoClient
    from chatkit_asgi.stores.mongodb import MongoStore

    client = AsyncMongoClient(os.environ["MONGODB_URL"])
    store = MongoStore(client["chatkit"], tenant=lambda ctx: ctx["user_id"])

The documents, in collections named `<prefix>threads`, `<prefix>items`,
`<prefix>attachments`, `<prefix>turns` and `<prefix>counters` (prefix "chatkit_"):

- thread: `owner`, `id`, `seq` (insertion order, from a counter), `created_at`
  (microseconds since the epoch, UTC: BSON dates only keep milliseconds), `item_seq`
  (the thread's item counter) and `data`, the metadata as `model_dump(mode="json")`.
- item: `owner`, `thread_id`, `seq`, `id`, `type`, `created_at` and `data`. `seq`
  comes from the thread's counter, incremented atomically, so concurrent appends
  get distinct, increasing positions whatever the clocks say. Numbers are never
  reused: deleting an item (or re-adding an existing id) leaves one unused, which
  never shows in the order or the pages.
- attachment: `owner`, `id`, `thread_id` and `data`.
- turn lease: `owner`, `thread_id`, `holder` and `expires_at` (server time); a
  released lease is marked expired, and a TTL index deletes expired ones.

`owner` is `tenant(context)` (or "" without a tenant) and is part of every filter
and every unique index, so another tenant's ids behave exactly like missing ones.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timezone
from typing import Any, Final, ParamSpec, TypeVar

import anyio
from pydantic import TypeAdapter

try:
    import bson
    import pymongo
    from bson.errors import InvalidDocument
    from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, ReturnDocument
    from pymongo.database import Database as _SyncDatabase
    from pymongo.errors import (
        ConnectionFailure,
        DocumentTooLarge,
        DuplicateKeyError,
        OperationFailure,
        PyMongoError,
        ServerSelectionTimeoutError,
    )
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "MongoStore needs PyMongo 4.9 or later: pip install 'chatkit-asgi[mongodb]'"
    ) from exc

from ..store import NotFoundError, Store, StoreUnavailableError
from ..types import Attachment, Page, ThreadItem, ThreadMetadata
from ._common import (
    TContext,
    is_descending,
    make_page,
    owner_key,
    timestamp_key,
    window_size,
)
from ._leases import ExpiringTurnLease, TurnLeaseLostError, free_quietly, wait_for_lease

__all__ = [
    "MAX_DOCUMENT_SIZE",
    "DocumentTooLargeError",
    "MongoStore",
    "MongoTurnLease",
    "TurnLeaseLostError",
    "UnstorableDocumentError",
]

R = TypeVar("R")
P = ParamSpec("P")

MAX_DOCUMENT_SIZE: Final = 16 * 1024 * 1024
"""MongoDB's limit on the BSON size of one document (16 MiB)."""

# Server error codes for documents over the limit (insert, and after an update).
_TOO_LARGE_CODES: Final = frozenset({10334, 17419, 17420})

_ITEMS: TypeAdapter[ThreadItem] = TypeAdapter(ThreadItem)
_ATTACHMENTS: TypeAdapter[Attachment] = TypeAdapter(Attachment)
# `save_thread` is often handed a `Thread` (metadata plus a page of items): only the
# metadata goes into the thread document.
_THREAD_FIELDS: Final = frozenset(ThreadMetadata.model_fields)

# Bounded retries: a request should fail in seconds, not in the two minutes
# `ClientSession.with_transaction` would keep retrying for.
_TRANSACTION_ATTEMPTS: Final = 5
_COMMIT_ATTEMPTS: Final = 3
_IDEMPOTENT_ATTEMPTS: Final = 3
_BACKOFF_SECONDS: Final = 0.05
# How long work that must outlive a cancellation (freeing a lease) may take.
_CLEANUP_SECONDS: Final = 5.0
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _outages(method: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Bound the call by the store's `timeout` and report an unreachable MongoDB as
    `StoreUnavailableError` (the app answers 503).

    The method's first argument has an `_operation_timeout()` context manager.
    """

    @functools.wraps(method)
    async def bounded(*args: P.args, **kwargs: P.kwargs) -> R:
        with args[0]._operation_timeout():  # type: ignore[attr-defined]
            return await method(*args, **kwargs)

    return _translated(bounded)


def _translated(
    method: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Report an unreachable MongoDB as `StoreUnavailableError`, with no time bound
    of its own (for methods that bound each step themselves)."""

    @functools.wraps(method)
    async def translated(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except PyMongoError as exc:
            if _is_outage(exc):
                raise StoreUnavailableError(f"MongoDB is unavailable: {exc}") from exc
            raise

    return translated


def _client_timeout(seconds: float | None) -> contextlib.AbstractContextManager[Any]:
    """PyMongo's client-side operation timeout (CSOT) for the block, or nothing."""
    if seconds is None:
        return contextlib.nullcontext()
    return pymongo.timeout(seconds)


class UnstorableDocumentError(ValueError):
    """MongoDB cannot store this value (an integer beyond 64 bits, a NUL in a key...).

    Nothing was written. The original driver error is the `__cause__`.
    """


class DocumentTooLargeError(UnstorableDocumentError):
    """The document would exceed MongoDB's 16 MiB limit; nothing was written.

    Keep large content (files, images, long tool outputs) outside the thread, in an
    attachment store for example, and store a reference to it instead.
    """


# The lease object is the stores' shared one; the name stays importable from here.
MongoTurnLease = ExpiringTurnLease


class MongoStore(Store[TContext]):
    """A `Store` in a MongoDB database, shared safely by any number of app workers.

    `database` is an async database handle: `pymongo.AsyncMongoClient(uri)[name]`
    (PyMongo's native async API) or `motor.motor_asyncio.AsyncIOMotorClient(uri)[name]`.
    The store does not own that client; use `MongoStore.from_uri` for one that does.

    `tenant` maps the request context to an owner key (for example
    `lambda ctx: ctx["user_id"]`); each owner then sees only its own threads and
    attachments, and another owner's ids behave as if they did not exist. Without
    it (or when it returns None) everything lives in one shared space.

    Indexes covering every query are created on first use (or call
    `await store.ensure_indexes()` at deploy time and pass `auto_index=False` when
    the application's database user may not create indexes).

    `acquire_turn` hands out leases that expire `lease_ttl` seconds after their last
    renewal, so two workers never run two replies on one thread at once.

    `transactions` says whether `delete_thread` and `delete_thread_items_after` run
    in a transaction: None (the default) asks the server once and uses them on
    replica sets and sharded clusters; without them the deletes run in an order
    that a retry can always finish.

    Single-document writes and reads rely on the driver's retryable writes and
    reads; multi-document deletes and transactions are retried here a few times on
    errors MongoDB labels transient. What still fails for want of a server (no
    primary, timeouts, network errors) raises `StoreUnavailableError`, which the
    app answers with 503. A value MongoDB cannot store raises
    `DocumentTooLargeError` or `UnstorableDocumentError` before anything is written.

    `timeout` (seconds, 5 by default) bounds every store call with PyMongo's
    client-side operation timeout (`pymongo.timeout`), whatever the client's
    `serverSelectionTimeoutMS` (30 s by default): an unreachable MongoDB raises
    `StoreUnavailableError` within it. `acquire_turn` applies it to each attempt,
    so its `wait` may be longer. None leaves timeouts to the client (`timeoutMS`).
    """

    def __init__(
        self,
        database: Any,  # pymongo AsyncDatabase or motor AsyncIOMotorDatabase: no shared type
        *,
        tenant: Callable[[TContext], str | None] | None = None,
        collection_prefix: str = "chatkit_",
        lease_ttl: float = 30.0,
        transactions: bool | None = None,
        auto_index: bool = True,
        timeout: float | None = 5.0,
    ) -> None:
        if isinstance(database, _SyncDatabase):
            raise TypeError(
                "MongoStore needs an async database handle: "
                "pymongo.AsyncMongoClient(uri)[name] or motor's AsyncIOMotorClient(uri)[name], "
                "not a pymongo.MongoClient database"
            )
        if lease_ttl <= 0:
            raise ValueError(f"lease_ttl must be positive, not {lease_ttl!r}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive seconds or None, not {timeout!r}")
        self.database = database
        self.timeout = timeout
        self.lease_ttl = lease_ttl
        self._tenant = tenant
        self._threads: Any = database[f"{collection_prefix}threads"]
        self._items: Any = database[f"{collection_prefix}items"]
        self._attachments: Any = database[f"{collection_prefix}attachments"]
        self._turns: Any = database[f"{collection_prefix}turns"]
        self._counters: Any = database[f"{collection_prefix}counters"]
        self._auto_index = auto_index
        self._indexed = False
        self._index_lock = anyio.Lock()
        self._transactions = transactions
        self._owned_client: Any = None

    @classmethod
    def from_uri(
        cls,
        uri: str,
        database: str | None = None,
        **options: Any,
    ) -> MongoStore[TContext]:
        """A store over its own `AsyncMongoClient`, closed by `aclose`.

        `database` defaults to the one named in the URI (`mongodb://host/chatkit`),
        else "chatkit". Other keyword arguments go to `MongoStore`.
        """
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
        handle = client[database] if database else client.get_default_database("chatkit")
        store: MongoStore[TContext] = cls(handle, **options)
        store._owned_client = client
        return store

    async def aclose(self) -> None:
        """Close the client made by `from_uri`; a handle passed in is left open."""
        client, self._owned_client = self._owned_client, None
        if client is not None:
            await _maybe_await(client.close())

    def _operation_timeout(self) -> contextlib.AbstractContextManager[Any]:
        return _client_timeout(self.timeout)

    # -- health ------------------------------------------------------------
    @_outages
    async def ping(self) -> None:
        """One round trip to the server (the app's `GET {mount}/healthz`)."""
        await self.database.command("ping")

    # -- setup ---------------------------------------------------------------------

    @_outages
    async def ensure_indexes(self) -> None:
        """Create the indexes every query of the store uses (a no-op when they exist)."""
        await self._threads.create_indexes(
            [
                IndexModel([("owner", ASCENDING), ("id", ASCENDING)], name="owner_id", unique=True),
                IndexModel(
                    [("owner", ASCENDING), ("created_at", ASCENDING), ("seq", ASCENDING)],
                    name="owner_created_at_seq",
                ),
            ]
        )
        await self._items.create_indexes(
            [
                IndexModel(
                    [("owner", ASCENDING), ("thread_id", ASCENDING), ("seq", ASCENDING)],
                    name="owner_thread_id_seq",
                    unique=True,
                ),
                IndexModel(
                    [("owner", ASCENDING), ("thread_id", ASCENDING), ("id", ASCENDING)],
                    name="owner_thread_id_id",
                    unique=True,
                ),
            ]
        )
        await self._attachments.create_indexes(
            [
                IndexModel([("owner", ASCENDING), ("id", ASCENDING)], name="owner_id", unique=True),
                IndexModel(
                    [("owner", ASCENDING), ("thread_id", ASCENDING)], name="owner_thread_id"
                ),
            ]
        )
        await self._turns.create_indexes(
            [
                IndexModel(
                    [("owner", ASCENDING), ("thread_id", ASCENDING)],
                    name="owner_thread_id",
                    unique=True,
                ),
                # Lets the server delete leases of crashed workers eventually; expiry
                # itself is checked on every acquire, not left to this index.
                IndexModel([("expires_at", ASCENDING)], name="expires_at", expireAfterSeconds=0),
            ]
        )
        self._indexed = True

    async def _ready(self) -> None:
        if self._indexed or not self._auto_index:
            return
        async with self._index_lock:
            if not self._indexed:
                await self.ensure_indexes()

    async def _uses_transactions(self) -> bool:
        if self._transactions is None:
            hello = await self.database.command("hello")
            # Replica set members and mongos support multi-document transactions.
            self._transactions = bool(
                hello.get("logicalSessionTimeoutMinutes") is not None
                and (hello.get("setName") is not None or hello.get("msg") == "isdbgrid")
            )
        return self._transactions

    def _owner(self, context: TContext) -> str:
        return owner_key(self._tenant, context)

    # -- threads -------------------------------------------------------------------

    @_outages
    async def load_thread(self, thread_id: str, context: TContext) -> ThreadMetadata:
        """The thread's metadata, or `NotFoundError`."""
        owner = self._owner(context)
        await self._ready()
        doc = await self._threads.find_one({"owner": owner, "id": thread_id}, {"data": 1})
        if doc is None:
            raise NotFoundError(f"thread {thread_id} not found")
        return _decode_thread(doc["data"])

    @_outages
    async def save_thread(self, thread: ThreadMetadata, context: TContext) -> None:
        """Insert or update a thread's metadata; an update keeps its items and position."""
        owner = self._owner(context)
        data = thread.model_dump(mode="json", include=set(_THREAD_FIELDS))
        created = timestamp_key(thread.created_at)
        key = {"owner": owner, "id": thread.id}
        new = {**key, "seq": 0, "created_at": created, "item_seq": 0, "data": data}
        _check_document(new, f"thread {thread.id}")
        await self._ready()
        with _refusals(f"thread {thread.id}"):
            while True:
                updated = await self._threads.update_one(
                    key, [{"$set": {"created_at": created, "data": {"$literal": data}}}]
                )
                if updated.matched_count:
                    return
                new["seq"] = await self._next("threads")
                try:
                    await self._threads.insert_one(dict(new))
                except DuplicateKeyError:
                    continue  # created concurrently: update that one instead
                return

    @_outages
    async def load_threads(
        self,
        limit: int,
        after: str | None,
        order: str,
        context: TContext,
    ) -> Page[ThreadMetadata]:
        """A page of threads by creation time, then by insertion for equal times."""
        descending = is_descending(order)
        owner = self._owner(context)
        size = window_size(limit)
        direction = DESCENDING if descending else ASCENDING
        sort = [("created_at", direction), ("seq", direction)]
        await self._ready()
        if after is None:
            docs = await _find(self._threads, {"owner": owner}, sort, size)
        else:
            cursor = await self._threads.find_one(
                {"owner": owner, "id": after}, {"created_at": 1, "seq": 1}
            )
            if cursor is None:
                raise NotFoundError(f"thread {after} not found")
            past = "$lt" if descending else "$gt"
            # Two range scans of one index rather than an $or: first the threads that
            # share the cursor's timestamp, then those past it.
            docs = await _find(
                self._threads,
                {"owner": owner, "created_at": cursor["created_at"], "seq": {past: cursor["seq"]}},
                sort,
                size,
            )
            if len(docs) < size:
                docs += await _find(
                    self._threads,
                    {"owner": owner, "created_at": {past: cursor["created_at"]}},
                    sort,
                    size - len(docs),
                )
        return make_page([(doc["id"], doc["data"]) for doc in docs], limit, _decode_thread)

    @_outages
    async def delete_thread(self, thread_id: str, context: TContext) -> None:
        """Delete the thread, its items and the attachment metadata that points at it.

        One transaction where the server supports them. Otherwise the items and
        attachments go first and the thread last, so a failure part-way leaves the
        thread in place and a retry finishes the job.
        """
        owner = self._owner(context)
        children = {"owner": owner, "thread_id": thread_id}

        async def delete(session: Any) -> None:
            await self._items.delete_many(children, session=session)
            await self._attachments.delete_many(children, session=session)
            deleted = await self._threads.delete_one(
                {"owner": owner, "id": thread_id}, session=session
            )
            if deleted.deleted_count == 0:
                raise NotFoundError(f"thread {thread_id} not found")

        await self._ready()
        await self._atomically(delete)
        # An append that raced the delete removes its own item when it finds the
        # thread gone (see `add_thread_item`); this sweep catches one that checked
        # just before the thread went.
        await _retry_idempotent(lambda: self._items.delete_many(children))

    # -- items ---------------------------------------------------------------------

    @_outages
    async def load_thread_items(
        self,
        thread_id: str,
        after: str | None,
        limit: int,
        order: str,
        context: TContext,
    ) -> Page[ThreadItem]:
        """A page of the thread's items in insertion order (`asc`) or reverse (`desc`)."""
        descending = is_descending(order)
        owner = self._owner(context)
        size = window_size(limit)
        sort = [("seq", DESCENDING if descending else ASCENDING)]
        query: dict[str, Any] = {"owner": owner, "thread_id": thread_id}
        await self._ready()
        if after is None:
            if await self._threads.find_one({"owner": owner, "id": thread_id}, {"_id": 1}) is None:
                raise NotFoundError(f"thread {thread_id} not found")
        else:
            # The cursor item exists only while its thread does.
            cursor = await self._items.find_one({**query, "id": after}, {"seq": 1})
            if cursor is None:
                raise NotFoundError(f"item {after} not found in thread {thread_id}")
            query["seq"] = {"$lt" if descending else "$gt": cursor["seq"]}
        docs = await _find(self._items, query, sort, size)
        return make_page([(doc["id"], doc["data"]) for doc in docs], limit, _decode_item)

    @_outages
    async def add_thread_item(self, thread_id: str, item: ThreadItem, context: TContext) -> None:
        """Append an item; an existing id is updated in place, keeping its position."""
        await self._upsert_item(thread_id, item, context, append_first=True)

    @_outages
    async def save_item(self, thread_id: str, item: ThreadItem, context: TContext) -> None:
        """Insert or update an item by id, keeping its position when it exists."""
        await self._upsert_item(thread_id, item, context, append_first=False)

    async def _upsert_item(
        self, thread_id: str, item: ThreadItem, context: TContext, *, append_first: bool
    ) -> None:
        owner = self._owner(context)
        key = {"owner": owner, "thread_id": thread_id, "id": item.id}
        fields = {"type": item.type, "created_at": timestamp_key(item.created_at)}
        data = item.model_dump(mode="json")
        _check_document({**key, "seq": 0, **fields, "data": data}, f"item {item.id}")
        await self._ready()
        with _refusals(f"item {item.id}"):
            # Appends try the insert first and saves the update: each usually needs
            # one of the two. Either way an existing item keeps its `seq`.
            if not append_first and await self._update_item(key, fields, data):
                return
            while True:
                if await self._append_item(key, fields, data):
                    return
                if await self._update_item(key, fields, data):
                    return

    async def _update_item(
        self, key: Mapping[str, Any], fields: Mapping[str, Any], data: Any
    ) -> bool:
        updated = await self._items.update_one(
            key, [{"$set": {**fields, "data": {"$literal": data}}}]
        )
        return bool(updated.matched_count)

    async def _append_item(
        self, key: Mapping[str, Any], fields: Mapping[str, Any], data: Any
    ) -> bool:
        """Insert the item at the end of its thread; False if its id is already there."""
        thread_id = key["thread_id"]
        thread = await self._threads.find_one_and_update(
            {"owner": key["owner"], "id": thread_id},
            {"$inc": {"item_seq": 1}},
            projection={"item_seq": 1},
            return_document=ReturnDocument.AFTER,
        )
        if thread is None:
            raise NotFoundError(f"thread {thread_id} not found")
        try:
            inserted = await self._items.insert_one(
                {**key, "seq": thread["item_seq"], **fields, "data": data}
            )
        except DuplicateKeyError:
            return False
        # A concurrent `delete_thread` may have removed the thread between the
        # increment and the insert: then take the item back rather than leave it.
        if await self._threads.find_one({"_id": thread["_id"]}, {"_id": 1}) is None:
            await self._items.delete_one({"_id": inserted.inserted_id})
            raise NotFoundError(f"thread {thread_id} not found")
        return True

    @_outages
    async def load_item(self, thread_id: str, item_id: str, context: TContext) -> ThreadItem:
        """One item of the thread, or `NotFoundError`."""
        owner = self._owner(context)
        await self._ready()
        doc = await self._items.find_one(
            {"owner": owner, "thread_id": thread_id, "id": item_id}, {"data": 1}
        )
        if doc is None:
            raise NotFoundError(f"item {item_id} not found in thread {thread_id}")
        return _decode_item(doc["data"])

    @_outages
    async def delete_thread_item(self, thread_id: str, item_id: str, context: TContext) -> None:
        """Delete one item (no error if it or its thread is already gone)."""
        owner = self._owner(context)
        await self._ready()
        await self._items.delete_one({"owner": owner, "thread_id": thread_id, "id": item_id})

    @_outages
    async def delete_thread_items_after(
        self, thread_id: str, item_id: str, context: TContext
    ) -> None:
        """Delete every item added after `item_id`, atomically where transactions exist."""
        query: dict[str, Any] = {"owner": self._owner(context), "thread_id": thread_id}
        await self._ready()
        cursor = await self._items.find_one({**query, "id": item_id}, {"seq": 1})
        if cursor is None:
            raise NotFoundError(f"item {item_id} not found in thread {thread_id}")

        async def delete(session: Any) -> None:
            await self._items.delete_many({**query, "seq": {"$gt": cursor["seq"]}}, session=session)

        await self._atomically(delete)

    # -- attachments ---------------------------------------------------------------

    @_outages
    async def save_attachment(self, attachment: Attachment, context: TContext) -> None:
        """Insert or update attachment metadata."""
        key = {"owner": self._owner(context), "id": attachment.id}
        data = attachment.model_dump(mode="json")
        fields = {"thread_id": {"$literal": attachment.thread_id}, "data": {"$literal": data}}
        _check_document(
            {**key, "thread_id": attachment.thread_id, "data": data},
            f"attachment {attachment.id}",
        )
        await self._ready()
        with _refusals(f"attachment {attachment.id}"):
            try:
                await self._attachments.update_one(key, [{"$set": fields}], upsert=True)
            except DuplicateKeyError:
                # Two upserts raced to insert it; the other won, so this one updates.
                await self._attachments.update_one(key, [{"$set": fields}], upsert=True)

    @_outages
    async def load_attachment(self, attachment_id: str, context: TContext) -> Attachment:
        """Attachment metadata, or `NotFoundError`."""
        owner = self._owner(context)
        await self._ready()
        doc = await self._attachments.find_one({"owner": owner, "id": attachment_id}, {"data": 1})
        if doc is None:
            raise NotFoundError(f"attachment {attachment_id} not found")
        return _ATTACHMENTS.validate_python(doc["data"])

    @_outages
    async def delete_attachment(self, attachment_id: str, context: TContext) -> None:
        """Delete attachment metadata (no error if it is already gone)."""
        owner = self._owner(context)
        await self._ready()
        await self._attachments.delete_one({"owner": owner, "id": attachment_id})

    # -- turn leases ---------------------------------------------------------------

    @_translated
    async def acquire_turn(
        self, thread_id: str, context: TContext, wait: float
    ) -> ExpiringTurnLease:
        """The lease on the thread's turn, shared by every worker using this database.

        A lease is free when nobody holds it or its holder let it expire (a crashed
        worker); expiry is judged by the server's clock, so workers' clocks may
        differ. Waits up to `wait` seconds, polling, then raises `TurnBusyError`.
        """
        with self._operation_timeout():
            await self._ready()
        return await wait_for_lease(
            self,
            self._owner(context),
            thread_id,
            wait,
            first_poll=_BACKOFF_SECONDS / 2,
            last_poll=0.5,
        )

    # Every lease operation is one update of the document found by the unique
    # (owner, thread_id) key; what it changes depends on the holder, in a pipeline.
    # Times compare as milliseconds: some MongoDB-compatible servers compare a
    # stored date with $$NOW wrongly.

    @_outages
    async def _try_lease(self, owner: str, thread_id: str, holder: str) -> bool:
        expires = {"$ifNull": [{"$toLong": "$expires_at"}, 0]}
        # Free when nobody holds it, its holder let it expire or released it, or it
        # is already ours (an earlier attempt whose answer was lost).
        free = {"$or": [{"$lte": [expires, {"$toLong": "$$NOW"}]}, _is_holder(holder)]}
        take = {
            "holder": {"$cond": [free, {"$literal": holder}, "$holder"]},
            "expires_at": {"$cond": [free, self._expiry(), "$expires_at"]},
        }
        while True:
            try:
                lease = await self._turns.find_one_and_update(
                    {"owner": owner, "thread_id": thread_id},
                    [{"$set": take}],
                    projection={"holder": 1},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                continue  # another worker created the lease document first: look again
            except ServerSelectionTimeoutError:
                raise  # never sent: nothing to undo
            except BaseException:
                # Cancelled (or failed) mid-flight: the server may have granted it anyway.
                await free_quietly(self, owner, thread_id, holder)
                raise
            # Some MongoDB-compatible servers answer an upsert that raced another with
            # no document: ask again (an attempt that did win is still ours).
            if lease is not None:
                return bool(lease.get("holder") == holder)

    @_outages
    async def _renew_lease(self, owner: str, thread_id: str, holder: str) -> bool:
        mine = _is_holder(holder)
        lease = await self._turns.find_one_and_update(
            {"owner": owner, "thread_id": thread_id},
            [{"$set": {"expires_at": {"$cond": [mine, self._expiry(), "$expires_at"]}}}],
            projection={"holder": 1},
            return_document=ReturnDocument.AFTER,
        )
        return lease is not None and lease.get("holder") == holder

    @_outages
    async def _release_lease(self, owner: str, thread_id: str, holder: str) -> None:
        # Expired rather than deleted: a delete could not be made conditional on the
        # holder without a filter outside the unique key (the TTL index removes it).
        mine = _is_holder(holder)
        await self._turns.update_one(
            {"owner": owner, "thread_id": thread_id},
            [
                {
                    "$set": {
                        "holder": {"$cond": [mine, None, "$holder"]},
                        "expires_at": {"$cond": [mine, _EPOCH, "$expires_at"]},
                    }
                }
            ],
        )

    def _expiry(self) -> dict[str, Any]:
        """An expression for now plus `lease_ttl`, on the server's clock."""
        return {"$add": ["$$NOW", round(self.lease_ttl * 1000)]}

    # -- helpers -------------------------------------------------------------------

    async def _next(self, counter: str) -> int:
        """The next value of a named counter (1, 2, ...)."""
        while True:
            try:
                doc = await self._counters.find_one_and_update(
                    {"_id": counter},
                    {"$inc": {"n": 1}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                continue  # the first increments raced to create the counter: it exists now
            # Some MongoDB-compatible servers answer an upsert that raced another with
            # no document: that increment is lost to us, so take the next one.
            if doc is not None:
                return int(doc["n"])

    async def _atomically(self, operations: Callable[[Any], Awaitable[None]]) -> None:
        """Run `operations(session)` in one transaction, or in order without a session.

        Transactions are retried a few times on `TransientTransactionError` (a write
        conflict, a primary stepping down), and their commit on
        `UnknownTransactionCommitResult`. Without transactions, `operations` must be
        idempotent: it is retried on transient errors.
        """
        if not await self._uses_transactions():
            await _retry_idempotent(lambda: operations(None))
            return
        client = self.database.client
        for attempt in range(1, _TRANSACTION_ATTEMPTS + 1):
            try:
                async with _session(client) as session:
                    await _maybe_await(session.start_transaction())
                    try:
                        await operations(session)
                    except BaseException:
                        if session.in_transaction:
                            with anyio.move_on_after(_CLEANUP_SECONDS, shield=True):
                                await session.abort_transaction()
                        raise
                    await _commit(session)
                return
            except PyMongoError as exc:
                if attempt == _TRANSACTION_ATTEMPTS or not exc.has_error_label(
                    "TransientTransactionError"
                ):
                    raise
            await anyio.sleep(_BACKOFF_SECONDS * 2**attempt)


@asynccontextmanager
async def _session(client: Any) -> AsyncIterator[Any]:
    # PyMongo's `start_session` returns the session, motor's is a coroutine.
    session = await _maybe_await(client.start_session())
    try:
        yield session
    finally:
        with anyio.move_on_after(_CLEANUP_SECONDS, shield=True):
            await session.end_session()


async def _commit(session: Any) -> None:
    for attempt in range(1, _COMMIT_ATTEMPTS + 1):
        try:
            await session.commit_transaction()
            return
        except PyMongoError as exc:
            if attempt == _COMMIT_ATTEMPTS or not exc.has_error_label(
                "UnknownTransactionCommitResult"
            ):
                raise


async def _retry_idempotent(operation: Callable[[], Awaitable[R]]) -> R:
    """Run an idempotent operation, again after a transient error (a few times)."""
    attempt = 1
    while True:
        try:
            return await operation()
        except PyMongoError as exc:
            if attempt == _IDEMPOTENT_ATTEMPTS or not _is_transient(exc):
                raise
        await anyio.sleep(_BACKOFF_SECONDS * 2**attempt)
        attempt += 1


def _is_outage(exc: PyMongoError) -> bool:
    """Whether the error is about reaching MongoDB (a retry later may succeed)."""
    return (
        isinstance(exc, ConnectionFailure)  # network errors, timeouts, no primary
        or exc.timeout  # the operation timeout expired (a server-side maxTimeMS too)
        or exc.has_error_label("RetryableWriteError")
        or exc.has_error_label("TransientTransactionError")
    )


def _is_transient(exc: PyMongoError) -> bool:
    """Whether to retry at once: an outage, unless the driver already waited for a server."""
    return _is_outage(exc) and not isinstance(exc, ServerSelectionTimeoutError)


def _is_holder(holder: str) -> dict[str, Any]:
    return {"$eq": ["$holder", {"$literal": holder}]}


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _find(
    collection: Any, query: Mapping[str, Any], sort: list[tuple[str, int]], size: int
) -> list[dict[str, Any]]:
    cursor = collection.find(query, {"_id": 0, "id": 1, "data": 1}).sort(sort).limit(size)
    docs: list[dict[str, Any]] = await cursor.to_list(size)
    return docs


def _check_document(document: Mapping[str, Any], what: str) -> None:
    """Refuse, before any write, a document MongoDB would reject."""
    try:
        size = len(bson.encode(document))
    except (InvalidDocument, OverflowError) as exc:
        raise UnstorableDocumentError(f"MongoDB cannot store {what}: {exc}") from exc
    if size > MAX_DOCUMENT_SIZE:
        raise DocumentTooLargeError(
            f"{what} is {size} bytes as a MongoDB document, over the limit of "
            f"{MAX_DOCUMENT_SIZE} bytes (16 MiB); keep large content outside the thread "
            "(in an attachment store) and store a reference to it"
        )


@contextmanager
def _refusals(what: str) -> Iterator[None]:
    """Turn the driver's and the server's size refusals into `DocumentTooLargeError`."""
    try:
        yield
    except DocumentTooLarge as exc:
        raise DocumentTooLargeError(f"MongoDB refused {what}: {exc}") from exc
    except OperationFailure as exc:
        if exc.code in _TOO_LARGE_CODES:
            raise DocumentTooLargeError(
                f"MongoDB refused {what}: over its 16 MiB document limit ({exc})"
            ) from exc
        raise


def _decode_thread(data: Any) -> ThreadMetadata:
    return ThreadMetadata.model_validate(data)


def _decode_item(data: Any) -> ThreadItem:
    return _ITEMS.validate_python(data)
