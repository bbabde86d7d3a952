"""MongoStore beyond the shared contract: documents, tenants, ordering, errors, deletes."""

from __future__ import annotations

import gc
import inspect
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import pytest
from pymongo import MongoClient
from pymongo.errors import AutoReconnect, OperationFailure

from chatkit_asgi.store import NotFoundError, StoreUnavailableError, TurnBusyError
from chatkit_asgi.stores.mongodb import (
    MAX_DOCUMENT_SIZE,
    DocumentTooLargeError,
    MongoStore,
    MongoTurnLease,
    UnstorableDocumentError,
)
from chatkit_asgi.testing.store_contract import ALICE, BOB
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    FileAttachment,
    ThreadMetadata,
)

from .conftest import Driver, by_user, open_client, unique_name

T0 = datetime(2025, 3, 1, 9, 30, tzinfo=timezone.utc)
COLLECTIONS = ["threads", "items", "attachments", "turns", "counters"]


def message(item_id: str, thread_id: str = "thr_1", text: str = "hi") -> AssistantMessageItem:
    return AssistantMessageItem(
        id=item_id,
        thread_id=thread_id,
        created_at=T0,
        content=[AssistantMessageContent(text=text)],
    )


def attachment(attachment_id: str, thread_id: str | None = "thr_1") -> FileAttachment:
    return FileAttachment(
        id=attachment_id, name="a.txt", mime_type="text/plain", thread_id=thread_id
    )


async def raw(store: MongoStore[Any], collection: str, **query: Any) -> list[dict[str, Any]]:
    """The documents of one of the store's collections, without `_id`, in `_id` order."""
    cursor = store.database[f"chatkit_{collection}"].find(query, {"_id": 0}).sort("_id", 1)
    docs: list[dict[str, Any]] = await cursor.to_list(None)
    return docs


async def everything(store: MongoStore[Any], **query: Any) -> dict[str, list[dict[str, Any]]]:
    return {name: await raw(store, name, **query) for name in COLLECTIONS}


async def seed_alice(store: MongoStore[Any]) -> None:
    await store.save_thread(ThreadMetadata(id="thr_1", created_at=T0, title="Alice's"), ALICE)
    for item_id in ["a", "b", "c"]:
        await store.add_thread_item("thr_1", message(item_id), ALICE)
    await store.save_attachment(attachment("atc_1"), ALICE)


# -- documents -----------------------------------------------------------------------


async def test_documents_keep_models_as_json_beside_indexed_fields(
    store: MongoStore[Any],
) -> None:
    thread = ThreadMetadata(id="thr_1", created_at=T0, title="T", metadata={"k": [1, "v"]})
    await store.save_thread(thread, ALICE)
    await store.add_thread_item("thr_1", message("a"), ALICE)
    await store.save_attachment(attachment("atc_1"), ALICE)

    [thread_doc] = await raw(store, "threads")
    assert thread_doc == {
        "owner": "alice",
        "id": "thr_1",
        "seq": 1,
        "created_at": int(T0.timestamp() * 1_000_000),
        "item_seq": 1,
        "data": thread.model_dump(mode="json"),
    }
    [item_doc] = await raw(store, "items")
    assert item_doc == {
        "owner": "alice",
        "thread_id": "thr_1",
        "id": "a",
        "seq": 1,
        "type": "assistant_message",
        "created_at": int(T0.timestamp() * 1_000_000),
        "data": message("a").model_dump(mode="json"),
    }
    [attachment_doc] = await raw(store, "attachments")
    assert attachment_doc == {
        "owner": "alice",
        "id": "atc_1",
        "thread_id": "thr_1",
        "data": attachment("atc_1").model_dump(mode="json"),
    }


async def test_keys_mongodb_treats_specially_round_trip(store: MongoStore[Any]) -> None:
    # `$`-prefixed and dotted keys are legal JSON; updates must store them literally.
    awkward = {"$set": {"a.b": 1}, "$inc": ["$x"], "plain": "$not_a_field_path"}
    thread = ThreadMetadata(id="thr_1", created_at=T0, metadata=awkward)
    await store.save_thread(thread, ALICE)
    await store.save_thread(thread.model_copy(update={"title": "again"}), ALICE)
    loaded = await store.load_thread("thr_1", ALICE)
    assert loaded.metadata == awkward
    assert loaded.title == "again"

    await store.save_attachment(attachment("atc_1").model_copy(update={"metadata": awkward}), ALICE)
    await store.save_attachment(attachment("atc_1").model_copy(update={"metadata": awkward}), ALICE)
    assert (await store.load_attachment("atc_1", ALICE)).metadata == awkward

    await store.add_thread_item("thr_1", message("a", text="$price"), ALICE)
    await store.save_item("thr_1", message("a", text="$$NOW"), ALICE)
    assert await store.load_item("thr_1", "a", ALICE) == message("a", text="$$NOW")


async def test_without_tenant_everything_is_shared(make_store: Callable[..., Any]) -> None:
    store: MongoStore[Any] = make_store(tenant=None)
    await store.save_thread(ThreadMetadata(id="thr_1", created_at=T0), ALICE)
    assert (await store.load_thread("thr_1", BOB)).id == "thr_1"
    assert [doc["owner"] for doc in await raw(store, "threads")] == [""]


# -- tenants -------------------------------------------------------------------------


async def test_another_tenant_cannot_touch_a_document_through_any_method(
    store: MongoStore[Any],
) -> None:
    await seed_alice(store)
    lease = await store.acquire_turn("thr_1", ALICE, wait=0)
    alice_before = await everything(store, owner="alice")

    # Every method, called by Bob with Alice's ids.
    with pytest.raises(NotFoundError):
        await store.load_thread("thr_1", BOB)
    assert (await store.load_threads(10, None, "desc", BOB)).data == []
    with pytest.raises(NotFoundError):
        await store.load_threads(10, "thr_1", "asc", BOB)
    with pytest.raises(NotFoundError):
        await store.load_thread_items("thr_1", None, 10, "asc", BOB)
    with pytest.raises(NotFoundError):
        await store.load_thread_items("thr_1", "a", 10, "asc", BOB)
    with pytest.raises(NotFoundError):
        await store.load_item("thr_1", "a", BOB)
    with pytest.raises(NotFoundError):
        await store.add_thread_item("thr_1", message("a", text="bob"), BOB)
    with pytest.raises(NotFoundError):
        await store.save_item("thr_1", message("b", text="bob"), BOB)
    with pytest.raises(NotFoundError):
        await store.delete_thread_items_after("thr_1", "a", BOB)
    with pytest.raises(NotFoundError):
        await store.delete_thread("thr_1", BOB)
    with pytest.raises(NotFoundError):
        await store.load_attachment("atc_1", BOB)
    await store.delete_thread_item("thr_1", "a", BOB)
    await store.delete_attachment("atc_1", BOB)
    # Bob's own turn on "his" thr_1 does not wait for Alice's.
    bob_lease = await store.acquire_turn("thr_1", BOB, wait=0)
    # Writes under the same ids create Bob's own documents.
    await store.save_thread(ThreadMetadata(id="thr_1", created_at=T0, title="Bob's"), BOB)
    await store.add_thread_item("thr_1", message("a", text="bob"), BOB)
    await store.save_attachment(attachment("atc_1"), BOB)
    await store.delete_thread_items_after("thr_1", "a", BOB)
    await bob_lease.release()
    await store.delete_thread("thr_1", BOB)

    assert await everything(store, owner="alice") == alice_before
    await lease.release()
    # Bob's documents are gone with his thread (his attachment pointed at it too),
    # and his released lease is marked free (the TTL index deletes it later).
    bob = await everything(store, owner="bob")
    assert bob.pop("turns") == [
        {"owner": "bob", "thread_id": "thr_1", "holder": None, "expires_at": datetime(1970, 1, 1)}
    ]
    assert bob == {name: [] for name in COLLECTIONS if name != "turns"}


async def test_every_document_carries_its_owner(store: MongoStore[Any]) -> None:
    await seed_alice(store)
    lease = await store.acquire_turn("thr_1", ALICE, wait=0)
    for name in ["threads", "items", "attachments", "turns"]:
        docs = await raw(store, name)
        assert docs
        assert {doc["owner"] for doc in docs} == {"alice"}
    await lease.release()


# -- ordering ------------------------------------------------------------------------


async def test_concurrent_appends_get_gap_free_distinct_positions(store: MongoStore[Any]) -> None:
    await store.save_thread(ThreadMetadata(id="thr_1", created_at=T0), ALICE)
    ids = [f"msg_{n:03d}" for n in range(100)]
    async with anyio.create_task_group() as tg:
        for item_id in ids:
            tg.start_soon(store.add_thread_item, "thr_1", message(item_id), ALICE)

    docs = await raw(store, "items")
    assert sorted(doc["seq"] for doc in docs) == list(range(1, 101))
    by_seq = [doc["id"] for doc in sorted(docs, key=lambda doc: doc["seq"])]
    assert sorted(by_seq) == ids
    listed = await store.load_thread_items("thr_1", None, 1000, "asc", ALICE)
    assert [item.id for item in listed.data] == by_seq
    # Pages of 7 walk the same order without a gap or a repeat.
    walked: list[str] = []
    after = None
    while True:
        page = await store.load_thread_items("thr_1", after, 7, "desc", ALICE)
        walked += [item.id for item in page.data]
        if not page.has_more:
            break
        after = page.after
    assert walked == by_seq[::-1]


async def test_two_workers_appending_to_one_thread_share_the_sequence(
    make_store: Callable[..., MongoStore[Any]],
) -> None:
    first, second = make_store(), make_store()
    await first.save_thread(ThreadMetadata(id="thr_1", created_at=T0), ALICE)
    async with anyio.create_task_group() as tg:
        for n in range(30):
            tg.start_soon(first.add_thread_item, "thr_1", message(f"first_{n}"), ALICE)
            tg.start_soon(second.add_thread_item, "thr_1", message(f"second_{n}"), ALICE)
    assert sorted(doc["seq"] for doc in await raw(first, "items")) == list(range(1, 61))


async def test_updating_an_item_keeps_its_seq(store: MongoStore[Any]) -> None:
    await seed_alice(store)
    await store.add_thread_item("thr_1", message("a", text="changed"), ALICE)
    await store.save_item("thr_1", message("b", text="changed"), ALICE)
    await store.save_item("thr_1", message("d"), ALICE)
    seqs = {doc["id"]: doc["seq"] for doc in await raw(store, "items")}
    assert (seqs["a"], seqs["b"], seqs["c"]) == (1, 2, 3)
    # Numbers are never reused (a re-add may skip one): only their order matters.
    assert seqs["d"] > 3


async def test_threads_order_by_microseconds_not_milliseconds(store: MongoStore[Any]) -> None:
    # BSON dates keep milliseconds only: the store sorts on microseconds.
    later = ThreadMetadata(id="thr_later", created_at=T0 + timedelta(microseconds=2))
    earlier = ThreadMetadata(id="thr_earlier", created_at=T0 + timedelta(microseconds=1))
    await store.save_thread(later, ALICE)
    await store.save_thread(earlier, ALICE)
    page = await store.load_threads(10, None, "desc", ALICE)
    assert [thread.id for thread in page.data] == ["thr_later", "thr_earlier"]
    assert page.data[0].created_at == later.created_at


# -- indexes -------------------------------------------------------------------------

EXPECTED_INDEXES = {
    "threads": {
        "owner_id": ([("owner", 1), ("id", 1)], True),
        "owner_created_at_seq": ([("owner", 1), ("created_at", 1), ("seq", 1)], False),
    },
    "items": {
        "owner_thread_id_seq": ([("owner", 1), ("thread_id", 1), ("seq", 1)], True),
        "owner_thread_id_id": ([("owner", 1), ("thread_id", 1), ("id", 1)], True),
    },
    "attachments": {
        "owner_id": ([("owner", 1), ("id", 1)], True),
        "owner_thread_id": ([("owner", 1), ("thread_id", 1)], False),
    },
    "turns": {
        "owner_thread_id": ([("owner", 1), ("thread_id", 1)], True),
        "expires_at": ([("expires_at", 1)], False),
    },
}


async def indexes(store: MongoStore[Any], collection: str) -> dict[str, Any]:
    info: dict[str, Any] = await store.database[f"chatkit_{collection}"].index_information()
    return {
        name: (
            [(field, int(direction)) for field, direction in spec["key"]],
            bool(spec.get("unique")),
        )
        for name, spec in info.items()
        if name != "_id_"
    }


async def test_ensure_indexes_creates_every_index_idempotently(store: MongoStore[Any]) -> None:
    await store.ensure_indexes()
    await store.ensure_indexes()
    for collection, expected in EXPECTED_INDEXES.items():
        assert await indexes(store, collection) == expected
    turns = await store.database["chatkit_turns"].index_information()
    assert turns["expires_at"]["expireAfterSeconds"] == 0


async def test_indexes_are_created_on_first_use(store: MongoStore[Any]) -> None:
    with pytest.raises(NotFoundError):
        await store.load_thread("thr_1", ALICE)
    for collection, expected in EXPECTED_INDEXES.items():
        assert await indexes(store, collection) == expected


async def test_auto_index_off_leaves_indexes_to_the_deployment(
    make_store: Callable[..., MongoStore[Any]],
) -> None:
    store = make_store(auto_index=False)
    await store.save_thread(ThreadMetadata(id="thr_1", created_at=T0), ALICE)
    assert await indexes(store, "threads") == {}
    await store.ensure_indexes()
    assert await indexes(store, "threads") == EXPECTED_INDEXES["threads"]


# -- deletes -------------------------------------------------------------------------


@pytest.mark.parametrize("transactions", [None, False])
async def test_delete_thread_cascades(
    make_store: Callable[..., MongoStore[Any]], transactions: bool | None
) -> None:
    store = make_store(transactions=transactions)
    await seed_alice(store)
    await store.save_thread(ThreadMetadata(id="thr_2", created_at=T0), ALICE)
    await store.add_thread_item("thr_2", message("x", "thr_2"), ALICE)
    await store.save_attachment(attachment("atc_2", "thr_2"), ALICE)
    await store.save_attachment(attachment("atc_free", None), ALICE)

    await store.delete_thread("thr_1", ALICE)

    assert [doc["id"] for doc in await raw(store, "threads")] == ["thr_2"]
    assert [doc["id"] for doc in await raw(store, "items")] == ["x"]
    assert [doc["id"] for doc in await raw(store, "attachments")] == ["atc_2", "atc_free"]


async def test_transactions_are_used_where_the_server_has_them(
    mongo_uri: str, store: MongoStore[Any]
) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri)
    try:
        hello = client.admin.command("hello")
    finally:
        client.close()
    replicated = "setName" in hello or hello.get("msg") == "isdbgrid"
    assert await store._uses_transactions() is replicated


class Proxy:
    """A collection with some of its methods replaced."""

    def __init__(self, collection: Any, **methods: Any) -> None:
        self.collection = collection
        self.__dict__.update(methods)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.collection, name)


class Flaky:
    """A collection method that raises `error` on its first `failures` calls."""

    def __init__(self, method: Any, error: Exception, failures: int) -> None:
        self.method = method
        self.error = error
        self.failures = failures
        self.calls = 0

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return await self.method(*args, **kwargs)


def flaky(
    store: MongoStore[Any], collection: str, method: str, error: Exception, failures: int
) -> Flaky:
    """Make `store`'s `collection.method` fail `failures` times with `error`."""
    attribute = f"_{collection}"
    original = getattr(store, attribute)
    if isinstance(original, Proxy):
        original = original.collection
    replacement = Flaky(getattr(original, method), error, failures)
    setattr(store, attribute, Proxy(original, **{method: replacement}))
    return replacement


def transient_transaction_error() -> OperationFailure:
    return OperationFailure(
        "WriteConflict", 112, {"code": 112, "errorLabels": ["TransientTransactionError"]}
    )


async def test_a_failed_transaction_leaves_nothing_half_deleted(store: MongoStore[Any]) -> None:
    if not await store._uses_transactions():
        pytest.fail("the test server must support transactions (a replica set)")
    await seed_alice(store)
    before = await everything(store)
    flaky(store, "attachments", "delete_many", RuntimeError("boom"), 1)
    with pytest.raises(RuntimeError, match="boom"):
        await store.delete_thread("thr_1", ALICE)
    # The items were deleted inside the aborted transaction: they are all still there.
    assert await everything(store) == before


async def test_transient_transaction_errors_are_retried_a_few_times(
    store: MongoStore[Any],
) -> None:
    await seed_alice(store)
    if not await store._uses_transactions():
        pytest.fail("the test server must support transactions (a replica set)")
    twice = flaky(store, "attachments", "delete_many", transient_transaction_error(), 2)
    await store.delete_thread("thr_1", ALICE)
    assert twice.calls == 3
    assert await raw(store, "items") == []

    await store.save_thread(ThreadMetadata(id="thr_2", created_at=T0), ALICE)
    always = flaky(store, "attachments", "delete_many", transient_transaction_error(), 99)
    # Still conflicting after the retries: the app answers 503 and the client retries.
    with pytest.raises(StoreUnavailableError) as unavailable:
        await store.delete_thread("thr_2", ALICE)
    assert isinstance(unavailable.value.__cause__, OperationFailure)
    assert always.calls == 5  # bounded
    assert (await store.load_thread("thr_2", ALICE)).id == "thr_2"


async def test_ordered_deletes_retry_transient_errors_and_resume(
    make_store: Callable[..., MongoStore[Any]],
) -> None:
    store = make_store(transactions=False)
    await seed_alice(store)
    reset = flaky(store, "attachments", "delete_many", AutoReconnect("connection reset"), 1)
    await store.delete_thread("thr_1", ALICE)
    assert reset.calls == 2
    assert await everything(store, owner="alice") == {name: [] for name in COLLECTIONS}

    # A failure that outlasts the retries leaves the thread, so deleting again finishes.
    await seed_alice(store)
    flaky(store, "attachments", "delete_many", RuntimeError("down"), 1)
    with pytest.raises(RuntimeError):
        await store.delete_thread("thr_1", ALICE)
    assert (await store.load_thread("thr_1", ALICE)).id == "thr_1"
    await store.delete_thread("thr_1", ALICE)
    assert await raw(store, "attachments") == []


async def test_an_append_racing_a_delete_leaves_no_item_behind(store: MongoStore[Any]) -> None:
    await store.save_thread(ThreadMetadata(id="thr_1", created_at=T0), ALICE)
    other_worker = MongoStore(store.database, tenant=lambda ctx: ctx["user"])
    insert_one = store._items.insert_one

    async def insert_after_the_thread_is_deleted(document: Any, **kwargs: Any) -> Any:
        await other_worker.delete_thread("thr_1", ALICE)
        return await insert_one(document, **kwargs)

    store._items = Proxy(store._items, insert_one=insert_after_the_thread_is_deleted)
    with pytest.raises(NotFoundError):
        await store.add_thread_item("thr_1", message("a"), ALICE)
    assert await raw(store, "items") == []


async def test_delete_items_after_is_one_statement(store: MongoStore[Any]) -> None:
    await seed_alice(store)
    await store.add_thread_item("thr_1", message("d"), ALICE)
    await store.delete_thread_items_after("thr_1", "b", ALICE)
    assert [doc["id"] for doc in await raw(store, "items")] == ["a", "b"]
    # The next append continues the sequence: positions are never reused.
    await store.add_thread_item("thr_1", message("e"), ALICE)
    assert [doc["seq"] for doc in await raw(store, "items")] == [1, 2, 5]


# -- what MongoDB refuses ------------------------------------------------------------


async def test_an_item_over_16_mib_is_refused_before_anything_is_written(
    store: MongoStore[Any],
) -> None:
    await store.save_thread(ThreadMetadata(id="thr_1", created_at=T0), ALICE)
    huge = message("a", text="x" * MAX_DOCUMENT_SIZE)
    with pytest.raises(DocumentTooLargeError, match="16 MiB") as refused:
        await store.add_thread_item("thr_1", huge, ALICE)
    assert isinstance(refused.value, ValueError)
    with pytest.raises(DocumentTooLargeError):
        await store.save_item("thr_1", huge, ALICE)
    assert await raw(store, "items") == []
    # No position was used up either.
    assert (await raw(store, "threads"))[0]["item_seq"] == 0
    await store.add_thread_item("thr_1", message("b"), ALICE)
    assert (await raw(store, "items"))[0]["seq"] == 1


async def test_oversized_threads_and_attachments_are_refused(store: MongoStore[Any]) -> None:
    big = {"blob": "x" * MAX_DOCUMENT_SIZE}
    with pytest.raises(DocumentTooLargeError):
        await store.save_thread(ThreadMetadata(id="thr_1", created_at=T0, metadata=big), ALICE)
    with pytest.raises(DocumentTooLargeError):
        await store.save_attachment(attachment("atc_1").model_copy(update={"metadata": big}), ALICE)
    assert await raw(store, "threads") == []
    assert await raw(store, "attachments") == []


async def test_values_bson_cannot_hold_are_refused_clearly(store: MongoStore[Any]) -> None:
    with pytest.raises(UnstorableDocumentError, match="thread thr_1"):
        await store.save_thread(
            ThreadMetadata(id="thr_1", created_at=T0, metadata={"n": 2**70}), ALICE
        )
    with pytest.raises(UnstorableDocumentError):
        await store.save_thread(
            ThreadMetadata(id="thr_1", created_at=T0, metadata={"nul\x00key": 1}), ALICE
        )
    assert await raw(store, "threads") == []


async def test_a_sync_database_handle_is_refused(mongo_uri: str) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri, connect=False)
    try:
        with pytest.raises(TypeError, match="async"):
            MongoStore(client[unique_name()])
    finally:
        client.close()


async def test_lease_ttl_must_be_positive(database: Any) -> None:
    with pytest.raises(ValueError, match="lease_ttl"):
        MongoStore(database, lease_ttl=0)


# -- from_uri ------------------------------------------------------------------------


async def test_from_uri_owns_its_client(mongo_uri: str) -> None:
    name = unique_name()
    store: MongoStore[Any] = MongoStore.from_uri(mongo_uri, name, tenant=lambda ctx: ctx["user"])
    try:
        assert store.database.name == name
        await store.save_thread(ThreadMetadata(id="thr_1", created_at=T0), ALICE)
        assert (await store.load_thread("thr_1", ALICE)).id == "thr_1"
        lease = await store.acquire_turn("thr_1", ALICE, wait=0)
        with pytest.raises(TurnBusyError):
            await store.acquire_turn("thr_1", ALICE, wait=0)
        await lease.release()
    finally:
        await store.database.client.drop_database(name)
        await store.aclose()
    await store.aclose()  # closing twice is harmless


async def test_from_uri_defaults_to_the_database_in_the_uri(mongo_uri: str) -> None:
    scheme, rest = mongo_uri.split("://", 1)
    hosts, _, options = rest.partition("/")
    options = options.partition("?")[2]
    uri = f"{scheme}://{hosts}/named_in_uri" + (f"?{options}" if options else "")
    store: MongoStore[Any] = MongoStore.from_uri(uri)
    assert store.database.name == "named_in_uri"
    await store.aclose()
    store = MongoStore.from_uri(f"{scheme}://{hosts}/" + (f"?{options}" if options else ""))
    assert store.database.name == "chatkit"
    await store.aclose()


async def test_a_commit_with_an_unknown_result_is_retried(store: MongoStore[Any]) -> None:
    if not await store._uses_transactions():
        pytest.fail("the test server must support transactions (a replica set)")
    await seed_alice(store)
    real_client = store.database.client
    commits: list[str] = []

    async def start_session(**options: Any) -> Any:
        started = real_client.start_session(**options)
        session = await started if inspect.isawaitable(started) else started
        commit = session.commit_transaction

        async def commit_once_unknown() -> None:
            commits.append("commit")
            if len(commits) == 1:
                raise OperationFailure(
                    "connection lost during commit",
                    91,
                    {"code": 91, "errorLabels": ["UnknownTransactionCommitResult"]},
                )
            await commit()

        session.commit_transaction = commit_once_unknown
        return session

    database = store.database
    store.database = Proxy(database, client=Proxy(real_client, start_session=start_session))
    await store.delete_thread("thr_1", ALICE)
    store.database = database
    assert commits == ["commit", "commit"]
    assert await everything(store, owner="alice") == {name: [] for name in COLLECTIONS}


# -- options -------------------------------------------------------------------------


async def test_collection_prefix(make_store: Callable[..., MongoStore[Any]]) -> None:
    store = make_store(collection_prefix="support_")
    await seed_alice(store)
    names = set(await store.database.list_collection_names())
    assert {"support_threads", "support_items", "support_attachments"} <= names
    assert not any(name.startswith("chatkit_") for name in names)


async def test_explicit_transactions_setting_skips_detection(
    make_store: Callable[..., MongoStore[Any]],
) -> None:
    assert await make_store(transactions=False)._uses_transactions() is False


async def test_invalid_order_and_tenant_keys_are_caller_bugs(store: MongoStore[Any]) -> None:
    await seed_alice(store)
    with pytest.raises(ValueError, match="order"):
        await store.load_threads(10, None, "newest", ALICE)
    with pytest.raises(ValueError, match="order"):
        await store.load_thread_items("thr_1", None, 10, "ASC", ALICE)
    with pytest.raises(TypeError, match="tenant"):
        await store.load_thread("thr_1", {"user": 42})


# -- outages -------------------------------------------------------------------------

UNREACHABLE = "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200&connectTimeoutMS=200"
# PyMongo's async client leaves the socket of a failed connection attempt to the
# garbage collector (PyMongo 4.20; upstream PYTHON-3923); collected inside the test,
# its ResourceWarning is ignored here instead of failing a later test.
LEAKED_SOCKET = "ignore:unclosed <socket.socket:ResourceWarning"


@pytest.mark.filterwarnings(LEAKED_SOCKET)
async def test_an_unreachable_server_is_reported_as_store_unavailable(driver: Driver) -> None:
    await every_method_against_an_unreachable_server(driver)
    gc.collect()  # the client is unreferenced now: its leaked socket goes here


async def every_method_against_an_unreachable_server(driver: Driver) -> None:
    thread = ThreadMetadata(id="thr_1", created_at=T0)
    async with open_client(UNREACHABLE, driver) as client:
        # Without index creation each call fails at its own first round trip.
        store: MongoStore[Any] = MongoStore(client["chatkit"], tenant=by_user, auto_index=False)
        calls: list[Callable[[], Awaitable[Any]]] = [
            store.ensure_indexes,
            lambda: store.load_thread("thr_1", ALICE),
            lambda: store.save_thread(thread, ALICE),
            lambda: store.load_threads(10, None, "desc", ALICE),
            lambda: store.delete_thread("thr_1", ALICE),
            lambda: store.load_thread_items("thr_1", None, 10, "asc", ALICE),
            lambda: store.add_thread_item("thr_1", message("a"), ALICE),
            lambda: store.save_item("thr_1", message("a"), ALICE),
            lambda: store.load_item("thr_1", "a", ALICE),
            lambda: store.delete_thread_item("thr_1", "a", ALICE),
            lambda: store.delete_thread_items_after("thr_1", "a", ALICE),
            lambda: store.save_attachment(attachment("atc_1"), ALICE),
            lambda: store.load_attachment("atc_1", ALICE),
            lambda: store.delete_attachment("atc_1", ALICE),
            lambda: store.acquire_turn("thr_1", ALICE, wait=0),
            MongoTurnLease(store, "alice", "thr_1", "holder").renew,
            MongoTurnLease(store, "alice", "thr_1", "holder").release,
        ]
        outcomes: list[BaseException | None] = []

        async def outcome(call: Callable[[], Awaitable[Any]]) -> None:
            try:
                await call()
            except BaseException as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)

        async with anyio.create_task_group() as tg:  # all at once: each waits for a server
            for call in calls:
                tg.start_soon(outcome, call)
        assert len(outcomes) == len(calls)
        for exc in outcomes:
            assert isinstance(exc, StoreUnavailableError), exc
            assert "MongoDB is unavailable" in str(exc)


async def test_a_network_error_outlasting_the_retries_is_an_outage(
    make_store: Callable[..., MongoStore[Any]],
) -> None:
    store = make_store(transactions=False)
    await seed_alice(store)
    reset = flaky(store, "items", "delete_many", AutoReconnect("connection reset"), 99)
    with pytest.raises(StoreUnavailableError):
        await store.delete_thread("thr_1", ALICE)
    assert reset.calls == 3  # bounded
    assert (await store.load_thread("thr_1", ALICE)).id == "thr_1"
