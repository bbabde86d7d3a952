"""Every query the store sends is answered from an index, never a collection scan.

The store's commands are recorded with PyMongo's command monitoring while it runs
every method; then each command's filter (and sort) is explained as a `find`. The
query planner picks the same plan for the filter of an update, a delete or a
findAndModify as for a find with that filter, and a `find` explain is what every
MongoDB-compatible server supports.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring

from chatkit_asgi.stores.mongodb import MongoStore
from chatkit_asgi.testing.store_contract import ALICE, BOB
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    FileAttachment,
    ThreadMetadata,
)

from .conftest import by_user, unique_name

T0 = datetime(2025, 3, 1, tzinfo=timezone.utc)


class Recorder(monitoring.CommandListener):
    """Keeps the (collection, filter, sort) of every query command sent to one database."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.queries: list[tuple[str, str, dict[str, Any], dict[str, Any] | None]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.database_name != self.database:
            return
        command = event.command
        name = event.command_name
        if name == "find":
            self.queries.append((name, command["find"], command["filter"], command.get("sort")))
        elif name == "findAndModify":
            self.queries.append((name, command["findAndModify"], command["query"], None))
        elif name == "update":
            for update in command["updates"]:
                self.queries.append((name, command["update"], update["q"], None))
        elif name == "delete":
            for delete in command["deletes"]:
                self.queries.append((name, command["delete"], delete["q"], None))
        elif name in ("count", "aggregate", "distinct"):
            raise AssertionError(f"unexpected {name} command: {command}")

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
async def recorded(mongo_uri: str) -> AsyncIterator[tuple[MongoStore[Any], Recorder]]:
    name = unique_name()
    recorder = Recorder(name)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_uri, event_listeners=[recorder]
    )
    try:
        yield MongoStore(client[name], tenant=by_user, lease_ttl=5), recorder
    finally:
        await client.drop_database(name)
        await client.close()


def message(item_id: str, thread_id: str) -> AssistantMessageItem:
    return AssistantMessageItem(
        id=item_id,
        thread_id=thread_id,
        created_at=T0,
        content=[AssistantMessageContent(text=item_id)],
    )


async def every_method(store: MongoStore[Any]) -> None:
    """Call every store method, on both the transactional and the ordered path."""
    for n in range(4):
        thread = ThreadMetadata(id=f"thr_{n}", created_at=T0 + timedelta(seconds=n // 2))
        await store.save_thread(thread, ALICE)
        await store.save_thread(thread.model_copy(update={"title": "renamed"}), ALICE)
        for m in range(3):
            await store.add_thread_item(thread.id, message(f"msg_{m}", thread.id), ALICE)
    await store.save_item("thr_0", message("msg_0", "thr_0"), ALICE)
    await store.save_item("thr_0", message("msg_new", "thr_0"), ALICE)
    await store.load_thread("thr_0", ALICE)
    for order in ("asc", "desc"):
        await store.load_threads(2, None, order, ALICE)
        await store.load_threads(2, "thr_1", order, ALICE)
        await store.load_thread_items("thr_0", None, 2, order, ALICE)
        await store.load_thread_items("thr_0", "msg_1", 2, order, ALICE)
    await store.load_item("thr_0", "msg_1", ALICE)
    await store.delete_thread_item("thr_0", "msg_2", ALICE)
    await store.delete_thread_items_after("thr_0", "msg_0", ALICE)
    await store.save_attachment(
        FileAttachment(id="atc_1", name="a", mime_type="text/plain", thread_id="thr_1"), ALICE
    )
    await store.load_attachment("atc_1", ALICE)
    await store.delete_attachment("atc_1", ALICE)
    await store.delete_thread("thr_1", ALICE)
    store._transactions = not await store._uses_transactions()
    await store.delete_thread("thr_2", ALICE)
    await store.delete_thread_items_after("thr_3", "msg_0", ALICE)
    lease = await store.acquire_turn("thr_0", ALICE, wait=0)
    await lease.renew()
    await lease.release()
    await store.load_threads(10, None, "desc", BOB)


def plan_stages(plan: Any) -> list[str]:
    """Every `stage` name in an explain plan, however deeply nested."""
    if isinstance(plan, dict):
        own = [plan["stage"]] if isinstance(plan.get("stage"), str) else []
        return own + [stage for value in plan.values() for stage in plan_stages(value)]
    if isinstance(plan, list):
        return [stage for value in plan for stage in plan_stages(value)]
    return []


async def test_every_query_of_every_method_uses_an_index(
    recorded: tuple[MongoStore[Any], Recorder],
) -> None:
    store, recorder = recorded
    await store.ensure_indexes()
    await every_method(store)

    queries = {
        json.dumps([collection, query, sort], sort_keys=True, default=str): (
            kind,
            collection,
            query,
            sort,
        )
        for kind, collection, query, sort in recorder.queries
    }
    kinds = {kind for kind, *_ in queries.values()}
    assert kinds == {"find", "findAndModify", "update", "delete"}
    assert {collection for _, collection, *_ in queries.values()} == {
        "chatkit_threads",
        "chatkit_items",
        "chatkit_attachments",
        "chatkit_turns",
        "chatkit_counters",
    }
    for kind, collection, query, sort in queries.values():
        find: dict[str, Any] = {"find": collection, "filter": query}
        if sort:
            find["sort"] = sort
        explained = await store.database.command("explain", find, verbosity="queryPlanner")
        stages = plan_stages(explained["queryPlanner"]["winningPlan"])
        assert "COLLSCAN" not in stages, (kind, collection, query, stages)
        # IXSCAN, IDHACK, or mongod 8's EXPRESS_IXSCAN and friends.
        assert any("IXSCAN" in stage or "IDHACK" in stage for stage in stages), (
            kind,
            collection,
            query,
            stages,
        )
