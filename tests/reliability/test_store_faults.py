"""Store faults: an outage mid-turn is retryable, leaves nothing half-written, and heals.

What a client sees when the store fails:
- before its response started: HTTP 503 `store_unavailable` with `Retry-After`;
- mid-stream: the stream ends with an `error` event with `allow_retry: true`.

What the store holds afterwards: the user's message fully or not at all, an
assistant answer complete or not at all, and no other trace of the failed turn.
When the store is back, the same app (no restart) serves the thread again.

Faults come three ways: `FaultyStore` fails every call from the n-th one of a
request on (an outage starting at each possible point of a turn, over the memory
and SQLite stores); SQLite's own failures (disk full, read-only, locked); and a
MongoDB-wire server SIGKILLed mid-turn and started again.
"""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from pymongo import AsyncMongoClient, monitoring

from chatkit_asgi import ChatKitApp, Store, Turn
from chatkit_asgi.stores import MemoryStore, SQLiteStore
from chatkit_asgi.stores.mongodb import MongoStore
from chatkit_asgi.testing import ChatKitTestClient, parse_sse, user_input
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    ThreadItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadStreamEvent,
    UserMessageItem,
)

from ._apps import by_user, user_context
from .conftest import ALICE, PATIENCE, FaultyStore, RestartableMongo, all_items, snapshot

# -- the app under test -------------------------------------------------------------------


class Replier:
    """Names a new thread after the first message, then streams "reply to <text>".

    A message "hold" waits at `gate` after its first delta (the test breaks the store
    meanwhile); `holding` says it got there.
    """

    def __init__(self) -> None:
        self.holding = anyio.Event()
        self.gate = anyio.Event()

    async def respond(self, turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        text = turn.input_text()
        if turn.thread.title is None:
            turn.thread.title = text
        item = AssistantMessageItem(
            id=turn.new_id("message"),
            thread_id=turn.thread.id,
            created_at=turn.now(),
            content=[AssistantMessageContent(text="")],
        )
        yield ThreadItemAddedEvent(item=item)
        yield _delta(item, "reply to ")
        if text == "hold":
            self.holding.set()
            await self.gate.wait()
        yield _delta(item, text)
        item.content = [AssistantMessageContent(text=f"reply to {text}")]
        yield ThreadItemDoneEvent(item=item)

    async def add_feedback(self, turn: Turn[Any], item_ids: list[str], kind: str) -> None:
        return None


def _delta(item: AssistantMessageItem, text: str) -> ThreadItemUpdatedEvent:
    return ThreadItemUpdatedEvent(
        item_id=item.id, update=AssistantMessageContentPartTextDelta(content_index=0, delta=text)
    )


def make_app(store: Store[Any], responder: Any = None, **options: Any) -> ChatKitApp:
    options.setdefault("checkpoint_interval", None)  # deterministic store calls
    return ChatKitApp(responder or Replier(), store=store, context=user_context, **options)


def texts(items: list[ThreadItem]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, UserMessageItem | AssistantMessageItem):
            out.append((item.type, "".join(getattr(p, "text", "") for p in item.content)))
        else:
            out.append((item.type, ""))
    return out


def whole_or_nothing(text: str) -> list[list[tuple[str, str]]]:
    """What a failed turn may leave: nothing, the user message, or both whole items."""
    user = ("user_message", text)
    return [[], [user], [user, ("assistant_message", f"reply to {text}")]]


# -- what the client sees -----------------------------------------------------------------


def assert_retryable(response: httpx.Response) -> None:
    """A 503 store_unavailable, or a stream whose last event is a retryable error."""
    if response.status_code == 503:
        assert response.headers["content-type"] == "application/json"
        assert response.headers["retry-after"]
        assert response.json()["error"]["code"] == "store_unavailable"
        return
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.content)
    assert events[-1]["type"] == "error", events[-1]
    assert events[-1]["allow_retry"] is True
    assert [e["type"] for e in events].count("error") == 1, [e["type"] for e in events]


async def post(client: ChatKitTestClient, request_type: str, **params: Any) -> httpx.Response:
    return await client.post({"type": request_type, "params": params})


# -- an outage starting at every store call of a turn ---------------------------------------

INNER_STORES = ["memory", "sqlite"]


@pytest.fixture(params=INNER_STORES)
async def faulty(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FaultyStore]:
    inner: Store[Any] = (
        MemoryStore(tenant=by_user)
        if request.param == "memory"
        else SQLiteStore(tmp_path / "chatkit.db", tenant=by_user)
    )
    store = FaultyStore(inner)
    yield store
    await store.aclose()


def outage_from(store: FaultyStore, n: int) -> None:
    """Every store call from the n-th one (counting from 0) from now on fails."""
    start = len(store.calls)
    store.fail_when = lambda method: len(store.calls) - start > n


async def calls_of(store: FaultyStore, request: Callable[[], Any]) -> list[str]:
    start = len(store.calls)
    await request()
    return store.calls[start:]


async def new_thread(client: ChatKitTestClient, text: str = "first") -> str:
    events = await client.create_thread(text)
    return events[0].thread.id  # type: ignore[union-attr]


async def test_an_outage_at_any_point_of_a_new_message_is_retryable_and_heals(
    faulty: FaultyStore,
) -> None:
    app = make_app(faulty)
    async with ChatKitTestClient(app, headers={"x-user": "alice"}) as client:
        thread_id = await new_thread(client)
        calls = await calls_of(faulty, lambda: client.add_message(thread_id, "probe"))
        assert "add_thread_item" in calls
        for n in range(len(calls)):
            before = await all_items(faulty.inner, thread_id, ALICE)
            outage_from(faulty, n)
            response = await post(
                client,
                "threads.add_user_message",
                thread_id=thread_id,
                input=user_input(f"message {n}"),
            )
            faulty.fail_when = None
            assert_retryable(response)
            after = await all_items(faulty.inner, thread_id, ALICE)
            assert after[: len(before)] == before, f"outage at call {n} ({calls[n]})"
            assert texts(after[len(before) :]) in whole_or_nothing(f"message {n}"), calls[n]
            if response.status_code == 503:
                assert after == before

            # The same app serves the thread as soon as the store is back.
            events = await client.add_message(thread_id, f"after outage {n}")
            assert events[-1].type == "thread.item.done"
            healed = await all_items(faulty.inner, thread_id, ALICE)
            assert texts(healed[-2:]) == whole_or_nothing(f"after outage {n}")[2]


async def test_an_outage_at_any_point_of_a_new_thread_is_retryable_and_heals(
    faulty: FaultyStore,
) -> None:
    app = make_app(faulty)
    async with ChatKitTestClient(app, headers={"x-user": "alice"}) as client:
        calls = await calls_of(faulty, lambda: client.create_thread("probe"))
        for n in range(len(calls)):
            known = {t.id for t in (await faulty.inner.load_threads(100, None, "asc", ALICE)).data}
            outage_from(faulty, n)
            response = await post(client, "threads.create", input=user_input(f"thread {n}"))
            faulty.fail_when = None
            assert_retryable(response)
            # The store is back; the app's next request (here, the list the UI loads)
            # finds no empty thread: the thread and its first message are stored whole
            # or not at all, and a new thread the outage kept the app from deleting at
            # once is deleted before that request.
            listed = await post(client, "threads.list")
            threads = (await faulty.inner.load_threads(100, None, "asc", ALICE)).data
            new = [t for t in threads if t.id not in known]
            assert len(new) <= 1
            assert len(listed.json()["data"]) == len(threads)
            if new:
                items = await all_items(faulty.inner, new[0].id, ALICE)
                assert texts(items) in whole_or_nothing(f"thread {n}")[1:], calls[n]

            events = await client.create_thread(f"after outage {n}")
            assert events[-1].type == "thread.item.done"


NON_STREAMING: list[tuple[str, dict[str, Any]]] = [
    ("threads.get_by_id", {"thread_id": "{thread}"}),
    ("threads.list", {}),
    ("items.list", {"thread_id": "{thread}"}),
    ("threads.update", {"thread_id": "{thread}", "title": "renamed"}),
    ("items.feedback", {"thread_id": "{thread}", "item_ids": ["{item}"], "kind": "positive"}),
    ("threads.delete", {"thread_id": "{thread}"}),
]


@pytest.mark.parametrize(("request_type", "template"), NON_STREAMING)
async def test_an_outage_during_a_json_request_is_a_503_and_changes_nothing(
    faulty: FaultyStore, request_type: str, template: dict[str, Any]
) -> None:
    app = make_app(faulty)
    async with ChatKitTestClient(app, headers={"x-user": "alice"}) as client:
        thread_id = await new_thread(client)
        item_id = (await all_items(faulty.inner, thread_id, ALICE))[-1].id
        params = {
            key: [item_id] if value == ["{item}"] else thread_id if value == "{thread}" else value
            for key, value in template.items()
        }
        # Count the calls of a dry run on a copy of the thread, so the real one stays.
        probe_thread = await new_thread(client, "probe")
        probe_params = {k: probe_thread if v == thread_id else v for k, v in params.items()}
        if request_type == "items.feedback":
            probe_item = (await all_items(faulty.inner, probe_thread, ALICE))[-1].id
            probe_params["item_ids"] = [probe_item]
        calls = await calls_of(faulty, lambda: post(client, request_type, **probe_params))
        before = await snapshot(faulty.inner, ALICE, [])
        for n in range(len(calls)):
            outage_from(faulty, n)
            response = await post(client, request_type, **params)
            faulty.fail_when = None
            assert_retryable(response)
            assert response.status_code == 503
            assert await snapshot(faulty.inner, ALICE, []) == before, calls[n]
        # Back: the request works.
        assert (await post(client, request_type, **params)).status_code == 200


# -- SQLite's own failures ---------------------------------------------------------------------


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore[Any]]:
    store: SQLiteStore[Any] = SQLiteStore(tmp_path / "chatkit.db", tenant=by_user)
    yield store
    await store.aclose()


async def _pragma(store: SQLiteStore[Any], statement: str) -> None:
    # The store's own connection, on its own worker thread: what a fault would hit.
    await store._db(lambda conn: conn.execute(statement))


async def _disk_full(store: SQLiteStore[Any]) -> None:
    await store._db(
        lambda conn: conn.execute(
            f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}"
        )
    )


async def _disk_has_room(store: SQLiteStore[Any]) -> None:
    await _pragma(store, "PRAGMA max_page_count = 1073741823")


async def _read_only(store: SQLiteStore[Any]) -> None:
    await _pragma(store, "PRAGMA query_only = 1")


async def _writable(store: SQLiteStore[Any]) -> None:
    await _pragma(store, "PRAGMA query_only = 0")


SQLITE_FAULTS = {
    "disk_full": (_disk_full, _disk_has_room),
    "read_only": (_read_only, _writable),
}
# Big enough to need new pages, so a full disk shows.
LONG = "x" * 50_000


@pytest.mark.parametrize("fault", list(SQLITE_FAULTS))
async def test_sqlite_write_failures_are_retryable_and_heal(
    sqlite_store: SQLiteStore[Any], fault: str
) -> None:
    break_it, mend_it = SQLITE_FAULTS[fault]
    app = make_app(sqlite_store)
    async with ChatKitTestClient(app, headers={"x-user": "alice"}) as client:
        thread_id = await new_thread(client)
        before = await snapshot(sqlite_store, ALICE, [])
        await break_it(sqlite_store)

        # Reads still work; every write is refused as retryable and changes nothing.
        assert (await post(client, "threads.get_by_id", thread_id=thread_id)).status_code == 200
        stream = await post(
            client, "threads.add_user_message", thread_id=thread_id, input=user_input(LONG)
        )
        assert_retryable(stream)
        rename = await post(client, "threads.update", thread_id=thread_id, title=LONG)
        assert_retryable(rename)
        assert rename.status_code == 503
        created = await post(client, "threads.create", input=user_input(LONG))
        assert_retryable(created)
        after = await snapshot(sqlite_store, ALICE, [])
        new_threads = [entry for entry in after if entry not in before]
        assert all(LONG not in entry for entry in new_threads), "a half-written turn remains"

        await mend_it(sqlite_store)
        events = await client.add_message(thread_id, LONG)
        assert events[-1].type == "thread.item.done"
        items = await all_items(sqlite_store, thread_id, ALICE)
        assert texts(items)[-2:] == [
            ("user_message", LONG),
            ("assistant_message", f"reply to {LONG}"),
        ]


async def test_a_sqlite_database_locked_by_another_process_is_retryable(
    sqlite_store: SQLiteStore[Any], tmp_path: Path
) -> None:
    app = make_app(sqlite_store)
    async with ChatKitTestClient(app, headers={"x-user": "alice"}) as client:
        thread_id = await new_thread(client)
        before = await snapshot(sqlite_store, ALICE, [])
        # Another process (a backup, a migration) holds the write lock past the timeout.
        other = sqlite3.connect(tmp_path / "chatkit.db", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with anyio.fail_after(PATIENCE):
                rename = await post(client, "threads.update", thread_id=thread_id, title="new")
            assert_retryable(rename)
            assert rename.status_code == 503
            assert await snapshot(sqlite_store, ALICE, []) == before
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert (await post(client, "threads.update", thread_id=thread_id, title="new")).is_success


# -- a MongoDB server killed mid-turn ----------------------------------------------------------

# PyMongo's async client leaves the socket of a failed connection attempt to the
# garbage collector (PyMongo 4.20; upstream PYTHON-3923); collected in each test.
mongo_outage = pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")


class KillOnCommand(monitoring.CommandListener):
    """Kills the server just before the first `command` on `collection` is sent."""

    def __init__(self, server: RestartableMongo, command: str, collection: str) -> None:
        self.server = server
        self.command = command
        self.collection = collection
        self.armed = False
        self.fired = False

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if (
            self.armed
            and not self.fired
            and event.command_name == self.command
            and event.command.get(self.command) == self.collection
        ):
            self.fired = True
            self.server.kill()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _mongo_client(uri: str, *listeners: monitoring.CommandListener) -> Any:
    # Short timeouts: an outage is reported in about a second instead of thirty.
    return AsyncMongoClient(
        uri,
        serverSelectionTimeoutMS=1000,
        connectTimeoutMS=1000,
        event_listeners=list(listeners),
    )


async def _restart(server: RestartableMongo) -> None:
    await anyio.to_thread.run_sync(server.start)


async def _killed_mid_reply(
    client: ChatKitTestClient,
    thread_id: str,
    replier: Replier,
    server: RestartableMongo,
    *,
    streaming_for: float = 0.0,
) -> httpx.Response:
    """A turn whose answer is held until MongoDB has been killed (`streaming_for`
    seconds after the answer began), then let go; its response."""
    outcome: dict[str, httpx.Response] = {}

    async def held_turn() -> None:
        outcome["response"] = await post(
            client, "threads.add_user_message", thread_id=thread_id, input=user_input("hold")
        )

    with anyio.fail_after(PATIENCE * 2):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(held_turn)
            await replier.holding.wait()  # the user message is stored by now
            await anyio.sleep(streaming_for)
            await anyio.to_thread.run_sync(server.kill)
            replier.gate.set()  # the answer is done, and cannot be stored
    return outcome["response"]


@mongo_outage
async def test_mongodb_killed_mid_reply_gives_a_retryable_error_and_heals(
    restartable_mongo: RestartableMongo,
) -> None:
    client = _mongo_client(restartable_mongo.uri)
    store: MongoStore[Any] = MongoStore(client["chatkit"], tenant=by_user, lease_ttl=2.0)
    replier = Replier()
    app = make_app(store, replier, turn_wait=10.0)
    try:
        async with ChatKitTestClient(app, headers={"x-user": "alice"}) as alice:
            thread_id = await new_thread(alice)
            response = await _killed_mid_reply(alice, thread_id, replier, restartable_mongo)
            assert_retryable(response)
            assert response.status_code == 200

            # Down: requests are refused as retryable, not failed.
            down = await post(alice, "threads.get_by_id", thread_id=thread_id)
            assert_retryable(down)
            assert down.status_code == 503

            await _restart(restartable_mongo)
            items = await all_items(store, thread_id, ALICE)
            assert texts(items) == [
                ("user_message", "first"),
                ("assistant_message", "reply to first"),
                ("user_message", "hold"),
            ]
            # The same app carries on (once the stranded turn lease expires).
            with anyio.fail_after(PATIENCE):
                events = await alice.add_message(thread_id, "again")
            assert events[-1].type == "thread.item.done"
            assert texts(await all_items(store, thread_id, ALICE))[-2:] == [
                ("user_message", "again"),
                ("assistant_message", "reply to again"),
            ]
    finally:
        await client.close()
        gc.collect()


@mongo_outage
@pytest.mark.parametrize("request_type", ["threads.create", "threads.add_user_message"])
async def test_mongodb_killed_while_the_user_message_is_written(
    restartable_mongo: RestartableMongo, request_type: str
) -> None:
    killer = KillOnCommand(restartable_mongo, "insert", "chatkit_items")
    client = _mongo_client(restartable_mongo.uri, killer)
    store: MongoStore[Any] = MongoStore(client["chatkit"], tenant=by_user, lease_ttl=2.0)
    app = make_app(store, turn_wait=10.0)
    try:
        async with ChatKitTestClient(app, headers={"x-user": "alice"}) as alice:
            thread_id = await new_thread(alice)
            killer.armed = True
            with anyio.fail_after(PATIENCE * 2):
                if request_type == "threads.create":
                    response = await post(alice, request_type, input=user_input("doomed"))
                else:
                    response = await post(
                        alice, request_type, thread_id=thread_id, input=user_input("doomed")
                    )
            assert killer.fired
            assert_retryable(response)

            await _restart(restartable_mongo)
            threads = (await store.load_threads(100, None, "asc", ALICE)).data
            for thread in threads:
                items = await all_items(store, thread.id, ALICE)
                if thread.id == thread_id:
                    assert texts(items[:2]) == whole_or_nothing("first")[2]
                    items = items[2:]
                assert texts(items) in whole_or_nothing("doomed")
            with anyio.fail_after(PATIENCE):
                events = await alice.add_message(thread_id, "again")
            assert events[-1].type == "thread.item.done"
    finally:
        await client.close()
        gc.collect()


@mongo_outage
async def test_a_checkpointed_answer_cut_by_an_outage_is_a_clean_prefix_and_retry_clears_it(
    restartable_mongo: RestartableMongo,
) -> None:
    client = _mongo_client(restartable_mongo.uri)
    store: MongoStore[Any] = MongoStore(client["chatkit"], tenant=by_user, lease_ttl=2.0)
    replier = Replier()
    app = make_app(store, replier, turn_wait=10.0, checkpoint_interval=0.05)
    try:
        async with ChatKitTestClient(app, headers={"x-user": "alice"}) as alice:
            thread_id = await new_thread(alice)
            # 0.3 s in, a checkpoint of "reply to " is written.
            response = await _killed_mid_reply(
                alice, thread_id, replier, restartable_mongo, streaming_for=0.3
            )
            assert_retryable(response)
            await _restart(restartable_mongo)

            items = await all_items(store, thread_id, ALICE)
            kept = texts(items)[2:]
            # The user message whole; of the answer at most its last checkpoint.
            assert kept[0] == ("user_message", "hold")
            assert kept[1:] in ([], [("assistant_message", "reply to ")])
            # What the UI's retry button sends clears the cut answer and answers again.
            with anyio.fail_after(PATIENCE):
                retried = await alice.stream(
                    "threads.retry_after_item", thread_id=thread_id, item_id=items[2].id
                )
            assert retried[-1].type == "thread.item.done"
            assert (
                texts(await all_items(store, thread_id, ALICE))[2:] == whole_or_nothing("hold")[2]
            )
    finally:
        await client.close()
        gc.collect()
